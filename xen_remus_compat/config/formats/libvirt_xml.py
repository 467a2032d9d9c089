"""libvirt domain XML (the ``xen``/``libxl`` driver dialect) -> the domain model.

Contract: ``docs/internals.md`` (``domain_from_xml``).  The mapping follows
what libvirt itself concluded from xend sxprs and xl configs (the fixture
corpus ``libvirt/sexpr2xml``, ``xlconfig``, ``xmconfig``, ``xml2sexpr``; see
its README), so that a domain read from libvirt XML lands in the same model
fields as the same domain read from its xend sxpr (``config/formats/sxpr.py``):

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
lxml's line and column.  This module reads the document and the domain-level
elements; ``libvirt_xml_devices.py`` reads ``<devices>``, with the reader
state of ``libvirt_xml_ctx.py``.  Decisions: ``docs/decisions.d/libvirt.md``.
"""
from __future__ import annotations

import logging
import re
import uuid as _uuid
from typing import Callable, Dict, Union

from lxml import etree

from .. import limits
from ...errors import ConfigError
from ..model import Domain, HvmSettings, Vfb
from .libvirt_xml_ctx import Ctx, element_children
from .libvirt_xml_devices import (CHR_BARE, DISK_DRIVERS, DISK_FORMATS, GENERATED_VIF_PREFIX,
                                  TAP_UNAME_FORMATS, UNAME_BY_DISK_TYPE, VIDEO_DEFAULT_VRAM,
                                  DriverRule, read_devices)

log = logging.getLogger("xen_remus_compat")

__all__ = ["domain_from_xml",
           # the device tables (libvirt_xml_devices.py)
           "DISK_FORMATS", "DriverRule", "DISK_DRIVERS", "UNAME_BY_DISK_TYPE",
           "TAP_UNAME_FORMATS", "VIDEO_DEFAULT_VRAM", "CHR_BARE", "GENERATED_VIF_PREFIX"]

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
    ctx = Ctx(source=source, tree=tree, dom=dom)

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

    for child in element_children(root):
        handler = _DOMAIN_CHILDREN.get(child.tag)
        if handler is None:
            ctx.keep(child, dom.extra)
        else:
            handler(ctx, child)

    _finish(ctx, root)
    limits.check_domain(dom, fail=lambda m: ctx.error(root, m))
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

def _name(ctx: Ctx, el) -> None:
    ctx.dom.name = (el.text or "").strip()


def _uuid_el(ctx: Ctx, el) -> None:
    text = (el.text or "").strip()
    try:
        ctx.dom.uuid = str(_uuid.UUID(text))
    except ValueError:
        raise ctx.error(el, f"invalid uuid {text!r}") from None


def _description(ctx: Ctx, el) -> None:
    ctx.dom.description = el.text or ""


def _memory_mib(ctx: Ctx, el) -> int:
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


def _memory(ctx: Ctx, el) -> None:
    ctx.dom.maxmem = _memory_mib(ctx, el)


def _current_memory(ctx: Ctx, el) -> None:
    ctx.dom.memory = _memory_mib(ctx, el)


def _vcpu(ctx: Ctx, el) -> None:
    dom = ctx.dom
    dom.vcpus = ctx.integer(el, el.text, "<vcpu>")
    current = el.get("current")
    if current is not None:
        dom.vcpus_online = ctx.integer(el, current, "<vcpu current>")
        dom.vcpu_avail = (1 << dom.vcpus_online) - 1
    if el.get("cpuset"):
        dom.cpus = el.get("cpuset")


def _text_field(field_name: str) -> Callable[[Ctx, etree._Element], None]:
    def handler(ctx: Ctx, el) -> None:
        setattr(ctx.dom, field_name, el.text or "")
    return handler


def _os(ctx: Ctx, el) -> None:
    dom = ctx.dom
    boot = []
    for child in element_children(el):
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


def _features(ctx: Ctx, el) -> None:
    present = {c.tag: c for c in element_children(el)}
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


def _clock(ctx: Ctx, el) -> None:
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
    for timer in element_children(el):
        if timer.tag == "timer" and timer.get("name") == "hpet" \
                and dom.type == "hvm":
            ctx.hvm.hpet = timer.get("present", "yes") != "no"
        else:
            ctx.keep(timer, dom.extra)


def _cputune(ctx: Ctx, el) -> None:
    for child in element_children(el):
        if child.tag == "shares":
            ctx.dom.cpu_weight = ctx.integer(child, child.text, "<shares>")
        else:
            ctx.keep(child, ctx.dom.extra)



# --------------------------------------------------------------------------
# Finishing touches
# --------------------------------------------------------------------------

def _finish(ctx: Ctx, root) -> None:
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


_DOMAIN_CHILDREN: Dict[str, Callable[[Ctx, etree._Element], None]] = {
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
    "devices": read_devices,
}
