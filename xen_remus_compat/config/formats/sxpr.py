"""xend domain S-expressions <-> the domain model.

Contract: ``docs/internals.md`` (``config/formats/sxpr.py``).  Three input shapes
are accepted (legacy-api.md section 11.5, the fixture corpus README):

* the runtime ``(domain (domid 7) ... (image (linux|hvm ...)) (device ...))``
  that ``xm list -l`` / ``server.xend.domain(d, 'all')`` returned, with
  values that are strings (parsed text) or ``int``/``float`` (XML-RPC);
* the stored ``config.sxp`` form (no runtime facts, ``vcpu_avail`` kept);
* the ``(vm ...)`` form of ``docs/misc/xen_config.html`` (``(memory '64')``,
  ``(image (linux (root ..) (ip ..) (args ..)))``, ``(device (vif))``).

The mapping follows what xend itself did (XendConfig 4.3: ``root``/``ip``
folded into the kernel arguments, ``cpu`` merged into ``cpus``,
``bootloader_args`` shell-split later) and what libvirt concluded from the
same sxprs (an HVM image ``cdrom`` is an ``hdc`` CD-ROM disk, an ``hvmloader``
kernel is the firmware, ``vcpu_avail`` is a bitmap).  Whatever the model
does not name is kept in ``extra``/``image_extra``/``<device>.extra`` as
``(key, [values...])`` -- the element's tail -- so :func:`domain_to_sxpr`
can re-emit it and the xl.cfg writer can report it.

This module reads the domain, its top-level keys and its image; the
devices are read by ``sxpr_devices.py``, the writer is
``sxpr_writer.py`` (:func:`domain_to_sxpr` is re-exported here), the value
coercion both share is ``sxpr_values.py``.

Bad values raise :class:`~xen_remus_compat.errors.ConfigError` naming the
source and the key path (``domain/memory``).  Decisions:
``docs/decisions.d/config.md``.
"""
from __future__ import annotations

import logging
import posixpath
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ...errors import ConfigError
from .. import limits
from ..common import (ACTIONS, TSC_MODES, affinity_fields, canonical_uuid, online_vcpus,
                      vfb_type)
from ..model import Domain, HvmSettings, Vfb
from .sxpr_devices import VFB_KEYS, add_image_cdrom, read_device
from .sxpr_values import (IMAGE_TYPE_KEY, ROOT_NAMES, RUNTIME_EXTRA_KEYS, Ctx, as_flag,
                          as_int, as_number, as_text, children, expand_cpulist,
                          field_setter, is_elem, scalar, short, tail)
from .sxpr_writer import domain_to_sxpr

log = logging.getLogger("xen_remus_compat")

__all__ = ["domain_from_sxpr", "domains_from_text", "domain_to_sxpr",
           "canonical_uuid", "ROOT_NAMES", "ACTIONS", "IMAGE_TYPES", "IMAGE_TYPE_KEY",
           "RUNTIME_EXTRA_KEYS"]

#: Image element names; anything else is a PV kernel image (netbsd, ...).
IMAGE_TYPES = {"linux": "pv", "hvm": "hvm"}
#: xend never knew PVH (xl 4.4 had ``pvh=1``); its legacy view is a ``linux``
#: image (the kernel, ramdisk and args legacy code reads) marked ``(pvh 1)``
PVH_MARK = "pvh"


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def domains_from_text(text: str, *, source: str, lenient: bool = False,
                      continuations: bool = False) -> List[Domain]:
    """Every ``(domain ...)``/``(vm ...)`` in *text* (``xm list -l`` dumps
    hold several, e.g. the ganeti fixture: Domain-0 and a guest).

    *continuations* deletes backslash-newline pairs first (libvirt's
    fixture convention, fixtures README).
    """
    from ... import sxp
    if continuations:
        text = text.replace("\\\n", "")
    values = sxp.loads(text, source=source, lenient=lenient)
    out: List[Domain] = []
    # Like sxp.loads: the cyclic GC would rescan the growing, cycle-free
    # result on big dumps and make conversion super-linear.
    with sxp.gc_paused(len(text)):
        for i, value in enumerate(values):
            if not (is_elem(value) and value[0] in ROOT_NAMES):
                what = f"({value[0]} ...)" if is_elem(value) else short(value)
                raise ConfigError(
                    f"top-level value {i + 1} is {what}, expected (domain ...) "
                    f"or (vm ...)", source=source)
            out.append(domain_from_sxpr(value, source=source))
    if not out:
        raise ConfigError("no (domain ...) or (vm ...) found", source=source)
    return out


def domain_from_sxpr(sxpr: Sequence, *, source: Optional[str] = None) -> Domain:
    """One domain sxpr (runtime, config.sxp or ``(vm ...)``) -> Domain."""
    ctx = Ctx(source)
    if not (is_elem(sxpr) and sxpr[0] in ROOT_NAMES):
        raise ctx.error("/", "expected (domain ...) or (vm ...)")
    root = sxpr[0]
    dom = Domain()
    image: Optional[Sequence] = None
    devices: List[Tuple[int, Sequence]] = []
    cpu_legacy: Optional[str] = None
    cpus_value: list = []
    have_cpus = False
    for index, item in enumerate(children(sxpr)):
        if not is_elem(item):
            if isinstance(item, (list, tuple)) and len(item) == 0:
                continue
            raise ctx.error(root, f"unexpected bare value {short(item)}")
        key = item[0]
        path = f"{root}/{key}"
        if key == "image":
            if image is not None:
                raise ctx.error(path, "more than one (image ...)")
            image = item
        elif key == "device":
            devices.append((index, item))
        elif key == "cpus":
            have_cpus = True
            cpus_value = children(item)
        elif key == "cpu":
            # merged into cpus below, as XendConfig did
            cpu_legacy = as_text(ctx, path, scalar(ctx, path, item))
        elif key == "cpuid" and (cpuid := _cpuid(item)) is not None:
            dom.cpuid = cpuid
        elif key in _TOP:
            _TOP[key](ctx, path, dom, item)
        else:
            dom.extra.append((key, tail(item)))
    # sizes first: nothing below may build a bitmap from a hostile vcpus value
    limits.check_vcpus(dom.vcpus, fail=lambda m: ctx.error(f"{root}/vcpus", m))
    _finish_vcpus(ctx, root, dom)
    if have_cpus or cpu_legacy:
        _set_cpus(ctx, f"{root}/cpus", dom, cpus_value, cpu_legacy,
                  have_cpus)
    if image is not None:
        _read_image(ctx, f"{root}/image", dom, image)
    for _, item in devices:
        read_device(ctx, f"{root}/device", dom, item)
    add_image_cdrom(ctx, dom)
    limits.check_domain(dom, fail=lambda m: ctx.error(root, m))
    return dom


# ---- top-level keys -------------------------------------------------------

def _mem(ctx: Ctx, path: str, v: Any) -> Optional[int]:
    return as_int(ctx, path, v, minimum=0)


def _uuid(ctx: Ctx, path: str, v: Any) -> Optional[str]:
    text = as_text(ctx, path, v)
    if text is None:
        return None
    canon = canonical_uuid(text)
    if canon is None:
        raise ctx.error(path, f"not a UUID: {text!r}")
    return canon


def _action(ctx: Ctx, path: str, v: Any) -> Optional[str]:
    text = as_text(ctx, path, v)
    if text is None:
        return None
    if text not in ACTIONS:
        raise ctx.error(path, f"unknown action {text!r} (expected one of "
                              f"{', '.join(sorted(set(ACTIONS.values())))})")
    return ACTIONS[text]


def _weight(ctx: Ctx, path: str, dom: Domain, elem: Sequence) -> None:
    v = scalar(ctx, path, elem)
    # xend 3.0 had a float multiplier ("(cpu_weight 1.0)"), not a credit
    # weight: keep it verbatim rather than inventing a weight of 1.
    if isinstance(v, float) or (isinstance(v, str) and "." in v):
        as_number(ctx, path, v)
        dom.extra.append(("cpu_weight", tail(elem)))
        return
    dom.cpu_weight = as_int(ctx, path, v, minimum=0)


def _int_field(attr: str, minimum: Optional[int] = 0) -> Callable:
    return field_setter(attr, lambda c, p, v: as_int(c, p, v, minimum=minimum))


def _float_field(attr: str) -> Callable:
    return field_setter(attr, as_number)


#: Top-level keys (XendConfig 4.3 LEGACY_CFG_TYPES, legacy-api.md 11.5)
#: -> handler(ctx, path, dom, elem); others are kept in ``dom.extra``.
_TOP: Dict[str, Callable] = {
    "domid": _int_field("domid"),
    "name": field_setter("name", lambda c, p, v: as_text(c, p, v) or ""),
    "uuid": field_setter("uuid", _uuid),
    "memory": field_setter("memory", _mem),
    "maxmem": field_setter("maxmem", _mem),
    "shadow_memory": field_setter("shadow_memory", _mem),
    "vcpus": _int_field("vcpus"),
    "vcpu_avail": _int_field("vcpu_avail"),
    "cpu_weight": _weight,
    "cpu_cap": _int_field("cpu_cap"),
    "bootloader": field_setter("bootloader", as_text),
    "bootloader_args": field_setter("bootloader_args", as_text),
    "on_poweroff": field_setter("on_poweroff", _action),
    "on_reboot": field_setter("on_reboot", _action),
    "on_crash": field_setter("on_crash", _action),
    "localtime": field_setter("localtime", as_flag),
    "description": field_setter("description", as_text),
    "pool_name": field_setter("pool", as_text),
    "state": field_setter("state", as_text),
    "status": _int_field("status", minimum=None),
    "start_time": _float_field("start_time"),
    "cpu_time": _float_field("cpu_time"),
    "store_mfn": _int_field("store_mfn"),
    "console_mfn": _int_field("console_mfn"),
}


def _finish_vcpus(ctx: Ctx, root: str, dom: Domain) -> None:
    """``vcpus_online`` from xend's ``vcpu_avail`` bitmap (legacy-api.md
    11.5); a bitmap that leaves no vcpu online is an error."""
    if dom.vcpu_avail is None:
        return
    online = online_vcpus(dom.vcpu_avail, dom.vcpus)
    if online == 0:
        raise ctx.error(f"{root}/vcpu_avail",
                        f"bitmap {dom.vcpu_avail} leaves no vcpu online")
    dom.vcpus_online = online


def _set_cpus(ctx: Ctx, path: str, dom: Domain, values: list,
              cpu_legacy: Optional[str], have_cpus: bool) -> None:
    """``cpus`` the way XendConfig 4.3 read it: a CPULIST string for every
    vcpu (``'0-3,^1'``); a list of lists of CPU numbers, one per vcpu
    (runtime and config.sxp, ``(cpus (()))`` = no pinning); or a list of
    CPULIST strings, one per vcpu.  The deprecated ``cpu`` is prepended."""
    if len(values) > 1:
        raise ctx.error(path, f"expected one value, got {short(values)}")
    value = values[0] if values else None
    per_vcpu: List[List[int]] = []
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple)):
            for item in value:
                if not isinstance(item, (list, tuple)):
                    raise ctx.error(path, f"mixed list forms: {short(value)}")
                cpus: List[int] = []
                for c in item:
                    if isinstance(c, (list, tuple)):
                        raise ctx.error(path, f"nested too deeply: {short(value)}")
                    cpus.append(as_int(ctx, path, c, minimum=0))
                per_vcpu.append(sorted(set(cpus)))
        else:
            for item in value:
                if isinstance(item, (list, tuple)):
                    raise ctx.error(path, f"mixed list forms: {short(value)}")
                per_vcpu.append(expand_cpulist(ctx, path, as_text(ctx, path, item) or ""))
    elif value is not None:
        text = as_text(ctx, path, value)
        if text:
            per_vcpu = [expand_cpulist(ctx, path, text)]
    if cpu_legacy:
        first = expand_cpulist(ctx, f"{path[:-1]}", cpu_legacy)
        per_vcpu = [sorted(set(first + v)) for v in per_vcpu] or [first]
    dom.cpus, dom.vcpu_affinity = affinity_fields(per_vcpu)


# ---- image ----------------------------------------------------------------

#: Image keys read as text: ``kernel``/``ramdisk`` go to the model,
#: ``args``/``root``/``ip`` make the kernel command line.
_IMAGE_TEXT = ("kernel", "ramdisk", "args", "root", "ip")


def _read_image(ctx: Ctx, path: str, dom: Domain, image: Sequence) -> None:
    kids = children(image)
    kinds = [k for k in kids if is_elem(k)]
    if len(kinds) != 1 or len(kinds) != len([k for k in kids if k != []]):
        raise ctx.error(path, "expected exactly one (linux ...) or (hvm ...)")
    body = kinds[0]
    kind = body[0]
    dom.type = IMAGE_TYPES.get(kind, "pv")
    if kind not in IMAGE_TYPES:
        dom.image_extra.append((IMAGE_TYPE_KEY, [kind]))
    ipath = f"{path}/{kind}"
    if dom.type == "hvm":
        dom.hvm = dom.hvm or HvmSettings()
    vfb = Vfb(origin="image")
    have_vfb = False
    texts: Dict[str, Optional[str]] = {}
    for item in children(body):
        if not is_elem(item):
            if item == [] or item == ():
                continue
            raise ctx.error(ipath, f"unexpected bare value {short(item)}")
        key = item[0]
        kpath = f"{ipath}/{key}"
        if key in _IMAGE_TEXT:
            texts[key] = as_text(ctx, kpath, scalar(ctx, kpath, item))
        elif key in VFB_KEYS:
            VFB_KEYS[key](ctx, kpath, vfb, item)
            have_vfb = True
        elif dom.type == "hvm" and key in _HVM:
            _HVM[key](ctx, kpath, dom.hvm, item)
        elif key == PVH_MARK and kind == "linux" and tail(item) in (["1"], [1]):
            dom.type = "pvh"
        elif key == "tsc_mode" and _tsc_mode(ctx, kpath, dom, item):
            pass
        elif key == "localtime" and dom.type != "hvm" and dom.localtime is None:
            # xend kept the RTC setting in the image too; xl's is top-level
            dom.localtime = as_flag(ctx, kpath, scalar(ctx, kpath, item))
        else:
            dom.image_extra.append((key, tail(item)))
    if "kernel" in texts:
        dom.kernel = texts["kernel"]
    if "ramdisk" in texts:
        dom.ramdisk = texts["ramdisk"]
    # XendConfig.update_with_image_sxp: "root=R ip=I " + args unless the
    # args already say so.
    root, ip = texts.get("root"), texts.get("ip")
    cmdline = texts.get("args") or ""
    if ip and not re.search(r"ip=[^ ]+", cmdline):
        cmdline = f"ip={ip} " + cmdline
    if root and not re.search(r"root=", cmdline):
        cmdline = f"root={root} " + cmdline
    dom.cmdline = cmdline or None
    if dom.type == "hvm":
        # xend ran the HVM "kernel" hvmloader as firmware (libvirt: <loader>)
        if dom.kernel and posixpath.basename(dom.kernel) == "hvmloader":
            dom.hvm.loader = dom.hvm.loader or dom.kernel
            dom.kernel = None
    if have_vfb:
        vfb.type = vfb_type(vfb)
        dom.vfbs.append(vfb)


def _tsc_mode(ctx: Ctx, path: str, dom: Domain, elem: Sequence) -> bool:
    """xend's integer ``tsc_mode`` (0-3) -> its xl name; False (kept in
    ``image_extra``, and reported) for anything else."""
    n = as_int(ctx, path, scalar(ctx, path, elem), minimum=None)
    if n is None or not 0 <= n < len(TSC_MODES):
        return False
    dom.tsc_mode = TSC_MODES[n]
    return True


_CPUID_INPUT = re.compile(r"^(0x[0-9a-fA-F]+|[0-9]+)(,(0x[0-9a-fA-F]+|[0-9]+))?$")
_CPUID_BITS = re.compile(r"^[01xXkKsS]{32}$")


def _cpuid(elem: Sequence) -> Optional[List[str]]:
    """xend's ``(cpuid ((INPUT ((REG BITS) ...)) ...))`` (XendConfig
    ``cpuid_to_sxp``) as xl.cfg(5)'s xend-style ``cpuid`` strings
    (``INPUT:REG=BITS,...``); None when it is not that shape (kept in
    ``extra`` and reported)."""
    kids = children(elem)
    if len(kids) != 1 or not isinstance(kids[0], (list, tuple)):
        return None
    out: List[str] = []
    for entry in kids[0]:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2
                and isinstance(entry[0], (str, int))
                and isinstance(entry[1], (list, tuple)) and entry[1]):
            return None
        leaf = str(entry[0])
        regs = []
        for reg in entry[1]:
            if not (isinstance(reg, (list, tuple)) and len(reg) == 2
                    and reg[0] in ("eax", "ebx", "ecx", "edx")
                    and isinstance(reg[1], str) and _CPUID_BITS.match(reg[1])):
                return None
            regs.append(f"{reg[0]}={reg[1]}")
        if not _CPUID_INPUT.match(leaf):
            return None
        out.append(f"{leaf}:{','.join(regs)}")
    return out or None


def _hvm_list(attr: str) -> Callable:
    """``serial``/``parallel``/``usbdevice``: a string or a list of strings."""
    def handler(ctx: Ctx, path: str, hvm: HvmSettings, elem: Sequence) -> None:
        vals = children(elem)
        out: List[str] = []
        if len(vals) == 1 and isinstance(vals[0], (list, tuple)):
            vals = list(vals[0])
        for v in vals:
            t = as_text(ctx, path, v)
            if t is not None:
                out.append(t)
        setattr(hvm, attr, out)
    return handler


#: ``(image (hvm ...))`` keys (XendConfig 4.3 XENAPI_PLATFORM_CFG_TYPES)
#: -> handler(ctx, path, hvm, elem); others are kept in ``dom.image_extra``.
_HVM: Dict[str, Callable] = {
    "device_model": field_setter("device_model", as_text),
    "loader": field_setter("loader", as_text),
    "boot": field_setter("boot", as_text),
    "acpi": field_setter("acpi", as_flag),
    "apic": field_setter("apic", as_flag),
    "pae": field_setter("pae", as_flag),
    "hap": field_setter("hap", as_flag),
    "hpet": field_setter("hpet", as_flag),
    "localtime": field_setter("localtime", as_flag),
    "rtc_timeoffset": field_setter("rtc_timeoffset",
                                   lambda c, p, v: as_int(c, p, v, minimum=None)),
    "timer_mode": field_setter("timer_mode", lambda c, p, v: as_int(c, p, v)),
    "viridian": field_setter("viridian", as_flag),
    "nographic": field_setter("nographic", as_flag),
    "stdvga": field_setter("stdvga", as_flag),
    "videoram": field_setter("videoram", _mem),
    "usb": field_setter("usb", as_flag),
    "usbdevice": _hvm_list("usbdevice"),
    "soundhw": field_setter("soundhw", as_text),
    "cdrom": field_setter("cdrom", as_text),
    "serial": _hvm_list("serial"),
    "parallel": _hvm_list("parallel"),
    "monitor": field_setter("monitor", as_flag),
    "xen_platform_pci": field_setter("xen_platform_pci", as_flag),
    "vpt_align": field_setter("vpt_align", as_flag),
    "nestedhvm": field_setter("nestedhvm", as_flag),
}
