"""The domain model -> libxl's ``libxl_domain_config`` JSON.

Contract: ``docs/internals.md`` (``config/formats/libxl_json.py``:
:func:`domain_to_libxl`, re-exported by ``libxl_json.py``).  The encoding
is libxl's own generator as xl-side.md section 4.2 describes it and as
Debian's real ``xl -N create`` prints it (checked field by field in
``tests/conformance/test_roundtrip.py``): fields equal to their IDL default
are omitted, defbools are ``"True"``/``"False"``, enums are lower-case
libxl names, memory is KiB, the build-type keys are ``type.pv``/
``type.hvm``/``type.pvh``; no ``c_info.domid`` (the migration-header form,
xl-side.md 4.6).  What a model value means for xl comes from
``config/xlpolicy.py``, shared with the xl.cfg writer; devices from the
specs modules.
"""
from __future__ import annotations

from typing import Any, Dict, List

from ...errors import ConfigError
from ..common import MEMKB, SHUTDOWN_KEYS, TIMER_MODES, defbool, libxl_action, parse_cpulist
from ..model import Domain, HvmSettings
from ..specs import diskspec, vifspec
from ..specs import pci as pcispec
from ..xlpolicy import (DEFAULT_POOL, avail_vcpu_bits, boot_files, bootloader_argv,
                        device_model, hvm_firmware, hvm_graphics, image_flags, localtime, max_vcpus,
                        pci_option_defaults, pv_vfbs, xl_bootloader, xl_cmdline)

__all__ = ["domain_to_libxl"]


def _put(d: Dict[str, Any], key: str, value: Any) -> None:
    if value is None or value == [] or value == {}:
        return
    d[key] = value


def _vnc_json(g: Dict[str, Any]) -> Dict[str, Any]:
    vnc: Dict[str, Any] = {}
    if g.get("vnc") is not None:
        vnc["enable"] = defbool(g["vnc"])
    _put(vnc, "listen", g.get("vnclisten"))
    _put(vnc, "passwd", g.get("vncpasswd"))
    if g.get("vncdisplay"):
        vnc["display"] = g["vncdisplay"]
    if g.get("vncunused") is not None:
        vnc["findunused"] = defbool(g["vncunused"])
    return vnc


def _sdl_json(g: Dict[str, Any]) -> Dict[str, Any]:
    sdl: Dict[str, Any] = {}
    if g.get("sdl") is not None:
        sdl["enable"] = defbool(g["sdl"])
    if g.get("opengl") is not None:
        sdl["opengl"] = defbool(g["opengl"])
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


def domain_to_libxl(dom: Domain) -> Dict[str, Any]:
    """The ``libxl_domain_config`` xl would build for this domain (the
    migration-header form: no ``c_info.domid``, xl-side.md 4.6)."""
    c_info: Dict[str, Any] = {"type": dom.type}
    hvm = dom.hvm if dom.type == "hvm" else None
    if hvm is not None and hvm.hap is not None:
        c_info["hap"] = defbool(hvm.hap)
    _put(c_info, "name", dom.name or None)
    _put(c_info, "uuid", dom.uuid)
    if dom.pool and dom.pool != DEFAULT_POOL:
        c_info["pool_name"] = dom.pool
    for key, value in image_flags(dom).items():       # oos
        c_info[key] = defbool(value)

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
    rtc_local = localtime(dom)
    if rtc_local is not None:
        b["localtime"] = defbool(rtc_local)
    sched: Dict[str, Any] = {}
    if dom.cpu_weight is not None:
        sched["weight"] = dom.cpu_weight
    if dom.cpu_cap is not None:
        sched["cap"] = dom.cpu_cap
    _put(b, "sched_params", sched)
    kernel, ramdisk, _ = boot_files(dom)
    _put(b, "kernel", kernel)
    cmdline, _ = xl_cmdline(dom)
    _put(b, "cmdline", cmdline)
    _put(b, "ramdisk", ramdisk)
    dm, _ = device_model(dom)
    if dm:
        b["device_model_version"] = "qemu_xen"
        b["device_model"] = dm
    if hvm is not None and hvm.acpi is not None:
        b["acpi"] = defbool(hvm.acpi)
    _put(b, "bootloader", xl_bootloader(dom))
    _put(b, "bootloader_args", bootloader_argv(dom))
    if dom.tsc_mode and dom.tsc_mode != "default":
        b["tsc_mode"] = dom.tsc_mode
    if dom.cpuid:
        b["cpuid"] = {"cpuid": [_cpuid_json(text) for text in dom.cpuid]}
    if dom.ioports:
        b["ioports"] = [_ioports_json(text) for text in dom.ioports]
    _put(b, "irqs", list(dom.irqs))
    if hvm is not None and hvm.nestedhvm is not None:
        b["nested_hvm"] = defbool(hvm.nestedhvm)
    if hvm is not None and hvm.timer_mode is not None:
        if not 0 <= hvm.timer_mode < len(TIMER_MODES):
            raise ConfigError(f"timer_mode {hvm.timer_mode} is not one of 0-3")
        b["timer_mode"] = TIMER_MODES[hvm.timer_mode]
    if hvm is not None and hvm.apic is not None:
        b["apic"] = defbool(hvm.apic)
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
    pci_defaults = pci_option_defaults(dom)
    _put(cfg, "pcidevs", [pcispec.pci_to_libxl(p, defaults=pci_defaults) for p in dom.pci])
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
    for key in ("pae", "viridian", "hpet", "nographic"):
        value = getattr(hvm, key)
        if value is not None:
            h[key] = defbool(value)
    if hvm.stdvga is not None:
        h["vga"] = {"kind": "std" if hvm.stdvga else "cirrus"}
    g = hvm_graphics(dom)
    _put(h, "vnc", _vnc_json(g))
    _put(h, "keymap", g.get("keymap"))
    _put(h, "sdl", _sdl_json(g))
    _one_or_list(h, "serial", "serial_list", hvm.serial)
    _put(h, "boot", hvm.boot)
    if hvm.usb is not None:
        h["usb"] = defbool(hvm.usb)
    _one_or_list(h, "usbdevice", "usbdevice_list", hvm.usbdevice)
    _put(h, "soundhw", hvm.soundhw)
    if hvm.xen_platform_pci is not None:
        h["xen_platform_pci"] = defbool(hvm.xen_platform_pci)
    if hvm.vpt_align is not None:
        h["vpt_align"] = defbool(hvm.vpt_align)
    return h


def _cpuid_json(text: str) -> Dict[str, Any]:
    """``LEAF[,SUBLEAF]:REG=BITS,...`` as libxl's cpuid policy entry
    (``libxl_cpuid_parse_config_xend``: numbers in C syntax)."""
    leaf, _, regs = text.partition(":")
    first, _, sub = leaf.partition(",")
    d: Dict[str, Any] = {"leaf": int(first, 0)}
    if sub:
        d["subleaf"] = int(sub, 0)
    for reg in regs.split(","):
        name, _, bits = reg.partition("=")
        d[name] = bits
    return d


def _ioports_json(text: str) -> Dict[str, int]:
    first, _, last = text.partition("-")
    a = int(first, 16)
    return {"first": a, "number": int(last or first, 16) - a + 1}
