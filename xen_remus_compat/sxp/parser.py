"""The legacy incremental parser API of ``xen.xend.sxp`` (section 11.2, 11.4).

:class:`Parser` is the one :class:`~.reader.Reader` with the legacy method
names on top (``input``/``input_eof``/``ready``/``get_val``/``get_all``), and
``parse``/``from_string``/``all_from_string`` are the legacy helpers built on
it, quirks kept where legacy callers depend on them.
"""
from __future__ import annotations

import codecs
import io as _io
from typing import Optional

from .reader import Reader


class Parser(Reader):
    """The incremental reader of section 11.2, with the legacy API.

    ``input(buf)`` feeds text (``str``, or ``bytes`` decoded as UTF-8; an
    empty ``buf`` means EOF), ``input_eof()`` ends the input, ``ready()`` /
    ``get_val()`` / ``get_all()`` hand out the complete top-level values.

    ``legacy=True`` reproduces the legacy parser exactly, quirks included;
    the default is the modern mode (:mod:`.reader`).
    ``legacy_escapes`` defaults to ``legacy``, or to the ``sxp_escapes``
    switch of :mod:`xen_remus_compat.quirks` when that is on.
    """

    error = None                    # legacy set_error_stream target (unused)

    # -- legacy API ----------------------------------------------------------

    def reset(self) -> None:
        super().reset()
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
