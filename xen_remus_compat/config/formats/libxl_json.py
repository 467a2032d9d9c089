"""The domain model <-> libxl's ``libxl_domain_config`` JSON.

Contract: ``docs/internals.md`` (``config/libxl_json.py``).  The encoding
is libxl's own generator as xl-side.md section 4.2 describes it and as
Debian's real ``xl -N create`` prints it (checked field by field in
``tests/conformance/test_roundtrip.py``):

* fields equal to their IDL default are omitted (``on_poweroff: destroy``,
  ``display: 0``, empty lists); defbools are ``"True"``/``"False"``;
  enums are lower-case libxl names (``restart_rename``, ``vif_ioemu``);
* memory is KiB (``MemKB = MiB * 1024``), ``avail_vcpus`` is the array of
  online vcpu numbers, the build-type keys are ``type.pv``/``type.hvm``/
  ``type.pvh``;
* ``c_info.domid`` is a creation *request* (xl stores its ``domid_policy``
  there, 4294967295); the running id lives only in the ``{"domid",
  "config"}`` wrapper of ``xl list -l`` (xl-side.md 4.1, 4.6).

The xl-side policies shared with ``xlcfg.py`` (what a xend value means on a
4.17 host: the kernel command line xend would have built, which HVM
firmware and device model to ask for, the VNC settings an HVM guest ends
up with) live here so the xl.cfg text and the JSON can never disagree.
Decisions: ``docs/decisions.d/config.md``.
"""
from __future__ import annotations

import json
import logging
import posixpath
import re
import shlex
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ...errors import ConfigError
from ..model import Domain, HvmSettings, PciDev, Vfb

log = logging.getLogger("xen_remus_compat")

__all__ = ["domain_to_libxl", "domain_from_libxl", "loads", "dumps",
           "INVALID_DOMID", "RANDOM_DOMID", "effective_cmdline",
           "parse_cpulist", "format_cpulist", "avail_vcpu_bits", "max_vcpus",
           "hvm_firmware", "device_model", "boot_files", "hvm_kernel", "hvm_graphics", "pv_vfbs",
           "vfb_vnc_enabled", "vfb_sdl_enabled", "bootloader_argv",
           "libxl_action", "xl_action", "TIMER_MODES"]

#: ``c_info.domid`` values that are policies, not ids (xl-side.md 4.1).
INVALID_DOMID = 4294967295
RANDOM_DOMID = 4294967294

#: Model/xend/xl action names -> libxl ``action_on_shutdown`` enum names.
ACTIONS_TO_LIBXL = {
    "destroy": "destroy", "restart": "restart",
    "rename-restart": "restart_rename", "restart_rename": "restart_rename",
    "preserve": "preserve",
    "coredump-destroy": "coredump_destroy", "coredump_destroy": "coredump_destroy",
    "coredump-restart": "coredump_restart", "coredump_restart": "coredump_restart",
    "soft-reset": "soft_reset", "soft_reset": "soft_reset",
}
#: libxl enum name -> the xend/xl spelling kept in the model.
LIBXL_TO_ACTION = {
    "destroy": "destroy", "restart": "restart", "restart_rename": "rename-restart",
    "preserve": "preserve", "coredump_destroy": "coredump-destroy",
    "coredump_restart": "coredump-restart", "soft_reset": "soft-reset",
}
#: The shutdown keys of a libxl_domain_config and their libxl defaults
#: (xl itself always sets on_reboot=restart and on_soft_reset=soft_reset).
SHUTDOWN_KEYS = ("on_poweroff", "on_reboot", "on_crash")

#: libxl_timer_mode, by xend's integer value (xl.cfg(5) timer_mode).
TIMER_MODES = ("delay_for_missed_ticks", "no_delay_for_missed_ticks",
               "no_missed_ticks_pending", "one_missed_tick_pending")

#: Device models a 4.17 host does not have: xend's qemu-traditional.
TRADITIONAL_DM = ("qemu-dm", "stubdom-dm")

MEMKB = 1024


def libxl_action(action: str) -> str:
    """Model action -> libxl enum name (``rename-restart`` -> ``restart_rename``)."""
    try:
        return ACTIONS_TO_LIBXL[action]
    except KeyError:
        raise ConfigError(f"unknown shutdown action {action!r}") from None


def xl_action(action: str) -> str:
    """Model action -> the xl.cfg spelling (``restart_rename`` -> ``rename-restart``)."""
    return LIBXL_TO_ACTION[libxl_action(action)]


# --------------------------------------------------------------------------
# Shared xl-side policies
# --------------------------------------------------------------------------

def format_cpulist(bits: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (xl CPULIST)."""
    out: List[str] = []
    run: List[int] = []
    for b in sorted(set(bits)):
        if run and b == run[-1] + 1:
            run.append(b)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [b]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def parse_cpulist(text: str) -> Optional[List[int]]:
    """The CPU numbers of a plain CPULIST (``"0-3,^1,5"``); None when it
    needs the host (``all``, ``node:``/``nodes:``), so it cannot be
    evaluated here."""
    have: List[int] = []
    drop: List[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        target = have
        if part.startswith("^"):
            target, part = drop, part[1:]
        m = re.match(r"^(\d+)(?:-(\d+))?$", part)
        if not m:
            return None
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            return None
        target.extend(range(lo, hi + 1))
    return [c for c in sorted(set(have)) if c not in drop]


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


#: Directories where xend's bootloader (pygrub) left the kernel it
#: extracted; with a bootloader such a path is an output, not an input.
BOOTLOADER_TEMP_DIRS = ("/var/lib/xen", "/var/run/xend/boot", "/var/lib/xen/boot")


def boot_files(dom: Domain) -> Tuple[Optional[str], Optional[str], List[Tuple[str, str, str]]]:
    """(kernel, ramdisk, dropped) for xl: an HVM hvmloader "kernel" is
    firmware; with a bootloader, a kernel/ramdisk in xend's bootloader
    scratch directory is what pygrub extracted last time, not an input."""
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
        return None, ("loader", "xl uses the hvmloader shipped with Xen 4.17")
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
                      "qemu-traditional (qemu-dm) is not available with xl 4.17; "
                      "libxl uses its qemu-xen")
    return path, None


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


_GRAPHICS = ("vnclisten", "vncdisplay", "vncunused", "vncpasswd", "keymap",
             "display", "xauthority", "opengl")


def _vfb_fields(vfb: Vfb) -> Dict[str, Any]:
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
        for key, value in _vfb_fields(vfb).items():
            if value is not None:
                merged[key] = value
    return merged


def pv_vfbs(dom: Domain) -> List[Dict[str, Any]]:
    """The PV framebuffers xl creates: every device vfb, and an image-level
    one only when it enables VNC or SDL (xend 3.0 ``(image (linux (vnc 1)))``)."""
    out = []
    for vfb in dom.vfbs:
        fields = _vfb_fields(vfb)
        if vfb.origin == "image" and not (fields["vnc"] or fields["sdl"]):
            continue
        out.append({k: v for k, v in fields.items() if v is not None})
    return out


# --------------------------------------------------------------------------
# model -> JSON
# --------------------------------------------------------------------------

def _defbool(v: bool) -> str:
    return "True" if v else "False"


def _put(d: Dict[str, Any], key: str, value: Any) -> None:
    if value is None or value == [] or value == {}:
        return
    d[key] = value


def _vnc_json(g: Dict[str, Any]) -> Dict[str, Any]:
    vnc: Dict[str, Any] = {}
    if g.get("vnc") is not None:
        vnc["enable"] = _defbool(g["vnc"])
    _put(vnc, "listen", g.get("vnclisten"))
    _put(vnc, "passwd", g.get("vncpasswd"))
    if g.get("vncdisplay"):
        vnc["display"] = g["vncdisplay"]
    if g.get("vncunused") is not None:
        vnc["findunused"] = _defbool(g["vncunused"])
    return vnc


def _sdl_json(g: Dict[str, Any]) -> Dict[str, Any]:
    sdl: Dict[str, Any] = {}
    if g.get("sdl") is not None:
        sdl["enable"] = _defbool(g["sdl"])
    if g.get("opengl") is not None:
        sdl["opengl"] = _defbool(g["opengl"])
    _put(sdl, "display", g.get("display"))
    _put(sdl, "xauthority", g.get("xauthority"))
    return sdl


def _one_or_list(d: Dict[str, Any], single: str, plural: str,
                 values: List[str]) -> None:
    """xl's ``serial``/``usbdevice``: a string -> ``single``, a list ->
    ``plural`` (xl_parse.c); we write a string for one value."""
    if len(values) == 1:
        d[single] = values[0]
    elif values:
        d[plural] = list(values)


def _pci_json(pci: PciDev) -> Dict[str, Any]:
    d: Dict[str, Any] = {}
    for key, value in (("func", pci.func), ("dev", pci.slot), ("bus", pci.bus),
                       ("domain", pci.domain)):
        if value:
            d[key] = value
    opts = dict(pci.options)
    if "vslot" in opts:
        try:
            d["vdevfn"] = int(opts["vslot"], 0) << 3
        except ValueError:
            raise ConfigError(f"pci {pci.bdf}: bad vslot {opts['vslot']!r}") from None
    d["vfunc_mask"] = 1            # xl: the one function named by the BDF
    for key in ("msitranslate", "power_mgmt", "permissive", "seize"):
        if key in opts:
            try:
                on = int(opts[key], 0) != 0
            except ValueError:
                raise ConfigError(f"pci {pci.bdf}: bad {key} {opts[key]!r}") from None
            if on:
                d[key] = True
    if opts.get("rdm_policy") in ("strict", "relaxed"):
        d["rdm_policy"] = opts["rdm_policy"]
    return d


def domain_to_libxl(dom: Domain) -> Dict[str, Any]:
    """The ``libxl_domain_config`` xl would build for this domain (the
    migration-header form: no ``c_info.domid``, xl-side.md 4.6)."""
    from ..specs import diskspec, vifspec
    c_info: Dict[str, Any] = {"type": dom.type}
    hvm = dom.hvm if dom.type == "hvm" else None
    if hvm is not None and hvm.hap is not None:
        c_info["hap"] = _defbool(hvm.hap)
    _put(c_info, "name", dom.name or None)
    _put(c_info, "uuid", dom.uuid)

    b: Dict[str, Any] = {}
    if max_vcpus(dom) is not None:
        b["max_vcpus"] = max_vcpus(dom)
    bits = avail_vcpu_bits(dom)
    if bits is not None:
        b["avail_vcpus"] = bits
    affinity = _affinity_json(dom)
    if affinity:
        b["vcpu_hard_affinity"] = affinity
    maxmem = dom.maxmem if dom.maxmem is not None else dom.memory
    if maxmem is not None:
        b["max_memkb"] = maxmem * MEMKB
    if dom.memory is not None:
        b["target_memkb"] = dom.memory * MEMKB
    if hvm is not None and hvm.videoram is not None:
        b["video_memkb"] = hvm.videoram * MEMKB
    if dom.shadow_memory:
        b["shadow_memkb"] = dom.shadow_memory * MEMKB
    if hvm is not None and hvm.rtc_timeoffset:
        b["rtc_timeoffset"] = hvm.rtc_timeoffset & 0xFFFFFFFF
    localtime = _localtime(dom)
    if localtime is not None:
        b["localtime"] = _defbool(localtime)
    sched: Dict[str, Any] = {}
    if dom.cpu_weight is not None:
        sched["weight"] = dom.cpu_weight
    if dom.cpu_cap is not None:
        sched["cap"] = dom.cpu_cap
    _put(b, "sched_params", sched)
    kernel, ramdisk, _ = boot_files(dom)
    _put(b, "kernel", kernel)
    cmdline, _ = effective_cmdline(dom)
    _put(b, "cmdline", cmdline)
    _put(b, "ramdisk", ramdisk)
    dm, _ = device_model(dom)
    if dm:
        b["device_model_version"] = "qemu_xen"
        b["device_model"] = dm
    if hvm is not None and hvm.acpi is not None:
        b["acpi"] = _defbool(hvm.acpi)
    _put(b, "bootloader", dom.bootloader)
    _put(b, "bootloader_args", bootloader_argv(dom))
    if hvm is not None and hvm.timer_mode is not None:
        if not 0 <= hvm.timer_mode < len(TIMER_MODES):
            raise ConfigError(f"timer_mode {hvm.timer_mode} is not one of 0-3")
        b["timer_mode"] = TIMER_MODES[hvm.timer_mode]
    if hvm is not None and hvm.apic is not None:
        b["apic"] = _defbool(hvm.apic)
    if dom.type == "hvm":
        b["type.hvm"] = _hvm_json(dom, hvm or HvmSettings())
    elif dom.type == "pvh":
        b["type.pvh"] = {}
    else:
        pv: Dict[str, Any] = {}
        if dom.pci:
            pv["e820_host"] = "True"      # xl does so for PV passthrough
        b["type.pv"] = pv

    cfg: Dict[str, Any] = {"c_info": c_info, "b_info": b}
    _put(cfg, "disks", [diskspec.disk_to_libxl(d) for d in dom.disks])
    nics = []
    for index, nic in enumerate(dom.nics):
        d = vifspec.nic_to_libxl(nic)
        d.setdefault("devid", index)
        nics.append(d)
    _put(cfg, "nics", nics)
    _put(cfg, "pcidevs", [_pci_json(p) for p in dom.pci])
    if dom.type != "hvm":
        vfbs, vkbs = [], []
        for index, g in enumerate(pv_vfbs(dom)):
            vfb: Dict[str, Any] = {"devid": index}
            _put(vfb, "vnc", _vnc_json(g))
            _put(vfb, "sdl", _sdl_json(g))
            _put(vfb, "keymap", g.get("keymap"))
            vfbs.append(vfb)
            vkbs.append({"devid": index})
        _put(cfg, "vfbs", vfbs)
        _put(cfg, "vkbs", vkbs)
    for key in SHUTDOWN_KEYS:
        value = getattr(dom, key)
        if value:
            name = libxl_action(value)
            if name != "destroy":
                cfg[key] = name
    return cfg


def _localtime(dom: Domain) -> Optional[bool]:
    if dom.hvm is not None and dom.hvm.localtime is not None:
        return dom.hvm.localtime
    return dom.localtime


def _affinity_json(dom: Domain) -> List[List[int]]:
    """``vcpu_hard_affinity`` as xl builds it: a string applies to every
    vcpu (``max_vcpus`` copies), a list to the first N (xl_parse.c
    ``parse_vcpu_affinity``).  Host-dependent lists (``all``, ``nodes:``)
    cannot be evaluated and are left out."""
    count = max_vcpus(dom) or 0
    if dom.vcpu_affinity:
        lists = [parse_cpulist(s) for s in dom.vcpu_affinity[:count]]
        return [] if any(x is None for x in lists) else lists
    if dom.cpus:
        bits = parse_cpulist(dom.cpus)
        return [] if bits is None else [list(bits) for _ in range(count)]
    return []


def _hvm_json(dom: Domain, hvm: HvmSettings) -> Dict[str, Any]:
    h: Dict[str, Any] = {}
    firmware, _ = hvm_firmware(dom)
    _put(h, "firmware", firmware)
    for key in ("pae", "viridian", "hpet"):
        value = getattr(hvm, key)
        if value is not None:
            h[key] = _defbool(value)
    if hvm.nographic is not None:
        h["nographic"] = _defbool(hvm.nographic)
    if hvm.stdvga is not None:
        h["vga"] = {"kind": "std" if hvm.stdvga else "cirrus"}
    g = hvm_graphics(dom)
    _put(h, "vnc", _vnc_json(g))
    _put(h, "keymap", g.get("keymap"))
    _put(h, "sdl", _sdl_json(g))
    _one_or_list(h, "serial", "serial_list", hvm.serial)
    _put(h, "boot", hvm.boot)
    if hvm.usb is not None:
        h["usb"] = _defbool(hvm.usb)
    _one_or_list(h, "usbdevice", "usbdevice_list", hvm.usbdevice)
    _put(h, "soundhw", hvm.soundhw)
    if hvm.xen_platform_pci is not None:
        h["xen_platform_pci"] = _defbool(hvm.xen_platform_pci)
    return h


def dumps(dom: Domain, *, wrapper: bool = False) -> str:
    """JSON text, 4-space indent; ``wrapper=True`` gives one ``xl list -l``
    element ``{"domid": N, "config": ...}`` with xl's ``c_info.domid``."""
    cfg = domain_to_libxl(dom)
    if wrapper:
        c_info = {}
        for key, value in cfg["c_info"].items():
            c_info[key] = value
            if key == "name":
                c_info["domid"] = INVALID_DOMID
        c_info.setdefault("domid", INVALID_DOMID)
        cfg["c_info"] = c_info
        return json.dumps({"domid": dom.domid, "config": cfg}, indent=4) + "\n"
    return json.dumps(cfg, indent=4) + "\n"


# --------------------------------------------------------------------------
# JSON -> model
# --------------------------------------------------------------------------

#: Values xl/libxl write on their own (defaults, host facts): not part of
#: the domain's configuration, so not kept in ``extra``.
_IGNORED: Dict[str, Any] = {
    "c_info.run_hotplug_scripts": "True",
    "b_info.claim_mode": None,            # xl.conf claim_mode, any value
    "b_info.sched_params.sched": None,    # the host's scheduler
    "b_info.arch_x86.msr_relaxed": "False",
    "on_soft_reset": "soft_reset",
    "on_watchdog": "destroy",
    "b_info.device_model_version": "qemu_xen",
}


class _Reader:
    def __init__(self, source: Optional[str]) -> None:
        self.source = source or "<json>"

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {message}", source=self.source)

    def obj(self, path: str, v: Any) -> Dict[str, Any]:
        if not isinstance(v, dict):
            raise self.error(path, f"expected an object, got {type(v).__name__}")
        return v

    def int(self, path: str, v: Any, minimum: int = 0) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(path, f"expected an integer, got {v!r}")
        if v < minimum:
            raise self.error(path, f"must be >= {minimum}, got {v}")
        return v

    def str(self, path: str, v: Any) -> str:
        if not isinstance(v, str):
            raise self.error(path, f"expected a string, got {v!r}")
        return v

    def defbool(self, path: str, v: Any) -> Optional[bool]:
        if isinstance(v, bool):
            return v
        if isinstance(v, str):
            low = v.lower()
            if low == "true":
                return True
            if low == "false":
                return False
            if low == "<default>":
                return None
        raise self.error(path, f"expected \"True\"/\"False\", got {v!r}")

    def memkb(self, path: str, v: Any) -> int:
        kb = self.int(path, v)
        if kb % MEMKB:
            log.warning("%s: %s: %d KiB is not a whole MiB; rounded down",
                        self.source, path, kb)
        return kb // MEMKB

    def bits(self, path: str, v: Any) -> List[int]:
        if not isinstance(v, list):
            raise self.error(path, f"expected an array of numbers, got {v!r}")
        return [self.int(f"{path}[{i}]", x) for i, x in enumerate(v)]

    def strlist(self, path: str, v: Any) -> List[str]:
        if not isinstance(v, list):
            raise self.error(path, f"expected an array of strings, got {v!r}")
        return [self.str(f"{path}[{i}]", x) for i, x in enumerate(v)]


def _keep(extra: list, path: str, value: Any) -> None:
    """Keep an unmodelled JSON value (``libxl:<path>``), unless it is empty
    or one of xl's own defaults (:data:`_IGNORED`)."""
    if value == {} or value == [] or value is None:
        return
    if path in _IGNORED and (_IGNORED[path] is None or _IGNORED[path] == value):
        return
    if isinstance(value, dict):
        for key, sub in value.items():
            _keep(extra, f"{path}.{key}", sub)
        return
    extra.append((f"libxl:{path}", value))


def _action_in(r: _Reader, path: str, v: Any) -> str:
    name = r.str(path, v).lower()
    if name not in LIBXL_TO_ACTION:
        raise r.error(path, f"unknown action {v!r}")
    return LIBXL_TO_ACTION[name]


def domain_from_libxl(cfg: Dict[str, Any], *, domid: Optional[int] = None,
                      source: Optional[str] = None) -> Domain:
    """A ``libxl_domain_config`` (the ``config`` of ``xl list -l``, the xl
    migration header, ``xl -N create``) -> Domain.  *domid* is the running
    id from the wrapper; ``c_info.domid`` is only a creation request."""
    from ..specs import diskspec, vifspec
    r = _Reader(source)
    cfg = r.obj("config", cfg)
    dom = Domain(domid=domid)
    c_info = r.obj("c_info", cfg.get("c_info", {}))
    b_info = r.obj("b_info", cfg.get("b_info", {}))
    dtype = str(c_info.get("type", "pv")).lower()
    if dtype not in ("pv", "hvm", "pvh"):
        raise r.error("c_info.type", f"unknown domain type {c_info.get('type')!r}")
    dom.type = dtype
    if dtype == "hvm":
        dom.hvm = HvmSettings()
    for key, value in c_info.items():
        path = f"c_info.{key}"
        if key == "type":
            continue
        if key == "name":
            dom.name = r.str(path, value)
        elif key == "uuid":
            from .sxpr import canonical_uuid
            canon = canonical_uuid(r.str(path, value))
            if canon is None:
                raise r.error(path, f"not a UUID: {value!r}")
            dom.uuid = canon
        elif key == "domid":
            n = r.int(path, value)
            if n not in (0, INVALID_DOMID, RANDOM_DOMID):
                dom.extra.append(("libxl:c_info.domid", n))
        elif key == "hap" and dom.hvm is not None:
            dom.hvm.hap = r.defbool(path, value)
        else:
            _keep(dom.extra, path, value)
    _read_b_info(r, dom, b_info)
    disks = cfg.get("disks", [])
    if not isinstance(disks, list):
        raise r.error("disks", "expected an array")
    for i, d in enumerate(disks):
        dom.disks.append(diskspec.disk_from_libxl(r.obj(f"disks[{i}]", d)))
    nics = cfg.get("nics", [])
    if not isinstance(nics, list):
        raise r.error("nics", "expected an array")
    for i, n in enumerate(nics):
        dom.nics.append(vifspec.nic_from_libxl(r.obj(f"nics[{i}]", n)))
    for i, p in enumerate(cfg.get("pcidevs", []) or []):
        dom.pci.append(_pci_in(r, f"pcidevs[{i}]", r.obj(f"pcidevs[{i}]", p)))
    for i, v in enumerate(cfg.get("vfbs", []) or []):
        dom.vfbs.append(_vfb_in(r, f"vfbs[{i}]", r.obj(f"vfbs[{i}]", v), None))
    if cfg.get("vkbs"):
        dom.vkb = True
    for key, value in cfg.items():
        if key in ("c_info", "b_info", "disks", "nics", "pcidevs", "vfbs", "vkbs"):
            continue
        if key in SHUTDOWN_KEYS:
            setattr(dom, key, _action_in(r, key, value))
        else:
            _keep(dom.extra, key, value)
    return dom


def _read_b_info(r: _Reader, dom: Domain, b: Dict[str, Any]) -> None:
    hvm = dom.hvm
    for key, value in b.items():
        path = f"b_info.{key}"
        if key == "max_vcpus":
            dom.vcpus = r.int(path, value)
        elif key == "avail_vcpus":
            bits = r.bits(path, value)
            dom.vcpu_avail = sum(1 << i for i in set(bits))
            dom.vcpus_online = len(set(bits))
        elif key == "vcpu_hard_affinity":
            if not isinstance(value, list):
                raise r.error(path, "expected an array of arrays")
            lists = [r.bits(f"{path}[{i}]", x) for i, x in enumerate(value)]
            if lists and all(x == lists[0] for x in lists):
                dom.cpus = format_cpulist(lists[0])
            elif lists:
                dom.vcpu_affinity = [format_cpulist(x) if x else "all" for x in lists]
        elif key == "max_memkb":
            dom.maxmem = r.memkb(path, value)
        elif key == "target_memkb":
            dom.memory = r.memkb(path, value)
        elif key == "shadow_memkb":
            dom.shadow_memory = r.memkb(path, value)
        elif key == "video_memkb" and hvm is not None:
            hvm.videoram = r.memkb(path, value)
        elif key == "localtime":
            dom.localtime = r.defbool(path, value)
        elif key == "sched_params":
            for sk, sv in r.obj(path, value).items():
                if sk == "weight":
                    dom.cpu_weight = r.int(f"{path}.weight", sv)
                elif sk == "cap":
                    dom.cpu_cap = r.int(f"{path}.cap", sv)
                else:
                    _keep(dom.extra, f"{path}.{sk}", sv)
        elif key in ("kernel", "ramdisk", "cmdline", "bootloader"):
            setattr(dom, key, r.str(path, value))
        elif key == "bootloader_args":
            dom.bootloader_args = " ".join(shlex.quote(a)
                                           for a in r.strlist(path, value))
        elif key == "device_model" and hvm is not None:
            hvm.device_model = r.str(path, value)
        elif key in ("acpi", "apic") and hvm is not None:
            setattr(hvm, key, r.defbool(path, value))
        elif key == "rtc_timeoffset" and hvm is not None:
            n = r.int(path, value)
            hvm.rtc_timeoffset = n - (1 << 32) if n >= 1 << 31 else n
        elif key == "timer_mode" and hvm is not None:
            name = r.str(path, value).lower()
            if name not in TIMER_MODES:
                _keep(dom.extra, path, value)
            else:
                hvm.timer_mode = TIMER_MODES.index(name)
        elif key == "type.hvm" and hvm is not None:
            _read_hvm(r, dom, hvm, r.obj(path, value))
        elif key == "type.pv" and dom.type == "pv":
            for pk, pv in r.obj(path, value).items():
                if pk == "e820_host" and pv == "True" and dom.pci:
                    continue
                if pk in ("kernel", "ramdisk", "cmdline", "bootloader") and pv:
                    if getattr(dom, pk) is None:   # deprecated duplicates
                        setattr(dom, pk, r.str(f"{path}.{pk}", pv))
                    continue
                if pk == "bootloader_args" and pv:
                    if dom.bootloader_args is None:
                        dom.bootloader_args = " ".join(
                            shlex.quote(a) for a in r.strlist(f"{path}.{pk}", pv))
                    continue
                _keep(dom.extra, f"{path}.{pk}", pv)
        elif key == "type.pvh" and dom.type == "pvh":
            _keep(dom.extra, path, value)
        else:
            _keep(dom.extra, path, value)


def _read_hvm(r: _Reader, dom: Domain, hvm: HvmSettings, h: Dict[str, Any]) -> None:
    graphics = Vfb(origin="image")
    have_graphics = False
    for key, value in h.items():
        path = f"b_info.type.hvm.{key}"
        if key == "firmware":
            hvm.loader = r.str(path, value)
        elif key in ("pae", "hpet", "viridian", "nographic", "usb",
                     "xen_platform_pci", "acpi", "apic"):
            if getattr(hvm, key) is None:
                setattr(hvm, key, r.defbool(path, value))
        elif key == "vga":
            kind = r.obj(path, value).get("kind")
            if kind in ("std", "cirrus"):
                hvm.stdvga = kind == "std"
            _keep(dom.extra, path, {k: v for k, v in value.items()
                                    if not (k == "kind" and kind in ("std", "cirrus"))})
        elif key == "vnc":
            have_graphics |= _vnc_in(r, path, r.obj(path, value), graphics, dom.extra)
        elif key == "sdl":
            have_graphics |= _sdl_in(r, path, r.obj(path, value), graphics, dom.extra)
        elif key == "keymap":
            graphics.keymap = r.str(path, value)
            have_graphics = True
        elif key in ("serial", "usbdevice"):
            setattr(hvm, key, [r.str(path, value)])
        elif key in ("serial_list", "usbdevice_list"):
            setattr(hvm, key[:-5], r.strlist(path, value))
        elif key in ("boot", "soundhw"):
            setattr(hvm, key, r.str(path, value))
        elif key == "timer_mode":
            name = str(value).lower()
            if hvm.timer_mode is None and name in TIMER_MODES:
                hvm.timer_mode = TIMER_MODES.index(name)
        else:
            _keep(dom.extra, path, value)
    if have_graphics:
        dom.vfbs.append(graphics)


def _vnc_in(r: _Reader, path: str, v: Dict[str, Any], vfb: Vfb, extra: list) -> bool:
    found = False
    for key, value in v.items():
        kpath = f"{path}.{key}"
        if key == "enable":
            vfb.vnc = r.defbool(kpath, value)
        elif key == "listen":
            vfb.vnclisten = r.str(kpath, value)
        elif key == "passwd":
            vfb.vncpasswd = r.str(kpath, value)
        elif key == "display":
            vfb.vncdisplay = r.int(kpath, value)
        elif key == "findunused":
            vfb.vncunused = r.defbool(kpath, value)
        else:
            _keep(extra, kpath, value)
            continue
        found = True
    return found


def _sdl_in(r: _Reader, path: str, v: Dict[str, Any], vfb: Vfb, extra: list) -> bool:
    found = False
    for key, value in v.items():
        kpath = f"{path}.{key}"
        if key == "enable":
            vfb.sdl = r.defbool(kpath, value)
            if vfb.sdl and not vfb.vnc:
                vfb.type = "sdl"
        elif key == "opengl":
            vfb.opengl = r.defbool(kpath, value)
        elif key in ("display", "xauthority"):
            setattr(vfb, key, r.str(kpath, value))
        else:
            _keep(extra, kpath, value)
            continue
        found = True
    return found


def _vfb_in(r: _Reader, path: str, v: Dict[str, Any], origin: Optional[str]) -> Vfb:
    vfb = Vfb(origin=origin)
    for key, value in v.items():
        kpath = f"{path}.{key}"
        if key == "vnc":
            _vnc_in(r, kpath, r.obj(kpath, value), vfb, vfb.extra)
        elif key == "sdl":
            _sdl_in(r, kpath, r.obj(kpath, value), vfb, vfb.extra)
        elif key == "keymap":
            vfb.keymap = r.str(kpath, value)
        elif key in ("devid", "backend_domid") and value in (0, -1):
            continue
        else:
            _keep(vfb.extra, kpath, value)
    return vfb


def _pci_in(r: _Reader, path: str, p: Dict[str, Any]) -> PciDev:
    pci = PciDev(domain=r.int(f"{path}.domain", p.get("domain", 0)),
                 bus=r.int(f"{path}.bus", p.get("bus", 0)),
                 slot=r.int(f"{path}.dev", p.get("dev", 0)),
                 func=r.int(f"{path}.func", p.get("func", 0)))
    for key, value in p.items():
        if key in ("domain", "bus", "dev", "func"):
            continue
        if key == "vfunc_mask" and value == 1:
            continue
        if key in ("msitranslate", "power_mgmt", "permissive", "seize"):
            if value:
                pci.options.append((key, "1"))
        elif key == "vdevfn" and isinstance(value, int):
            pci.options.append(("vslot", f"0x{value >> 3:02x}"))
        elif key == "rdm_policy" and value in ("strict", "relaxed", "invalid"):
            if value != "invalid":
                pci.options.append(("rdm_policy", value))
        else:
            _keep(pci.extra, f"{path}.{key}", value)
    return pci


def loads(text: str, *, source: str) -> List[Domain]:
    """``xl list -l`` output (an array of ``{"domid", "config"}``), one such
    wrapper, or a bare ``libxl_domain_config``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", source=source,
                          line=exc.lineno, col=exc.colno) from None
    items = data if isinstance(data, list) else [data]
    if isinstance(data, list) and not data:
        raise ConfigError("empty JSON array: no domain", source=source)
    out: List[Domain] = []
    for i, item in enumerate(items):
        where = f"[{i}]" if isinstance(data, list) else "top level"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected an object", source=source)
        if "config" in item:
            domid = item.get("domid")
            if domid is not None and (isinstance(domid, bool) or not isinstance(domid, int)
                                      or domid < 0):
                raise ConfigError(f"{where}.domid: expected a domain id, got {domid!r}",
                                  source=source)
            out.append(domain_from_libxl(item["config"], domid=domid, source=source))
        elif "c_info" in item or "b_info" in item:
            out.append(domain_from_libxl(item, source=source))
        else:
            raise ConfigError(
                f"{where}: neither a libxl_domain_config (c_info, b_info) nor an "
                f"xl list -l element (domid, config)", source=source)
    return out
