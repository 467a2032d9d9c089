"""The one reader of the xend S-expression dialect (legacy-api.md section 11.2).

A character-class state machine whose hot state, "between tokens", is driven
by one compiled regular expression that takes a whole token per step.
Atoms, strings and comments that run past the end of an input chunk continue
in their own states, so the incremental legacy :class:`~.parser.Parser`
(``input``/``input_eof``) and the modern :func:`~.load.loads` are the same
code and cannot disagree.  The reader keeps no Python recursion; nesting
deeper than :data:`MAX_DEPTH` is an error in the modern modes (a hostile
input of millions of ``(`` would otherwise take gigabytes before anything
noticed), while the legacy mode keeps the legacy reader's unbounded depth.

Every error names its line and column; with ``positions=True`` the reader
also records where each list starts (:class:`Position`: line, column and
offset), so code that finds a problem in a value after parsing can point at
it without scanning the text a second time.

Modes (docs/decisions.d/sxp.md):

* **modern** (default for :func:`~.load.loads`, :func:`~.load.load_file` and
  ``Parser()``): strict about parentheses (a missing or stray ``)`` is a
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
"""
from __future__ import annotations

import functools
import logging
import re
from typing import Any, Callable, List, NamedTuple, Optional, Tuple, Union

from .. import errors
from .syntax import EOT, QUOTES
from .unescape import EscapeError, decode_escapes

log = logging.getLogger("xen_remus_compat")


#: deepest list nesting the modern reader accepts (xend configurations nest
#: less than ten levels; every consumer below recurses at most this deep)
MAX_DEPTH = 256


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


# -- positions ------------------------------------------------------------------

class Position(NamedTuple):
    """Where something starts in the input: 1-based line and column (in
    characters), and the 0-based offset (characters of a ``str``, bytes of a
    ``bytes`` input)."""

    line: int
    col: int
    offset: int


def position_at(text: Union[str, bytes], offset: int) -> Position:
    """The :class:`Position` of ``offset`` in ``text``; in ``bytes`` the
    column counts the characters of the line's UTF-8 text up to there."""
    if isinstance(text, (bytes, bytearray)):
        start = text.rfind(b"\n", 0, offset) + 1
        col = len(bytes(text[start:offset]).decode("utf-8", "replace")) + 1
        return Position(text.count(b"\n", 0, offset) + 1, col, offset)
    return Position(text.count("\n", 0, offset) + 1,
                    offset - text.rfind("\n", 0, offset), offset)


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


class Reader:
    """The state machine of section 11.2: feed it text, finish it, read
    ``val`` (the complete top-level values).

    :class:`~.parser.Parser` puts the legacy incremental API on it; the
    modern entry points drive it directly.  ``legacy_escapes`` defaults to
    ``legacy``, or to the ``sxp_escapes`` switch of
    :mod:`xen_remus_compat.quirks` when that is on.  ``positions=True``
    records ``(list, start)`` in :attr:`spans` for every list read, where
    ``start`` is the absolute offset of its ``(``, or its :class:`Position`
    when the ``(`` was in an earlier chunk.
    """

    def __init__(self, *, legacy: bool = False, legacy_escapes: Optional[bool] = None,
                 lenient: bool = False, ascii_only: bool = False,
                 source: Optional[str] = None, positions: bool = False) -> None:
        if legacy_escapes is None:
            legacy_escapes = legacy or _quirk_escapes()
        self.legacy = legacy
        self.legacy_escapes = legacy_escapes
        self.lenient = lenient and not legacy
        self.source = source if source is not None else "<input>"
        self._m = _mode("legacy" if legacy else "ascii" if ascii_only else "modern")
        self._positions = positions
        self._max_depth = 1 << 62 if legacy else MAX_DEPTH
        self._warn: Callable[[ParseError], None] = _log_warning
        self.reset()

    def reset(self) -> None:
        """Forget everything read so far (the legacy API has this name)."""
        self.val: list = []         # complete top-level values (legacy name)
        self.eof = 0
        self.err = 0
        self.line_no = 0            # newlines seen so far (legacy counter)
        self.char_no = 0            # characters since the last newline
        self._cur = self.val
        self._stack: list = []      # enclosing lists
        self._opens: list = []      # where each open '(' is: offset or Position
        self.spans: Optional[List[Tuple[list, Union[int, Position]]]] = (
            [] if self._positions else None)
        self._state = _TOP
        self._parts: list = []
        self._delim = ""
        self._spos: Tuple[int, int] = (0, 0)
        self._base = 0              # absolute offset of the current chunk
        self._chunk = ""
        self._dangling = False

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
        if isinstance(p, Position):
            return p.line, p.col
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
        while k >= 0 and not isinstance(opens[k], Position):
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
                opens[j] = Position(line, col + 1, opens[j])
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
        spans = self.spans
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
                    if len(stack) >= self._max_depth:
                        raise self._error(f"lists nested more than {MAX_DEPTH} levels deep",
                                          t.start(1))
                    stack.append(cur)
                    opens.append(base + t.start(1))
                    cur = []
                elif k == 3:                                 # )
                    if stack:
                        done = cur
                        cur = stack.pop()
                        cur.append(done)
                        start = opens.pop()
                        if spans is not None:
                            spans.append((done, start))
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
            return decode_escapes(body, self.legacy_escapes)
        except EscapeError as e:
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
            decode_escapes(body, self.legacy_escapes)
        except EscapeError as e:
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
        spans = self.spans
        opens = self._opens
        while self._stack:
            parent = self._stack.pop()
            parent.append(cur)
            start = opens.pop()
            if spans is not None:
                spans.append((cur, start))
            cur = parent
        self._cur = cur


class _Stop(Exception):
    """Ctrl-D: the rest of the chunk is ignored."""


def _log_warning(w: ParseError) -> None:
    log.warning("%s", w)


def _quirk_escapes() -> bool:
    try:
        from .. import quirks
    except ImportError:          # pragma: no cover - quirks is optional here
        return False
    return bool(getattr(quirks.get(), "sxp_escapes", False))
