"""libvirt domain XML (the ``xen``/``libxl`` driver dialect) -> the domain model.

Contract: ``docs/internals.md`` (``domain_from_xml``).  The mapping follows
what libvirt itself concluded from xend sxprs and xl configs (the fixture
corpus ``libvirt/sexpr2xml``, ``xlconfig``, ``xmconfig``, ``xml2sexpr``; see
its README), so that a domain read from libvirt XML lands in the same model
fields as the same domain read from its xend sxpr (``config/sxpr.py``):

* memory is MiB (``<memory>`` -> ``maxmem``, ``<currentMemory>`` ->
  ``memory``, rounded up like libvirt's ``VIR_DIV_UP``);
* every disk gets the legacy ``uname``/``mode``/``device_class`` libvirt's
  sxpr formatter would have sent to xend (``xml2sexpr`` fixtures), plus the
  xl-side fields xl would give the equivalent spec (xl-side.md section 1);
* a vif's ``<target dev>`` becomes ``vifname`` only when libvirt would have
  passed it on (names starting with ``vif`` are generated, libvirt drops them);
* character devices become xend-style strings (``pty``, ``file:/p``,
  ``tcp:h:p,server,nowait`` ...), the inverse of libvirt's sxpr char parser.

Anything the model does not name is kept in the nearest ``extra`` list as
``(xpath, xml text)``; purely implicit elements libvirt adds on its own (see
``_IMPLICIT``) are skipped.  Malformed XML raises :class:`ConfigError` with
lxml's line and column.  Decisions: ``docs/decisions.d/libvirt.md``.
"""
from __future__ import annotations

import logging
import re
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

from lxml import etree

from ...errors import ConfigError, UntranslatableError
from ..model import Disk, Domain, HvmSettings, Nic, PciDev, Vfb

log = logging.getLogger("xen_remus_compat")

__all__ = ["domain_from_xml"]

# --------------------------------------------------------------------------
# Declarative tables
# --------------------------------------------------------------------------

#: ``<os><type>`` -> model domain type.
OS_TYPES = {"linux": "pv", "xen": "pv", "hvm": "hvm", "xenpvh": "pvh"}

#: memory unit -> bytes (libvirt's scaled integers; default KiB).
MEMORY_UNITS = {
    "b": 1, "bytes": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024 ** 2, "mib": 1024 ** 2, "mb": 1000 ** 2,
    "g": 1024 ** 3, "gib": 1024 ** 3, "gb": 1000 ** 3,
    "t": 1024 ** 4, "tib": 1024 ** 4, "tb": 1000 ** 4,
}

#: ``<boot dev>`` -> xend/xl boot letter.
BOOT_DEVS = {"hd": "c", "cdrom": "d", "fd": "a", "network": "n"}

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


# --------------------------------------------------------------------------
# Reader state
# --------------------------------------------------------------------------

@dataclass
class _Ctx:
    source: str
    tree: etree._ElementTree
    dom: Domain
    serial_ports: Dict[int, str] = field(default_factory=dict)
    console_serials: List[Tuple[int, str]] = field(default_factory=list)

    # ---- helpers --------------------------------------------------------
    def error(self, el: Optional[etree._Element], message: str,
              cls=ConfigError) -> Exception:
        line = el.sourceline if el is not None else None
        return cls(message, source=self.source, line=line)

    def keep(self, el: etree._Element, extra: list) -> None:
        """Record an element the model does not name (``extra``)."""
        path = self.tree.getpath(el)
        extra.append((path, etree.tostring(el, with_tail=False,
                                           encoding="unicode")))
        log.debug("%s: kept %s in extra", self.source, path)

    def integer(self, el: etree._Element, text: Optional[str], what: str,
                base: int = 10) -> int:
        try:
            return int((text or "").strip(), base)
        except ValueError:
            raise self.error(el, f"{what}: not an integer: {text!r}") from None

    @property
    def hvm(self) -> HvmSettings:
        if self.dom.hvm is None:
            self.dom.hvm = HvmSettings()
        return self.dom.hvm


def _children(el: etree._Element):
    """Element children only (comments and processing instructions skipped)."""
    return [c for c in el if isinstance(c.tag, str)]


def _video_is_default(el: etree._Element) -> bool:
    models = [c for c in _children(el) if c.tag == "model"]
    if len(_children(el)) != 1 or len(models) != 1:
        return False
    m = models[0]
    return (m.get("type") == "cirrus"
            and m.get("vram") in (None, str(VIDEO_DEFAULT_VRAM["cirrus"]))
            and m.get("heads") in (None, "1"))


def _relpath(ctx: _Ctx, el: etree._Element) -> str:
    path = re.sub(r"\[\d+\]", "", ctx.tree.getpath(el))
    return path[len("/domain/"):] if path.startswith("/domain/") else path


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------

def domain_from_xml(data: Union[str, bytes], *, source: str) -> Domain:
    """Read one libvirt ``<domain>`` document into a :class:`Domain`.

    ``source`` names the input in error messages.  Raises
    :class:`ConfigError` (malformed XML, missing or invalid values) or
    :class:`UntranslatableError` (valid libvirt XML with no xl equivalent,
    e.g. a network disk protocol libvirt's xen driver cannot express).
    """
    root = _parse(data, source)
    tree = root.getroottree()
    if root.tag != "domain":
        raise ConfigError(f"root element is <{root.tag}>, expected <domain>",
                          source=source, line=root.sourceline)
    dom = Domain()
    ctx = _Ctx(source=source, tree=tree, dom=dom)

    virt = root.get("type")
    if virt not in (None, "xen"):
        log.warning("%s: domain type %r is not 'xen'; reading it anyway",
                    source, virt)
        dom.extra.append(("/domain/@type", virt))
    domid = root.get("id")
    if domid is not None:
        value = ctx.integer(root, domid, "domain id")
        dom.domid = value if value >= 0 else None

    # The domain type decides how several elements read, so find it first.
    os_type = root.find("os/type")
    if os_type is not None:
        kind = (os_type.text or "").strip()
        if kind not in OS_TYPES:
            raise ctx.error(os_type, f"unknown <os><type> {kind!r}")
        dom.type = OS_TYPES[kind]
    if dom.type == "hvm":
        dom.hvm = HvmSettings()

    for child in _children(root):
        handler = _DOMAIN_CHILDREN.get(child.tag)
        if handler is None:
            ctx.keep(child, dom.extra)
        else:
            handler(ctx, child)

    _finish(ctx, root)
    return dom


_XML_DECL = re.compile(r"^\ufeff?\s*<\?xml\b[^>]*\?>")


def _parse(data: Union[str, bytes], source: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True,
                             remove_blank_text=False, huge_tree=False)
    if isinstance(data, str):
        # lxml refuses str input that carries an encoding declaration; the
        # text is decoded already, so drop it (its newline stays: lines hold)
        data = _XML_DECL.sub("", data, count=1)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line, col = exc.position if exc.position else (exc.lineno, None)
        raise ConfigError(f"malformed XML: {exc.msg}", source=source,
                          line=line, col=col) from None


# --------------------------------------------------------------------------
# Top-level elements
# --------------------------------------------------------------------------

def _name(ctx: _Ctx, el) -> None:
    ctx.dom.name = (el.text or "").strip()


def _uuid_el(ctx: _Ctx, el) -> None:
    text = (el.text or "").strip()
    try:
        ctx.dom.uuid = str(_uuid.UUID(text))
    except ValueError:
        raise ctx.error(el, f"invalid uuid {text!r}") from None


def _description(ctx: _Ctx, el) -> None:
    ctx.dom.description = el.text or ""


def _memory_mib(ctx: _Ctx, el) -> int:
    unit = (el.get("unit") or "KiB").lower()
    if unit not in MEMORY_UNITS:
        raise ctx.error(el, f"<{el.tag}>: unknown unit {el.get('unit')!r}")
    nbytes = ctx.integer(el, el.text, f"<{el.tag}>") * MEMORY_UNITS[unit]
    if nbytes <= 0:
        raise ctx.error(el, f"<{el.tag}>: memory must be positive, got {el.text!r}")
    mib = -(-nbytes // (1024 * 1024))
    if mib * 1024 * 1024 != nbytes:
        log.debug("%s: <%s> %d bytes rounded up to %d MiB", ctx.source,
                  el.tag, nbytes, mib)
    return mib


def _memory(ctx: _Ctx, el) -> None:
    ctx.dom.maxmem = _memory_mib(ctx, el)


def _current_memory(ctx: _Ctx, el) -> None:
    ctx.dom.memory = _memory_mib(ctx, el)


def _vcpu(ctx: _Ctx, el) -> None:
    dom = ctx.dom
    dom.vcpus = ctx.integer(el, el.text, "<vcpu>")
    current = el.get("current")
    if current is not None:
        dom.vcpus_online = ctx.integer(el, current, "<vcpu current>")
        dom.vcpu_avail = (1 << dom.vcpus_online) - 1
    if el.get("cpuset"):
        dom.cpus = el.get("cpuset")


def _text_field(field_name: str) -> Callable[[_Ctx, etree._Element], None]:
    def handler(ctx: _Ctx, el) -> None:
        setattr(ctx.dom, field_name, el.text or "")
    return handler


def _os(ctx: _Ctx, el) -> None:
    dom = ctx.dom
    boot = []
    for child in _children(el):
        tag = child.tag
        if tag == "type":
            continue                    # read up front; arch/machine implied
        if tag == "kernel":
            dom.kernel = child.text or ""
        elif tag == "initrd":
            dom.ramdisk = child.text or ""
        elif tag == "cmdline":
            dom.cmdline = child.text or ""
        elif tag == "loader" and dom.type == "hvm":
            ctx.hvm.loader = child.text or ""
            if child.get("type") not in (None, "rom"):
                ctx.keep(child, ctx.hvm.extra)
        elif tag == "boot" and dom.type == "hvm":
            dev = child.get("dev")
            if dev not in BOOT_DEVS:
                raise ctx.error(child, f"unknown <boot dev> {dev!r}")
            boot.append(BOOT_DEVS[dev])
        else:
            ctx.keep(child, dom.extra)
    if boot:
        ctx.hvm.boot = "".join(boot)


def _features(ctx: _Ctx, el) -> None:
    present = {c.tag: c for c in _children(el)}
    if ctx.dom.type != "hvm":
        for child in present.values():
            ctx.keep(child, ctx.dom.extra)
        return
    hvm = ctx.hvm
    # libvirt's xen drivers read a missing flag as "off" (xenFormat... writes
    # pae/acpi/apic/viridian = 0); hap is a tristate, unset when absent.
    for name in ("acpi", "apic", "pae", "viridian"):
        child = present.pop(name, None)
        setattr(hvm, name, child is not None and child.get("state") != "off")
    hap = present.pop("hap", None)
    if hap is not None:
        hvm.hap = hap.get("state") != "off"
    for child in present.values():
        ctx.keep(child, hvm.extra)


def _clock(ctx: _Ctx, el) -> None:
    dom = ctx.dom
    offset = el.get("offset", "utc")
    if offset == "utc":
        localtime = False
    elif offset == "localtime":
        localtime = True
    elif offset == "variable":
        localtime = el.get("basis", "utc") == "localtime"
        adjustment = el.get("adjustment")
        if adjustment not in (None, "reset"):
            value = ctx.integer(el, adjustment, "<clock adjustment>")
            if dom.type == "hvm":
                ctx.hvm.rtc_timeoffset = value
            elif value:
                ctx.keep(el, dom.extra)
    else:                               # timezone, absolute: no xl equivalent
        ctx.keep(el, dom.extra)
        return
    dom.localtime = localtime
    if dom.type == "hvm":
        ctx.hvm.localtime = localtime
    for timer in _children(el):
        if timer.tag == "timer" and timer.get("name") == "hpet" \
                and dom.type == "hvm":
            ctx.hvm.hpet = timer.get("present", "yes") != "no"
        else:
            ctx.keep(timer, dom.extra)


def _cputune(ctx: _Ctx, el) -> None:
    for child in _children(el):
        if child.tag == "shares":
            ctx.dom.cpu_weight = ctx.integer(child, child.text, "<shares>")
        else:
            ctx.keep(child, ctx.dom.extra)


def _devices(ctx: _Ctx, el) -> None:
    for child in _children(el):
        implicit = _IMPLICIT.get(_relpath(ctx, child))
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

def _disk(ctx: _Ctx, el) -> None:
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
    for child in _children(el):
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


def _disk_source(ctx: _Ctx, el, kind: str) -> Optional[str]:
    src = el.find("source")
    if kind == "file":
        return src.get("file") if src is not None else None
    if kind == "block":
        return src.get("dev") if src is not None else None
    if kind == "network":
        return _network_source(ctx, src)
    raise ctx.error(el, f"disk type {kind!r} has no xl equivalent",
                    UntranslatableError)


def _network_source(ctx: _Ctx, src) -> str:
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

def _interface(ctx: _Ctx, el) -> None:
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
    for child in _children(el):
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
            for sub in _children(child):
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


def _hostdev_nic(ctx: _Ctx, el) -> None:
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

def _graphics(ctx: _Ctx, el) -> None:
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
        for child in _children(el):
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


def _input(ctx: _Ctx, el) -> None:
    kind, bus = el.get("type"), el.get("bus")
    if bus == "usb" and kind in ("mouse", "tablet") and ctx.dom.type == "hvm":
        ctx.hvm.usb = True
        ctx.hvm.usbdevice.append(kind)
    else:
        ctx.keep(el, ctx.dom.extra)


def _sound(ctx: _Ctx, el) -> None:
    if ctx.dom.type != "hvm":
        ctx.keep(el, ctx.dom.extra)
        return
    hvm = ctx.hvm
    model = el.get("model")
    hvm.soundhw = model if not hvm.soundhw else f"{hvm.soundhw},{model}"


def _video(ctx: _Ctx, el) -> None:
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


def _emulator(ctx: _Ctx, el) -> None:
    if ctx.dom.type == "hvm":
        ctx.hvm.device_model = el.text or ""
    else:
        ctx.keep(el, ctx.dom.extra)     # PV qemu for vfb: xl picks its own


def _chr_string(ctx: _Ctx, el) -> Optional[str]:
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


def _port(ctx: _Ctx, el, default: int) -> int:
    target = el.find("target")
    if target is not None and target.get("port") is not None:
        return ctx.integer(target, target.get("port"), "<target port>")
    return default


def _serial(ctx: _Ctx, el) -> None:
    text = _chr_string(ctx, el)
    if text is None:
        ctx.keep(el, ctx.dom.extra)
        return
    port = _port(ctx, el, default=len(ctx.serial_ports))
    ctx.serial_ports[port] = text


def _console(ctx: _Ctx, el) -> None:
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


def _parallel(ctx: _Ctx, el) -> None:
    text = _chr_string(ctx, el)
    if text is None or ctx.dom.type != "hvm":
        ctx.keep(el, ctx.dom.extra)
        return
    ctx.hvm.parallel.append(text)


def _pci_address(ctx: _Ctx, addr) -> PciDev:
    def num(attr: str) -> int:
        return ctx.integer(addr, addr.get(attr, "0"), f"pci {attr}", 0)
    return PciDev(domain=num("domain"), bus=num("bus"), slot=num("slot"),
                  func=num("function"))


def _hostdev(ctx: _Ctx, el) -> None:
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


# --------------------------------------------------------------------------
# Finishing touches
# --------------------------------------------------------------------------

def _finish(ctx: _Ctx, root) -> None:
    dom = ctx.dom
    if not dom.name:
        raise ctx.error(root, "<domain> has no <name>")
    if dom.maxmem is None and dom.memory is not None:
        dom.maxmem = dom.memory
    if dom.memory is None and dom.maxmem is not None:
        dom.memory = dom.maxmem
    if dom.type == "hvm":
        # no <features> at all: every flag is off, as in _features
        for name in ("acpi", "apic", "pae", "viridian"):
            if getattr(ctx.hvm, name) is None:
                setattr(ctx.hvm, name, False)
        if not dom.vfbs:
            # libvirt's libxl driver switches HVM VNC and SDL off unless a
            # <graphics> asks for them; libxl alone would enable VNC
            dom.vfbs.append(Vfb(type="vnc", vnc=False, sdl=False,
                                origin="image"))
    ports = dict(ctx.serial_ports)
    for port, text in ctx.console_serials:
        ports.setdefault(port, text)
    if ports:
        serial = ["none"] * (max(ports) + 1)
        for port, text in ports.items():
            serial[port] = text
        if dom.type == "hvm":
            ctx.hvm.serial = serial
        else:
            dom.serial = serial


_DOMAIN_CHILDREN: Dict[str, Callable[[_Ctx, etree._Element], None]] = {
    "name": _name,
    "uuid": _uuid_el,
    "description": _description,
    "memory": _memory,
    "currentMemory": _current_memory,
    "vcpu": _vcpu,
    "bootloader": _text_field("bootloader"),
    "bootloader_args": _text_field("bootloader_args"),
    "os": _os,
    "features": _features,
    "clock": _clock,
    "on_poweroff": _text_field("on_poweroff"),
    "on_reboot": _text_field("on_reboot"),
    "on_crash": _text_field("on_crash"),
    "cputune": _cputune,
    "devices": _devices,
}

_DEVICE_CHILDREN: Dict[str, Callable[[_Ctx, etree._Element], None]] = {
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
