"""Record framing shared by the libxl (v2) and libxc (v3) streams.

Both specs use the same record: ``type`` u32, ``body_length`` u32 (stream
byte order, little-endian on x86), the body, then zero padding to a multiple
of 8 (libxl-migration-stream.pandoc "Record Overview",
libxc-migration-stream.pandoc "Records"; xl-side.md §3.3, §3.4).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Optional

HEADER = struct.Struct("<II")
ALIGN = 8
#: Bit 31 of the type marks an optional record (libxc spec "Records").
OPTIONAL = 0x80000000


class RecordBodyError(ValueError):
    """A record body breaks its type's rules; ``at`` is the offset in it."""

    def __init__(self, message: str, at: int = 0) -> None:
        super().__init__(message)
        self.at = at


class Rules:
    """How strict a reader is about what restorers ignore.

    The specs say reserved fields and padding "must be ignored during
    restore", and libxc/libxl do; Xen's verifier rejects them.  A strict
    reader (our verifier) raises, a lenient one (the receiver) records a
    warning and goes on.
    """

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        #: ``(absolute offset, message)`` of every rule waived.
        self.warnings: list = []
        #: Stream offset that ``at`` values are relative to (set by the reader).
        self.base = 0

    def only_strict(self, message: str, at: int = 0) -> None:
        """Raise when strict, else remember a warning and carry on."""
        if self.strict:
            raise RecordBodyError(message, at)
        self.warnings.append((self.base + at, message))


def padding(length: int) -> int:
    """Zero bytes that follow a body of *length* bytes."""
    return -length % ALIGN


def pack_record(rtype: int, body: bytes = b"") -> bytes:
    """One complete record: header, body, zero padding."""
    return HEADER.pack(rtype, len(body)) + bytes(body) + b"\0" * padding(len(body))


def pack_record_header(rtype: int, length: int) -> bytes:
    """Only the 8-byte header (the body is written by someone else)."""
    return HEADER.pack(rtype, length)


@dataclass
class Record:
    """One record as read: where it starts, its layer and its body.

    ``epoch`` is the checkpoint epoch it belongs to (0 = the first, live
    part); ``info`` is what the type's checker parsed (e.g. a PageData).
    """

    layer: str
    type: int
    name: str
    offset: int
    length: int
    body: bytes = field(repr=False, default=b"")
    epoch: int = 0
    info: Any = None
    detail: str = ""

    @property
    def size(self) -> int:
        return HEADER.size + self.length + padding(self.length)

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def optional(self) -> bool:
        return bool(self.type & OPTIONAL)


def type_name(table: dict, rtype: int, layer: str) -> str:
    """Spec name of *rtype*, or a descriptive placeholder."""
    entry: Optional[Any] = table.get(rtype)
    if entry is not None:
        return entry.name
    kind = "optional" if rtype & OPTIONAL else "unknown"
    return f"{kind} {layer} record 0x{rtype:08x}"
