"""xend domain S-expressions <-> the domain model.

Contract: ``docs/internals.md`` (``config/sxpr.py``).  Three input shapes
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

Bad values raise :class:`~xen_remus_compat.errors.ConfigError` naming the
source and the key path (``domain/memory``).  Decisions:
``docs/decisions.d/config.md``.
"""
from __future__ import annotations

import logging
import posixpath
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ...errors import ConfigError
from ..model import Disk, Domain, HvmSettings, Nic, PciDev, Vfb

log = logging.getLogger("xen_remus_compat")

__all__ = ["domain_from_sxpr", "domains_from_text", "domain_to_sxpr",
           "canonical_uuid", "ROOT_NAMES"]

#: Top-level element names that hold one domain.
ROOT_NAMES = ("domain", "vm")

#: xend shutdown actions (XendConfig CONFIG_RESTART_MODES plus the libxl
#: spellings a model from JSON may carry) -> the xend spelling.
ACTIONS = {
    "destroy": "destroy", "restart": "restart", "preserve": "preserve",
    "rename-restart": "rename-restart", "restart_rename": "rename-restart",
    "coredump-destroy": "coredump-destroy", "coredump_destroy": "coredump-destroy",
    "coredump-restart": "coredump-restart", "coredump_restart": "coredump-restart",
    "soft-reset": "soft-reset", "soft_reset": "soft-reset",
}

#: Image element names; anything else is a PV kernel image (netbsd, ...).
IMAGE_TYPES = {"linux": "pv", "hvm": "hvm"}

#: Keys of ``image_extra`` this module invents (not xend keys).
IMAGE_TYPE_KEY = "image_type"

#: Runtime facts: emitted by ``form="runtime"`` only.
RUNTIME_EXTRA_KEYS = frozenset({
    "online_vcpus", "up_time", "shutdown_reason", "memory_dynamic_min",
    "memory_dynamic_max", "cpu_time", "start_time", "status", "state",
    "store_mfn", "console_mfn"})


class _Ctx:
    """Where we are, for error messages."""

    def __init__(self, source: Optional[str]) -> None:
        self.source = source or "<sxpr>"

    def error(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {message}", source=self.source)


# --------------------------------------------------------------------------
# Small value helpers
# --------------------------------------------------------------------------

def _is_elem(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], str)


def _children(elem: Sequence) -> List[Any]:
    """Items after the name, skipping an ``(@ ...)`` attribute list
    (legacy-api.md 11.1)."""
    items = list(elem[1:])
    if items and isinstance(items[0], (list, tuple)) and items[0][:1] == ["@"]:
        items = items[1:]
    elif items and isinstance(items[0], tuple) and items[0][:1] == ("@",):
        items = items[1:]
    return items


def _tail(elem: Sequence) -> list:
    """The element's values as a plain list (for ``extra``)."""
    return [_plain(v) for v in _children(elem)]


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _scalar(ctx: _Ctx, path: str, elem: Sequence) -> Any:
    """The single value of ``(key value)``; ``(key)`` is None."""
    vals = _children(elem)
    if not vals:
        return None
    if len(vals) > 1:
        # a multi-line string that the reader split: (uname\n phy:/x\n) is
        # one atom, but (args a b) is not something xend wrote
        raise ctx.error(path, f"expected one value, got {len(vals)}")
    return vals[0]


def _text(ctx: _Ctx, path: str, v: Any) -> Optional[str]:
    """A string value; empty means "not set" (xend wrote ``(bootloader )``)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return v if v != "" else None
    raise ctx.error(path, f"expected a string, got a list {_short(v)}")


def _short(v: Any) -> str:
    text = repr(_plain(v))
    return text if len(text) <= 60 else text[:57] + "..."


def _integer(ctx: _Ctx, path: str, v: Any, *, minimum: Optional[int] = 0,
             base_prefixes: bool = False) -> Optional[int]:
    """An integer given as int, integral float or numeric string."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if not v.is_integer():
            raise ctx.error(path, f"expected an integer, got {v!r}")
        n = int(v)
    elif isinstance(v, str):
        s = v.strip()
        try:
            if base_prefixes and s.lower().startswith(("0x", "-0x")):
                n = int(s, 16)
            else:
                n = int(s, 10)
        except ValueError:
            try:
                f = float(s)
            except ValueError:
                raise ctx.error(path, f"expected an integer, got {v!r}") from None
            if not f.is_integer():
                raise ctx.error(path, f"expected an integer, got {v!r}") from None
            n = int(f)
    else:
        raise ctx.error(path, f"expected an integer, got a list {_short(v)}")
    if minimum is not None and n < minimum:
        raise ctx.error(path, f"must be >= {minimum}, got {n}")
    return n


def _number(ctx: _Ctx, path: str, v: Any) -> Optional[float]:
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise ctx.error(path, f"expected a number, got {_short(v)}")


def _flag(ctx: _Ctx, path: str, v: Any) -> Optional[bool]:
    """xend's 0/1 platform flags (XENAPI_PLATFORM_CFG_TYPES: int)."""
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    n = _integer(ctx, path, v, minimum=None)
    return None if n is None else n != 0


_UUID_HEX = re.compile(r"^[0-9a-fA-F]{32}$")


def canonical_uuid(value: str) -> Optional[str]:
    """Dashed lower case, from 32 hex digits with or without dashes."""
    compact = value.strip().replace("-", "")
    if not _UUID_HEX.match(compact):
        return None
    c = compact.lower()
    return f"{c[:8]}-{c[8:12]}-{c[12:16]}-{c[16:20]}-{c[20:]}"


def _ranges(bits: Iterable[int]) -> str:
    from .libxl_json import format_cpulist
    return format_cpulist(bits)


def _expand_cpulist(ctx: _Ctx, path: str, text: str) -> List[int]:
    """xend's ``_convert_cpus_to_list``: ``"0-3,^1"`` -> ``[0, 2, 3]``."""
    from .libxl_json import parse_cpulist
    bits = parse_cpulist(text)
    if bits is None:
        raise ctx.error(path, f"bad CPU list {text!r}")
    return bits


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
            if not (_is_elem(value) and value[0] in ROOT_NAMES):
                what = f"({value[0]} ...)" if _is_elem(value) else _short(value)
                raise ConfigError(
                    f"top-level value {i + 1} is {what}, expected (domain ...) "
                    f"or (vm ...)", source=source)
            out.append(domain_from_sxpr(value, source=source))
    if not out:
        raise ConfigError("no (domain ...) or (vm ...) found", source=source)
    return out


def domain_from_sxpr(sxpr: Sequence, *, source: Optional[str] = None) -> Domain:
    """One domain sxpr (runtime, config.sxp or ``(vm ...)``) -> Domain."""
    ctx = _Ctx(source)
    if not (_is_elem(sxpr) and sxpr[0] in ROOT_NAMES):
        raise ctx.error("/", "expected (domain ...) or (vm ...)")
    root = sxpr[0]
    dom = Domain()
    image: Optional[Sequence] = None
    devices: List[Tuple[int, Sequence]] = []
    cpu_legacy: Optional[str] = None
    cpus_value: list = []
    have_cpus = False
    for index, item in enumerate(_children(sxpr)):
        if not _is_elem(item):
            if isinstance(item, (list, tuple)) and len(item) == 0:
                continue
            raise ctx.error(root, f"unexpected bare value {_short(item)}")
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
            cpus_value = _children(item)
        elif key == "cpu":
            # merged into cpus below, as XendConfig did
            cpu_legacy = _text(ctx, path, _scalar(ctx, path, item))
        elif key in _TOP:
            _TOP[key](ctx, path, dom, item)
        else:
            dom.extra.append((key, _tail(item)))
    _finish_vcpus(ctx, root, dom)
    if have_cpus or cpu_legacy:
        _set_cpus(ctx, f"{root}/cpus", dom, cpus_value, cpu_legacy,
                  have_cpus)
    if image is not None:
        _read_image(ctx, f"{root}/image", dom, image)
    for _, item in devices:
        _read_device(ctx, f"{root}/device", dom, item)
    _add_image_cdrom(ctx, dom)
    return dom


# ---- top-level keys -------------------------------------------------------

def _set(attr: str, conv: Callable) -> Callable:
    def handler(ctx: _Ctx, path: str, dom: Domain, elem: Sequence) -> None:
        setattr(dom, attr, conv(ctx, path, _scalar(ctx, path, elem)))
    return handler


def _mem(ctx: _Ctx, path: str, v: Any) -> Optional[int]:
    return _integer(ctx, path, v, minimum=0)


def _uuid(ctx: _Ctx, path: str, v: Any) -> Optional[str]:
    text = _text(ctx, path, v)
    if text is None:
        return None
    canon = canonical_uuid(text)
    if canon is None:
        raise ctx.error(path, f"not a UUID: {text!r}")
    return canon


def _action(ctx: _Ctx, path: str, v: Any) -> Optional[str]:
    text = _text(ctx, path, v)
    if text is None:
        return None
    if text not in ACTIONS:
        raise ctx.error(path, f"unknown action {text!r} (expected one of "
                              f"{', '.join(sorted(set(ACTIONS.values())))})")
    return ACTIONS[text]


def _weight(ctx: _Ctx, path: str, dom: Domain, elem: Sequence) -> None:
    v = _scalar(ctx, path, elem)
    # xend 3.0 had a float multiplier ("(cpu_weight 1.0)"), not a credit
    # weight: keep it verbatim rather than inventing a weight of 1.
    if isinstance(v, float) or (isinstance(v, str) and "." in v):
        _number(ctx, path, v)
        dom.extra.append(("cpu_weight", _tail(elem)))
        return
    dom.cpu_weight = _integer(ctx, path, v, minimum=0)


def _int_field(attr: str, minimum: Optional[int] = 0) -> Callable:
    return _set(attr, lambda c, p, v: _integer(c, p, v, minimum=minimum))


def _float_field(attr: str) -> Callable:
    return _set(attr, _number)


_TOP: Dict[str, Callable] = {
    "domid": _int_field("domid"),
    "name": _set("name", lambda c, p, v: _text(c, p, v) or ""),
    "uuid": _set("uuid", _uuid),
    "memory": _set("memory", _mem),
    "maxmem": _set("maxmem", _mem),
    "shadow_memory": _set("shadow_memory", _mem),
    "vcpus": _int_field("vcpus"),
    "vcpu_avail": _int_field("vcpu_avail"),
    "cpu_weight": _weight,
    "cpu_cap": _int_field("cpu_cap"),
    "bootloader": _set("bootloader", _text),
    "bootloader_args": _set("bootloader_args", _text),
    "on_poweroff": _set("on_poweroff", _action),
    "on_reboot": _set("on_reboot", _action),
    "on_crash": _set("on_crash", _action),
    "localtime": _set("localtime", _flag),
    "description": _set("description", _text),
    "state": _set("state", _text),
    "status": _int_field("status", minimum=None),
    "start_time": _float_field("start_time"),
    "cpu_time": _float_field("cpu_time"),
    "store_mfn": _int_field("store_mfn"),
    "console_mfn": _int_field("console_mfn"),
}


def _finish_vcpus(ctx: _Ctx, root: str, dom: Domain) -> None:
    if dom.vcpu_avail is None:
        return
    avail = dom.vcpu_avail
    if dom.vcpus is not None:
        avail &= (1 << dom.vcpus) - 1
    online = bin(avail).count("1")
    if online == 0:
        raise ctx.error(f"{root}/vcpu_avail",
                        f"bitmap {dom.vcpu_avail} leaves no vcpu online")
    dom.vcpus_online = online


def _set_cpus(ctx: _Ctx, path: str, dom: Domain, values: list,
              cpu_legacy: Optional[str], have_cpus: bool) -> None:
    """``cpus`` the way XendConfig 4.3 read it: a CPULIST string for every
    vcpu (``'0-3,^1'``); a list of lists of CPU numbers, one per vcpu
    (runtime and config.sxp, ``(cpus (()))`` = no pinning); or a list of
    CPULIST strings, one per vcpu.  The deprecated ``cpu`` is prepended."""
    if len(values) > 1:
        raise ctx.error(path, f"expected one value, got {_short(values)}")
    value = values[0] if values else None
    per_vcpu: List[List[int]] = []
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple)):
            for item in value:
                if not isinstance(item, (list, tuple)):
                    raise ctx.error(path, f"mixed list forms: {_short(value)}")
                cpus: List[int] = []
                for c in item:
                    if isinstance(c, (list, tuple)):
                        raise ctx.error(path, f"nested too deeply: {_short(value)}")
                    cpus.append(_integer(ctx, path, c, minimum=0))
                per_vcpu.append(sorted(set(cpus)))
        else:
            for item in value:
                if isinstance(item, (list, tuple)):
                    raise ctx.error(path, f"mixed list forms: {_short(value)}")
                per_vcpu.append(_expand_cpulist(ctx, path, _text(ctx, path, item) or ""))
    elif value is not None:
        text = _text(ctx, path, value)
        if text:
            per_vcpu = [_expand_cpulist(ctx, path, text)]
    if cpu_legacy:
        first = _expand_cpulist(ctx, f"{path[:-1]}", cpu_legacy)
        per_vcpu = [sorted(set(first + v)) for v in per_vcpu] or [first]
    if not per_vcpu or all(not v for v in per_vcpu):
        return
    if all(v == per_vcpu[0] for v in per_vcpu):
        dom.cpus = _ranges(per_vcpu[0])
    else:
        dom.vcpu_affinity = [_ranges(v) if v else "all" for v in per_vcpu]


# ---- image ----------------------------------------------------------------

def _read_image(ctx: _Ctx, path: str, dom: Domain, image: Sequence) -> None:
    kids = _children(image)
    kinds = [k for k in kids if _is_elem(k)]
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
    args = root = ip = None
    for item in _children(body):
        if not _is_elem(item):
            if item == [] or item == ():
                continue
            raise ctx.error(ipath, f"unexpected bare value {_short(item)}")
        key = item[0]
        kpath = f"{ipath}/{key}"
        if key == "kernel":
            dom.kernel = _text(ctx, kpath, _scalar(ctx, kpath, item))
        elif key == "ramdisk":
            dom.ramdisk = _text(ctx, kpath, _scalar(ctx, kpath, item))
        elif key == "args":
            args = _text(ctx, kpath, _scalar(ctx, kpath, item))
        elif key == "root":
            root = _text(ctx, kpath, _scalar(ctx, kpath, item))
        elif key == "ip":
            ip = _text(ctx, kpath, _scalar(ctx, kpath, item))
        elif key in _VFB_KEYS:
            _VFB_KEYS[key](ctx, kpath, vfb, _scalar(ctx, kpath, item))
            have_vfb = True
        elif dom.type == "hvm" and key in _HVM:
            _HVM[key](ctx, kpath, dom.hvm, item)
        else:
            dom.image_extra.append((key, _tail(item)))
    # XendConfig.update_with_image_sxp: "root=R ip=I " + args unless the
    # args already say so.
    cmdline = args or ""
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
        if vfb.sdl and not vfb.vnc:
            vfb.type = "sdl"
        dom.vfbs.append(vfb)


def _hvm_set(attr: str, conv: Callable) -> Callable:
    def handler(ctx: _Ctx, path: str, hvm: HvmSettings, elem: Sequence) -> None:
        setattr(hvm, attr, conv(ctx, path, _scalar(ctx, path, elem)))
    return handler


def _hvm_list(attr: str) -> Callable:
    """``serial``/``parallel``/``usbdevice``: a string or a list of strings."""
    def handler(ctx: _Ctx, path: str, hvm: HvmSettings, elem: Sequence) -> None:
        vals = _children(elem)
        out: List[str] = []
        if len(vals) == 1 and isinstance(vals[0], (list, tuple)):
            vals = list(vals[0])
        for v in vals:
            t = _text(ctx, path, v)
            if t is not None:
                out.append(t)
        setattr(hvm, attr, out)
    return handler


_HVM: Dict[str, Callable] = {
    "device_model": _hvm_set("device_model", _text),
    "loader": _hvm_set("loader", _text),
    "boot": _hvm_set("boot", _text),
    "acpi": _hvm_set("acpi", _flag),
    "apic": _hvm_set("apic", _flag),
    "pae": _hvm_set("pae", _flag),
    "hap": _hvm_set("hap", _flag),
    "hpet": _hvm_set("hpet", _flag),
    "localtime": _hvm_set("localtime", _flag),
    "rtc_timeoffset": _hvm_set("rtc_timeoffset",
                               lambda c, p, v: _integer(c, p, v, minimum=None)),
    "timer_mode": _hvm_set("timer_mode", lambda c, p, v: _integer(c, p, v)),
    "viridian": _hvm_set("viridian", _flag),
    "nographic": _hvm_set("nographic", _flag),
    "stdvga": _hvm_set("stdvga", _flag),
    "videoram": _hvm_set("videoram", _mem),
    "usb": _hvm_set("usb", _flag),
    "usbdevice": _hvm_list("usbdevice"),
    "soundhw": _hvm_set("soundhw", _text),
    "cdrom": _hvm_set("cdrom", _text),
    "serial": _hvm_list("serial"),
    "parallel": _hvm_list("parallel"),
    "monitor": _hvm_set("monitor", _flag),
    "xen_platform_pci": _hvm_set("xen_platform_pci", _flag),
}


def _vfb_set(attr: str, conv: Callable) -> Callable:
    def handler(ctx: _Ctx, path: str, vfb: Vfb, v: Any) -> None:
        setattr(vfb, attr, conv(ctx, path, v))
    return handler


def _vfb_type(ctx: _Ctx, path: str, vfb: Vfb, v: Any) -> None:
    t = _text(ctx, path, v)
    if t not in ("vnc", "sdl"):
        raise ctx.error(path, f"unknown vfb type {t!r} (expected vnc or sdl)")
    vfb.type = t


_VFB_KEYS: Dict[str, Callable] = {
    "vnc": _vfb_set("vnc", _flag),
    "sdl": _vfb_set("sdl", _flag),
    "vncunused": _vfb_set("vncunused", _flag),
    "vnclisten": _vfb_set("vnclisten", _text),
    "vncdisplay": _vfb_set("vncdisplay", lambda c, p, v: _integer(c, p, v)),
    "vncpasswd": _vfb_set("vncpasswd", _text),
    "keymap": _vfb_set("keymap", _text),
    "display": _vfb_set("display", _text),
    "xauthority": _vfb_set("xauthority", _text),
    "opengl": _vfb_set("opengl", _flag),
}


# ---- devices --------------------------------------------------------------

def _props(ctx: _Ctx, path: str, elem: Sequence) -> List[Tuple[str, Any]]:
    out: List[Tuple[str, Any]] = []
    for item in _children(elem):
        if not _is_elem(item):
            if item == [] or item == ():
                continue
            raise ctx.error(path, f"unexpected bare value {_short(item)}")
        out.append((item[0], item))
    return out


def _read_device(ctx: _Ctx, path: str, dom: Domain, elem: Sequence) -> None:
    kids = [k for k in _children(elem) if k != [] and k != ()]
    if len(kids) != 1 or not _is_elem(kids[0]):
        raise ctx.error(path, f"expected one (class ...) element, got {_short(kids)}")
    dev = kids[0]
    cls = dev[0]
    dpath = f"{path}/{cls}"
    reader = _DEVICES.get(cls)
    if reader is None:
        dom.extra.append(("device", _tail(elem)))
        return
    reader(ctx, dpath, dom, dev, elem)


def _read_disk(ctx: _Ctx, path: str, dom: Domain, dev: Sequence,
               whole: Sequence) -> None:
    from ..specs import diskspec
    props = _props(ctx, path, dev)
    found: Dict[str, Any] = {}
    rest: List[Tuple[str, Any]] = []
    for key, item in props:
        if key in ("uname", "dev", "mode") and key not in found:
            found[key] = _text(ctx, f"{path}/{key}", _scalar(ctx, f"{path}/{key}", item))
        else:
            rest.append((key, item))
    if not found.get("dev"):
        raise ctx.error(f"{path}/dev", "missing (every vbd needs a dev)")
    uname = found.get("uname")
    if uname is not None:
        # a uname the reader split over lines, e.g. ganeti's
        # "(uname\n phy:/...:0\n)", is one atom already; just trim it
        uname = uname.strip()
    mode = found.get("mode") or "r"    # xen_config.html: "optional, default r"
    disk = diskspec.parse_uname(uname, found["dev"], mode, source=ctx.source,
                                device_class=dev[0])
    for key, item in rest:
        kpath = f"{path}/{key}"
        if key == "backend":
            v = _scalar(ctx, kpath, item)
            n = _maybe_int(v)
            if n is not None:
                disk.backend_domid = n
            elif _text(ctx, kpath, v) is not None:
                disk.backend_domname = _text(ctx, kpath, v)
        elif key == "uuid":
            disk.uuid = _text(ctx, kpath, _scalar(ctx, kpath, item))
        elif key == "bootable" and disk.bootable is None:
            disk.bootable = _integer(ctx, kpath, _scalar(ctx, kpath, item))
        elif key == "bootable":
            pass    # xend wrote it twice (pv-vfb-type-crash); same value
        elif key == "protocol":
            disk.protocol = _text(ctx, kpath, _scalar(ctx, kpath, item))
        else:
            disk.extra.append((key, _tail(item)))
    dom.disks.append(disk)


def _maybe_int(v: Any) -> Optional[int]:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.match(r"^\d+$", v):
        return int(v)
    return None


def _read_vif(ctx: _Ctx, path: str, dom: Domain, dev: Sequence,
              whole: Sequence) -> None:
    from ..specs import vifspec
    props: Dict[str, Any] = {}
    for key, item in _props(ctx, path, dev):
        kpath = f"{path}/{key}"
        vals = _children(item)
        if len(vals) > 1 or any(isinstance(v, (list, tuple)) for v in vals):
            raise ctx.error(kpath, f"expected one value, got {_short(vals)}")
        value = _text(ctx, kpath, vals[0]) if vals else None
        if value is None:
            continue
        if key == "ip" and key in props:       # "ip ... May be repeated"
            props[key] = f"{props[key]} {value}"
        else:
            props[key] = value
    dom.nics.append(vifspec.parse_legacy(props, source=ctx.source))


def _read_vfb(ctx: _Ctx, path: str, dom: Domain, dev: Sequence,
              whole: Sequence) -> None:
    vfb = Vfb()
    explicit_type = False
    for key, item in _props(ctx, path, dev):
        kpath = f"{path}/{key}"
        if key == "type":
            _vfb_type(ctx, kpath, vfb, _scalar(ctx, kpath, item))
            explicit_type = True
        elif key in _VFB_KEYS:
            _VFB_KEYS[key](ctx, kpath, vfb, _scalar(ctx, kpath, item))
        else:
            vfb.extra.append((key, _tail(item)))
    if not explicit_type and vfb.sdl and not vfb.vnc:
        vfb.type = "sdl"
    dom.vfbs.append(vfb)


def _read_vkbd(ctx: _Ctx, path: str, dom: Domain, dev: Sequence,
               whole: Sequence) -> None:
    dom.vkb = True
    dom.extra.append(("device", _tail(whole)))


_PCI_FIELDS = ("domain", "bus", "slot", "func")


def _read_pci(ctx: _Ctx, path: str, dom: Domain, dev: Sequence,
              whole: Sequence) -> None:
    """``(pci (backend 0) (dev (domain 0x0001) (bus 0x0c) (slot 0x1b)
    (func 0x2)) (dev ...))``, or the old single ``(pci (bus 0) (dev 1)
    (func 0))`` of xen_config.html (there ``dev`` is the slot)."""
    props = _props(ctx, path, dev)
    nested = [item for key, item in props
              if key == "dev" and any(_is_elem(x) for x in _children(item))]
    if nested:
        for item in nested:
            dom.pci.append(_pci_dev(ctx, f"{path}/dev", _props(ctx, path, item)))
        others = [(k, it) for k, it in props if not (k == "dev" and it in nested)]
        extra = [(k, _tail(it)) for k, it in others if k != "backend"]
        backend = [it for k, it in others if k == "backend"]
        if backend and _maybe_int(_scalar(ctx, f"{path}/backend", backend[0])) not in (0, None):
            extra.insert(0, ("backend", _tail(backend[0])))
        if extra and dom.pci:
            dom.pci[-1].extra.extend(extra)
        return
    flat = [("slot" if k == "dev" else k, it) for k, it in props]
    dom.pci.append(_pci_dev(ctx, path, flat))


def _pci_dev(ctx: _Ctx, path: str, props: List[Tuple[str, Any]]) -> PciDev:
    pci = PciDev()
    seen = set()
    for key, item in props:
        kpath = f"{path}/{key}"
        if key in _PCI_FIELDS:
            v = _scalar(ctx, kpath, item)
            n = _integer(ctx, kpath, v, base_prefixes=True)
            limit = {"domain": 0xFFFF, "bus": 0xFF, "slot": 0x1F, "func": 7}[key]
            if n is None or n > limit:
                raise ctx.error(kpath, f"out of range: {v!r}")
            setattr(pci, key, n)
            seen.add(key)
        elif key == "opts":
            for opt in _children(item):
                if isinstance(opt, (list, tuple)) and len(opt) == 2:
                    pci.options.append((str(opt[0]), str(_plain(opt[1]))))
                else:
                    raise ctx.error(kpath, f"bad option {_short(opt)}")
        else:
            pci.extra.append((key, _tail(item)))
    missing = [k for k in ("bus", "slot", "func") if k not in seen]
    if missing:
        raise ctx.error(path, f"missing {', '.join(missing)}")
    return pci


_DEVICES: Dict[str, Callable] = {
    "vbd": _read_disk, "tap": _read_disk, "tap2": _read_disk,
    "vif": _read_vif, "vfb": _read_vfb, "vkbd": _read_vkbd, "pci": _read_pci,
}


def _add_image_cdrom(ctx: _Ctx, dom: Domain) -> None:
    """An HVM ``(image (hvm (cdrom PATH)))`` is an ``hdc`` CD-ROM unless a
    device already claims ``hdc`` (libvirt's sexpr parser, fv-utc)."""
    from ..specs import diskspec
    if dom.hvm is None or not dom.hvm.cdrom:
        return
    if any(d.vdev == "hdc" for d in dom.disks):
        return
    disk = diskspec.parse_uname(f"file:{dom.hvm.cdrom}", "hdc:cdrom", "r",
                                source=ctx.source)
    disk.origin = "image-cdrom"
    dom.disks.append(disk)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

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


def _cpus_sxpr(dom: Domain) -> Optional[list]:
    """``cpus`` for config.sxp: a CPULIST string, or one per vcpu (the
    list-of-strings form XendConfig accepts)."""
    from .libxl_json import parse_cpulist
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
    from .libxl_json import effective_cmdline
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
    if hvm is not None and dom.type == "hvm":
        image.extend(_fields(hvm, _HVM_OUT))
    for vfb in dom.vfbs:
        if vfb.origin == "image":
            image.extend(_fields(vfb, _VFB_OUT))
    image.extend(_emit_extra(dom.image_extra, skip={IMAGE_TYPE_KEY}))
    return image


def _devices_sxpr(dom: Domain, runtime: bool) -> List[list]:
    from ..specs import diskspec
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
        for pci in dom.pci:
            dev: list = ["dev", ["domain", f"0x{pci.domain:04x}"],
                         ["bus", f"0x{pci.bus:02x}"], ["slot", f"0x{pci.slot:02x}"],
                         ["func", f"0x{pci.func:x}"]]
            if pci.options:
                dev.append(["opts", *[[k, v] for k, v in pci.options]])
            dev.extend(_emit_extra(pci.extra))
            body.append(dev)
        out.append(["device", body])
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
