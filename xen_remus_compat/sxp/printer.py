"""The legacy printer (legacy-api.md section 11.3): what xend's ``show``
wrote, so configs we write read back in xend and in our reader alike.

Strings are quoted with Python 2 ``repr`` rules emulated on their characters;
the printer is iterative, so nesting depth is the input's, not the stack's.
"""
from __future__ import annotations

import re
import sys
from typing import Iterator, List

from .accessors import attributes, children, name
from .syntax import LIST_TYPES as _LIST

_ATOM_RE = re.compile(r"[A-Za-z0-9._:/~-]+")
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1       # Python 2 int on LP64


def atomp(sxpr) -> int:
    """Whether ``sxpr`` prints bare: ``''`` no; ``@`` or only ASCII letters,
    digits and ``. - _ : / ~`` yes (Python 2 byte-string ``isalnum``).
    ``1`` or ``0``, as the legacy function returned (not ``True``/``False``)."""
    if isinstance(sxpr, (bytes, bytearray)):
        sxpr = bytes(sxpr).decode("latin-1")
    if not isinstance(sxpr, str) or sxpr == "":
        return 0
    return 1 if sxpr == "@" or _ATOM_RE.fullmatch(sxpr) is not None else 0


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


def atom_to_string(x, escape_non_ascii: bool = False) -> str:
    """One non-list item as the printer writes it (bare when :func:`atomp`)."""
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
        w(atom_to_string(sxpr, escape_non_ascii))
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
            w(atom_to_string(x, escape_non_ascii))
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
        if isinstance(x, float):
            return _py2_float(x)        # Python 2's str(): 0.3, not 0.30000000000000004
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
