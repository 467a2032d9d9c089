"""Legacy xend disk unames and the xl disk grammar.

Two formats meet here (xl-side.md §1, legacy-api.md §4, §11.5, §13.1):

* the **xl DISKSPEC** (``format=raw, vdev=xvda, access=rw, target=/dev/x``
  and every deprecated form xl still accepts).  :func:`parse_xl`
  (``disk_xl.py``, re-exported here) reproduces what Debian's libxlutil
  4.17 ``xlu_disk_parse`` does; :func:`format_xl` writes the canonical
  keyword form;
* the **xend triple** ``(uname, dev, mode)``: ``phy:/dev/vg/lv``,
  ``tap:aio:/img``, ``tap:remus:HOST:PORT|aio:/img``, ``drbd:res`` ...
  :func:`parse_uname` reads it into the model, :func:`translate` turns it
  into the canonical xl string plus diagnostics, :func:`legacy_uname` rebuilds
  what legacy code expects.

The libxl JSON side of a disk, :func:`disk_to_libxl` / :func:`disk_from_libxl`,
is ``disk_libxl.py`` (re-exported here); the remus target string both
formats share is ``disk_remus.py``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple

from ... import errors
from ..model import Disk, RemusPeer
from .disk_libxl import disk_from_libxl, disk_to_libxl
from .disk_remus import REMUS_SCRIPT, remus_peer, remus_target
from .disk_xl import parse_xl

log = logging.getLogger("xen_remus_compat")

__all__ = ["REMUS_MODES", "REMUS_SCRIPT", "Translation", "parse_xl", "parse_uname",
           "format_xl", "format_xl_notes", "translate", "legacy_uname", "disk_to_libxl",
           "disk_from_libxl"]

REMUS_MODES = ("script", "plain")


# ---------------------------------------------------------------------------
# Legacy xend unames (legacy-api.md §4, §11.5, §13.1; xl-side.md §1.8)

@dataclass
class Translation:
    """Result of :func:`translate`: the xl string, the disk it describes and
    the notes a user must read (what was changed, what the backup needs)."""

    xl: str
    disk: Disk
    diagnostics: List[str] = field(default_factory=list)


@dataclass
class _Uname:
    """What a uname means: the xl fields plus notes, or why it cannot be."""

    device_class: str = "vbd"
    target: Optional[str] = None
    format: Optional[str] = None
    script: Optional[str] = None
    remus: Optional[RemusPeer] = None
    notes: List[str] = field(default_factory=list)
    problem: Optional[str] = None


#: blktap drivers (BlktapController.py blktap1/blktap2 lists, tapdisk-disktype.c):
#: driver -> (xl format, note, reason there is no xl equivalent).
_TAP_DRIVERS: Dict[str, Tuple[Optional[str], Optional[str], Optional[str]]] = {
    "aio": ("raw", None, None),
    "sync": ("raw", "tap:sync (blktap1 synchronous O_DIRECT raw driver) becomes "
             "a raw image: same on-disk data, xl does the I/O asynchronously", None),
    "qcow": ("qcow", None, None),
    "qcow2": ("qcow2", None, None),
    "vhd": ("vhd", None, None),
    "vmdk": (None, None, "VMware vmdk images: libxl has no vmdk format "
             "(convert the image with qemu-img to raw or qcow2)"),
    "ram": (None, None, "blktap RAM disk: tapdisk copied the image into dom0 "
            "memory and writes stayed there (lost when the disk closed); xl "
            "has no non-persistent disk"),
    "vhdsync": (None, None, "blktap2 synchronous vhd driver: not available in "
                "libxl (use tap:vhd semantics, format=vhd, after checking)"),
    "bc": (None, None, "blktap2 block-cache driver: no xl equivalent"),
    "vhdi": (None, None, "blktap2 vhd-index driver: no xl equivalent"),
    "log": (None, None, "blktap2 write-logger driver: no xl equivalent"),
    "ioemu": (None, None, "blktap1 ioemu driver: qemu probed the image format "
              "at run time, xl needs it explicitly (rewrite the uname as "
              "tap:aio:, tap:qcow2:, ...)"),
}
#: uname types xl itself still maps to block-<type> scripts (xl-side.md §1.4).
_SCRIPT_TYPES = ("drbd", "iscsi", "nbd", "enbd")
_TAP_SUBTYPES = ("tapdisk", "ioemu")
_GENERIC_TYPE = re.compile(r"[A-Za-z0-9_.+-]+\Z")

#: xend modes: mode -> (readwrite, shareable) (blkif.py accepts r, w, w!).
_MODES = {"r": (False, False), "w": (True, False), "w!": (True, True)}
_DEVTYPES = {"disk": False, "cdrom": True}


def _tap(uname: str, info: _Uname) -> None:
    """``tap[2]:[tapdisk:|ioemu:]DRIVER:PATH`` the way xend split it
    (BlktapController.createDevice: 4 fields if the 2nd is a subtype)."""
    parts = uname.split(":", 3)
    if len(parts) == 4 and parts[1] in _TAP_SUBTYPES:
        driver, path = parts[2], parts[3]
    else:
        parts = uname.split(":", 2)
        if len(parts) < 3 or not parts[1]:
            raise errors.DiskSpecError(
                f"uname {uname!r}: expected {parts[0]}:DRIVER:PATH")
        driver, path = parts[1], parts[2]
    if not path:
        raise errors.DiskSpecError(f"uname {uname!r}: no image path")
    if driver == "remus":
        peer = remus_peer(path)
        info.remus = peer
        info.target = remus_target(peer)
        info.format = "raw"
        info.script = REMUS_SCRIPT
        inner = _TAP_DRIVERS.get(peer.inner_driver)
        if inner is None or inner[2] is not None or "|" in peer.inner_path:
            info.problem = (f"remus disk over {peer.inner_driver}:"
                            f"{peer.inner_path}: " +
                            (inner[2] if inner and inner[2] else
                             "nested or unknown tapdisk driver stack"))
        return
    known = _TAP_DRIVERS.get(driver)
    info.target = path
    if known is None:
        info.problem = f"unknown blktap driver {driver!r}"
        return
    info.format, note, info.problem = known
    if note:
        info.notes.append(note)


def _classify(uname: Optional[str], is_cdrom: bool) -> _Uname:
    """Meaning of a xend uname (blkif.py: ``type:params``; the block script
    ran block-<type> for types other than phy/file; tap via blktap)."""
    info = _Uname()
    if not uname:
        if not is_cdrom:
            raise errors.DiskSpecError(
                "a disk without uname must be a cdrom (dev ...:cdrom)")
        info.format = "empty"
        return info
    typ, colon, params = uname.partition(":")
    if not colon:
        raise errors.DiskSpecError(
            f"uname {uname!r} has no type prefix (phy:, file:, tap:aio:, ...)")
    if typ in ("tap", "tap2"):
        info.device_class = typ
        _tap(uname, info)
        return info
    if not params:
        if is_cdrom and typ in ("phy", "file"):
            # xend wrote (uname phy:) for a cdrom drive with no media; xl has
            # it too: format=empty, devtype=cdrom, no target (xl-disk-configuration)
            info.format = "empty"
            info.notes.append(f"{uname}: an empty cdrom drive (no media)")
            return info
        raise errors.DiskSpecError(f"uname {uname!r}: nothing after {typ}:")
    info.format = "raw"
    info.target = params
    if typ == "phy":
        if not params.startswith("/"):
            info.target = "/dev/" + params
            info.notes.append(f"{uname}: relative device expanded to "
                              f"{info.target} (xend's block script did this, "
                              "xl does not)")
    elif typ == "file":
        pass
    elif typ in _SCRIPT_TYPES or _GENERIC_TYPE.match(typ):
        info.script = f"block-{typ}"
        if typ == "drbd":
            info.notes.append(
                f"{uname}: attached by script=block-drbd with target {params!r}; "
                "xl remus replicates only disks whose target is the DRBD "
                "device node (/dev/drbdN) of a protocol-D resource "
                "(block-drbd-probe rejects a resource name); see "
                "'Remus disks' in the migration guide")   # xl-side.md §2.6
        elif typ not in _SCRIPT_TYPES:
            info.notes.append(
                f"{uname}: needs the hotplug script /etc/xen/scripts/block-{typ} "
                "on the xl host (xend ran it for this uname type)")
    else:
        raise errors.DiskSpecError(f"uname {uname!r}: invalid type {typ!r}")
    return info


def _parse_dev(dev: str) -> Tuple[str, bool, List[str]]:
    """xend ``dev``: optional ``ioemu:`` then ``vdev[:disk|:cdrom]``
    (blkif.getDeviceDetails)."""
    notes = []
    if not dev:
        raise errors.DiskSpecError("disk has no dev (vdev)")
    if dev.startswith("ioemu:"):
        dev = dev[len("ioemu:"):]
        notes.append(f"ioemu:{dev}: the ioemu: prefix is dropped; xl decides "
                     "emulation from the guest type and the vdev")
    vdev, colon, devtype = dev.partition(":")
    is_cdrom = False
    if colon:
        if devtype not in _DEVTYPES:
            raise errors.DiskSpecError(
                f"dev {dev!r}: unknown device type {devtype!r} (disk or cdrom)")
        is_cdrom = _DEVTYPES[devtype]
    if not vdev:
        raise errors.DiskSpecError(f"dev {dev!r} has no device name")
    return vdev, is_cdrom, notes


def _analyse(uname: Optional[str], dev: str, mode: Optional[str],
             source: Optional[str], device_class: Optional[str]
             ) -> Tuple[Disk, _Uname, List[str]]:
    try:
        vdev, is_cdrom, notes = _parse_dev(dev)
        if mode is None:
            mode = "r"
            notes.append("no mode given: read-only, as xend defaulted")
        if mode not in _MODES:
            raise errors.DiskSpecError(
                f"mode {mode!r} is not one of r, w, w! (xend blkif.py)")
        info = _classify(uname, is_cdrom)
    except errors.DiskSpecError as exc:
        exc.source = exc.source or source
        raise
    readwrite, shareable = _MODES[mode]
    if shareable:
        notes.append("mode w! (writable even if shared) has no xl equivalent: "
                     "xl attaches the disk read-write and does not check "
                     "whether another domain writes to it")
    disk = Disk(vdev=vdev, target=info.target, format=info.format,
                readwrite=readwrite and not is_cdrom, is_cdrom=is_cdrom,
                removable=is_cdrom, script=info.script, uname=uname or None,
                device_class=device_class or info.device_class, mode=mode,
                shareable=shareable, remus=info.remus)
    return disk, info, notes + info.notes


def parse_uname(uname: Optional[str], dev: str, mode: Optional[str], *,
                source: Optional[str] = None,
                device_class: Optional[str] = None) -> Disk:
    """A xend ``(uname, dev, mode)`` triple into the model.

    Legacy fields are kept (``uname``, ``device_class``, ``mode``,
    ``shareable``, ``remus``); the xl fields are what :func:`format_xl` will
    emit.  A valid uname with no xl equivalent (``tap:ram:``) still parses;
    :func:`translate` / :func:`format_xl` refuse it.
    """
    return _analyse(uname, dev, mode, source, device_class)[0]


def _uname_problem(disk: Disk) -> Optional[str]:
    if not disk.uname:
        return None
    return _classify(disk.uname, disk.is_cdrom).problem


def _check_value(what: str, value: str) -> None:
    if "," in value or "\n" in value or "\0" in value:
        bad = "a comma" if "," in value else "a newline or NUL"
        raise errors.UntranslatableError(
            f"disk {what} {value!r} contains {bad}, which the xl disk syntax "
            "cannot carry there")


def _xl_fields(disk: Disk, remus: str) -> Tuple[Disk, List[str]]:
    """The disk xl will see: a remus disk rewritten per ``remus``; refuses
    unames without xl equivalent."""
    if remus not in REMUS_MODES:
        raise ValueError(f"remus must be one of {REMUS_MODES}, not {remus!r}")
    problem = _uname_problem(disk)
    if problem:
        raise errors.UntranslatableError(f"uname {disk.uname!r}: {problem}")
    peer = disk.remus
    if peer is None:
        return disk, []
    if remus == "script":
        return replace(disk, target=remus_target(peer), script=REMUS_SCRIPT,
                       format="raw"), [
            f"remus disk replicated to {peer.host}:{peer.port} by the "
            f"{REMUS_SCRIPT} hotplug script, which gets "
            f"{remus_target(peer)!r} as params: the backup host "
            f"{peer.host} needs {REMUS_SCRIPT} in /etc/xen/scripts and its "
            f"own copy of {peer.inner_path}, and must accept TCP port "
            f"{peer.port}; xl remus does not checkpoint such a disk itself "
            "(use xl remus -d, or the remus command of xen-remus-compat; "
            "migration guide: 'Remus disks')"]
        # the block-remus fifo protocol and xl remus -d: xl-side.md §1.8, §2.7
    fmt = _TAP_DRIVERS.get(peer.inner_driver, (None,))[0]
    if fmt is None or "|" in peer.inner_path:
        raise errors.UntranslatableError(
            f"remus disk over {peer.inner_driver}:{peer.inner_path}: no plain "
            "xl equivalent of that image driver")
    return replace(disk, target=peer.inner_path, script=None, format=fmt), [
        f"remus disk translated to the plain image {peer.inner_path}: writes "
        f"are NOT replicated to {peer.host}:{peer.port}; for xl remus use a "
        "protocol-D DRBD resource with target=/dev/drbdN (migration guide: "
        "'Remus disks')"]                   # xl-side.md §2.6


def _render(disk: Disk, trusted_keywords: bool) -> Tuple[str, List[str]]:
    """The canonical string of a disk already passed through _xl_fields."""
    notes: List[str] = []
    fmt = disk.format or ("empty" if disk.is_cdrom and not disk.target else "raw")
    _check_value("vdev", disk.vdev)
    if not disk.vdev:
        raise errors.DiskSpecError("disk has no vdev")
    items = [f"format={fmt}", f"vdev={disk.vdev}",
             "access=" + ("rw" if disk.readwrite and not disk.is_cdrom else "ro")]
    if disk.is_cdrom:
        items.append("devtype=cdrom")
    elif disk.removable:
        notes.append("removable is only expressible for cdroms in xl; dropped")
    backend = disk.backend_domname
    if backend is None and disk.backend_domid:
        backend = str(disk.backend_domid)   # libxl reads all-digit names as domids
    for key, value in (("backendtype", disk.backend), ("backend", backend),
                       ("specification", disk.specification),
                       ("script", disk.script)):
        if value is not None:
            _check_value(key, value)
            items.append(f"{key}={value}")
    if disk.direct_io_safe:
        items.append("direct-io-safe")
    for flag, value in (("discard", disk.discard_enable), ("colo", disk.colo_enable)):
        if value is not None:
            items.append(flag if value else f"no-{flag}")
    for key, value in (("colo-host", disk.colo_host), ("colo-port", disk.colo_port),
                       ("colo-export", disk.colo_export),
                       ("active-disk", disk.active_disk),
                       ("hidden-disk", disk.hidden_disk)):
        if value not in (None, 0):
            _check_value(key, str(value))
            items.append(f"{key}={value}")
    if disk.trusted is not None:
        if trusted_keywords:
            items.append("trusted" if disk.trusted else "untrusted")
        elif disk.trusted is False:
            raise errors.UntranslatableError(
                "untrusted disk: xl 4.17/4.18 cannot parse the untrusted "
                "keyword (stale generated lexer, fixed in 4.19)")
            # xl-side.md finding 4
        else:
            notes.append("trusted is the default; keyword omitted (xl 4.17 "
                         "would read it as a positional value)")
    if disk.target is not None:
        if "\n" in disk.target or "\0" in disk.target:
            raise errors.UntranslatableError(
                f"disk target {disk.target!r} contains a newline or NUL, which "
                "target= cannot carry")
        # target= eats the rest of the string minus ONE trailing comma
        items.append("target=" + disk.target + ("," if disk.target.endswith(",") else ""))
    return ", ".join(items), notes


def format_xl_notes(disk: Disk, *, remus: str = "script"
                    ) -> Tuple[str, Disk, List[str]]:
    """:func:`format_xl`, plus the disk as xl sees it and the notes about a
    remus disk (what the backup needs, or that writes are not replicated)."""
    xl_disk, notes = _xl_fields(disk, remus)
    text, more = _render(xl_disk, False)
    for note in more:
        log.info("disk %s: %s", disk.vdev, note)
    return text, xl_disk, notes


def format_xl(disk: Disk, *, remus: str = "script",
              trusted_keywords: bool = False) -> str:
    """Canonical xl form ``format=F, vdev=V, access=A[, keywords], target=T``
    (xl-side.md §1.6): ``target=`` last, so any path survives (``:``,
    ``,``, quotes, blanks).  Remus disks per ``remus`` ("script": hotplug
    script ``block-remus`` with target ``remus:HOST:PORT|TYPE:PATH``;
    "plain": the underlying image)."""
    xl_disk, notes = _xl_fields(disk, remus)
    text, more = _render(xl_disk, trusted_keywords)
    for note in notes + more:
        log.info("disk %s: %s", disk.vdev, note)
    return text


def translate(uname: Optional[str], dev: str, mode: Optional[str], *,
              remus: str = "script", source: Optional[str] = None,
              device_class: Optional[str] = None) -> Translation:
    """One xend disk triple -> the xl string, the disk and diagnostics.

    Raises :class:`errors.UntranslatableError` when xl has no equivalent
    (the message says why) and :class:`errors.DiskSpecError` for input xend
    itself would have refused.
    """
    disk, info, notes = _analyse(uname, dev, mode, source, device_class)
    if info.problem:
        raise errors.UntranslatableError(f"uname {uname!r}: {info.problem}",
                                         source=source)
    try:
        xl_disk, remus_notes = _xl_fields(disk, remus)
        text, render_notes = _render(xl_disk, False)
    except errors.InputError as exc:
        exc.source = exc.source or source
        raise
    return Translation(xl=text, disk=xl_disk,
                       diagnostics=notes + remus_notes + render_notes)


def legacy_uname(disk: Disk) -> str:
    """The uname legacy code expects (legacy-api.md §11.5): xend reported a
    tap2 disk as ``tap:`` + its tapdisk params, so ``tap2:remus:...`` comes
    back as ``tap:remus:...``.  Disks known only to xl get the uname xend
    would have used; an empty cdrom gives ``""``."""
    if disk.uname:
        if disk.uname.startswith("tap2:"):
            return "tap:" + disk.uname[len("tap2:"):]
        return disk.uname
    if disk.remus is not None:
        return "tap:" + remus_target(disk.remus)
    target = disk.target
    if not target:
        return ""
    script = (disk.script or "").rsplit("/", 1)[-1]
    if script.startswith("block-") and len(script) > len("block-"):
        return f"{script[len('block-'):]}:{target}"
    if disk.format in ("qcow", "qcow2", "vhd", "qed"):
        return f"tap:{disk.format}:{target}"
    return ("phy:" if target.startswith("/dev/") else "file:") + target
