"""The xend S-expression dialect, ``xen.xend.sxp`` (legacy-api.md section 11).

One reader serves every caller: a character-class state machine (section
11.2) whose hot state, "between tokens", is driven by one compiled regular
expression that takes a whole token per step.  Atoms, strings and comments
that run past the end of an input chunk continue in their own states, so the
incremental legacy :class:`Parser` (``input``/``input_eof``) and the modern
:func:`loads` are the same code and cannot disagree.  The reader keeps no
Python recursion: nesting depth is bounded by memory only.

Modes (docs/decisions.d/sxp.md):

* **modern** (default for :func:`loads`, :func:`load_file` and ``Parser()``):
  strict about parentheses (a missing or stray ``)`` is a
  :class:`ParseError` naming source, line and column), escapes fixed as
  section 14.2 asks (``\\xHH`` is real hex; an unknown escape such as ``\\q``
  keeps both the backslash and the character), ASCII control characters
  other than whitespace are invalid outside escapes, printable non-ASCII
  text (UTF-8 names) is accepted.  ``lenient=True`` accepts a missing final
  ``)`` and stray ``)`` at top level (what libvirt tolerated), with a warning.
  ``ascii_only=True`` rejects every non-ASCII character.
* **legacy** (``Parser(legacy=True)`` and the legacy helpers with
  ``legacy=True``): section 11.2 to the letter, quirks included: the two
  escape bugs, ``(a`` then EOF silently dropped, any byte accepted inside
  atoms, strings and comments, ``str(error)`` is the bare legacy message.

The printer is section 11.3 (Python 2 ``repr`` quoting emulated on the
string's characters); the accessors are section 11.4 and never recurse.
"""
from __future__ import annotations

import bisect
import codecs
import functools
import contextlib
import gc
import io as _io
import logging
import os
import re
import string
import sys
from typing import Any, Callable, Iterator, List, Optional, Tuple

from . import errors

log = logging.getLogger("xen_remus_compat")

__all__ = [
    "mime_type", "ParseError", "Parser", "atomp", "show", "show_xml",
    "elementp", "name", "attributes", "attribute", "children", "child",
    "child_at", "child0", "child1", "child2", "child3", "child4",
    "child_value", "has_id", "with_id", "child_with_id", "elements",
    "child_map", "merge", "merge_list", "to_string", "from_string",
    "all_from_string", "parse", "loads", "load_file",
]

# -- constants (section 11.1) -------------------------------------------------

mime_type = "application/sxp"
k_list_open = "("
k_list_close = ")"
k_attr_open = "@"
k_eval = "!"

#: Escapes with their C meaning (section 11.2).
escapes = {"a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v",
           "f": "\f", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
escapes_rev = {v: k for k, v in escapes.items()}

# Character classes of section 11.2.
WHITESPACE = " \t\n\v\f\r"
SEPARATORS = "{}()<>[];"
COMMENT_START = "#"
QUOTES = "\"'"
PRINTABLE = string.printable
EOT = "\x04"            # Ctrl-D: end of input outside strings

_LIST = (list, tuple)


# -- errors ---------------------------------------------------------------------

class ParseError(errors.SxpParseError):
    """A syntax error; ``str()`` is ``source:line:col: message``.

    Legacy code builds it as ``ParseError(parser, value)`` and reads
    ``.value``; errors of the legacy-mode parser carry no position, so their
    ``str()`` is the bare legacy message (section 11.2).
    """

    def __init__(self, parser: Any = None, value: Optional[str] = None, *,
                 source: Optional[str] = None, line: Optional[int] = None,
                 col: Optional[int] = None) -> None:
        if value is None and isinstance(parser, str):
            parser, value = None, parser
        value = "" if value is None else str(value)
        super().__init__(value, source=source, line=line, col=col)
        self.parser = parser
        self.value = value


class LegacyHexEscapeError(ParseError, NameError):
    """Legacy mode only: ``\\x`` without two hex digits.

    The legacy parser died with ``NameError`` (it read an undefined ``buf``);
    this is still a ``NameError`` for code that caught that, and a
    :class:`ParseError` for everyone else.
    """


class _EscapeError(Exception):
    def __init__(self, index: int, message: str, *, end: int = -1,
                 short_hex: bool = False, legacy_hex: bool = False):
        super().__init__(message)
        self.index = index          # the backslash, in the string's body
        self.end = end              # end of the escape (short_hex only)
        self.message = message
        self.short_hex = short_hex  # \x with fewer than two digits
        self.legacy_hex = legacy_hex


# -- escapes (section 11.2, fixes from section 14.2) ----------------------------

_ESCAPE_RE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{0,2})|([\s\S]))")


def _legacy_hex_value(digits: str) -> int:
    # [quirk] letters count from 'A'/'a', so "4a" is 0x40.
    value = 0
    for c in digits:
        if c <= "9":
            value = value * 16 + ord(c) - 48
        elif c <= "F":
            value = value * 16 + ord(c) - 65
        else:
            value = value * 16 + ord(c) - 97
    return value


def _decode_escapes(body: str, legacy: bool) -> str:
    """The characters a quoted string's body stands for.

    A string's extent does not depend on escape decoding (a backslash always
    takes exactly the next character, and digits are never quotes), so the
    reader cuts the body first and decodes it here.
    """
    if "\\" not in body:
        return body
    out = []
    pos = 0
    for m in _ESCAPE_RE.finditer(body):
        out.append(body[pos:m.start()])
        octal, hexa, other = m.groups()
        if octal is not None:
            value = int(octal, 8)
            if value > 0xff:
                raise _EscapeError(m.start(), "invalid octal escape: out of range " + octal)
            out.append(chr(value))
        elif hexa is not None:
            if legacy:
                if len(hexa) < 2:
                    raise _EscapeError(m.start(), "invalid hex escape: \\x" + hexa
                                       + " (the legacy parser raised NameError)",
                                       end=m.end(), short_hex=True, legacy_hex=True)
                out.append(chr(_legacy_hex_value(hexa)))
            else:
                if not hexa:
                    raise _EscapeError(m.start(), "invalid hex escape: \\x without hex digits",
                                       end=m.end(), short_hex=True)
                out.append(chr(int(hexa, 16)))
        else:
            known = escapes.get(other)
            if known is not None:
                out.append(known)
            elif legacy:
                out.append("\\")          # [quirk] the character is dropped
            else:
                out.append("\\" + other)  # fixed: kept as written
        pos = m.end()
    out.append(body[pos:])
    return "".join(out)


# -- the reader's character classes, one regex set per mode --------------------

_CTRL = r"\x00-\x08\x0e-\x1f\x7f"      # ASCII controls that are not whitespace
_NONASCII = "\x80-\U0010ffff"


class _Mode:
    """Compiled patterns for one reading mode (section 11.2 classes)."""

    def __init__(self, kind: str) -> None:
        legacy = kind == "legacy"
        ascii_only = kind == "ascii"
        bad = "" if legacy else _CTRL + (_NONASCII if ascii_only else "")
        if legacy or ascii_only:
            # string.printable minus whitespace, '#', '(', ')' and quotes
            atom_start = r"[!$-&*-~]"
        else:
            atom_start = r"[^\x00-\x20\x7f()#'\"]"
        if legacy:
            atom_char = r"[^ \t\n\v\f\r(){}<>\[\];#]"
        else:
            atom_char = r"[^\x00-\x20\x7f(){}<>\[\];#" + (_NONASCII if ascii_only else "") + "]"

        def body(q: str) -> str:
            plain = "[^" + q + "\\\\" + bad + "]"
            esc = r"\\[\s\S]" if not bad else "\\\\[^" + bad + "]"
            return plain + "*(?:" + esc + plain + "*)*"

        comment = "[^\\n" + bad + "]*"
        # Groups: 1 '(' | 2 atom | 3 ')' | 4 '...' | 5 "..." | 6 comment | 7 other
        self.token = re.compile(
            r"[ \t\n\v\f\r]*(?:(\()|(" + atom_start + atom_char + "*)|(\\))"
            r"|'(" + body("'") + ")'|\"(" + body('"') + ")\""
            r"|(\#)" + comment + r"|([^ \t\n\v\f\r]))")
        self.atom_run = re.compile(atom_char + "*")
        self.comment_run = re.compile(comment)
        self.string_run = {q: re.compile("[^" + q + "\\\\" + bad + "]*") for q in QUOTES}
        self.bad_char = re.compile("[" + bad + "]") if bad else None
        self.check_printable = not legacy and not ascii_only


@functools.lru_cache(maxsize=None)
def _mode(kind: str) -> _Mode:
    return _Mode(kind)


# Reader states.
_TOP, _ATOM, _STRING, _ESCAPE, _COMMENT = range(5)


def _first_unprintable(text: str) -> int:
    for j, c in enumerate(text):
        if not c.isprintable():
            return j
    return -1


class Parser:
    """The incremental reader of section 11.2, with the legacy API.

    ``input(buf)`` feeds text (``str``, or ``bytes`` decoded as UTF-8; an
    empty ``buf`` means EOF), ``input_eof()`` ends the input, ``ready()`` /
    ``get_val()`` / ``get_all()`` hand out the complete top-level values.

    ``legacy=True`` reproduces the legacy parser exactly, quirks included;
    the default is the modern mode described in the module docstring.
    ``legacy_escapes`` defaults to ``legacy``, or to the ``sxp_escapes``
    switch of :mod:`xen_remus_compat.quirks` when that is on.
    """

    def __init__(self, *, legacy: bool = False, legacy_escapes: Optional[bool] = None,
                 lenient: bool = False, ascii_only: bool = False,
                 source: Optional[str] = None) -> None:
        if legacy_escapes is None:
            legacy_escapes = legacy or _quirk_escapes()
        self.legacy = legacy
        self.legacy_escapes = legacy_escapes
        self.lenient = lenient and not legacy
        self.source = source if source is not None else "<input>"
        self._m = _mode("legacy" if legacy else "ascii" if ascii_only else "modern")
        self.error = None           # legacy set_error_stream target (unused)
        self._warn: Callable[[ParseError], None] = _log_warning
        self.reset()

    # -- legacy API ----------------------------------------------------------

    def reset(self) -> None:
        self.val: list = []         # complete top-level values (legacy name)
        self.eof = 0
        self.err = 0
        self.line_no = 0            # newlines seen so far (legacy counter)
        self.char_no = 0            # characters since the last newline
        self._cur = self.val
        self._stack: list = []      # enclosing lists
        self._opens: list = []      # where each open '(' is: offset or (line, col)
        self._state = _TOP
        self._parts: list = []
        self._delim = ""
        self._spos: Tuple[int, int] = (0, 0)
        self._base = 0              # absolute offset of the current chunk
        self._chunk = ""
        self._dangling = False
        self._decoder = None

    def set_error_stream(self, error) -> None:
        self.error = error

    def has_error(self) -> bool:
        return False                # legacy: never set

    def at_eof(self):
        return self.eof

    def ready(self) -> bool:
        return len(self.val) > 0

    def get_val(self):
        """Pop the first complete value (``IndexError`` if none)."""
        v = self.val[0]
        del self.val[0]
        return v

    def get_all(self) -> list:
        return self.val

    def input(self, buf) -> None:
        if not buf:
            self.input_eof()
            return
        if isinstance(buf, (bytes, bytearray, memoryview)):
            if self._decoder is None:
                self._decoder = codecs.getincrementaldecoder("utf-8")()
            try:
                buf = self._decoder.decode(bytes(buf))
            except UnicodeDecodeError as e:
                raise self._error(f"invalid UTF-8 byte 0x{e.object[e.start]:02x}",
                                  None) from None
            if not buf:
                return
        self._feed(buf)

    def input_eof(self) -> None:
        if self._decoder is not None:
            try:
                rest = self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise self._error("invalid UTF-8: input ends inside a character",
                                  None) from None
            self._decoder = None
            if rest:
                self._feed(rest)
        self._finish()

    # -- positions -----------------------------------------------------------

    def _where(self, index: int) -> Tuple[int, int]:
        """1-based (line, col) of ``index`` in the current chunk."""
        chunk = self._chunk
        nl = chunk.count("\n", 0, index)
        if nl:
            return self.line_no + nl + 1, index - chunk.rfind("\n", 0, index)
        return self.line_no + 1, self.char_no + index + 1

    def _open_pos(self, k: int) -> Tuple[int, int]:
        p = self._opens[k]
        if isinstance(p, tuple):
            return p
        return self._where(p - self._base)

    def _error(self, message: str, index: Optional[int],
               pos: Optional[Tuple[int, int]] = None, cls=None) -> ParseError:
        cls = cls or ParseError
        if self.legacy:
            return cls(self, message)
        if pos is None and index is not None:
            pos = self._where(index)
        line, col = pos if pos else (None, None)
        return cls(self, message, source=self.source, line=line, col=col)

    def _end_chunk(self, n: int) -> None:
        chunk = self._chunk
        # Freeze the positions of '(' still open from this chunk.
        opens = self._opens
        k = len(opens) - 1
        while k >= 0 and not isinstance(opens[k], tuple):
            k -= 1
        k += 1
        if k < len(opens):
            line, col = self.line_no + 1, self.char_no
            last = 0
            for j in range(k, len(opens)):
                idx = opens[j] - self._base
                nl = chunk.count("\n", last, idx)
                if nl:
                    line += nl
                    col = idx - chunk.rfind("\n", last, idx) - 1
                else:
                    col += idx - last
                opens[j] = (line, col + 1)
                last = idx
        nl = chunk.count("\n", 0, n)
        if nl:
            self.line_no += nl
            self.char_no = n - chunk.rfind("\n", 0, n) - 1
        else:
            self.char_no += n
        self._base += len(chunk)
        self._chunk = ""

    # -- the machine ---------------------------------------------------------

    def _feed(self, chunk: str) -> None:
        if self.eof:
            if self._dangling:
                raise self._error("unexpected EOF", None)
            return
        self._chunk = chunk
        n = len(chunk)
        i = 0
        m = self._m
        try:
            while i < n:
                st = self._state
                if st == _TOP:
                    i = self._top(chunk, i, n)
                elif st == _ATOM:
                    j = m.atom_run.match(chunk, i).end()
                    piece = chunk[i:j]
                    if m.check_printable and not piece.isascii():
                        bad = _first_unprintable(piece)
                        if bad >= 0:
                            j = i + bad
                            piece = piece[:bad]
                    self._parts.append(piece)
                    if j < n:
                        self._cur.append("".join(self._parts))
                        self._parts = []
                        self._state = _TOP
                    i = j
                elif st == _STRING:
                    i = self._string(chunk, i, n)
                elif st == _ESCAPE:
                    c = chunk[i]
                    if m.bad_char is not None and m.bad_char.match(c):
                        self._check_partial(False)
                        raise self._bad_character(c, i)
                    self._parts.append("\\" + c)
                    self._state = _STRING
                    i += 1
                else:  # _COMMENT
                    j = m.comment_run.match(chunk, i).end()
                    if j < n:
                        self._state = _TOP
                    i = j
        except _Stop:
            n = i = self._stop_at
        self._end_chunk(n)

    def _top(self, chunk: str, i: int, n: int) -> int:
        """Whole tokens between atoms/strings that end inside ``chunk``."""
        m = self._m
        cur = self._cur
        stack = self._stack
        opens = self._opens
        base = self._base
        check = m.check_printable and not chunk.isascii()
        legacy_escapes = self.legacy_escapes
        try:
            for t in m.token.finditer(chunk, i):
                k = t.lastindex
                if k == 2:                                   # atom
                    atom = t.group(2)
                    if check and not atom.isascii():
                        bad = _first_unprintable(atom)
                        if bad == 0:
                            raise self._bad_character(atom[0], t.start(2))
                        if bad > 0:
                            cur.append(atom[:bad])
                            return t.start(2) + bad
                    if t.end() == n:
                        self._state = _ATOM
                        self._parts = [atom]
                        return n
                    cur.append(atom)
                elif k == 1:                                 # (
                    stack.append(cur)
                    opens.append(base + t.start(1))
                    cur = []
                elif k == 3:                                 # )
                    if stack:
                        done = cur
                        cur = stack.pop()
                        cur.append(done)
                        opens.pop()
                    elif self.legacy:
                        raise self._error("syntax error: )", t.start(3))
                    elif self.lenient:
                        self._warn(self._error("stray ')' with no matching '(' ignored (lenient)",
                                               t.start(3)))
                    else:
                        raise self._error("syntax error: ')' with no matching '('",
                                          t.start(3))
                elif k == 4 or k == 5:                       # quoted string
                    body = t.group(k)
                    if "\\" in body:
                        body = self._decode(body, t.start(k) - 1)
                    cur.append(body)
                elif k == 6:                                 # comment
                    if t.end() == n:
                        self._state = _COMMENT
                        return n
                else:                                        # anything else
                    j = t.start(7)
                    c = chunk[j]
                    if c in QUOTES:        # string not closed in this chunk
                        self._state = _STRING
                        self._delim = c
                        self._spos = self._where(j)
                        self._parts = []
                        return j + 1
                    if c == EOT:
                        self._cur = cur
                        self._finish()
                        cur = self._cur
                        self._stop_at = j + 1
                        raise _Stop()
                    raise self._bad_character(c, j)
            return n
        finally:
            self._cur = cur

    def _string(self, chunk: str, i: int, n: int) -> int:
        j = self._m.string_run[self._delim].match(chunk, i).end()
        if j > i:
            self._parts.append(chunk[i:j])
        if j == n:
            return n
        c = chunk[j]
        if c == self._delim:
            body = "".join(self._parts)
            self._parts = []
            self._state = _TOP
            if "\\" in body:
                body = self._decode(body, None)
            self._cur.append(body)
            return j + 1
        if c == "\\":
            if j + 1 == n:
                self._state = _ESCAPE
                return n
            c2 = chunk[j + 1]
            bad = self._m.bad_char
            if bad is not None and bad.match(c2):
                self._check_partial(False)
                raise self._bad_character(c2, j + 1)
            self._parts.append("\\" + c2)
            return j + 2
        self._check_partial(False)
        raise self._bad_character(c, j)

    def _decode(self, body: str, quote_index: Optional[int]) -> str:
        try:
            return _decode_escapes(body, self.legacy_escapes)
        except _EscapeError as e:
            if quote_index is not None:
                qline, qcol = self._where(quote_index)
            else:
                qline, qcol = self._spos
            head = body[:e.index]
            nl = head.count("\n")
            if nl:
                pos = (qline + nl, e.index - head.rfind("\n"))
            else:
                pos = (qline, qcol + 1 + e.index)
            cls = LegacyHexEscapeError if e.legacy_hex else ParseError
            raise self._error(e.message, None, pos, cls) from None

    def _check_partial(self, at_eof: bool, pending_backslash: bool = False) -> None:
        """Report an escape error that comes before a later error in an
        unfinished string, so errors come in input order.

        At EOF a ``\\x`` still waiting for digits is not an escape error
        (the legacy machine reported EOF); before an invalid character it
        is, since that character is not a hex digit.
        """
        body = "".join(self._parts) + ("\\" if pending_backslash else "")
        if "\\" not in body:
            return
        try:
            _decode_escapes(body, self.legacy_escapes)
        except _EscapeError as e:
            if at_eof and e.short_hex and e.end == len(body):
                return
            self._decode(body, None)

    def _bad_character(self, c: str, index: int) -> ParseError:
        return self._error("invalid character: code %d" % ord(c), index)

    def _finish(self) -> None:
        """End of input (section 11.2 EOF rules)."""
        if self.eof:
            if self._dangling:
                raise self._error("unexpected EOF", None)
            return
        self.eof = 1
        st = self._state
        if st == _STRING or st == _ESCAPE:
            self._check_partial(True, st == _ESCAPE)
            raise self._error("unexpected EOF" if self.legacy else "unexpected EOF in string",
                              None, self._spos)
        self._state = _TOP
        if st == _ATOM:
            self._cur.append("".join(self._parts))
            self._parts = []
        if not self._stack:
            return
        if self.legacy:
            if st == _ATOM or st == _COMMENT:
                # [quirk] the open list never sees EOF: it is silently lost
                self._dangling = True
                return
            raise self._error("unexpected EOF", None)
        depth = len(self._stack)
        line, col = self._open_pos(depth - 1)
        more = f" ({depth} lists open)" if depth > 1 else ""
        if not self.lenient:
            raise ParseError(self, f"unexpected EOF: '(' not closed{more}",
                             source=self.source, line=line, col=col)
        self._warn(ParseError(self, f"missing ')' at end of input for this '('{more};"
                                    " closed (lenient)",
                              source=self.source, line=line, col=col))
        cur = self._cur
        while self._stack:
            parent = self._stack.pop()
            parent.append(cur)
            cur = parent
        self._cur = cur
        del self._opens[:]


class _Stop(Exception):
    """Ctrl-D: the rest of the chunk is ignored."""


def _log_warning(w: ParseError) -> None:
    log.warning("%s", w)


def _quirk_escapes() -> bool:
    try:
        from . import quirks
    except ImportError:          # pragma: no cover - quirks is optional here
        return False
    return bool(getattr(quirks.get(), "sxp_escapes", False))


# -- modern entry points --------------------------------------------------------

@contextlib.contextmanager
def gc_paused(size: int):
    """Pause the cyclic GC while building a big cycle-free tree of ``size``
    input characters (a no-op for small inputs or when GC is off)."""
    pause = size > _GC_PAUSE_MIN and gc.isenabled()
    if pause:
        gc.disable()
    try:
        yield
    finally:
        if pause:
            gc.enable()


def loads(text: str, *, source: str = "<string>", lenient: bool = False,
          legacy_escapes: bool = False, ascii_only: bool = False) -> list:
    """Every top-level value of ``text`` (strings and lists only).

    Strict by default (see the module docstring); raises :class:`ParseError`
    (an ``errors.SxpParseError``) naming ``source``, line and column.
    """
    return _loads(text, source=source, lenient=lenient,
                  legacy_escapes=legacy_escapes, ascii_only=ascii_only)


def _loads(text, *, source, lenient, legacy_escapes, ascii_only,
           remap: Optional[Callable[[ParseError], None]] = None) -> list:
    if isinstance(text, (bytes, bytearray)):
        text = _decode_utf8(bytes(text), source)
    p = Parser(legacy_escapes=legacy_escapes, lenient=lenient,
               ascii_only=ascii_only, source=source)
    warnings: List[ParseError] = []
    p._warn = warnings.append
    # The reader builds a tree, never a cycle, so cyclic-GC passes while it
    # runs find nothing; on big inputs they made parsing super-linear
    # (bench/config.py).  Pause the collector for those, and restore it.
    with gc_paused(len(text)):
        try:
            if text:
                p._feed(text)
            p._finish()
        except ParseError as e:
            p.reset()               # the error keeps .parser; drop the partial tree
            if remap is not None:
                remap(e)
            raise
    for w in warnings:
        if remap is not None:
            remap(w)
        log.warning("%s", w)
    return p.val


_GC_PAUSE_MIN = 256 * 1024


def _decode_utf8(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = e.start
        line_start = data.rfind(b"\n", 0, start) + 1
        line = data.count(b"\n", 0, start) + 1
        col = len(data[line_start:start].decode("utf-8", "replace")) + 1
        raise ParseError(None, f"invalid UTF-8 byte 0x{data[start]:02x}",
                         source=source, line=line, col=col) from None


class _ContinuationMap:
    """Maps positions after backslash-newline deletion back to the file."""

    def __init__(self, original: str, processed: str) -> None:
        self.original = original
        self.processed = processed
        removed = []
        k = original.find("\\\n")
        while k >= 0:
            removed.append(k - 2 * len(removed))
            k = original.find("\\\n", k + 2)
        self.removed = removed

    def __call__(self, e: ParseError) -> None:
        if e.line is None or e.col is None:
            return
        text = self.processed
        start = 0
        for _ in range(e.line - 1):
            start = text.index("\n", start) + 1
        off = start + e.col - 1
        off += 2 * bisect.bisect_right(self.removed, off)
        orig = self.original
        e.line = orig.count("\n", 0, off) + 1
        e.col = off - orig.rfind("\n", 0, off)


def load_file(path, *, continuations: bool = False, lenient: bool = False,
              legacy_escapes: bool = False, ascii_only: bool = False) -> list:
    """Every top-level value in the file at ``path``.

    The bytes are decoded as UTF-8, strictly (a bad byte is an error with its
    line and column; a leading BOM is dropped).  ``continuations=True``
    deletes every backslash-newline pair first, as libvirt's test loader did
    (fixtures README); error positions still refer to the file as written.
    ``OSError`` propagates unchanged.
    """
    source = os.fspath(path)
    if isinstance(source, bytes):
        source = os.fsdecode(source)
    with open(path, "rb") as f:
        data = f.read()
    text = _decode_utf8(data, source)
    if text.startswith("\ufeff"):
        text = text[1:]
    remap = None
    if continuations and "\\\n" in text:
        processed = text.replace("\\\n", "")
        remap = _ContinuationMap(text, processed)
        text = processed
    return _loads(text, source=source, lenient=lenient,
                  legacy_escapes=legacy_escapes, ascii_only=ascii_only, remap=remap)


# -- legacy entry points (section 11.4) -----------------------------------------

def parse(io, *, legacy: bool = False) -> Optional[list]:
    """Read lines from ``io`` until EOF; every value, or ``None`` if none."""
    pin = Parser(legacy=legacy)
    while True:
        buf = io.readline()
        pin.input(buf)
        if len(buf) == 0:
            break
    if pin.ready():
        return pin.get_all()
    return None


def from_string(s, *, legacy: bool = False):
    """The first value of ``s``; ``''`` gives ``[]``.

    [quirk, kept] input with no complete value raises ``TypeError`` (the
    legacy code indexed ``None``).
    """
    if s == "" or s == b"":
        return []
    vals = parse(_reader(s), legacy=legacy)
    if vals is None:
        raise TypeError("'NoneType' object is not subscriptable"
                        " (sxp.from_string: no complete value in input)")
    return vals[0]


def all_from_string(s, *, legacy: bool = False) -> Optional[list]:
    """Every value of ``s``, or ``None`` if there is none."""
    return parse(_reader(s), legacy=legacy)


def _reader(s):
    return _io.BytesIO(s) if isinstance(s, (bytes, bytearray)) else _io.StringIO(s)


# -- printer (section 11.3) -----------------------------------------------------

_ATOM_RE = re.compile(r"[A-Za-z0-9._:/~-]+")
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1       # Python 2 int on LP64


def atomp(sxpr) -> bool:
    """Whether ``sxpr`` prints bare: ``''`` no; ``@`` or only ASCII letters,
    digits and ``. - _ : / ~`` yes (Python 2 byte-string ``isalnum``)."""
    if isinstance(sxpr, (bytes, bytearray)):
        sxpr = bytes(sxpr).decode("latin-1")
    if not isinstance(sxpr, str) or sxpr == "":
        return False
    return sxpr == "@" or _ATOM_RE.fullmatch(sxpr) is not None


def _repr_table(quote: str, high: str) -> dict:
    table = {}
    for code in range(0x100):
        c = chr(code)
        if c == "\\" or c == quote:
            table[code] = "\\" + c
        elif c == "\t":
            table[code] = "\\t"
        elif c == "\n":
            table[code] = "\\n"
        elif c == "\r":
            table[code] = "\\r"
        elif code < 0x20 or code == 0x7f:
            table[code] = "\\x%02x" % code
        elif code > 0x7f and (high == "bytes" or not c.isprintable()):
            table[code] = "\\x%02x" % code
    return table


_REPR_TABLES = {(q, h): _repr_table(q, h) for q in "'\"" for h in ("bytes", "text")}
_PLAIN_RE = re.compile(r"[ !#-&(-\[\]-~]*")   # printable ASCII minus \ ' "


def _py2_repr(s: str, high: str = "text") -> str:
    """Python 2 ``repr`` of a byte string, emulated on ``s`` (section 11.3).

    Characters up to U+00FF are the bytes; with ``high="text"`` printable
    non-ASCII characters are written as themselves (UTF-8 when the output is
    encoded), with ``high="bytes"`` every byte >= 0x7f is ``\\xhh``.
    """
    if _PLAIN_RE.fullmatch(s):
        return "'" + s + "'"
    quote = '"' if ("'" in s and '"' not in s) else "'"
    return quote + s.translate(_REPR_TABLES[(quote, high)]) + quote


def _py2_float(x: float) -> str:
    """Python 2 ``str(float)``: 12 significant digits, ``.0`` when integral."""
    r = format(x, ".12g")
    if not any(c in r for c in ".enaif"):
        r += ".0"
    return r


def _format_item(x, escape_non_ascii: bool) -> str:
    if isinstance(x, str):
        if atomp(x):
            return x
        if escape_non_ascii and not x.isascii():
            return _py2_repr(x.encode("utf-8", "surrogatepass").decode("latin-1"), "bytes")
        return _py2_repr(x)
    if isinstance(x, int):
        if isinstance(x, bool) or _INT_MIN <= x <= _INT_MAX:
            return str(x)
        return _py2_repr(str(x))           # a Python 2 long
    if isinstance(x, float):
        return _py2_float(x)
    if isinstance(x, (bytes, bytearray)):
        s = bytes(x).decode("latin-1")
        return s if atomp(s) else _py2_repr(s, "bytes")
    return _py2_repr(str(x))


def _pieces(sxpr, escape_non_ascii: bool) -> List[str]:
    out: List[str] = []
    w = out.append
    if not isinstance(sxpr, _LIST):
        w(_format_item(sxpr, escape_non_ascii))
        return out
    w("(")
    stack = [iter(sxpr)]
    first = [True]
    while stack:
        for x in stack[-1]:
            if first[-1]:
                first[-1] = False
            else:
                w(" ")
            if isinstance(x, _LIST):
                w("(")
                stack.append(iter(x))
                first.append(True)
                break
            w(_format_item(x, escape_non_ascii))
        else:
            w(")")
            stack.pop()
            first.pop()
    return out


def to_string(sxpr, *, escape_non_ascii: bool = False) -> str:
    """``sxpr`` as legacy ``show`` wrote it: single spaces, no newlines.

    ``escape_non_ascii=True`` writes non-ASCII text as the ``\\xhh`` escapes
    of its UTF-8 bytes, exactly what Python 2 xend printed for a UTF-8 byte
    string; by default such text is written as itself.
    """
    return "".join(_pieces(sxpr, escape_non_ascii))


def show(sxpr, out=None) -> None:
    """Write ``sxpr`` to ``out`` (default: ``sys.stdout`` at call time)."""
    if out is None:
        out = sys.stdout
    out.write(to_string(sxpr))


def show_xml(sxpr, out=None) -> None:
    """``<name k=v ...>children separated by spaces</name>`` (section 11.3)."""
    if out is None:
        out = sys.stdout
    parts: List[str] = []
    w = parts.append

    def leaf(x) -> str:
        if isinstance(x, str) and atomp(x):
            return x
        return str(x)

    def opening(x) -> Iterator:
        w("<%s" % (name(x),))
        for attr in attributes(x):
            w(" %s=%s" % (attr[0], attr[1]))
        w(">")
        return iter(children(x))

    if not isinstance(sxpr, _LIST):
        out.write(leaf(sxpr))
        return
    stack = [(opening(sxpr), name(sxpr))]
    first = [True]
    while stack:
        it, elt = stack[-1]
        for x in it:
            if first[-1]:
                first[-1] = False
            else:
                w(" ")
            if isinstance(x, _LIST):
                stack.append((opening(x), name(x)))
                first.append(True)
                break
            w(leaf(x))
        else:
            w("</%s>" % (elt,))
            stack.pop()
            first.pop()
    out.write("".join(parts))


# -- accessors (section 11.4; all tolerate non-list input) ----------------------

def elementp(sxpr, elt=None) -> bool:
    """A non-empty list/tuple, named ``elt`` if that is given."""
    return (isinstance(sxpr, _LIST) and len(sxpr) > 0
            and (elt is None or sxpr[0] == elt))


def name(sxpr):
    """A string is its own name; an element's name is item 0; else ``None``."""
    if isinstance(sxpr, (str, bytes)):
        return sxpr
    if isinstance(sxpr, _LIST) and len(sxpr):
        return sxpr[0]
    return None


def attributes(sxpr) -> list:
    """The ``[k, v]`` pairs of the ``(@ ...)`` list in item 1, or ``[]``."""
    if isinstance(sxpr, _LIST) and len(sxpr) > 1:
        attr = sxpr[1]
        if elementp(attr, k_attr_open):
            return attr[1:]
    return []


def attribute(sxpr, key, val=None):
    """The value of the first attribute pair named ``key``, or ``val``."""
    for x in attributes(sxpr):
        if isinstance(x, _LIST) and len(x) > 1 and x[0] == key:
            return x[1]
    return val


def children(sxpr, elt=None):
    """Items after the name and any attribute list; only elements named
    ``elt`` if that is given (and truthy, as in the legacy code)."""
    val: Any = []
    if isinstance(sxpr, _LIST) and len(sxpr) > 1:
        i = 2 if elementp(sxpr[1], k_attr_open) else 1
        val = sxpr[i:]
    if elt:
        kept = [x for x in val if elementp(x, elt)]
        val = tuple(kept) if isinstance(val, tuple) else kept
    return val


def child(sxpr, elt, val=None):
    """The first child element named ``elt``, or ``val``."""
    for x in children(sxpr):
        if elementp(x, elt):
            return x
    return val


def child_at(sxpr, index, val=None):
    """``children(sxpr)[index]``, or ``val``."""
    kids = children(sxpr)
    if len(kids) > index:
        return kids[index]
    return val


def child0(sxpr, val=None):
    return child_at(sxpr, 0, val)


def child1(sxpr, val=None):
    return child_at(sxpr, 1, val)


def child2(sxpr, val=None):
    return child_at(sxpr, 2, val)


def child3(sxpr, val=None):
    return child_at(sxpr, 3, val)


def child4(sxpr, val=None):
    return child_at(sxpr, 4, val)


def child_value(sxpr, elt, val=None):
    """The first child of the first ``elt`` child; ``(elt)`` gives ``val``."""
    kid = child(sxpr, elt)
    if kid:
        val = child_at(kid, 0, val)
    return val


def has_id(sxpr, id) -> bool:
    return attribute(sxpr, "id") == id


def with_id(sxpr, id, val=None):
    """The first item with attribute ``id`` at any depth (depth-first)."""
    if not isinstance(sxpr, _LIST):
        return val
    stack = [iter(sxpr)]
    while stack:
        for n in stack[-1]:
            if has_id(n, id):
                return n
            if isinstance(n, _LIST):
                stack.append(iter(n))
                break
        else:
            stack.pop()
    return val


def child_with_id(sxpr, id, val=None):
    """The first direct item with attribute ``id``."""
    if isinstance(sxpr, _LIST):
        for n in sxpr:
            if has_id(n, id):
                return n
    return val


def elements(sxpr, ctxt=None):
    """Pre-order ``(node, ctxt)``; ``ctxt`` is ``(index, parent, parent_ctxt)``."""
    yield (sxpr, ctxt)
    stack = [(sxpr, ctxt, enumerate(children(sxpr)))]
    while stack:
        parent, pctxt, it = stack[-1]
        for i, n in it:
            if isinstance(n, _LIST):
                c = (i, parent, pctxt)
                yield (n, c)
                stack.append((n, c, enumerate(children(n))))
                break
        else:
            stack.pop()


def child_map(sxpr):
    """``({name: [elements...]}, [non-element children])``.

    Groups are in first-seen order (the legacy dict order was arbitrary).
    An element whose name is itself a list (``((0 1) (2 3))``) cannot be a
    key; it is counted as a non-element child (the legacy code crashed).
    """
    m: dict = {}
    v: list = []
    for x in children(sxpr):
        if elementp(x):
            try:
                m.setdefault(x[0], []).append(x)
                continue
            except TypeError:
                pass
        v.append(x)
    return (m, v)


def merge(s1, s2):
    """Merge ``s2`` into ``s1`` by child name, ``s1`` winning (section 11.4)."""
    root = [None]
    todo = [(root, 0, s1, s2)]
    while todo:
        target, index, a, b = todo.pop()
        target[index] = _merge_step(a, b, todo)
    return root[0]


def _merge_step(s1, s2, todo):
    if s1 is None:
        return s2
    if s2 is None:
        return s1
    if not elementp(s1):
        return s1
    m1, v1 = child_map(s1)
    m2, v2 = child_map(s2)
    val = [name(s1)]
    for k1, f1 in m1.items():
        _merge_list_into(val, f1, m2.get(k1, []), todo)
    for k2, f2 in m2.items():
        if k2 not in m1:
            val.extend(f2)
    val.extend(v1)
    return val


def _merge_list_into(sxpr, l1, l2, todo) -> None:
    nmin = min(len(l1), len(l2))
    for i in range(nmin):
        sxpr.append(None)
        todo.append((sxpr, len(sxpr) - 1, l1[i], l2[i]))
    sxpr.extend(l1[nmin:])
    sxpr.extend(l2[nmin:])


def merge_list(sxpr, l1, l2):
    """Append to ``sxpr`` the pairwise merges of ``l1`` and ``l2``, then the
    excess of the longer list; returns ``sxpr``."""
    nmin = min(len(l1), len(l2))
    for i in range(nmin):
        sxpr.append(merge(l1[i], l2[i]))
    for i in range(nmin, len(l1)):
        sxpr.append(l1[i])
    for i in range(nmin, len(l2)):
        sxpr.append(l2[i])
    return sxpr
