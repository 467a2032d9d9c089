"""The modern entry points: read a whole text or file into values.

:func:`loads` and :func:`load_file` are what new code calls (strict by
default, see :mod:`.reader`); :func:`loads_located` is :func:`loads` that
also keeps where each list starts, for callers that find a problem in a value
after parsing and must point the operator at its line.
"""
from __future__ import annotations

import bisect
import contextlib
import gc
import logging
import os
from typing import Callable, Iterator, List, Optional

from .parser import Parser
from .reader import ParseError, Position, position_at

log = logging.getLogger("xen_remus_compat")


@contextlib.contextmanager
def gc_paused(size: int) -> Iterator[None]:
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
    return _read(text, source=source, lenient=lenient,
                 legacy_escapes=legacy_escapes, ascii_only=ascii_only).val


def loads_located(text: str, *, source: str = "<string>", lenient: bool = False,
                  legacy_escapes: bool = False, ascii_only: bool = False,
                  warnings: Optional[List[ParseError]] = None) -> "Located":
    """:func:`loads`, keeping the position of every list read (the same
    reader and errors; a little slower, so only for callers that need it).
    ``warnings``, when given, collects the lenient-mode warnings instead of
    logging them (a caller re-reading an input already warned about)."""
    if isinstance(text, (bytes, bytearray)):
        text = _decode_utf8(bytes(text), source)
    p = _read(text, source=source, lenient=lenient, legacy_escapes=legacy_escapes,
              ascii_only=ascii_only, positions=True, collect=warnings)
    return Located(p.val, text, p.spans or [])


class Located:
    """Values read by :func:`loads_located`, and where their lists start."""

    def __init__(self, values: list, text: str, spans: list) -> None:
        self.values = values
        self.text = text
        # keyed by id, each list kept with its start so that the id stays its
        self._starts = {id(node): (node, start) for node, start in spans}

    def position(self, node: list) -> Optional[Position]:
        """Where the ``(`` of ``node`` (a list of :attr:`values`) is."""
        known, start = self._starts.get(id(node), (None, None))
        if known is not node:
            return None
        if isinstance(start, Position):
            return start
        return position_at(self.text, start)


def _read(text, *, source, lenient, legacy_escapes, ascii_only,
          remap: Optional[Callable[[ParseError], None]] = None,
          positions: bool = False,
          collect: Optional[List[ParseError]] = None) -> Parser:
    """One parse of ``text``: the values in ``.val`` (and the lists' starts
    in ``.spans`` with ``positions``); lenient warnings logged, or appended
    to ``collect``; errors and warnings given to ``remap`` first."""
    if isinstance(text, (bytes, bytearray)):
        text = _decode_utf8(bytes(text), source)
    p = Parser(legacy_escapes=legacy_escapes, lenient=lenient,
               ascii_only=ascii_only, source=source, positions=positions)
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
        if collect is not None:
            collect.append(w)
        else:
            log.warning("%s", w)
    return p


_GC_PAUSE_MIN = 256 * 1024


def _decode_utf8(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col, _ = position_at(data, e.start)
        raise ParseError(None, f"invalid UTF-8 byte 0x{data[e.start]:02x}",
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
        e.line, e.col, _ = position_at(self.original, off)


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
    return _read(text, source=source, lenient=lenient, legacy_escapes=legacy_escapes,
                 ascii_only=ascii_only, remap=remap).val
