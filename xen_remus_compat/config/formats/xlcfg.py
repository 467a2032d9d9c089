"""The domain model -> xl.cfg(5) text for Xen 4.17's ``xl create``.

Contract: ``docs/internals.md`` (``config/xlcfg.py``).  What we write is
what Debian's real ``xl -N create`` must parse to the JSON that
:func:`~xen_remus_compat.config.formats.libxl_json.domain_to_libxl` gives for the
same domain, field by field (``tests/conformance/test_roundtrip.py``); the
shared policies (command line, firmware, device model, VNC merge, vcpu
bitmap) live in ``config/xlpolicy.py`` so the two cannot drift.

Syntax facts (libxlutil 4.17 ``libxlu_cfg_l.l``/``libxlu_cfg.c``): a
quoted string may hold any byte but its quote, a backslash and a newline;
the escapes that work are ``\\\\ \\" \\' \\n \\r \\t \\a \\b \\f \\v`` (the
numeric ``\\x``/``\\ooo`` escapes are broken: the character is dropped), a
NUL cannot be represented at all, and numbers cannot be negative (a
negative value is written as a quoted string, which ``xlu_cfg_get_long``
parses with ``strtol``).  Every item with no xl equivalent becomes a
``# untranslated: key = value  (reason)`` comment and an entry in
:attr:`XlConfig.untranslated`; a xend-era path a bookworm host does not have
is rewritten (``# rewritten: ...``) or flagged (``# check: ...``); a kept key
that changes nothing (xl's default, runtime state) is only listed in
:attr:`XlConfig.omitted` (``xlcfg_leftovers.py``).  A remus disk's needs
are written as comments too.  Decisions: ``docs/decisions.d/config.md``.
"""
from __future__ import annotations

import json
import logging
import textwrap
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ...errors import ConfigError, InputError, UntranslatableError
from .. import xlpolicy
from ..common import SHUTDOWN_KEYS, TIMER_MODES, xl_action
from ..model import Domain
from ..specs import diskspec, vifspec
from ..specs import pci as pcispec
from .xlcfg_leftovers import DEFAULT_REASON, REASONS, classify, device_class

log = logging.getLogger("xen_remus_compat")

__all__ = ["XlConfig", "Item", "to_xlcfg", "quote", "comment_text", "REASONS",
           "DEFAULT_REASON", "KINDS"]

Value = Union[int, bool, str, List[str]]

#: Kinds of :class:`Item` (what the report groups by, after the reason).
KINDS = ("untranslated", "rewritten", "flagged")


@dataclass
class Item:
    """One thing the report says about a domain: an ``untranslated`` key, a
    ``rewritten`` value (``new`` None: left to xl's default) or a ``flagged``
    one (written, but a bookworm host has no such path)."""

    kind: str
    key: str
    reason: str
    value: str = ""          # as written in the comment (quoted, one line)
    new: Optional[str] = None


@dataclass
class XlConfig:
    """An xl.cfg text and what could not be expressed in it."""

    text: str
    untranslated: List[Tuple[str, str]] = field(default_factory=list)
    #: every reported item, untranslated ones included, in file order
    items: List[Item] = field(default_factory=list)
    #: (key, why) kept keys left out because that changes nothing
    omitted: List[Tuple[str, str]] = field(default_factory=list)
    #: (kind, key, path) every host path written (``bootloader``,
    #: ``firmware``, ``file``, ``disk``), for ``convert --check-host``
    paths: List[Tuple[str, str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------
# Lexical
# --------------------------------------------------------------------------

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(text: str, q: str = '"', *, key: str = "value") -> str:
    """*text* as an xl.cfg quoted string; ConfigError for what xl cannot
    hold (NUL, text that is not valid Unicode)."""
    if "\0" in text:
        raise ConfigError(f"{key}: contains a NUL character, which xl.cfg "
                          f"cannot represent")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{key}: not valid text ({exc.reason} at "
                          f"position {exc.start})") from None
    out = [q]
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == q:
            out.append("\\" + q)
        else:
            out.append(ch)
    out.append(q)
    return "".join(out)


def _render(value: Value, key: str) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value) if value >= 0 else quote(str(value), key=key)
    if isinstance(value, str):
        return quote(value, key=key)
    return "[ " + ", ".join(quote(v, "'", key=key) for v in value) + " ]"


def comment_text(text: Any) -> str:
    """``text`` safe inside a ``#`` comment: one line, printable, every other
    character (newlines, ESC, Unicode line separators) escaped."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else
                   (_ESCAPES.get(c) or ("\\x%02x" % ord(c) if ord(c) < 0x100 else
                                        "\\u%04x" % ord(c) if ord(c) < 0x10000 else
                                        "\\U%08x" % ord(c)))
                   for c in text)


#: longest value copied into an ``# untranslated:`` comment
COMMENT_VALUE_MAX = 400


def _oneline(value: Any) -> str:
    """A kept value for a comment: quoted so that it stays on one line."""
    if isinstance(value, list) and all(not isinstance(v, list) for v in value) \
            and len(value) == 1:
        value = value[0]
    if isinstance(value, list):
        from ... import sxp
        try:
            text = sxp.to_string(value)
        except Exception:               # not an sxpr: show it as JSON
            text = json.dumps(value)
    elif isinstance(value, (dict, bool)) or value is None:
        text = json.dumps(value)
    else:
        text = str(value)
    text = text.replace("\0", "\\0")
    if len(text) > COMMENT_VALUE_MAX:
        # the .cfg is for humans: a huge value is named, not copied
        text = (text[:COMMENT_VALUE_MAX] +
                f"... ({len(text)} characters; see the input)")
    try:
        return comment_text(quote(text))
    except ConfigError:
        return comment_text(quote(text.encode("utf-8", "backslashreplace").decode("ascii")))


# --------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------

class _Out:
    def __init__(self) -> None:
        self.lines: List[str] = []
        self.untranslated: List[Tuple[str, str]] = []
        self.items: List[Item] = []
        self.omitted: List[Tuple[str, str]] = []
        self.paths: List[Tuple[str, str, str]] = []
        self.notes: List[str] = []
        self.comments: List[str] = []

    def set(self, key: str, value: Optional[Value]) -> None:
        if value is None or value == []:
            return
        self.lines.append(f"{key} = {_render(value, key)}")

    def path(self, kind: str, key: str, value: Optional[str]) -> None:
        if value:
            self.paths.append((kind, key, value))

    def skip(self, key: str, value: Any, reason: str) -> None:
        self.untranslated.append((key, reason))
        shown = _oneline(value)
        self.items.append(Item("untranslated", key, reason, shown))
        # key and reason can hold input text (a hostile key name with a
        # newline would otherwise put a live line into the file xl reads)
        self.comments.append(f"# untranslated: {comment_text(key)} = {shown}"
                             f"  ({comment_text(reason)})")

    def rewrite(self, key: str, old: Any, new: Optional[str], reason: str) -> None:
        shown = _oneline(old)
        self.items.append(Item("rewritten", key, reason, shown, new))
        after = _oneline(new) if new is not None else "(not set)"
        self.comments.append(f"# rewritten: {comment_text(key)} = {shown} -> {after}"
                             f"  ({comment_text(reason)})")

    def flag(self, key: str, value: Any, reason: str) -> None:
        shown = _oneline(value)
        self.items.append(Item("flagged", key, reason, shown))
        self.comments.append(f"# check: {comment_text(key)} = {shown}"
                             f"  ({comment_text(reason)})")

    def omit(self, key: str, why: str) -> None:
        self.omitted.append((key, why))

    def note(self, text: str) -> None:
        """A comment block for the operator (wrapped, escaped)."""
        wrapped = textwrap.wrap(comment_text(text), width=76, break_long_words=False,
                                break_on_hyphens=False) or [""]
        self.notes.append("\n".join(("# " if i == 0 else "#   ") + line
                                    for i, line in enumerate(wrapped)))

    def text(self) -> str:
        lines = list(self.lines)
        if self.notes:
            lines.append("")
            lines.extend(self.notes)
        if self.comments:
            lines.append("")
            lines.extend(self.comments)
        return "\n".join(lines) + "\n"


def _flag(v: Optional[bool]) -> Optional[int]:
    return None if v is None else int(bool(v))


def to_xlcfg(dom: Domain, *, remus: str = "script") -> XlConfig:
    """xl.cfg text for *dom*; *remus* selects how a legacy remus disk is
    written (``diskspec.format_xl``)."""
    out = _Out()
    if dom.domid == 0:
        raise UntranslatableError(
            f"domain {dom.name or 0} is Domain-0 (the host itself); it has no xl.cfg")
    if not dom.name:
        raise UntranslatableError("the domain has no name, which xl requires")
    out.set("name", dom.name)
    out.set("uuid", dom.uuid)
    out.set("type", dom.type)
    if dom.pool and dom.pool != xlpolicy.DEFAULT_POOL:
        out.set("pool", dom.pool)
    elif dom.pool:
        out.omit("pool_name", "xl's default")
    _memory(dom, out)
    _vcpus(dom, out)
    _boot(dom, out)
    for key in SHUTDOWN_KEYS:
        value = getattr(dom, key)
        if value:
            out.set(key, xl_action(value))
    out.set("localtime", _flag(xlpolicy.localtime(dom)))
    _platform(dom, out)
    if dom.type == "hvm":
        _hvm(dom, out)
    _devices(dom, out, remus)
    _leftovers(dom, out)
    return XlConfig(text=out.text(), untranslated=out.untranslated, items=out.items,
                    omitted=out.omitted, paths=out.paths)


def _platform(dom: Domain, out: _Out) -> None:
    """TSC mode, CPUID, I/O ports and IRQs (xl.cfg(5) of Xen 4.17)."""
    if dom.tsc_mode == "native_paravirt":
        out.skip("tsc_mode", dom.tsc_mode,
                 "xend's tsc_mode 3 (native_paravirt, PVRDTSCP) was removed from "
                 "Xen; xl refuses it (tsc_mode=\"default\" is the nearest)")
    elif dom.tsc_mode == "default":
        out.omit("tsc_mode", "xl's default")
    else:
        out.set("tsc_mode", dom.tsc_mode)
    out.set("cpuid", list(dom.cpuid))
    out.set("ioports", list(dom.ioports))
    if dom.irqs:
        out.lines.append("irqs = [ " + ", ".join(str(int(n)) for n in dom.irqs) + " ]")
    for key, value in xlpolicy.image_flags(dom).items():
        out.set(key, _flag(value))
    for key, value in xlpolicy.pci_defaults(dom).items():
        out.set(key, _flag(value))


def _memory(dom: Domain, out: _Out) -> None:
    out.set("memory", dom.memory)
    if dom.maxmem is not None:
        out.set("maxmem", dom.maxmem)
    if dom.shadow_memory:
        out.set("shadow_memory", dom.shadow_memory)


def _vcpus(dom: Domain, out: _Out) -> None:
    bits = xlpolicy.avail_vcpu_bits(dom)
    if bits is not None:
        online = len(bits)
        out.set("vcpus", online)
        limit = xlpolicy.max_vcpus(dom)
        if limit is not None and limit != online:
            out.set("maxvcpus", limit)
        if bits != list(range(online)):
            out.skip("vcpu_avail", dom.vcpu_avail,
                     f"xl brings vcpus 0-{online - 1} online; the bitmap "
                     f"{format(dom.vcpu_avail or 0, '#b')} cannot be expressed")
    if dom.vcpu_affinity:
        out.set("cpus", list(dom.vcpu_affinity))
    elif dom.cpus:
        out.set("cpus", dom.cpus)
    out.set("cpu_weight", dom.cpu_weight)
    out.set("cap", dom.cpu_cap)
    if dom.hvm is not None and dom.type == "hvm":
        out.set("hap", _flag(dom.hvm.hap))


def _boot(dom: Domain, out: _Out) -> None:
    kernel, ramdisk, dropped = xlpolicy.boot_files(dom)
    for key, value, reason in dropped:
        out.skip(key, value, reason)
    if dom.type != "hvm" and not kernel and not dom.bootloader:
        raise UntranslatableError(
            f"domain {dom.name}: a {dom.type.upper()} guest needs a kernel or a "
            f"bootloader and this one has neither")
    for change in xlpolicy.host_changes(dom):
        if change.kind == "flagged":
            out.flag(change.key, change.old, change.reason)
        else:
            out.rewrite(change.key, change.old, change.new, change.reason)
    out.set("kernel", kernel)
    out.set("ramdisk", ramdisk)
    if not dom.bootloader:       # with a bootloader they are paths in the guest
        out.path("file", "kernel", kernel)
        out.path("file", "ramdisk", ramdisk)
    cmdline, ignored = xlpolicy.xl_cmdline(dom)
    out.set("cmdline", cmdline)
    for key in ignored:
        out.skip(key, dom.root if key == "root" else dom.extra_args,
                 "ignored by xl when cmdline is set")
    bootloader = xlpolicy.xl_bootloader(dom)
    out.set("bootloader", bootloader)
    out.path("bootloader", "bootloader", bootloader)
    if dom.bootloader_args:
        try:
            out.set("bootloader_args", xlpolicy.bootloader_argv(dom) or None)
        except ConfigError as exc:
            out.skip("bootloader_args", dom.bootloader_args, exc.message)


def _hvm(dom: Domain, out: _Out) -> None:
    hvm = dom.hvm
    if hvm is None:
        return
    firmware, dropped = xlpolicy.hvm_firmware(dom)
    out.set("firmware", firmware)
    if firmware and "/" in firmware:
        out.path("firmware", "firmware", firmware)
    if dropped and dropped[1] == xlpolicy.IS_DEFAULT:
        out.omit(dropped[0], "xl's default")
    elif dropped:
        out.skip(dropped[0], hvm.loader or dom.kernel, dropped[1])
    dm, _ = xlpolicy.device_model(dom)      # a dropped one: host_changes
    if dm:
        out.set("device_model_override", dm)
        out.set("device_model_version", "qemu-xen")
        out.path("file", "device_model_override", dm)
    out.set("boot", hvm.boot)
    for key in ("acpi", "apic", "pae", "hpet", "viridian", "nographic", "stdvga"):
        out.set(key, _flag(getattr(hvm, key)))
    out.set("videoram", hvm.videoram)
    if hvm.rtc_timeoffset:
        out.set("rtc_timeoffset", hvm.rtc_timeoffset)
    if hvm.timer_mode is not None:
        if 0 <= hvm.timer_mode < len(TIMER_MODES):
            out.set("timer_mode", TIMER_MODES[hvm.timer_mode])
        else:
            out.skip("timer_mode", hvm.timer_mode, "not one of xend's modes 0-3")
    out.set("usb", _flag(hvm.usb))
    _one_or_list(out, "usbdevice", hvm.usbdevice)
    out.set("soundhw", hvm.soundhw)
    _one_or_list(out, "serial", hvm.serial)
    out.set("xen_platform_pci", _flag(hvm.xen_platform_pci))
    out.set("vpt_align", _flag(hvm.vpt_align))
    out.set("nestedhvm", _flag(hvm.nestedhvm))
    if hvm.parallel:
        out.skip("parallel", hvm.parallel if len(hvm.parallel) > 1 else hvm.parallel[0],
                 "xl has no parallel port option (libxl gives qemu-xen none)")
    if hvm.monitor is not None:
        out.skip("monitor", int(hvm.monitor), "xl has no qemu monitor option")
    if hvm.cdrom and not any(d.origin == "image-cdrom" or
                             (d.vdev == "hdc" and d.target == hvm.cdrom)
                             for d in dom.disks):
        out.skip("cdrom", hvm.cdrom, "hdc is already taken by another disk")
    g = xlpolicy.hvm_graphics(dom)
    out.set("vnc", _flag(g.get("vnc")))
    out.set("vnclisten", g.get("vnclisten"))
    if g.get("vncdisplay"):
        out.set("vncdisplay", g["vncdisplay"])
    out.set("vncunused", _flag(g.get("vncunused")))
    out.set("vncpasswd", g.get("vncpasswd"))
    out.set("keymap", g.get("keymap"))
    out.set("sdl", _flag(g.get("sdl")))
    out.set("opengl", _flag(g.get("opengl")))
    out.set("display", g.get("display"))
    out.set("xauthority", g.get("xauthority"))


def _one_or_list(out: _Out, key: str, values: Sequence[str]) -> None:
    """One value as a string, several as a list (xl reads either)."""
    if len(values) == 1:
        out.set(key, values[0])
    elif values:
        out.set(key, list(values))


_VFB_KEYS = ("vnc", "vnclisten", "vncdisplay", "vncunused", "vncpasswd",
             "keymap", "sdl", "opengl", "display", "xauthority")


def _devices(dom: Domain, out: _Out, remus: str) -> None:
    disks: List[str] = []
    for disk in dom.disks:
        try:
            text, xl_disk, notes = diskspec.format_xl_notes(disk, remus=remus)
        except InputError as exc:
            out.skip(f"disk[{disk.vdev}]", disk.uname or disk.target or "", exc.message)
            continue
        disks.append(text)
        for note in notes:               # what the backup of a remus disk needs
            out.note(f"disk {disk.vdev}: {note}")
        target = disk.remus.inner_path if disk.remus is not None else xl_disk.target
        if target and target.startswith("/") and (not xl_disk.script or disk.remus):
            out.path("disk", f"disk[{disk.vdev}]", target)
    out.set("disk", disks)
    vifs: List[str] = []
    for index, nic in enumerate(dom.nics):
        try:
            vifs.append(vifspec.format_xl(nic))
        except InputError as exc:
            out.skip(f"vif[{index}]", nic.mac or "", exc.message)
    out.set("vif", vifs)
    if dom.type != "hvm":
        specs = []
        for index, g in enumerate(xlpolicy.pv_vfbs(dom)):
            items = []
            for key in _VFB_KEYS:
                value = g.get(key)
                if value is None or (key == "vncdisplay" and not value):
                    continue
                text = str(int(value)) if isinstance(value, bool) else str(value)
                if "," in text:
                    out.skip(f"vfb[{index}].{key}", text,
                             "xl's vfb list cannot hold a comma")
                    continue
                items.append(f"{key}={text}")
            specs.append(",".join(items))
        out.set("vfb", specs)
        if dom.vkb and not specs:
            out.skip("vkbd", 1, "xl adds a PV keyboard only with a vfb")
        if dom.serial:
            out.skip("serial", dom.serial, "PV consoles are implicit in xl")
    pcis: List[str] = []
    for pci in dom.pci:
        spec, skipped = pcispec.format_xl(pci)
        for key, value, reason in skipped:
            out.skip(f"pci[{pci.bdf}].{key}", value, reason)
        pcis.append(spec)
        for key, value in pci.extra:
            _report(out, f"pci[{pci.bdf}].{key}", key, value, dom, "pci")
    out.set("pci", pcis)


def _report(out: _Out, label: str, key: str, value: Any, dom: Domain,
            where: str = "top") -> None:
    kind, why = classify(key, value, dom, where)
    if kind == "omitted":
        out.omit(label, why)
    else:
        out.skip(label, value, why)


#: image keys the writer translated through ``xlpolicy`` (not leftovers)
_POLICY_KEYS = ("oos", "pci_msitranslate", "pci_power_mgmt")


def _leftovers(dom: Domain, out: _Out) -> None:
    if dom.description:
        out.skip("description", dom.description, "xl.cfg has no description")
    for key, value in dom.extra:
        cls = device_class(value) if key == "device" else None
        if cls in ("vkbd", "console"):
            continue            # a PV keyboard (xl adds one per vfb); the PV console
        _report(out, f"device {cls}" if cls else key, key, value, dom)
    consumed = {**xlpolicy.image_flags(dom), **xlpolicy.pci_defaults(dom)}
    for key, value in dom.image_extra:
        if key == "image_type" and value in (["linux"], ["hvm"]):
            continue
        if key in _POLICY_KEYS and (key in consumed or key.startswith("pci_")
                                    and not dom.pci):
            continue
        _report(out, f"image.{key}", key, value, dom, "image")
    if dom.hvm is not None:
        for key, value in dom.hvm.extra:
            _report(out, f"image.{key}", key, value, dom, "image")
    for disk in dom.disks:
        for key, value in disk.extra:
            _report(out, f"disk[{disk.vdev}].{key}", key, value, dom, "disk")
    for index, nic in enumerate(dom.nics):
        for key, value in nic.extra:
            _report(out, f"vif[{index}].{key}", key, value, dom, "vif")
    for index, vfb in enumerate(dom.vfbs):
        for key, value in vfb.extra:
            _report(out, f"vfb[{index}].{key}", key, value, dom, "vfb")
