"""The domain model -> xend domain S-expressions.

Contract: ``docs/internals.md`` (``config/formats/sxpr.py``: :func:`domain_to_sxpr`,
re-exported by ``sxpr.py``).  Two shapes (legacy-api.md section 11.5): the
runtime ``(domain (domid N) ...)`` legacy code reads from ``vm.dom``
(``form="runtime"``: ints as ints, runtime facts, the defaults a running
xend domain always reported) and the stored ``config.sxp``
(``form="config"``).  Keys a reader kept in ``extra`` are re-emitted when
they are sxpr-shaped; the PCI virtual slot is xend 4.x's ``vdevfn``
(``specs/pci.py``).
"""
from __future__ import annotations

import re
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from ...errors import ConfigError
from ..common import ACTIONS, TSC_MODES, parse_cpulist
from ..model import Disk, Domain, Nic, PciDev
from ..specs import diskspec
from ..specs import pci as pcispec
from ..xlpolicy import effective_cmdline
from .sxpr_values import IMAGE_TYPE_KEY, RUNTIME_EXTRA_KEYS

__all__ = ["domain_to_sxpr"]


def _emit_extra(extra: Sequence[Tuple[str, Any]], *, skip: Iterable[str] = ()
                ) -> List[list]:
    """Re-emit sxpr-shaped extras (plain keys, list tails); extras another
    format left (libvirt ``/xpath`` keys, ``libxl:`` keys) are skipped."""
    skip = set(skip)
    out = []
    for key, value in extra:
        if not isinstance(key, str) or key in skip or not _SXPR_KEY.match(key):
            continue
        if not isinstance(value, list):
            continue
        out.append([key, *value])
    return out


_SXPR_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _b(v: Optional[bool]) -> int:
    return 1 if v else 0


def domain_to_sxpr(dom: Domain, *, form: str = "runtime") -> list:
    """The shape legacy code reads from ``vm.dom`` (legacy-api.md 11.5)."""
    if form not in ("runtime", "config"):
        raise ValueError(f"form must be 'runtime' or 'config', not {form!r}")
    runtime = form == "runtime"
    out: list = ["domain"]
    if runtime and dom.domid is not None:
        out.append(["domid", dom.domid])
    extra_keys = {k for k, _ in dom.extra}
    if "cpu_weight" not in extra_keys:
        if dom.cpu_weight is not None or runtime:
            out.append(["cpu_weight", dom.cpu_weight if dom.cpu_weight is not None
                        else 256])
    if dom.cpu_cap is not None or runtime:
        out.append(["cpu_cap", dom.cpu_cap if dom.cpu_cap is not None else 0])
    if dom.uuid:
        out.append(["uuid", dom.uuid])
    if dom.vcpus is not None or runtime:
        # a running xend domain always had vcpus (XendConfig default 1);
        # legacy getshadowmem reads it
        out.append(["vcpus", dom.vcpus if dom.vcpus is not None else 1])
    if not runtime and dom.vcpu_avail is not None:
        out.append(["vcpu_avail", dom.vcpu_avail])
    elif not runtime and dom.vcpus_online is not None and dom.vcpus is not None \
            and dom.vcpus_online < dom.vcpus:
        out.append(["vcpu_avail", (1 << dom.vcpus_online) - 1])
    if not runtime:
        # The runtime shape (per-vcpu lists) is left out: legacy
        # parsedominfo raises on it for pinned multi-vcpu domains
        # (legacy-api.md 3.3 "cpus" hack); config.sxp keeps a CPULIST.
        cpus = _cpus_sxpr(dom)
        if cpus is not None:
            out.append(cpus)
    if dom.name:
        out.append(["name", dom.name])
    for key in ("on_poweroff", "on_reboot", "on_crash"):
        value = getattr(dom, key)
        if value:
            out.append([key, ACTIONS.get(value, value)])
    for key in ("bootloader", "bootloader_args", "description"):
        value = getattr(dom, key)
        if value:
            out.append([key, value])
    if dom.localtime is not None:
        out.append(["localtime", _b(dom.localtime)])
    if dom.pool:
        out.append(["pool_name", dom.pool])
    if dom.cpuid:
        out.append(["cpuid", [_cpuid_sxpr(s) for s in dom.cpuid]])
    memory = dom.memory
    maxmem = dom.maxmem if dom.maxmem is not None else memory
    if maxmem is not None:
        out.append(["maxmem", maxmem])
    if memory is not None:
        out.append(["memory", memory])
    if dom.shadow_memory is not None or runtime:
        out.append(["shadow_memory", dom.shadow_memory or 0])
    skip = {"device"}
    if not runtime:
        skip |= RUNTIME_EXTRA_KEYS
    out.extend(_emit_extra(dom.extra, skip=skip))
    if runtime:
        if dom.start_time is not None:
            out.append(["start_time", dom.start_time])
        if dom.cpu_time is not None:
            out.append(["cpu_time", dom.cpu_time])
    out.append(["image", _image_sxpr(dom)])
    if runtime:
        for key in ("status", "state", "store_mfn", "console_mfn"):
            value = getattr(dom, key)
            if value is not None:
                out.append([key, value])
    out.extend(_devices_sxpr(dom, runtime))
    return out


def _cpuid_sxpr(text: str) -> list:
    """``LEAF:REG=BITS,...`` -> xend's ``(LEAF ((REG BITS) ...))``."""
    leaf, _, regs = text.partition(":")
    return [leaf, [reg.split("=", 1) for reg in regs.split(",") if "=" in reg]]


def _cpus_sxpr(dom: Domain) -> Optional[list]:
    """``cpus`` for config.sxp: a CPULIST string, or one per vcpu (the
    list-of-strings form XendConfig accepts)."""
    if dom.vcpu_affinity:
        lists = [[] if s == "all" else parse_cpulist(s) for s in dom.vcpu_affinity]
        if all(x is not None for x in lists):
            return ["cpus", [list(x) for x in lists]]
        return ["cpus", list(dom.vcpu_affinity)]
    if dom.cpus:
        return ["cpus", dom.cpus]
    return None


_HVM_OUT: List[Tuple[str, str, str]] = [
    # (xend key, HvmSettings attr, kind)
    ("device_model", "device_model", "str"),
    ("boot", "boot", "str"),
    ("acpi", "acpi", "flag"),
    ("apic", "apic", "flag"),
    ("pae", "pae", "flag"),
    ("hap", "hap", "flag"),
    ("hpet", "hpet", "flag"),
    ("localtime", "localtime", "flag"),
    ("rtc_timeoffset", "rtc_timeoffset", "int"),
    ("timer_mode", "timer_mode", "int"),
    ("viridian", "viridian", "flag"),
    ("nographic", "nographic", "flag"),
    ("stdvga", "stdvga", "flag"),
    ("videoram", "videoram", "int"),
    ("usb", "usb", "flag"),
    ("usbdevice", "usbdevice", "list"),
    ("soundhw", "soundhw", "str"),
    ("cdrom", "cdrom", "str"),
    ("serial", "serial", "list"),
    ("parallel", "parallel", "list"),
    ("monitor", "monitor", "flag"),
    ("xen_platform_pci", "xen_platform_pci", "flag"),
    ("vpt_align", "vpt_align", "flag"),
    ("nestedhvm", "nestedhvm", "flag"),
]

_VFB_OUT: List[Tuple[str, str, str]] = [
    ("vnc", "vnc", "flag"), ("sdl", "sdl", "flag"),
    ("vncunused", "vncunused", "flag"), ("vnclisten", "vnclisten", "str"),
    ("vncdisplay", "vncdisplay", "int"), ("vncpasswd", "vncpasswd", "str"),
    ("keymap", "keymap", "str"), ("display", "display", "str"),
    ("xauthority", "xauthority", "str"), ("opengl", "opengl", "flag"),
]


def _fields(obj: Any, table: Sequence[Tuple[str, str, str]]) -> List[list]:
    out: List[list] = []
    for key, attr, kind in table:
        value = getattr(obj, attr)
        if value is None or value == [] or (kind == "str" and value == ""):
            continue
        if kind == "flag":
            out.append([key, _b(value)])
        elif kind == "list":
            out.append([key, value[0]] if len(value) == 1 else [key, list(value)])
        else:
            out.append([key, value])
    return out


def _image_sxpr(dom: Domain) -> list:
    extra_type = [v for k, v in dom.image_extra if k == IMAGE_TYPE_KEY]
    if dom.type == "hvm":
        kind = "hvm"
    elif extra_type and extra_type[0]:
        kind = str(extra_type[0][0])
    else:
        kind = "linux"
    image: list = [kind]
    hvm = dom.hvm
    if dom.type == "hvm" and hvm is not None:
        image.append(["kernel", dom.kernel or hvm.loader or ""])
        if dom.kernel and hvm.loader:
            image.append(["loader", hvm.loader])
    else:
        image.append(["kernel", dom.kernel or ""])
    if dom.ramdisk:
        image.append(["ramdisk", dom.ramdisk])
    cmdline, _ = effective_cmdline(dom)
    if cmdline:
        image.append(["args", cmdline])
    if dom.type == "pvh":
        image.append(["pvh", 1])       # legacy code reads a linux image; see sxpr.PVH_MARK
    if dom.tsc_mode in TSC_MODES:
        image.append(["tsc_mode", TSC_MODES.index(dom.tsc_mode)])
    if hvm is not None and dom.type == "hvm":
        image.extend(_fields(hvm, _HVM_OUT))
    for vfb in dom.vfbs:
        if vfb.origin == "image":
            image.extend(_fields(vfb, _VFB_OUT))
    image.extend(_emit_extra(dom.image_extra, skip={IMAGE_TYPE_KEY}))
    return image


def _devices_sxpr(dom: Domain, runtime: bool) -> List[list]:
    out: List[list] = []
    for disk in dom.disks:
        if disk.origin == "image-cdrom" and dom.hvm is not None and dom.hvm.cdrom:
            continue
        cls = "tap2" if disk.remus else (disk.device_class or "vbd")
        body: list = [cls]
        # runtime: what xend reported (tap2 disks as "tap:..."); config:
        # the uname as configured
        uname = disk.uname if (not runtime and disk.uname) else diskspec.legacy_uname(disk)
        if uname:
            body.append(["uname", uname])
        if runtime:
            body.append(["dev", f"{disk.vdev}:{'cdrom' if disk.is_cdrom else 'disk'}"])
        else:
            body.append(["dev", f"{disk.vdev}:cdrom" if disk.is_cdrom else disk.vdev])
        body.append(["mode", _disk_mode(disk)])
        if disk.backend_domname and disk.backend_domid is None:
            body.append(["backend", disk.backend_domname])
        elif runtime or disk.backend_domid is not None:
            body.append(["backend", disk.backend_domid or 0])
        if disk.uuid:
            body.append(["uuid", disk.uuid])
        if disk.bootable is not None:
            body.append(["bootable", disk.bootable])
        if disk.protocol:
            body.append(["protocol", disk.protocol])
        body.extend(_emit_extra(disk.extra))
        out.append(["device", body])
    for nic in dom.nics:
        out.append(["device", _nic_sxpr(nic, runtime)])
    if dom.pci:
        body = ["pci"]
        if runtime:
            body.append(["backend", 0])
        body.extend(_pci_dev_sxpr(pci) for pci in dom.pci)
        out.append(["device", body])
    for ports in dom.ioports:
        first, _, last = ports.partition("-")
        out.append(["device", ["ioports", ["from", f"0x{first}"],
                               ["to", f"0x{last or first}"]]])
    for irq in dom.irqs:
        out.append(["device", ["irq", ["irq", irq]]])
    for vfb in dom.vfbs:
        if vfb.origin == "image":
            continue
        body = ["vfb", ["type", vfb.type or "vnc"]]
        body.extend(f for f in _fields(vfb, _VFB_OUT)
                    if not (f[0] == "vnc" and vfb.type == "vnc" and f[1] == 1))
        body.extend(_emit_extra(vfb.extra))
        out.append(["device", body])
    dev_extra = [v for k, v in dom.extra if k == "device" and isinstance(v, list)]
    has_vkbd = any(v and isinstance(v[0], list) and v[0][:1] == ["vkbd"]
                   for v in dev_extra)
    if dom.vkb and not has_vkbd:
        out.append(["device", ["vkbd", ["backend", 0]]])
    for v in dev_extra:
        out.append(["device", *v])
    return out


def _pci_dev_sxpr(pci: PciDev) -> list:
    """``(dev (domain 0x0001) (bus 0x0c) (slot 0x1b) (func 0x2) [(vdevfn
    0x28)] [(opts ...)])`` as xend 4.x's pciif wrote it: the model's
    ``vslot`` option is xend's ``vdevfn`` (one that is not a number stays
    an option)."""
    dev: list = ["dev", ["domain", f"0x{pci.domain:04x}"],
                 ["bus", f"0x{pci.bus:02x}"], ["slot", f"0x{pci.slot:02x}"],
                 ["func", f"0x{pci.func:x}"]]
    try:
        vdevfn = pcispec.vdevfn(pci)
    except ConfigError:
        vdevfn = None
    options = pci.options
    if vdevfn is not None:
        dev.append(["vdevfn", f"0x{vdevfn:02x}"])
        options = [(k, v) for k, v in options if k != "vslot"]
    if options:
        dev.append(["opts", *[[k, v] for k, v in options]])
    dev.extend(_emit_extra(pci.extra))
    return dev


def _disk_mode(disk: Disk) -> str:
    if disk.mode:
        return disk.mode
    if disk.shareable:
        return "w!"
    return "w" if disk.readwrite else "r"


_NIC_OUT = (("mac", "mac"), ("bridge", "bridge"), ("script", "script"),
            ("ip", "ip"), ("vifname", "vifname"), ("type", "type"),
            ("model", "model"), ("rate", "rate"), ("uuid", "uuid"),
            ("accel", "accel"), ("gatewaydev", "gatewaydev"))


def _nic_sxpr(nic: Nic, runtime: bool) -> list:
    body: list = ["vif"]
    if nic.backend and nic.backend_domid is None:
        body.append(["backend", nic.backend])
    elif runtime or nic.backend_domid is not None:
        body.append(["backend", nic.backend_domid or 0])
    for key, attr in _NIC_OUT:
        value = getattr(nic, attr)
        if value not in (None, ""):
            body.append([key, value])
    if nic.mtu is not None:
        body.append(["mtu", nic.mtu])
    body.extend(_emit_extra(nic.extra))
    return body
