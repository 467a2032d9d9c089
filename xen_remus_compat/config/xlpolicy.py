"""What a xend-era model value means on a Xen 4.17 xl host.

The xl-side policies the libxl JSON writer (``formats/libxl_json_writer.py``)
and the xl.cfg writer (``formats/xlcfg.py``) share, so that the xl.cfg text
and the JSON can never disagree (``tests/conformance/test_roundtrip.py``
checks them field by field against the real ``xl -N create``): the vcpu
count and bitmap, the kernel command line xl builds, which HVM firmware and
device model to ask for, the framebuffers and the VNC/SDL console an HVM
guest ends up with (xl_parse.c), and which xend-era paths a bookworm
host does not have (``hostpaths.py``: :func:`host_changes`).
Decisions: ``docs/decisions.d/config.md``.
"""
from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError
from . import hostpaths
from .model import Domain, Vfb

__all__ = ["max_vcpus", "avail_vcpu_bits", "effective_cmdline", "bootloader_argv",
           "hvm_kernel", "boot_files", "hvm_firmware", "device_model",
           "vfb_vnc_enabled", "vfb_sdl_enabled", "vfb_fields", "hvm_graphics",
           "pv_vfbs", "localtime", "BOOTLOADER_TEMP_DIRS", "TRADITIONAL_DM",
           "IS_DEFAULT", "HostChange", "host_changes", "xl_bootloader", "xl_cmdline",
           "pci_defaults", "pci_option_defaults", "image_flags", "DEFAULT_POOL"]

#: Device models a 4.17 host does not have: xend's qemu-traditional.
TRADITIONAL_DM = ("qemu-dm", "stubdom-dm")

#: Directories where xend's bootloader (pygrub) left the kernel it
#: extracted; with a bootloader such a path is an output, not an input.
BOOTLOADER_TEMP_DIRS = ("/var/lib/xen", "/var/run/xend/boot", "/var/lib/xen/boot")

#: The cpupool a domain without ``pool`` goes to (xl.cfg(5); xend's too).
DEFAULT_POOL = "Pool-0"

#: The reason given for a value that is what xl does anyway (not reported).
IS_DEFAULT = "xl's default"

#: Why pv-grub becomes pvgrub2 (also in the converted file).
PVGRUB_NOTE = (
    "pv-grub (GRUB legacy as a Xen PV kernel) is not in Debian bookworm; written as "
    f"pvgrub2 from the {hostpaths.PVGRUB2_PACKAGE} package, which boots the guest's "
    "GRUB 2 /boot/grub/grub.cfg (a guest with only GRUB legacy's menu.lst needs "
    "GRUB 2 installed first, or bootloader = \"pygrub\", which reads menu.lst); "
    "or convert the guest with 'convert --to-pvh'")


# --------------------------------------------------------------------------
# vcpus
# --------------------------------------------------------------------------

def max_vcpus(dom: Domain) -> Optional[int]:
    """``vcpus``; when unset but CPUs are pinned, xend's default of 1 (xl
    sizes the affinity array by the vcpu count and would drop the pinning)."""
    if dom.vcpus is not None:
        return dom.vcpus
    if dom.cpus or dom.vcpu_affinity:
        return dom.vcpus_online or 1
    return None


def avail_vcpu_bits(dom: Domain) -> Optional[List[int]]:
    """The online vcpus: xend's ``vcpu_avail`` bitmap, else the first
    ``vcpus_online``, else all ``vcpus``."""
    limit = max_vcpus(dom)
    if limit is None:
        limit = dom.vcpus_online
    if limit is None:
        return None
    if dom.vcpu_avail is not None:
        return [i for i in range(limit) if dom.vcpu_avail >> i & 1]
    count = dom.vcpus_online if dom.vcpus_online is not None else limit
    return list(range(min(count, limit)))


# --------------------------------------------------------------------------
# Booting
# --------------------------------------------------------------------------

def effective_cmdline(dom: Domain) -> Tuple[Optional[str], List[str]]:
    """The kernel command line xl builds (xl_parse.c ``parse_cmdline``):
    ``cmdline`` wins over ``root``/``extra``; otherwise ``root=R EXTRA``.
    Returns it and the model keys it ignores."""
    if dom.cmdline:
        ignored = [k for k, v in (("root", dom.root), ("extra", dom.extra_args)) if v]
        return dom.cmdline, ignored
    if dom.root and dom.extra_args:
        return f"root={dom.root} {dom.extra_args}", []
    if dom.root:
        return f"root={dom.root}", []
    return (dom.extra_args or None), []


def bootloader_argv(dom: Domain) -> Optional[List[str]]:
    """``bootloader_args`` as the argument list xend passed (it used
    ``shlex.split``); ConfigError when the quoting is broken."""
    if not dom.bootloader_args:
        return None
    try:
        return shlex.split(dom.bootloader_args)
    except ValueError as exc:
        raise ConfigError(f"bootloader_args {dom.bootloader_args!r}: {exc}") from None


def hvm_kernel(dom: Domain) -> Optional[str]:
    """An HVM ``kernel`` that is really hvmloader is firmware, not a kernel
    (xl drops it with a warning, xl_parse.c)."""
    if dom.kernel and dom.type == "hvm" and posixpath.basename(dom.kernel) == "hvmloader":
        return None
    return dom.kernel


def boot_files(dom: Domain) -> Tuple[Optional[str], Optional[str], List[Tuple[str, str, str]]]:
    """(kernel, ramdisk, dropped) for xl: an HVM hvmloader "kernel" is
    firmware; with a bootloader, a kernel/ramdisk in xend's bootloader
    scratch directory is what pygrub extracted last time, not an input; a
    pv-grub kernel becomes pvgrub2 (:func:`host_changes`)."""
    kernel, ramdisk, dropped = _boot_paths(dom)
    if dom.type != "hvm" and not dom.bootloader:
        kernel = hostpaths.pvgrub2(kernel) or kernel
    return kernel, ramdisk, dropped


def _boot_paths(dom: Domain) -> Tuple[Optional[str], Optional[str], List[Tuple[str, str, str]]]:
    dropped: List[Tuple[str, str, str]] = []
    kernel = hvm_kernel(dom)
    ramdisk = dom.ramdisk
    if dom.bootloader:
        for key, path in (("kernel", kernel), ("ramdisk", ramdisk)):
            if path and posixpath.dirname(path) in BOOTLOADER_TEMP_DIRS:
                dropped.append((key, path, "extracted by xend's bootloader; "
                                "the bootloader runs again at boot"))
                if key == "kernel":
                    kernel = None
                else:
                    ramdisk = None
    return kernel, ramdisk, dropped


def hvm_firmware(dom: Domain) -> Tuple[Optional[str], Optional[Tuple[str, str]]]:
    """(``firmware`` path for libxl or None, (key, reason) when dropped).

    xend named ``/usr/lib/xen/boot/hvmloader``; xl 4.17 loads its own
    hvmloader, so that path is not carried over (it does not exist on
    Debian, whose hvmloader is under ``/usr/lib/xen-4.17/boot``)."""
    if dom.type != "hvm":
        return None, None
    loader = dom.hvm.loader if dom.hvm else None
    if not loader and dom.kernel and hvm_kernel(dom) is None:
        loader = dom.kernel
    if not loader:
        return None, None
    if posixpath.basename(loader) == "hvmloader":
        return None, ("loader", IS_DEFAULT)      # xl loads Xen 4.17's own
    return loader, None


def device_model(dom: Domain) -> Tuple[Optional[str], Optional[Tuple[str, str]]]:
    """(``device_model`` override or None, (key, reason) when dropped).

    xend's ``qemu-dm`` is qemu-traditional, which Xen 4.17 hosts do not
    have; libxl then picks its own qemu-xen.  Any other path is passed as
    ``device_model_override`` with ``device_model_version = qemu-xen``."""
    path = dom.hvm.device_model if dom.hvm else None
    if not path:
        return None, None
    if posixpath.basename(path) in TRADITIONAL_DM:
        return None, ("device_model",
                      "qemu-traditional (qemu-dm) is not in Xen 4.17; libxl starts "
                      f"upstream QEMU ({hostpaths.QEMU_XEN}, package qemu-system-xen), "
                      "whose emulated hardware differs (a Windows guest may find new "
                      "devices)")
    if hostpaths.xend_era(path) and posixpath.basename(path).startswith("qemu-system-"):
        return None, ("device_model",
                      "the upstream QEMU an old Xen release built for itself; libxl "
                      f"starts bookworm's ({hostpaths.QEMU_XEN})")
    return path, None


@dataclass
class HostChange:
    """A path a bookworm host does not have: ``rewritten`` (``new`` is what
    is written instead; None: nothing, xl's default applies) or ``flagged``
    (written as it is; the operator has to provide it or change it)."""

    key: str
    old: Any
    new: Optional[str]
    reason: str
    kind: str = "rewritten"


_NOT_ON_BOOKWORM = ("a Xen directory of a xend-era host; Debian bookworm has no "
                    "such file (convert --check-host checks this host)")


def host_changes(dom: Domain) -> List[HostChange]:
    """What :func:`xl_bootloader`, :func:`boot_files`, :func:`xl_cmdline`
    and :func:`device_model` change for a bookworm host, and the xend-era
    paths they keep (flagged)."""
    out: List[HostChange] = []
    new, why = hostpaths.bootloader(dom.bootloader)
    if why:
        out.append(HostChange("bootloader", dom.bootloader, new, why))
    elif hostpaths.xend_era(dom.bootloader):
        out.append(HostChange("bootloader", dom.bootloader, dom.bootloader,
                              _NOT_ON_BOOKWORM, "flagged"))
    kernel, ramdisk, _ = _boot_paths(dom)
    pvgrub = hostpaths.pvgrub2(kernel) if dom.type != "hvm" and not dom.bootloader else None
    if pvgrub:
        out.append(HostChange("kernel", kernel, pvgrub, PVGRUB_NOTE))
        cmdline, _ = effective_cmdline(dom)
        if hostpaths.pvgrub_menu(cmdline):
            out.append(HostChange("cmdline", cmdline, None,
                                  "pv-grub's GRUB legacy menu; pvgrub2 finds the "
                                  "guest's /boot/grub/grub.cfg itself"))
    elif not dom.bootloader and hostpaths.xend_era(kernel):
        out.append(HostChange("kernel", kernel, kernel, _NOT_ON_BOOKWORM, "flagged"))
    if not dom.bootloader and hostpaths.xend_era(ramdisk):
        out.append(HostChange("ramdisk", ramdisk, ramdisk, _NOT_ON_BOOKWORM, "flagged"))
    firmware, _ = hvm_firmware(dom)
    if hostpaths.xend_era(firmware):
        out.append(HostChange("firmware", firmware, firmware, _NOT_ON_BOOKWORM, "flagged"))
    dm, dropped = device_model(dom)
    if dropped:
        out.append(HostChange("device_model", dom.hvm.device_model, None, dropped[1]))
    elif hostpaths.xend_era(dm):
        out.append(HostChange("device_model", dm, dm, _NOT_ON_BOOKWORM, "flagged"))
    return out


def xl_bootloader(dom: Domain) -> Optional[str]:
    """``bootloader`` for xl (a pygrub bookworm lacks becomes ``pygrub``)."""
    return hostpaths.bootloader(dom.bootloader)[0]


def xl_cmdline(dom: Domain) -> Tuple[Optional[str], List[str]]:
    """:func:`effective_cmdline`, less pv-grub's menu.lst argument where the
    kernel becomes pvgrub2."""
    cmdline, ignored = effective_cmdline(dom)
    if any(c.key == "cmdline" for c in host_changes(dom)):
        return None, ignored
    return cmdline, ignored


#: xend's image-level PCI defaults -> (xl key, xl's default, per-device option).
_PCI_DEFAULTS = (("pci_msitranslate", False, "msitranslate"),
                 ("pci_power_mgmt", False, "power_mgmt"))


def pci_defaults(dom: Domain) -> Dict[str, bool]:
    """xend's ``(image (... (pci_msitranslate 1) (pci_power_mgmt 0)))``
    where it differs from xl's default and there is a PCI device to apply
    it to: {xl key: value}.  (xend turned MSI translation on by default, xl
    off: xl-pci-configuration(5).)"""
    out: Dict[str, bool] = {}
    if not dom.pci:
        return out
    for key, xl_default, _ in _PCI_DEFAULTS:
        value = _one_flag(dom, key)
        if value is not None and value != xl_default:
            out[key] = value
    return out


#: xend image keys that are xl booleans -> xl's default (xl.cfg(5)).
_IMAGE_FLAGS = {"oos": True}


def _one_flag(dom: Domain, key: str) -> Optional[bool]:
    values = [v for k, v in dom.image_extra if k == key]
    if not values or not isinstance(values[-1], list) or len(values[-1]) != 1:
        return None
    text = str(values[-1][0]).strip()
    return None if text not in ("0", "1") else text == "1"


def image_flags(dom: Domain) -> Dict[str, bool]:
    """xend image booleans xl also has, where they differ from xl's default
    ({xl key: value}): ``(oos 0)`` -> ``oos = 0``."""
    out: Dict[str, bool] = {}
    for key, xl_default in _IMAGE_FLAGS.items():
        value = _one_flag(dom, key)
        if value is not None and value != xl_default:
            out[key] = value
    return out


def pci_option_defaults(dom: Domain) -> Dict[str, str]:
    """:func:`pci_defaults` as per-device options (what xl applies to each
    device without its own setting)."""
    names = {key: option for key, _, option in _PCI_DEFAULTS}
    return {names[k]: "1" if v else "0" for k, v in pci_defaults(dom).items()}


def localtime(dom: Domain) -> Optional[bool]:
    """The RTC in local time: an HVM image's own ``localtime`` wins over the
    domain-level one (xend kept it in both places)."""
    if dom.hvm is not None and dom.hvm.localtime is not None:
        return dom.hvm.localtime
    return dom.localtime


# --------------------------------------------------------------------------
# Framebuffers and the HVM console
# --------------------------------------------------------------------------

def vfb_vnc_enabled(vfb: Vfb) -> Optional[bool]:
    """VNC on/off: explicit ``vnc``, else a device vfb of type vnc is on."""
    if vfb.vnc is not None:
        return vfb.vnc
    if vfb.origin != "image" and (vfb.type or "vnc") == "vnc" and not vfb.sdl:
        return True
    return None


def vfb_sdl_enabled(vfb: Vfb) -> Optional[bool]:
    if vfb.sdl is not None:
        return vfb.sdl
    if vfb.type == "sdl":
        return True
    return None


#: Vfb attributes copied as they are into the merged graphics settings.
_GRAPHICS = ("vnclisten", "vncdisplay", "vncunused", "vncpasswd", "keymap",
             "display", "xauthority", "opengl")


def vfb_fields(vfb: Vfb) -> Dict[str, Any]:
    """One vfb's settings as xl sees them (``vnc``/``sdl`` resolved)."""
    out: Dict[str, Any] = {"vnc": vfb_vnc_enabled(vfb), "sdl": vfb_sdl_enabled(vfb)}
    for key in _GRAPHICS:
        out[key] = getattr(vfb, key)
    return out


def hvm_graphics(dom: Domain) -> Dict[str, Any]:
    """The single VNC/SDL console of an HVM guest: every vfb merged in
    order, later values overriding (xend 3.x kept it both in the image and
    as a ``(device (vfb))``)."""
    merged: Dict[str, Any] = {}
    for vfb in dom.vfbs:
        for key, value in vfb_fields(vfb).items():
            if value is not None:
                merged[key] = value
    return merged


def pv_vfbs(dom: Domain) -> List[Dict[str, Any]]:
    """The PV framebuffers xl creates: every device vfb, and an image-level
    one only when it enables VNC or SDL (xend 3.0 ``(image (linux (vnc 1)))``)."""
    out = []
    for vfb in dom.vfbs:
        fields = vfb_fields(vfb)
        if vfb.origin == "image" and not (fields["vnc"] or fields["sdl"]):
            continue
        out.append({k: v for k, v in fields.items() if v is not None})
    return out
