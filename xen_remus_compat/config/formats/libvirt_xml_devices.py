"""libvirt ``<devices>`` children (the ``xen``/``libxl`` driver dialect) ->
the domain model's devices.

Part of the libvirt domain XML reader (``libvirt_xml.py``, contract in
``docs/internals.md``), following what libvirt itself concluded from xend
sxprs and xl configs (fixture corpus ``libvirt/sexpr2xml``, ``xlconfig``,
``xml2sexpr``): every disk gets the legacy ``uname``/``mode``/
``device_class`` libvirt's sxpr formatter would have sent to xend plus the
xl-side fields (xl-side.md section 1); a vif's ``<target dev>`` becomes
``vifname`` only when libvirt would have passed it on; character devices
become xend-style strings (``pty``, ``file:/p``, ``tcp:h:p,server,nowait``
...), the inverse of libvirt's sxpr char parser.  Decisions:
``docs/decisions.d/libvirt.md``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from lxml import etree

from ...errors import UntranslatableError
from ..model import Disk, Nic, PciDev, Vfb
from .libvirt_xml_ctx import Ctx, element_children, relpath

log = logging.getLogger("xen_remus_compat")

__all__ = ["read_devices"]

# --------------------------------------------------------------------------
# Declarative tables
# --------------------------------------------------------------------------

#: ``<driver type>`` -> libxl disk format (``aio`` is older libvirt's name
#: for raw blktap images; ``vpc`` is libvirt's storage name for VHD).
DISK_FORMATS = {"aio": "raw", "raw": "raw", "qcow": "qcow", "qcow2": "qcow2",
                "vhd": "vhd", "vpc": "vhd", "qed": "qed"}


@dataclass(frozen=True)
class DriverRule:
    """How one ``<driver name>`` maps to xend and to libxl."""

    device_class: str            # xend device controller
    uname_style: str             # "prefix", "tap" or "by-type"
    backend: Optional[str]       # libxl backend; None = let libxl choose


#: ``<driver name>`` -> rule.  ``file``/``tap``/``tap2`` are xend-era names:
#: xl ignores the equivalent legacy prefixes and auto-selects a backend
#: (xl-side.md 1.4, 1.7; 4.17 has no working ``tap`` backend), so the model
#: leaves the backend unset.  ``phy`` and ``qemu`` are explicit backend
#: choices in libvirt's libxl driver (``libxlMakeDisk``).  ``None`` is a disk
#: without ``<driver>``.
DISK_DRIVERS: Dict[Optional[str], DriverRule] = {
    None: DriverRule("vbd", "by-type", None),
    "file": DriverRule("vbd", "prefix", None),
    "phy": DriverRule("vbd", "prefix", "phy"),
    "tap": DriverRule("tap", "tap", None),
    "tap2": DriverRule("tap2", "tap", None),
    "qemu": DriverRule("vbd", "by-type", "qdisk"),
}

#: uname prefix for a disk whose driver does not name one (``by-type``).
UNAME_BY_DISK_TYPE = {"file": "file", "block": "phy"}

#: formats xend's blktap knew as ``tap:<fmt>:`` (xl accepts them as prefixes).
TAP_UNAME_FORMATS = {"raw": "aio", "qcow": "qcow", "qcow2": "qcow2", "vhd": "vhd"}

#: libvirt's default VGA RAM (KiB) per video model; an equal value is implicit.
VIDEO_DEFAULT_VRAM = {"cirrus": 8192, "vga": 16384}

#: character-device types whose xend string is just the type name.
CHR_BARE = ("null", "stdio", "vc", "pty")

#: elements libvirt adds on its own (implicit devices, cosmetic output);
#: path relative to ``/domain`` -> predicate on the element.
_IMPLICIT: Dict[str, Callable[[etree._Element], bool]] = {
    "devices/memballoon": lambda e: e.get("model") in ("xen", None),
    "devices/controller": lambda e: e.get("type") in ("xenbus", "ide"),
    "devices/input": lambda e: (e.get("bus") in ("ps2", "xen")
                                and e.get("type") in ("mouse", "keyboard")),
    "devices/video": lambda e: _video_is_default(e),
}

#: child elements of devices that carry nothing the model needs: guest bus
#: addresses and aliases libvirt assigns, and the empty backing chain.
_COSMETIC_CHILDREN = ("address", "alias", "backingStore")

#: vif names libvirt generates itself (``VIR_NET_GENERATED_VIF_PREFIX``).
GENERATED_VIF_PREFIX = "vif"


def _video_is_default(el: etree._Element) -> bool:
    models = [c for c in element_children(el) if c.tag == "model"]
    if len(element_children(el)) != 1 or len(models) != 1:
        return False
    m = models[0]
    return (m.get("type") == "cirrus"
            and m.get("vram") in (None, str(VIDEO_DEFAULT_VRAM["cirrus"]))
            and m.get("heads") in (None, "1"))


def read_devices(ctx: Ctx, el) -> None:
    """``<devices>``: each child by its reader, implicit ones skipped."""
    for child in element_children(el):
        implicit = _IMPLICIT.get(relpath(ctx, child))
        if implicit is not None and implicit(child):
            continue
        handler = _DEVICE_CHILDREN.get(child.tag)
        if handler is None:
            ctx.keep(child, ctx.dom.extra)
        else:
            handler(ctx, child)


# --------------------------------------------------------------------------
# Disks
# --------------------------------------------------------------------------

def _disk(ctx: Ctx, el) -> None:
    device = el.get("device", "disk")
    if device == "floppy":
        ctx.keep(el, ctx.dom.extra)     # xl has no floppy
        return
    cdrom = device == "cdrom"
    kind = el.get("type", "file")
    driver_el = el.find("driver")
    drv_name = driver_el.get("name") if driver_el is not None else None
    drv_type = driver_el.get("type") if driver_el is not None else None
    rule = DISK_DRIVERS.get(drv_name)
    if rule is None:
        raise ctx.error(driver_el, f"disk driver {drv_name!r} is not one "
                        "libvirt's xen drivers know", UntranslatableError)
    if drv_type is None:
        fmt = "raw"
    elif drv_type in DISK_FORMATS:
        fmt = DISK_FORMATS[drv_type]
    else:
        raise ctx.error(driver_el, f"disk format {drv_type!r} has no xl "
                        "equivalent", UntranslatableError)

    target_el = el.find("target")
    if target_el is None or not target_el.get("dev"):
        raise ctx.error(el, "<disk> without <target dev>")
    vdev = target_el.get("dev")
    if vdev.startswith("ioemu:"):
        vdev = vdev[len("ioemu:"):]

    path = _disk_source(ctx, el, kind)
    readonly = el.find("readonly") is not None or cdrom
    shareable = el.find("shareable") is not None
    mode = "r" if readonly else ("w!" if shareable else "w")

    # libxl runs HVM CD-ROMs on qdisk and refuses phy for an empty one, so a
    # CD-ROM keeps only the qdisk choice (decisions.d/libvirt.md)
    backend = rule.backend if not cdrom or rule.backend == "qdisk" else None
    disk = Disk(vdev=vdev, target=path, format=fmt,
                readwrite=not readonly, is_cdrom=cdrom, removable=cdrom,
                backend=backend, device_class=rule.device_class,
                mode=mode, shareable=shareable)
    if cdrom and not path:
        disk.format = "empty"
    if kind in ("file", "block"):
        disk.uname = _legacy_uname(rule, drv_name, kind, fmt, path)
    backend_dom = el.find("backenddomain")
    if backend_dom is not None:
        disk.backend_domname = backend_dom.get("name")
    if driver_el is not None and driver_el.get("discard") in ("unmap", "ignore"):
        disk.discard_enable = driver_el.get("discard") == "unmap"

    handled = {"driver", "source", "target", "readonly", "shareable",
               "backenddomain", *_COSMETIC_CHILDREN}
    for child in element_children(el):
        if child.tag not in handled:
            ctx.keep(child, disk.extra)
    ctx.dom.disks.append(disk)


def _legacy_uname(rule: DriverRule, drv_name: Optional[str], kind: str,
                  fmt: str, path: Optional[str]) -> Optional[str]:
    """The uname libvirt's sxpr formatter would have sent to xend.

    ``xml2sexpr`` fixtures: ``tap``/``tap2`` -> ``tap:<type|aio>:path``,
    other drivers -> ``<driver>:path``, no driver -> ``file:``/``phy:`` by
    disk type.  libxl-era ``qemu`` disks (which xend never knew) take the
    xend spelling of the same image: ``file:``/``phy:`` for raw,
    ``tap:<fmt>:`` for formats xend's blktap read, none for qed.
    """
    if not path:
        return None                     # source-less cdrom: no uname at all
    if rule.uname_style == "tap":
        tap_fmt = TAP_UNAME_FORMATS.get(fmt)
        return f"{drv_name}:{tap_fmt}:{path}" if tap_fmt else None
    if rule.uname_style == "prefix":
        return f"{drv_name}:{path}"
    if fmt != "raw":
        tap_fmt = TAP_UNAME_FORMATS.get(fmt)
        return f"tap:{tap_fmt}:{path}" if tap_fmt else None
    prefix = UNAME_BY_DISK_TYPE[kind]
    if prefix == "phy" and not path.startswith("/"):
        path = "/dev/" + path
    return f"{prefix}:{path}"


def _disk_source(ctx: Ctx, el, kind: str) -> Optional[str]:
    src = el.find("source")
    if kind == "file":
        return src.get("file") if src is not None else None
    if kind == "block":
        return src.get("dev") if src is not None else None
    if kind == "network":
        return _network_source(ctx, src)
    raise ctx.error(el, f"disk type {kind!r} has no xl equivalent",
                    UntranslatableError)


def _network_source(ctx: Ctx, src) -> str:
    """An RBD ``<source>`` as the qdisk target string libvirt writes for xl.

    Only RBD is expressible (libvirt's ``xenFormatXLDiskSrcNet``): ``rbd:``
    image, then ``:id=`` or ``:auth_supported=none``, ``:mon_host=`` with
    ``\\;``-separated hosts and ``\\:`` before ports (qemu's escapes, kept
    literally in the target), ``:conf=``.
    """
    if src is None or src.get("protocol") != "rbd":
        protocol = src.get("protocol") if src is not None else None
        raise ctx.error(src, f"network disk protocol {protocol!r} has no xl "
                        "equivalent (libvirt's xen driver supports rbd only)",
                        UntranslatableError)
    name = src.get("name") or ""
    if ":" in name:
        raise ctx.error(src, f"rbd image name {name!r} contains ':'",
                        UntranslatableError)
    parts = [f"rbd:{name}"]
    auth = src.find("auth")
    if auth is None:
        auth = src.getparent().find("auth")
    if auth is not None and auth.get("username"):
        parts.append(f":id={auth.get('username')}")
        log.warning("%s: rbd secret is not carried over; supply the key "
                    "by hand", ctx.source)
    else:
        parts.append(":auth_supported=none")
    hosts = []
    for host in src.findall("host"):
        hname = host.get("name") or ""
        if ":" in hname:
            hname = "[" + hname.replace(":", "\\:") + "]"
        if host.get("port"):
            hname += "\\:" + host.get("port")
        hosts.append(hname)
    if hosts:
        parts.append(":mon_host=" + "\\;".join(hosts))
    config = src.find("config")
    if config is not None and config.get("file"):
        parts.append(":conf=" + config.get("file"))
    return "".join(parts)


# --------------------------------------------------------------------------
# Network interfaces
# --------------------------------------------------------------------------

def _interface(ctx: Ctx, el) -> None:
    kind = el.get("type")
    if kind == "hostdev":
        _hostdev_nic(ctx, el)
        return
    if kind not in ("bridge", "ethernet"):
        raise ctx.error(el, f"interface type {kind!r} has no xl equivalent "
                        "(only bridge, ethernet and hostdev)",
                        UntranslatableError)
    nic = Nic()
    ips: List[str] = []
    vlan_suffix = ""
    ovs = False
    for child in element_children(el):
        tag = child.tag
        if tag == "mac":
            nic.mac = (child.get("address") or "").lower() or None
        elif tag == "source" and kind == "bridge":
            nic.bridge = child.get("bridge")
        elif tag == "ip":
            ips.append(child.get("address"))
        elif tag == "script":
            nic.script = child.get("path")
        elif tag == "model":
            model = child.get("type")
            if model == "netfront":
                nic.type = "netfront"
            else:
                nic.model = model
        elif tag == "target":
            name = child.get("dev")
            if name and not name.startswith(GENERATED_VIF_PREFIX):
                nic.vifname = name
        elif tag == "bandwidth":
            out = child.find("outbound")
            if out is not None and out.get("average"):
                avg = ctx.integer(out, out.get("average"), "outbound average")
                nic.rate = f"{avg}KB/s"
            for sub in element_children(child):
                if sub.tag != "outbound":
                    ctx.keep(sub, nic.extra)
        elif tag == "vlan":
            tags = [t.get("id") for t in child.findall("tag")]
            if child.get("trunk") == "yes":
                vlan_suffix = "".join(f":{t}" for t in tags)
            elif tags:
                vlan_suffix = f".{tags[0]}"
        elif tag == "virtualport" and child.get("type") == "openvswitch":
            ovs = True
        elif tag == "backenddomain":
            nic.backend = child.get("name")
        elif tag == "mtu":
            nic.mtu = ctx.integer(child, child.get("size"), "<mtu size>")
        elif tag in _COSMETIC_CHILDREN:
            continue
        else:
            ctx.keep(child, nic.extra)
    if ips:
        nic.ip = " ".join(ips)
    if vlan_suffix and nic.bridge:
        # libxl's bridge field carries the VLAN: BRIDGE[.VLAN][:TRUNK:TRUNK]
        nic.bridge += vlan_suffix
    if ovs and nic.script is None:
        nic.script = "vif-openvswitch"
    ctx.dom.nics.append(nic)


def _hostdev_nic(ctx: Ctx, el) -> None:
    """``<interface type='hostdev'>``: a passed-through PCI NIC (libvirt's
    libxl driver turns it into a pcidev; xl has no MAC for it)."""
    addr = el.find("source/address")
    if addr is None:
        raise ctx.error(el, "hostdev interface without <source><address>")
    pci = _pci_address(ctx, addr)
    ctx.dom.pci.append(pci)
    mac = el.find("mac")
    if mac is not None:
        ctx.keep(mac, pci.extra)


# --------------------------------------------------------------------------
# Graphics, input, sound, video, character devices, host devices
# --------------------------------------------------------------------------

def _graphics(ctx: Ctx, el) -> None:
    kind = el.get("type")
    if kind == "vnc":
        port_text = el.get("port")
        port = ctx.integer(el, port_text, "<graphics port>") \
            if port_text is not None else -1
        autoport = el.get("autoport") == "yes" or port < 0
        listen = el.get("listen")
        if listen is None:
            lst = el.find("listen[@type='address']")
            if lst is not None:
                listen = lst.get("address")
        vfb = Vfb(type="vnc", vnc=True, sdl=False, vncunused=autoport,
                  vnclisten=listen,
                  vncpasswd=el.get("passwd"), keymap=el.get("keymap"))
        if not autoport and port >= 5900:
            vfb.vncdisplay = port - 5900
        for child in element_children(el):
            if child.tag != "listen":
                ctx.keep(child, vfb.extra)
    elif kind == "sdl":
        vfb = Vfb(type="sdl", vnc=False, sdl=True, display=el.get("display"),
                  xauthority=el.get("xauth"))
        gl = el.find("gl")
        if gl is not None:
            vfb.opengl = gl.get("enable") == "yes"
    else:
        ctx.keep(el, ctx.dom.extra)     # spice, rdp, ...: not modelled
        return
    ctx.dom.vfbs.append(vfb)


def _input(ctx: Ctx, el) -> None:
    kind, bus = el.get("type"), el.get("bus")
    if bus == "usb" and kind in ("mouse", "tablet") and ctx.dom.type == "hvm":
        ctx.hvm.usb = True
        ctx.hvm.usbdevice.append(kind)
    else:
        ctx.keep(el, ctx.dom.extra)


def _sound(ctx: Ctx, el) -> None:
    if ctx.dom.type != "hvm":
        ctx.keep(el, ctx.dom.extra)
        return
    hvm = ctx.hvm
    model = el.get("model")
    hvm.soundhw = model if not hvm.soundhw else f"{hvm.soundhw},{model}"


def _video(ctx: Ctx, el) -> None:
    model = el.find("model")
    if ctx.dom.type != "hvm" or model is None:
        ctx.keep(el, ctx.dom.extra)
        return
    kind = model.get("type")
    if kind == "vga":
        ctx.hvm.stdvga = True
    elif kind != "cirrus":
        ctx.keep(el, ctx.hvm.extra)
        return
    vram = model.get("vram")
    if vram is not None and vram != str(VIDEO_DEFAULT_VRAM[kind]):
        ctx.hvm.videoram = -(-ctx.integer(model, vram, "video vram") // 1024)


def _emulator(ctx: Ctx, el) -> None:
    if ctx.dom.type == "hvm":
        ctx.hvm.device_model = el.text or ""
    else:
        ctx.keep(el, ctx.dom.extra)     # PV qemu for vfb: xl picks its own


def _chr_string(ctx: Ctx, el) -> Optional[str]:
    """The xend string for a character device (libvirt xenFormatSxprChr)."""
    kind = el.get("type", "pty")
    sources = el.findall("source")
    src = sources[0] if sources else None
    if kind in CHR_BARE:
        return kind
    if kind in ("file", "pipe"):
        return f"{kind}:{src.get('path')}" if src is not None else None
    if kind == "dev":
        return src.get("path") if src is not None else None
    if kind == "tcp" and src is not None:
        proto = el.find("protocol")
        name = "telnet" if proto is not None and proto.get("type") == "telnet" \
            else "tcp"
        listen = ",server,nowait" if src.get("mode") == "bind" else ""
        return f"{name}:{src.get('host') or ''}:{src.get('service') or ''}{listen}"
    if kind == "udp":
        by_mode = {s.get("mode", "connect"): s for s in sources}
        conn = by_mode.get("connect")
        bind = by_mode.get("bind")
        text = f"udp:{_hs(conn, 'host')}:{_hs(conn, 'service')}"
        if bind is not None:
            text += f"@{_hs(bind, 'host')}:{_hs(bind, 'service')}"
        return text
    if kind == "unix" and src is not None:
        listen = ",server,nowait" if src.get("mode") == "bind" else ""
        return f"unix:{src.get('path')}{listen}"
    return None


def _hs(el, attr: str) -> str:
    return (el.get(attr) or "") if el is not None else ""


def _port(ctx: Ctx, el, default: int) -> int:
    target = el.find("target")
    if target is not None and target.get("port") is not None:
        return ctx.integer(target, target.get("port"), "<target port>")
    return default


def _serial(ctx: Ctx, el) -> None:
    text = _chr_string(ctx, el)
    if text is None:
        ctx.keep(el, ctx.dom.extra)
        return
    port = _port(ctx, el, default=len(ctx.serial_ports))
    ctx.serial_ports[port] = text


def _console(ctx: Ctx, el) -> None:
    target = el.find("target")
    ttype = target.get("type") if target is not None else None
    if ctx.dom.type == "hvm" and ttype in (None, "serial"):
        # an alias of a serial port; on its own it implies one (libvirt)
        text = _chr_string(ctx, el)
        if text is not None:
            ctx.console_serials.append((_port(ctx, el, 0), text))
            return
    elif ttype in (None, "xen") and el.get("type", "pty") == "pty":
        return                          # the PV console every domain has
    ctx.keep(el, ctx.dom.extra)


def _parallel(ctx: Ctx, el) -> None:
    text = _chr_string(ctx, el)
    if text is None or ctx.dom.type != "hvm":
        ctx.keep(el, ctx.dom.extra)
        return
    ctx.hvm.parallel.append(text)


def _pci_address(ctx: Ctx, addr) -> PciDev:
    def num(attr: str) -> int:
        return ctx.integer(addr, addr.get(attr, "0"), f"pci {attr}", 0)
    return PciDev(domain=num("domain"), bus=num("bus"), slot=num("slot"),
                  func=num("function"))


def _hostdev(ctx: Ctx, el) -> None:
    if el.get("mode", "subsystem") != "subsystem" or el.get("type") != "pci":
        ctx.keep(el, ctx.dom.extra)     # usb passthrough etc.: not modelled
        return
    src = el.find("source")
    addr = src.find("address") if src is not None else None
    if addr is None:
        raise ctx.error(el, "pci <hostdev> without <source><address>")
    pci = _pci_address(ctx, addr)
    filtering = src.get("writeFiltering")
    if filtering in ("yes", "no"):
        pci.options.append(("permissive", "0" if filtering == "yes" else "1"))
    if el.get("managed") == "yes":
        pci.extra.append((ctx.tree.getpath(el) + "/@managed", "yes"))
    ctx.dom.pci.append(pci)



_DEVICE_CHILDREN: Dict[str, Callable[[Ctx, etree._Element], None]] = {
    "emulator": _emulator,
    "disk": _disk,
    "interface": _interface,
    "graphics": _graphics,
    "input": _input,
    "sound": _sound,
    "video": _video,
    "serial": _serial,
    "console": _console,
    "parallel": _parallel,
    "hostdev": _hostdev,
}
