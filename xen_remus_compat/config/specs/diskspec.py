"""Legacy xend disk unames and the xl disk grammar.

Two formats meet here (xl-side.md §1, legacy-api.md §4, §11.5, §13.1):

* the **xl DISKSPEC** (``format=raw, vdev=xvda, access=rw, target=/dev/x``
  and every deprecated form xl still accepts).  :func:`parse_xl` reproduces
  what Debian's libxlutil 4.17 ``xlu_disk_parse`` does, including its flex
  lexer's longest-match rules, its error messages and its quirks; the
  conformance tests run it side by side with the real library;
* the **xend triple** ``(uname, dev, mode)``: ``phy:/dev/vg/lv``,
  ``tap:aio:/img``, ``tap:remus:HOST:PORT|aio:/img``, ``drbd:res`` ...
  :func:`parse_uname` reads it into the model, :func:`translate` turns it
  into the canonical xl string plus diagnostics, :func:`legacy_uname` rebuilds
  what legacy code expects.

The 4.17 lexer is the one Debian ships: its generated C was not regenerated
after ``trusted``/``untrusted`` were added to the ``.l`` file (xl-side.md
finding 4, fixed in 4.19), so by default those words are ordinary positional
values, exactly as the real binary treats them.  ``trusted_keywords=True``
gives the 4.19+ lexer.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ... import errors
from ..model import Disk, RemusPeer

log = logging.getLogger("xen_remus_compat")

REMUS_MODES = ("script", "plain")
#: Hotplug script that gets a legacy remus disk (xl-side.md §1.8).
REMUS_SCRIPT = "block-remus"

# ---------------------------------------------------------------------------
# The flex lexer of libxlu_disk_l.l, as a table (xl-side.md §1.1-§1.4).
#
# Each rule: (name, head pattern, trailing context or None, action, argument).
# Flex picks the longest match counting the trailing context, ties going to
# the rule written first; yytext is the head only.  Patterns run on bytes,
# like the C scanner (``%option 8bit``): ``.`` is ``[^\n]`` and negated
# classes include newline and every byte >= 0x80.

_REST = rb"[^\n]*"          # flex ".*"

_RULES_417: Tuple[Tuple[str, bytes, Optional[bytes], str, Any], ...] = (
    ("whitespace", rb"[ \t\n]+", rb"(?:[^ \t\n][^\n]*)?", "ignore", None),
    ("format=", rb"format=[^,]*,?", None, "enum_keyword", "format"),
    ("cdrom", rb"cdrom,?", None, "set_field", ("is_cdrom", 1)),
    ("devtype=cdrom", rb"devtype=cdrom,?", None, "set_field", ("is_cdrom", 1)),
    ("devtype=disk", rb"devtype=disk,?", None, "set_field", ("is_cdrom", 0)),
    ("devtype=", rb"devtype=[^,]*,?", None, "error", "unknown value for type"),
    ("access=", rb"access=[^,]*,?", None, "access_keyword", None),
    ("backend=", rb"backend=[^,]*,?", None, "string_keyword",
     ("backend_domname", "backend")),
    ("backendtype=", rb"backendtype=[^,]*,?", None, "enum_keyword", "backend"),
    ("specification=", rb"specification=[^,]*,?", None, "enum_keyword",
     "specification"),
    ("vdev=", rb"vdev=[^,]*,?", None, "string_keyword", ("vdev", "vdev")),
    ("script=", rb"script=[^,]*,?", None, "string_keyword", ("script", "script")),
    ("direct-io-safe", rb"direct-io-safe,?", None, "set_field",
     ("direct_io_safe", True)),
    ("discard", rb"discard,?", None, "set_field", ("discard_enable", True)),
    ("no-discard", rb"no-discard,?", None, "set_field", ("discard_enable", False)),
    ("colo", rb"colo,?", None, "set_field", ("colo_enable", True)),
    ("no-colo", rb"no-colo,?", None, "set_field", ("colo_enable", False)),
    ("colo-host=", rb"colo-host=[^,]*,?", None, "string_keyword",
     ("colo_host", "colo-host")),
    ("colo-port=", rb"colo-port=[^,]*,?", None, "colo_port_keyword", None),
    ("colo-export=", rb"colo-export=[^,]*,?", None, "string_keyword",
     ("colo_export", "colo-export")),
    ("active-disk=", rb"active-disk=[^,]*,?", None, "string_keyword",
     ("active_disk", "active-disk")),
    ("hidden-disk=", rb"hidden-disk=[^,]*,?", None, "string_keyword",
     ("hidden_disk", "hidden-disk")),
    # the 4.19+ lexer has trusted/untrusted here (see _TRUSTED_RULES)
    ("target=", rb"target=" + _REST, None, "string_keyword", ("pdev_path", "target")),
    ("unknown parameter", rb"[a-z][-a-z0-9]*=[^,],?", None, "error",
     "unknown parameter"),
    ("format prefix", rb"(?:raw|qcow2?|vhd):", _REST, "format_prefix", None),
    ("script prefix", rb"(?:iscsi|e?nbd|drbd):", _REST, "script_prefix", None),
    ("tapdisk:", rb"tapdisk:", _REST, "ignored_prefix", None),
    ("tap:", rb"tap2?:", _REST, "ignored_prefix", None),
    ("aio:", rb"aio:", _REST, "ignored_prefix", None),
    ("ioemu:", rb"ioemu:", _REST, "ignored_prefix", None),
    ("file:", rb"file:", _REST, "ignored_prefix", None),
    ("phy:", rb"phy:", _REST, "ignored_prefix", None),
    ("unknown prefix", rb"[a-z][a-z0-9]*:", rb"(?:[^a-z0-9][^\n]*)?",
     "unknown_prefix", None),
    ("positional", rb"[^=,]+,?|,", None, "positional", None),
    ("lexerr", rb"[^\n]", None, "lexerr", None),
)

_TRUSTED_RULES = (
    ("trusted", rb"trusted,?", None, "set_field", ("trusted", True)),
    ("untrusted", rb"untrusted,?", None, "set_field", ("trusted", False)),
)


@dataclass(frozen=True)
class _Rule:
    name: str
    full: "re.Pattern[bytes]"
    head: "Optional[re.Pattern[bytes]]"
    action: str
    arg: Any


def _compile(table) -> Tuple[_Rule, ...]:
    return tuple(_Rule(name, re.compile(head + (trail or b"")),
                       re.compile(head) if trail is not None else None,
                       action, arg)
                 for name, head, trail, action, arg in table)


_LEXERS: Dict[bool, Tuple[_Rule, ...]] = {}


def _lexer(trusted_keywords: bool) -> Tuple[_Rule, ...]:
    """Compiled rule table, built on first use (no work at import)."""
    rules = _LEXERS.get(trusted_keywords)
    if rules is None:
        table = list(_RULES_417)
        if trusted_keywords:
            at = [r[0] for r in table].index("target=")
            table[at:at] = _TRUSTED_RULES
        rules = _LEXERS[trusted_keywords] = _compile(table)
    return rules


# Value tables of libxlu_disk_l.l's setters (enum values as libxl JSON names).
_FORMAT_VALUES = {b"": "raw", b"raw": "raw", b"qcow": "qcow", b"qcow2": "qcow2",
                  b"vhd": "vhd", b"empty": "empty", b"qed": "qed"}
_BACKEND_VALUES = {b"phy": "phy", b"tap": "tap", b"qdisk": "qdisk",
                   b"standalone": "standalone"}
_SPECIFICATION_VALUES = {b"xen": "xen", b"virtio": "virtio"}
_ENUMS = {  # libxl field -> (values, message when unknown)
    "format": (_FORMAT_VALUES, "unknown value for format"),
    "backend": (_BACKEND_VALUES, "unknown value for backendtype"),
    "specification": (_SPECIFICATION_VALUES, "unknown value for specification"),
}
_ACCESS_VALUES = {b"r": 0, b"ro": 0, b"rw": 1, b"w": 1, b"": 1}

_STOP = True            # an action that "return 0"s from the scanner
_ERROR_PREFIX = "config parsing error in disk specification: "


class _Jammed(Exception):
    """flex's "scanner jammed" fatal error (the real xl exits with status 2)."""


def _strip(text: bytes, delim: bytes) -> bytes:
    return text[:-1] if text.endswith(delim) else text


def _after_equals(text: bytes) -> bytes:
    return text[text.index(b"=") + 1:]


def _c_atoi(text: bytes) -> int:
    """glibc ``atoi``: ``(int) strtol(s, NULL, 10)``."""
    m = re.match(rb"[ \t\n\v\f\r]*([+-]?)([0-9]*)", text)
    digits = m.group(2)
    value = int(digits) if digits else 0
    if m.group(1) == b"-":
        value = -value
    value = max(-(1 << 63), min((1 << 63) - 1, value))
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class _DiskParse:
    """One ``xlu_disk_parse`` call: the DiskParseContext plus the disk.

    ``fields`` holds the libxl_device_disk being filled, in libxl JSON terms
    (enums by name, ``"unknown"`` = 0; NULL strings are ``None``).
    """

    def __init__(self, rules: Tuple[_Rule, ...]) -> None:
        self.rules = rules
        self.fields: Dict[str, Any] = {
            "backend_domname": None, "pdev_path": None, "vdev": None,
            "backend": "unknown", "format": "unknown", "script": None,
            "removable": 0, "readwrite": 1, "is_cdrom": 0,
            "direct_io_safe": False, "discard_enable": None,
            "specification": "unknown", "colo_enable": None,
            "colo_host": None, "colo_port": 0, "colo_export": None,
            "active_disk": None, "hidden_disk": None, "trusted": None}
        self.err = False
        self.access_set = False
        self.had_depr_prefix = False
        self.spec: Optional[bytes] = None
        self.lines: List[str] = []

    # -- helpers mirroring the macros of libxlu_disk_l.l ------------------

    def error(self, erroneous: Optional[bytes], message: str) -> None:
        near = "" if erroneous is None else f": near `{_dec(erroneous)}'"
        spec = "(null)" if self.spec is None else _dec(self.spec)
        self.lines.append(f"{_ERROR_PREFIX}{message}{near} in `{spec}'")
        self.err = True

    def save_string(self, what: str, name: str, value: bytes) -> None:
        current = self.fields[name]
        if current:                     # an empty string may be overwritten
            self.error(value, f"{what} respecified")
            return
        self.fields[name] = value

    def set_enum(self, name: str, value: bytes) -> None:
        values, unknown = _ENUMS[name]
        new = values.get(value)
        if new is None:
            self.error(value, unknown)
        elif self.fields[name] not in ("unknown", new):
            self.error(value, f"{name} respecified")
        else:
            self.fields[name] = new

    def set_access(self, value: bytes) -> None:
        rw = _ACCESS_VALUES.get(value)
        if rw is None:
            self.error(value, "unknown value for access")
        else:
            self.fields["readwrite"] = rw

    def vdev_and_devtype(self, token: bytes) -> bool:
        """``vdev:devtype`` in a positional slot; split at the last colon."""
        colon = token.rfind(b":")
        if colon < 0:
            return False
        self.save_string("vdev", "vdev", token[:colon])
        devtype = token[colon + 1:]
        cdrom = {b"cdrom": 1, b"disk": 0}.get(devtype)
        if cdrom is None:
            self.error(devtype, "unknown deprecated type")
        else:
            self.fields["is_cdrom"] = cdrom
        return True

    # -- rule actions (return _STOP for the rules that "return 0") --------

    def act_ignore(self, text, arg):
        return None

    def act_enum_keyword(self, text, name):
        self.set_enum(name, _after_equals(_strip(text, b",")))

    def act_access_keyword(self, text, arg):
        self.set_access(_after_equals(_strip(text, b",")))

    def act_string_keyword(self, text, arg):
        name, what = arg
        self.save_string(what, name, _after_equals(_strip(text, b",")))

    def act_colo_port_keyword(self, text, arg):
        value = _after_equals(_strip(text, b","))
        port = _c_atoi(value)
        if port:
            self.fields["colo_port"] = port
        else:
            self.error(value, "unknown value for colo_port")

    def act_set_field(self, text, arg):
        name, value = arg
        self.fields[name] = value

    def act_error(self, text, message):
        self.error(text, message)

    def act_format_prefix(self, text, arg):
        self.had_depr_prefix = True
        self.set_enum("format", _strip(text, b":"))

    def act_script_prefix(self, text, arg):
        self.had_depr_prefix = True
        self.save_string("script", "script", b"block-" + _strip(text, b":"))

    def act_ignored_prefix(self, text, arg):
        self.had_depr_prefix = True

    def act_unknown_prefix(self, text, arg):
        self.error(text, "unknown deprecated disk prefix")
        return _STOP

    def act_positional(self, text, arg):
        """target, format, vdev, access in that order (xl-side.md §1.2)."""
        token = _strip(text, b",")
        f = self.fields
        if self.err:
            return None     # previous errors may just lead to subsequent ones
        if f["pdev_path"] is None:
            self.save_string("target", "pdev_path", token)
        elif not self.had_depr_prefix and f["format"] == "unknown":
            if f["pdev_path"] == b"" and self.vdev_and_devtype(token):
                f["format"] = "empty"
            else:
                self.set_enum("format", token)
        elif f["vdev"] is None:
            if not self.vdev_and_devtype(token):
                self.save_string("vdev", "vdev", token)
        elif not self.access_set:
            self.access_set = True
            self.set_access(token)
        else:
            self.error(token, "too many positional parameters")
            return _STOP
        return None

    # -- the scanner -------------------------------------------------------

    def scan(self, buf: bytes) -> None:
        pos, end = 0, len(buf)
        lexerr: Optional[bytes] = None       # yytext kept by yymore()
        while pos < end:
            if lexerr is not None:           # <LEXERR>.*
                m = re.compile(_REST).match(buf, pos)
                if m.end() == pos:
                    raise _Jammed()
                self.error(lexerr + m.group(), "bad disk syntax")
                return
            best, best_end = None, -1
            for rule in self.rules:
                m = rule.full.match(buf, pos)
                if m is not None and m.end() > best_end:
                    best, best_end = rule, m.end()
            if best.head is not None:
                best_end = best.head.match(buf, pos).end()
            text, pos = buf[pos:best_end], best_end
            if best.action == "lexerr":
                lexerr = text
                continue
            if getattr(self, "act_" + best.action)(text, best.arg) is _STOP:
                return

    def run(self, specs: Sequence[bytes]) -> bool:
        """``xlu_disk_parse`` proper; True on success."""
        for spec in specs:
            self.spec = spec
            self.scan(spec)
            if self.err:
                return False
        f = self.fields
        if f["format"] == "unknown":
            f["format"] = "raw"
        if f["is_cdrom"]:
            f["removable"] = 1
            f["readwrite"] = 0
            if not f["pdev_path"]:
                f["format"] = "empty"
        if f["vdev"] is None:
            self.error(None, "no vdev specified")
            return False
        if f["pdev_path"] is None and not f["removable"]:
            self.error(None, "no target specified (and device not removable)")
            return False
        return True

    def libxl(self) -> Dict[str, Any]:
        """The disk as libxl's JSON generator prints it (defaults omitted)."""
        out: Dict[str, Any] = {}
        for name in _DISK_FIELDS:
            value = self.fields.get(name)
            if isinstance(value, bytes):
                value = _dec(value)
            elif name in _DEFBOOLS and value is not None:
                value = "True" if value else "False"
            if _is_default(name, value):
                continue
            out[name] = value
        return out


def _dec(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def parse_xl(spec: Union[str, Sequence[str]], *, source: Optional[str] = None,
             trusted_keywords: bool = False) -> Disk:
    """An xl DISKSPEC (or several fed into one disk, as ``xl block-attach``
    does) exactly as libxlutil 4.17 parses it (xl-side.md §1).

    Errors raise :class:`errors.DiskSpecError` whose message is libxlutil's
    first report line (``config parsing error in disk specification: ...``)
    and whose ``lines`` attribute holds every line libxlutil would print.
    ``trusted_keywords=True`` gives the 4.19+ lexer (finding 4).
    """
    specs = [spec] if isinstance(spec, str) else list(spec)
    raw = []
    for s in specs:
        if "\0" in s:
            raise errors.DiskSpecError(
                f"disk specification {s!r} contains a NUL character", source=source)
        raw.append(_enc(s))
    state = _DiskParse(_lexer(trusted_keywords))
    try:
        ok = state.run(raw)
    except _Jammed:
        exc = errors.DiskSpecError(
            f"flex scanner jammed in `{_dec(state.spec)}' ('=' followed by a "
            "newline: the real xl aborts with exit status 2)", source=source)
        exc.lines = ["flex scanner jammed"]
        raise exc from None
    if not ok:
        exc = errors.DiskSpecError(state.lines[0], source=source)
        exc.lines = list(state.lines)
        raise exc
    return disk_from_libxl(state.libxl())


# ---------------------------------------------------------------------------
# libxl JSON (xl-side.md §4.2, §4.3)

#: libxl_device_disk fields in IDL order (4.17; grant_usage is 4.19+).
_DISK_FIELDS = ("backend_domid", "backend_domname", "pdev_path", "vdev",
                "backend", "format", "script", "removable", "readwrite",
                "is_cdrom", "direct_io_safe", "discard_enable", "specification",
                "transport", "irq", "base", "colo_enable", "colo_restore_enable",
                "colo_host", "colo_port", "colo_export", "active_disk",
                "hidden_disk", "trusted", "grant_usage")
_DEFBOOLS = frozenset(("discard_enable", "colo_enable", "colo_restore_enable",
                       "trusted", "grant_usage"))
_ENUM_FIELDS = {
    "backend": ("unknown", "phy", "tap", "qdisk", "standalone"),
    "format": ("unknown", "qcow", "qcow2", "vhd", "raw", "empty", "qed"),
    "specification": ("unknown", "xen", "virtio"),
    "transport": ("unknown", "mmio"),
}
#: model attribute -> libxl field, for the fields the model names.
_MODEL_FIELDS = (
    ("backend_domid", "backend_domid"), ("backend_domname", "backend_domname"),
    ("target", "pdev_path"), ("vdev", "vdev"), ("backend", "backend"),
    ("format", "format"), ("script", "script"), ("removable", "removable"),
    ("readwrite", "readwrite"), ("is_cdrom", "is_cdrom"),
    ("direct_io_safe", "direct_io_safe"), ("discard_enable", "discard_enable"),
    ("specification", "specification"), ("colo_enable", "colo_enable"),
    ("colo_host", "colo_host"), ("colo_port", "colo_port"),
    ("colo_export", "colo_export"), ("active_disk", "active_disk"),
    ("hidden_disk", "hidden_disk"), ("trusted", "trusted"))
_INT_FIELDS = frozenset(("removable", "readwrite", "is_cdrom"))
_ALWAYS = frozenset(("vdev",))       # mandatory: printed even when empty


def _is_default(name: str, value: Any) -> bool:
    if name in _ALWAYS:
        return value is None
    return value in (None, 0, False, "unknown", "<default>")


def _defbool(value: Any, name: str) -> Optional[bool]:
    if value is None or value == "<default>":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise errors.ConfigError(f"disk field {name}: {value!r} is not a libxl defbool")


def disk_to_libxl(disk: Disk) -> Dict[str, Any]:
    """A ``libxl_device_disk`` as libxl's JSON generator writes it: IDL
    order, fields equal to their default omitted (xl-side.md §4.2)."""
    values: Dict[str, Any] = {}
    for attr, name in _MODEL_FIELDS:
        value = getattr(disk, attr)
        if name in _INT_FIELDS:
            value = int(bool(value))
        elif name in _DEFBOOLS and value is not None:
            value = "True" if value else "False"
        values[name] = value
    for key, value in disk.extra:        # libxl fields the model does not name
        if key in _DISK_FIELDS and key not in values:
            values[key] = value
    return {name: values[name] for name in _DISK_FIELDS
            if name in values and not _is_default(name, values[name])}


def disk_from_libxl(d: Dict[str, Any]) -> Disk:
    """The model from a ``libxl_device_disk`` JSON object (enums matched
    case-insensitively, as libxl's parser does); unmodelled fields go to
    ``extra``."""
    disk = Disk(readwrite=False)        # an omitted int field is 0
    known = {name: attr for attr, name in _MODEL_FIELDS}
    for key, value in d.items():
        attr = known.get(key)
        if attr is None:
            disk.extra.append((key, value))
            continue
        if key in _ENUM_FIELDS:
            value = None if value is None else str(value).lower()
            if value is not None and value not in _ENUM_FIELDS[key]:
                raise errors.ConfigError(f"disk field {key}: unknown value {value!r}")
            value = None if value == "unknown" else value
        elif key in _INT_FIELDS:
            value = bool(int(value))
        elif key in _DEFBOOLS:
            value = _defbool(value, key)
        elif key == "direct_io_safe":
            value = bool(value)
        elif key in ("backend_domid", "colo_port"):
            value = int(value)
        setattr(disk, attr, "" if attr == "vdev" and value is None else value)
    disk.remus = _remus_from_target(disk)
    return disk


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


def _remus_peer(params: str) -> RemusPeer:
    """``HOST:PORT|TYPE:PATH`` (legacy-api.md §13.1: split on ``|``, each
    element at its first ``:``; the remus name is host up to the first ``:``)."""
    peer, bar, inner = params.partition("|")
    host, colon, port = peer.partition(":")
    if not bar or not colon or not host:
        raise errors.DiskSpecError(
            f"remus disk {params!r}: expected HOST:PORT|TYPE:PATH")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise errors.DiskSpecError(
            f"remus disk {params!r}: port {port!r} is not a TCP port number")
    driver, colon, path = inner.partition(":")
    if not colon or not driver or not path:
        raise errors.DiskSpecError(
            f"remus disk {params!r}: the underlying image {inner!r} is not TYPE:PATH")
    return RemusPeer(host=host, port=int(port), inner_driver=driver, inner_path=path)


def _remus_target(peer: RemusPeer) -> str:
    return f"remus:{peer.host}:{peer.port}|{peer.inner_driver}:{peer.inner_path}"


def _remus_from_target(disk: Disk) -> Optional[RemusPeer]:
    """The peer of an xl disk written by :func:`format_xl` in script form."""
    if disk.remus is not None:
        return disk.remus
    script = (disk.script or "").rsplit("/", 1)[-1]
    target = disk.target or ""
    if script != REMUS_SCRIPT or not target.startswith("remus:"):
        return None
    try:
        return _remus_peer(target[len("remus:"):])
    except errors.DiskSpecError:
        return None


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
        peer = _remus_peer(path)
        info.remus = peer
        info.target = _remus_target(peer)
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
                "(block-drbd-probe rejects a resource name), xl-side.md §2.6")
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
        return replace(disk, target=_remus_target(peer), script=REMUS_SCRIPT,
                       format="raw"), [
            f"remus disk replicated to {peer.host}:{peer.port} by the "
            f"{REMUS_SCRIPT} hotplug script, which gets "
            f"{_remus_target(peer)!r} as params: the backup host "
            f"{peer.host} needs {REMUS_SCRIPT} in /etc/xen/scripts and its "
            f"own copy of {peer.inner_path}, and must accept TCP port "
            f"{peer.port}; xl remus does not checkpoint such a disk itself "
            "(use xl remus -d, or xen-remus-compat), xl-side.md §1.8, §2.7"]
    fmt = _TAP_DRIVERS.get(peer.inner_driver, (None,))[0]
    if fmt is None or "|" in peer.inner_path:
        raise errors.UntranslatableError(
            f"remus disk over {peer.inner_driver}:{peer.inner_path}: no plain "
            "xl equivalent of that image driver")
    return replace(disk, target=peer.inner_path, script=None, format=fmt), [
        f"remus disk translated to the plain image {peer.inner_path}: writes "
        f"are NOT replicated to {peer.host}:{peer.port}; for xl remus use a "
        "protocol-D DRBD resource with target=/dev/drbdN (xl-side.md §2.6)"]


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
                "keyword (stale generated lexer, fixed in 4.19; xl-side.md "
                "finding 4)")
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
        return "tap:" + _remus_target(disk.remus)
    target = disk.target
    if not target:
        return ""
    script = (disk.script or "").rsplit("/", 1)[-1]
    if script.startswith("block-") and len(script) > len("block-"):
        return f"{script[len('block-'):]}:{target}"
    if disk.format in ("qcow", "qcow2", "vhd", "qed"):
        return f"tap:{disk.format}:{target}"
    return ("phy:" if target.startswith("/dev/") else "file:") + target
