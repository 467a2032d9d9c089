"""Backslash escapes in quoted strings (section 11.2, fixes from section 14.2).

Kept apart from the reader because the two modes differ here and nowhere
else in a string: the legacy mode reproduces both escape bugs (``\\x`` hex
digits counted from 'A', an unknown escape drops its character), the modern
mode decodes what the escape says.
"""
from __future__ import annotations

import re

from .syntax import escapes


class EscapeError(Exception):
    """An invalid escape at ``index`` of a string's body; the reader turns it
    into a positioned :class:`~.reader.ParseError`."""

    def __init__(self, index: int, message: str, *, end: int = -1,
                 short_hex: bool = False, legacy_hex: bool = False):
        super().__init__(message)
        self.index = index          # the backslash, in the string's body
        self.end = end              # end of the escape (short_hex only)
        self.message = message
        self.short_hex = short_hex  # \x with fewer than two digits
        self.legacy_hex = legacy_hex


_ESCAPE_RE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{0,2})|([\s\S]))")


def legacy_hex_value(digits: str) -> int:
    """The value the legacy parser gave ``\\x`` digits."""
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


def decode_escapes(body: str, legacy: bool) -> str:
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
                raise EscapeError(m.start(), "invalid octal escape: out of range " + octal)
            out.append(chr(value))
        elif hexa is not None:
            if legacy:
                if len(hexa) < 2:
                    raise EscapeError(m.start(), "invalid hex escape: \\x" + hexa
                                      + " (the legacy parser raised NameError)",
                                      end=m.end(), short_hex=True, legacy_hex=True)
                out.append(chr(legacy_hex_value(hexa)))
            else:
                if not hexa:
                    raise EscapeError(m.start(), "invalid hex escape: \\x without hex digits",
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
