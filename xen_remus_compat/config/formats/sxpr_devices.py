"""xend ``(device ...)`` elements -> the domain model's devices.

Part of the sxpr reader (``formats/sxpr.py``, contract in
``docs/internals.md``): one reader per xend device class (legacy-api.md
section 11.5; XendConfig 4.3 ``_sxp_to_xapi``/``device_add``), the meaning
of each class's keys taken from the specs modules: disk unames from
``specs/diskspec.py``, vif keys from ``specs/vifspec.py``, PCI keys
(including xend's virtual slot, ``vdevfn``/``vslot``) from ``specs/pci.py``,
so that a device read from xend and the same device read from libxl JSON
land in the same model fields.  Whatever the model does not name is kept in
``<device>.extra`` as ``(key, [values...])``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple

from ..common import vfb_type
from ..model import Disk, Domain, PciDev, Vfb
from ..specs import diskspec, vifspec
from ..specs import pci as pcispec
from .sxpr_values import (Ctx, as_flag, as_int, as_text, children, field_setter,
                          is_elem, maybe_int, plain, scalar, short, tail)

__all__ = ["read_device", "add_image_cdrom", "VFB_KEYS"]


# --------------------------------------------------------------------------
# Framebuffer keys (also read inside an HVM or PV image, xend 3.x)
# --------------------------------------------------------------------------

def _vfb_kind(ctx: Ctx, path: str, vfb: Vfb, v: Any) -> None:
    """An explicit ``(type vnc|sdl)``."""
    t = as_text(ctx, path, v)
    if t not in ("vnc", "sdl"):
        raise ctx.error(path, f"unknown vfb type {t!r} (expected vnc or sdl)")
    vfb.type = t


#: vfb key -> handler(ctx, path, vfb, elem) (XendConfig vfb / image keys).
VFB_KEYS: Dict[str, Callable] = {
    "vnc": field_setter("vnc", as_flag),
    "sdl": field_setter("sdl", as_flag),
    "vncunused": field_setter("vncunused", as_flag),
    "vnclisten": field_setter("vnclisten", as_text),
    "vncdisplay": field_setter("vncdisplay", lambda c, p, v: as_int(c, p, v)),
    "vncpasswd": field_setter("vncpasswd", as_text),
    "keymap": field_setter("keymap", as_text),
    "display": field_setter("display", as_text),
    "xauthority": field_setter("xauthority", as_text),
    "opengl": field_setter("opengl", as_flag),
}


# --------------------------------------------------------------------------
# (device (CLASS ...))
# --------------------------------------------------------------------------

def _props(ctx: Ctx, path: str, elem: Sequence) -> List[Tuple[str, Any]]:
    out: List[Tuple[str, Any]] = []
    for item in children(elem):
        if not is_elem(item):
            if item == [] or item == ():
                continue
            raise ctx.error(path, f"unexpected bare value {short(item)}")
        out.append((item[0], item))
    return out


def read_device(ctx: Ctx, path: str, dom: Domain, elem: Sequence) -> None:
    """One ``(device (CLASS ...))`` into *dom*; classes without a reader
    are kept whole in ``dom.extra`` as ``("device", tail)``."""
    kids = [k for k in children(elem) if k != [] and k != ()]
    if len(kids) != 1 or not is_elem(kids[0]):
        raise ctx.error(path, f"expected one (class ...) element, got {short(kids)}")
    dev = kids[0]
    cls = dev[0]
    dpath = f"{path}/{cls}"
    reader = _DEVICES.get(cls)
    if reader is None:
        dom.extra.append(("device", tail(elem)))
        return
    reader(ctx, dpath, dom, dev, elem)


# ---- vbd, tap, tap2 -------------------------------------------------------

def _disk_backend(ctx: Ctx, path: str, disk: Disk, elem: Sequence) -> None:
    """A backend domain id, or a backend domain name."""
    v = scalar(ctx, path, elem)
    n = maybe_int(v)
    if n is not None:
        disk.backend_domid = n
    elif as_text(ctx, path, v) is not None:
        disk.backend_domname = as_text(ctx, path, v)


def _disk_bootable(ctx: Ctx, path: str, disk: Disk, elem: Sequence) -> None:
    # the first one counts: xend wrote it twice (pv-vfb-type-crash), same value
    if disk.bootable is None:
        disk.bootable = as_int(ctx, path, scalar(ctx, path, elem))


#: Disk keys besides the (uname, dev, mode) triple -> handler.
_DISK_KEYS: Dict[str, Callable] = {
    "backend": _disk_backend,
    "uuid": field_setter("uuid", as_text),
    "bootable": _disk_bootable,
    "protocol": field_setter("protocol", as_text),
}


def _read_disk(ctx: Ctx, path: str, dom: Domain, dev: Sequence,
               whole: Sequence) -> None:
    props = _props(ctx, path, dev)
    found: Dict[str, Any] = {}
    rest: List[Tuple[str, Any]] = []
    for key, item in props:
        if key in ("uname", "dev", "mode") and key not in found:
            found[key] = as_text(ctx, f"{path}/{key}", scalar(ctx, f"{path}/{key}", item))
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
        handler = _DISK_KEYS.get(key)
        if handler is None:
            disk.extra.append((key, tail(item)))
        else:
            handler(ctx, f"{path}/{key}", disk, item)
    dom.disks.append(disk)


def add_image_cdrom(ctx: Ctx, dom: Domain) -> None:
    """An HVM ``(image (hvm (cdrom PATH)))`` is an ``hdc`` CD-ROM unless a
    device already claims ``hdc`` (libvirt's sexpr parser, fv-utc)."""
    if dom.hvm is None or not dom.hvm.cdrom:
        return
    if any(d.vdev == "hdc" for d in dom.disks):
        return
    disk = diskspec.parse_uname(f"file:{dom.hvm.cdrom}", "hdc:cdrom", "r",
                                source=ctx.source)
    disk.origin = "image-cdrom"
    dom.disks.append(disk)


# ---- vif, vfb, vkbd -------------------------------------------------------

def _read_vif(ctx: Ctx, path: str, dom: Domain, dev: Sequence,
              whole: Sequence) -> None:
    props: Dict[str, Any] = {}
    for key, item in _props(ctx, path, dev):
        kpath = f"{path}/{key}"
        vals = children(item)
        if len(vals) > 1 or any(isinstance(v, (list, tuple)) for v in vals):
            raise ctx.error(kpath, f"expected one value, got {short(vals)}")
        value = as_text(ctx, kpath, vals[0]) if vals else None
        if value is None:
            continue
        if key == "ip" and key in props:       # "ip ... May be repeated"
            props[key] = f"{props[key]} {value}"
        else:
            props[key] = value
    dom.nics.append(vifspec.parse_legacy(props, source=ctx.source))


def _read_vfb(ctx: Ctx, path: str, dom: Domain, dev: Sequence,
              whole: Sequence) -> None:
    vfb = Vfb()
    explicit_type = False
    for key, item in _props(ctx, path, dev):
        kpath = f"{path}/{key}"
        if key == "type":
            _vfb_kind(ctx, kpath, vfb, scalar(ctx, kpath, item))
            explicit_type = True
        elif key in VFB_KEYS:
            VFB_KEYS[key](ctx, kpath, vfb, item)
        else:
            vfb.extra.append((key, tail(item)))
    if not explicit_type:
        vfb.type = vfb_type(vfb)
    dom.vfbs.append(vfb)


def _read_vkbd(ctx: Ctx, path: str, dom: Domain, dev: Sequence,
               whole: Sequence) -> None:
    dom.vkb = True
    dom.extra.append(("device", tail(whole)))


# ---- pci ------------------------------------------------------------------

def _read_pci(ctx: Ctx, path: str, dom: Domain, dev: Sequence,
              whole: Sequence) -> None:
    """``(pci (backend 0) (dev (domain 0x0001) (bus 0x0c) (slot 0x1b)
    (func 0x2)) (dev ...))``, or the old single ``(pci (bus 0) (dev 1)
    (func 0))`` of xen_config.html (there ``dev`` is the slot)."""
    props = _props(ctx, path, dev)
    nested = [item for key, item in props
              if key == "dev" and any(is_elem(x) for x in children(item))]
    if nested:
        for item in nested:
            dom.pci.append(_pci_dev(ctx, f"{path}/dev", _props(ctx, path, item)))
        others = [(k, it) for k, it in props if not (k == "dev" and it in nested)]
        extra = [(k, tail(it)) for k, it in others if k != "backend"]
        backend = [it for k, it in others if k == "backend"]
        if backend and maybe_int(scalar(ctx, f"{path}/backend", backend[0])) not in (0, None):
            extra.insert(0, ("backend", tail(backend[0])))
        if extra and dom.pci:
            dom.pci[-1].extra.extend(extra)
        return
    flat = [("slot" if k == "dev" else k, it) for k, it in props]
    dom.pci.append(_pci_dev(ctx, path, flat))


def _pci_dev(ctx: Ctx, path: str, props: List[Tuple[str, Any]]) -> PciDev:
    """One function's keys: the BDF (``0x`` hex or decimal), ``opts``
    pairs, and xend's virtual slot (4.x ``vdevfn``, 3.4 ``vslot``), which
    becomes the model's ``vslot`` option as libxl's ``vdevfn`` does."""
    pci = PciDev()
    seen = set()
    for key, item in props:
        kpath = f"{path}/{key}"
        if key in pcispec.BDF_LIMITS:
            v = scalar(ctx, kpath, item)
            n = as_int(ctx, kpath, v, base_prefixes=True)
            if n is None or not pcispec.in_range(key, n):
                raise ctx.error(kpath, f"out of range: {v!r}")
            setattr(pci, key, n)
            seen.add(key)
        elif key in pcispec.XEND_VSLOT_KEYS:
            n = as_int(ctx, kpath, scalar(ctx, kpath, item), base_prefixes=True)
            option = None if n is None else pcispec.vslot_from_xend(key, n)
            if option is not None:
                pci.options.append(option)
        elif key == "opts":
            for opt in children(item):
                if isinstance(opt, (list, tuple)) and len(opt) == 2:
                    pci.options.append((str(opt[0]), str(plain(opt[1]))))
                else:
                    raise ctx.error(kpath, f"bad option {short(opt)}")
        else:
            pci.extra.append((key, tail(item)))
    missing = [k for k in ("bus", "slot", "func") if k not in seen]
    if missing:
        raise ctx.error(path, f"missing {', '.join(missing)}")
    return pci


# ---- ioports, irq ---------------------------------------------------------

def _read_ioports(ctx: Ctx, path: str, dom: Domain, dev: Sequence,
                  whole: Sequence) -> None:
    """``(ioports (from 0x3f8) (to 0x3ff))`` (xend ``server/iopif.py``: an
    inclusive range, decimal or ``0x`` hex) -> xl's ``ioports`` entry
    ``3f8-3ff``.  Any other key keeps the device whole in ``extra``."""
    props = dict(_props(ctx, path, dev))
    if set(props) - {"from", "to", "uuid"} or "from" not in props:
        dom.extra.append(("device", tail(whole)))
        return
    ends = []
    for key in ("from", "to"):
        item = props.get(key, props["from"])
        ends.append(as_int(ctx, f"{path}/{key}", scalar(ctx, f"{path}/{key}", item),
                           base_prefixes=True))
    first, last = ends
    if first is None or last is None or not 0 <= first <= last <= 0xFFFF:
        raise ctx.error(path, f"not an I/O port range: {short(tail(dev))}")
    dom.ioports.append(f"{first:x}" if first == last else f"{first:x}-{last:x}")


def _read_irq(ctx: Ctx, path: str, dom: Domain, dev: Sequence,
              whole: Sequence) -> None:
    """``(irq (irq 5))`` (xend ``server/irqif.py``) -> xl's ``irqs`` entry."""
    props = dict(_props(ctx, path, dev))
    if set(props) - {"irq", "uuid"} or "irq" not in props:
        dom.extra.append(("device", tail(whole)))
        return
    n = as_int(ctx, f"{path}/irq", scalar(ctx, f"{path}/irq", props["irq"]),
               base_prefixes=True)
    if n is None:
        raise ctx.error(f"{path}/irq", "missing the IRQ number")
    dom.irqs.append(n)


#: xend device class -> reader(ctx, path, dom, dev, whole device element).
_DEVICES: Dict[str, Callable] = {
    "vbd": _read_disk, "tap": _read_disk, "tap2": _read_disk,
    "vif": _read_vif, "vfb": _read_vfb, "vkbd": _read_vkbd, "pci": _read_pci,
    "ioports": _read_ioports, "irq": _read_irq,
}
