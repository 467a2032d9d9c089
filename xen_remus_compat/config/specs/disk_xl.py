"""The xl DISKSPEC grammar exactly as Debian's libxlutil 4.17 parses it.

``format=raw, vdev=xvda, access=rw, target=/dev/x`` and every deprecated
form xl still accepts (xl-side.md §1).  :func:`parse_xl` reproduces what
``xlu_disk_parse`` does, including its flex lexer's longest-match rules,
its error messages and its quirks; the conformance tests run it side by
side with the real library.  The result is the ``libxl_device_disk`` the
parser fills, read into the model by ``disk_libxl.py``.

The 4.17 lexer is the one Debian ships: its generated C was not regenerated
after ``trusted``/``untrusted`` were added to the ``.l`` file (xl-side.md
finding 4, fixed in 4.19), so by default those words are ordinary positional
values, exactly as the real binary treats them.  ``trusted_keywords=True``
gives the 4.19+ lexer.  ``diskspec.py`` re-exports :func:`parse_xl`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ... import errors
from ..common import defbool
from ..model import Disk
from .disk_libxl import DEFBOOLS, DISK_FIELDS, disk_from_libxl, is_default

__all__ = ["parse_xl"]

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
        for name in DISK_FIELDS:
            value = self.fields.get(name)
            if isinstance(value, bytes):
                value = _dec(value)
            elif name in DEFBOOLS and value is not None:
                value = defbool(value)
            if is_default(name, value):
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
