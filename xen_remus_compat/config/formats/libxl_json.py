"""The domain model <-> libxl's ``libxl_domain_config`` JSON.

Contract: ``docs/internals.md`` (``config/formats/libxl_json.py``).  The encoding
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

This module reads JSON into the model (:func:`domain_from_libxl`,
:func:`loads`) and wraps the writer of ``libxl_json_writer.py``
(:func:`domain_to_libxl`, :func:`dumps`).  The xl-side policies shared with
``xlcfg.py`` live in ``config/xlpolicy.py``, the value helpers shared with
the sxpr reader in ``config/common.py`` (both re-exported here under their
old names).  Decisions: ``docs/decisions.d/config.md``.
"""
from __future__ import annotations

import json
import logging
import shlex
from typing import Any, Callable, Dict, List, Optional

from ...errors import ConfigError
from .. import limits
from ..common import (ACTIONS_TO_LIBXL, LIBXL_TO_ACTION, MEMKB, SHUTDOWN_KEYS, TIMER_MODES,
                      TSC_MODES, affinity_fields, canonical_uuid, format_cpulist, libxl_action,
                      online_vcpus, parse_cpulist, vfb_type, xl_action)
from ..model import DOMAIN_TYPES, Domain, HvmSettings, PciDev, Vfb
from ..specs import diskspec, vifspec
from ..specs import pci as pcispec
from ..xlpolicy import (BOOTLOADER_TEMP_DIRS, TRADITIONAL_DM, avail_vcpu_bits, boot_files,
                        bootloader_argv, device_model, effective_cmdline, hvm_firmware,
                        hvm_graphics, hvm_kernel, max_vcpus, pv_vfbs, vfb_sdl_enabled,
                        vfb_vnc_enabled)
from .libxl_json_writer import domain_to_libxl

log = logging.getLogger("xen_remus_compat")

__all__ = ["domain_to_libxl", "domain_from_libxl", "loads", "dumps",
           "INVALID_DOMID", "RANDOM_DOMID", "effective_cmdline",
           "parse_cpulist", "format_cpulist", "avail_vcpu_bits", "max_vcpus",
           "hvm_firmware", "device_model", "boot_files", "hvm_kernel", "hvm_graphics", "pv_vfbs",
           "vfb_vnc_enabled", "vfb_sdl_enabled", "bootloader_argv",
           "libxl_action", "xl_action", "TIMER_MODES",
           # constants that moved to config/common.py and config/xlpolicy.py
           "ACTIONS_TO_LIBXL", "LIBXL_TO_ACTION", "SHUTDOWN_KEYS", "MEMKB",
           "BOOTLOADER_TEMP_DIRS", "TRADITIONAL_DM"]

#: ``c_info.domid`` values that are policies, not ids (xl-side.md 4.1).
INVALID_DOMID = 4294967295
RANDOM_DOMID = 4294967294


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
    """Typed access to JSON values; errors name the source and the path."""

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
    r = _Reader(source)
    cfg = r.obj("config", cfg)
    dom = Domain(domid=domid)
    c_info = r.obj("c_info", cfg.get("c_info", {}))
    b_info = r.obj("b_info", cfg.get("b_info", {}))
    dtype = str(c_info.get("type", "pv")).lower()
    if dtype not in DOMAIN_TYPES:
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
        elif key == "pool_name":
            dom.pool = r.str(path, value)
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
    limits.check_domain(dom, fail=lambda m: ConfigError(m, source=r.source))
    return dom


# ---- b_info ---------------------------------------------------------------
#
# A handler per libxl_domain_build_info field (xl-side.md 4.2), called as
# handler(reader, dom, path, value); fields without one are kept.

Handler = Callable[[_Reader, Domain, str, Any], None]


def _setter(attr: str, kind: str, *, on_hvm: bool = False) -> Handler:
    """Set ``dom.attr`` (``dom.hvm.attr`` with *on_hvm*) to the value read
    as ``_Reader.<kind>``."""
    def handler(r: _Reader, dom: Domain, path: str, value: Any) -> None:
        setattr(dom.hvm if on_hvm else dom, attr, getattr(r, kind)(path, value))
    return handler


def _hvm_only(handler: Handler) -> Handler:
    """A field that means something for an HVM guest only; kept otherwise."""
    def guarded(r: _Reader, dom: Domain, path: str, value: Any) -> None:
        if dom.hvm is None:
            _keep(dom.extra, path, value)
        else:
            handler(r, dom, path, value)
    return guarded


def _avail_vcpus(r: _Reader, dom: Domain, path: str, value: Any) -> None:
    bits = set(r.bits(path, value))
    top = max(limits.MAX_VCPUS.values())
    if bits and (max(bits) >= top or min(bits) < 0):
        raise r.error(path, f"vcpu numbers must be 0 to {top - 1}")
    dom.vcpu_avail = sum(1 << i for i in bits)


def _hard_affinity(r: _Reader, dom: Domain, path: str, value: Any) -> None:
    if not isinstance(value, list):
        raise r.error(path, "expected an array of arrays")
    lists = [r.bits(f"{path}[{i}]", x) for i, x in enumerate(value)]
    dom.cpus, dom.vcpu_affinity = affinity_fields(lists)


def _sched_params(r: _Reader, dom: Domain, path: str, value: Any) -> None:
    for sk, sv in r.obj(path, value).items():
        if sk == "weight":
            dom.cpu_weight = r.int(f"{path}.weight", sv)
        elif sk == "cap":
            dom.cpu_cap = r.int(f"{path}.cap", sv)
        else:
            _keep(dom.extra, f"{path}.{sk}", sv)


def _bootloader_args(r: _Reader, dom: Domain, path: str, value: Any) -> None:
    dom.bootloader_args = " ".join(shlex.quote(a) for a in r.strlist(path, value))


def _rtc_timeoffset(r: _Reader, dom: Domain, path: str, value: Any) -> None:
    n = r.int(path, value)                 # a uint32 holding a signed offset
    dom.hvm.rtc_timeoffset = n - (1 << 32) if n >= 1 << 31 else n


def _timer_mode(r: _Reader, dom: Domain, path: str, value: Any) -> None:
    name = r.str(path, value).lower()
    if name not in TIMER_MODES:
        _keep(dom.extra, path, value)
    else:
        dom.hvm.timer_mode = TIMER_MODES.index(name)


def _tsc_mode(r: _Reader, dom: Domain, path: str, value: Any) -> None:
    name = r.str(path, value).lower()
    if name in TSC_MODES:
        dom.tsc_mode = name
    else:
        _keep(dom.extra, path, value)


def _ioports(r: _Reader, dom: Domain, path: str, value: Any) -> None:
    """``[{"first": 1016, "number": 8}]`` -> xl's ``3f8-3ff``."""
    if not isinstance(value, list):
        raise r.error(path, "expected an array")
    for i, item in enumerate(value):
        o = r.obj(f"{path}[{i}]", item)
        first = r.int(f"{path}[{i}].first", o.get("first", 0))
        last = first + r.int(f"{path}[{i}].number", o.get("number", 1)) - 1
        if not 0 <= first <= last <= 0xFFFF:
            raise r.error(f"{path}[{i}]", "not an I/O port range")
        dom.ioports.append(f"{first:x}" if first == last else f"{first:x}-{last:x}")


def _type_hvm(r: _Reader, dom: Domain, path: str, value: Any) -> None:
    _read_hvm(r, dom, dom.hvm, r.obj(path, value))


def _type_pv(r: _Reader, dom: Domain, path: str, value: Any) -> None:
    if dom.type != "pv":
        _keep(dom.extra, path, value)
        return
    for pk, pv in r.obj(path, value).items():
        if pk == "e820_host" and pv == "True" and dom.pci:
            continue
        if pk in ("kernel", "ramdisk", "cmdline", "bootloader") and pv:
            if getattr(dom, pk) is None:   # deprecated duplicates
                setattr(dom, pk, r.str(f"{path}.{pk}", pv))
            continue
        if pk == "bootloader_args" and pv:
            if dom.bootloader_args is None:
                _bootloader_args(r, dom, f"{path}.{pk}", pv)
            continue
        _keep(dom.extra, f"{path}.{pk}", pv)


_B_INFO: Dict[str, Handler] = {
    "max_vcpus": _setter("vcpus", "int"),
    "avail_vcpus": _avail_vcpus,
    "vcpu_hard_affinity": _hard_affinity,
    "max_memkb": _setter("maxmem", "memkb"),
    "target_memkb": _setter("memory", "memkb"),
    "shadow_memkb": _setter("shadow_memory", "memkb"),
    "video_memkb": _hvm_only(_setter("videoram", "memkb", on_hvm=True)),
    "localtime": _setter("localtime", "defbool"),
    "sched_params": _sched_params,
    "kernel": _setter("kernel", "str"),
    "ramdisk": _setter("ramdisk", "str"),
    "cmdline": _setter("cmdline", "str"),
    "bootloader": _setter("bootloader", "str"),
    "bootloader_args": _bootloader_args,
    "device_model": _hvm_only(_setter("device_model", "str", on_hvm=True)),
    "acpi": _hvm_only(_setter("acpi", "defbool", on_hvm=True)),
    "apic": _hvm_only(_setter("apic", "defbool", on_hvm=True)),
    "rtc_timeoffset": _hvm_only(_rtc_timeoffset),
    "timer_mode": _hvm_only(_timer_mode),
    "tsc_mode": _tsc_mode,
    "ioports": _ioports,
    "irqs": lambda r, dom, path, value: dom.irqs.extend(r.bits(path, value)),
    "nested_hvm": _hvm_only(_setter("nestedhvm", "defbool", on_hvm=True)),
    "type.hvm": _hvm_only(_type_hvm),
    "type.pv": _type_pv,
}


def _read_b_info(r: _Reader, dom: Domain, b: Dict[str, Any]) -> None:
    for key, value in b.items():
        path = f"b_info.{key}"
        handler = _B_INFO.get(key)
        if handler is None:
            _keep(dom.extra, path, value)
        else:
            handler(r, dom, path, value)
    limits.check_vcpus(dom.vcpus, key="max_vcpus",
                       fail=lambda m: r.error("b_info.max_vcpus", m))
    if dom.vcpu_avail is not None:
        dom.vcpus_online = online_vcpus(dom.vcpu_avail, dom.vcpus)


# ---- b_info.type.hvm and the framebuffers ---------------------------------

#: HVM defbools of ``type.hvm``; ``acpi``/``apic`` are deprecated
#: duplicates of the b_info fields, which win.
_HVM_DEFBOOLS = ("pae", "hpet", "viridian", "nographic", "usb",
                 "xen_platform_pci", "acpi", "apic", "vpt_align")

#: libxl vnc / sdl fields -> (Vfb attribute, ``_Reader`` method).
_VNC_FIELDS = {"enable": ("vnc", "defbool"), "listen": ("vnclisten", "str"),
               "passwd": ("vncpasswd", "str"), "display": ("vncdisplay", "int"),
               "findunused": ("vncunused", "defbool")}
_SDL_FIELDS = {"enable": ("sdl", "defbool"), "opengl": ("opengl", "defbool"),
               "display": ("display", "str"), "xauthority": ("xauthority", "str")}


def _read_hvm(r: _Reader, dom: Domain, hvm: HvmSettings, h: Dict[str, Any]) -> None:
    graphics = Vfb(origin="image")
    have_graphics = False
    for key, value in h.items():
        path = f"b_info.type.hvm.{key}"
        if key == "firmware":
            hvm.loader = r.str(path, value)
        elif key in _HVM_DEFBOOLS:
            if getattr(hvm, key) is None:
                setattr(hvm, key, r.defbool(path, value))
        elif key == "vga":
            kind = r.obj(path, value).get("kind")
            if kind in ("std", "cirrus"):
                hvm.stdvga = kind == "std"
            _keep(dom.extra, path, {k: v for k, v in value.items()
                                    if not (k == "kind" and kind in ("std", "cirrus"))})
        elif key == "vnc":
            have_graphics |= _graphics_in(r, path, r.obj(path, value), _VNC_FIELDS,
                                          graphics, dom.extra)
        elif key == "sdl":
            have_graphics |= _graphics_in(r, path, r.obj(path, value), _SDL_FIELDS,
                                          graphics, dom.extra)
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
        graphics.type = vfb_type(graphics)
        dom.vfbs.append(graphics)


def _graphics_in(r: _Reader, path: str, v: Dict[str, Any], fields: Dict[str, tuple],
                 vfb: Vfb, extra: list) -> bool:
    """A libxl ``vnc``/``sdl`` object into *vfb* (the other fields into
    *extra*); whether it set anything."""
    found = False
    for key, value in v.items():
        kpath = f"{path}.{key}"
        field = fields.get(key)
        if field is None:
            _keep(extra, kpath, value)
            continue
        attr, kind = field
        setattr(vfb, attr, getattr(r, kind)(kpath, value))
        found = True
    return found


def _vfb_in(r: _Reader, path: str, v: Dict[str, Any], origin: Optional[str]) -> Vfb:
    vfb = Vfb(origin=origin)
    for key, value in v.items():
        kpath = f"{path}.{key}"
        if key == "vnc":
            _graphics_in(r, kpath, r.obj(kpath, value), _VNC_FIELDS, vfb, vfb.extra)
        elif key == "sdl":
            _graphics_in(r, kpath, r.obj(kpath, value), _SDL_FIELDS, vfb, vfb.extra)
        elif key == "keymap":
            vfb.keymap = r.str(kpath, value)
        elif key in ("devid", "backend_domid") and value in (0, -1):
            continue
        else:
            _keep(vfb.extra, kpath, value)
    vfb.type = vfb_type(vfb)
    return vfb


def _pci_in(r: _Reader, path: str, p: Dict[str, Any]) -> PciDev:
    """A ``libxl_device_pci``: the BDF checked like the sxpr reader's, the
    other fields through ``specs/pci.py``."""
    pci = PciDev()
    bdf_keys = set()
    for key, attr in reversed(pcispec.LIBXL_BDF):
        bdf_keys.add(key)
        n = r.int(f"{path}.{key}", p.get(key, 0))
        if not pcispec.in_range(attr, n):
            raise r.error(f"{path}.{key}", f"out of range: {n!r}")
        setattr(pci, attr, n)
    for key, value in p.items():
        if key in bdf_keys:
            continue
        options = pcispec.options_from_libxl(key, value)
        if options is None:
            _keep(pci.extra, f"{path}.{key}", value)
        else:
            pci.options.extend(options)
    return pci


#: libxl's widest integers are 64-bit (20 digits); anything far longer is
#: hostile (Python refuses more than 4300 digits with a ValueError)
MAX_INT_DIGITS = 40


class _HugeInt(ValueError):
    pass


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _HugeInt(len(digits.lstrip("-")))
    return int(digits)


def _check_text(data: Any, source: str) -> None:
    """Every string valid Unicode: JSON's \\uD800 escapes can make lone
    surrogates, which no output (xl.cfg, JSON, the terminal) can carry."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ConfigError(f"string {item[:40].encode('utf-8', 'backslashreplace').decode()!r}"
                                  f" holds a lone surrogate (\\u{ord(item[exc.start]):04x}), "
                                  "which is not text", source=source) from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(text: str, *, source: str) -> List[Domain]:
    """``xl list -l`` output (an array of ``{"domid", "config"}``), one such
    wrapper, or a bare ``libxl_domain_config``."""
    try:
        data = json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", source=source,
                          line=exc.lineno, col=exc.colno) from None
    except _HugeInt as exc:
        raise ConfigError(f"a JSON integer of {exc.args[0]} digits; no libxl "
                          f"field holds more than {MAX_INT_DIGITS}", source=source) from None
    _check_text(data, source)
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

