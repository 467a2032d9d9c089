"""Page contents of the simulated guest (the contract shared with simxen).

Why: ``lowlevel/simxen`` (C) writes these pages into its libxc stream and the
receiver checks what it materialised against the same function, so a backup
can prove it holds exactly the pages of the last committed checkpoint.

Contract (one 4096-byte page per ``(pfn, version)``):

* bytes 0..7   ``pfn``     little-endian u64;
* bytes 8..15  ``version`` little-endian u64 (0 = initial content);
* bytes 16..4095: bytes 16..4095 of ``bytes(range(256))`` rotated left by
  ``(pfn * 7 + version) & 0xff`` and repeated 16 times.
"""
from __future__ import annotations

import functools
import struct
from typing import Optional, Tuple

PAGE_SIZE = 4096
_BASE = bytes(range(256))
_HEAD = struct.Struct("<QQ")


@functools.lru_cache(maxsize=256)
def _pattern(rot: int) -> bytes:
    rotated = _BASE[rot:] + _BASE[:rot]
    return (rotated * (PAGE_SIZE // 256))[_HEAD.size:]


def rotation(pfn: int, version: int) -> int:
    """The left rotation of the page's byte pattern."""
    return (pfn * 7 + version) & 0xFF


def page_bytes(pfn: int, version: int) -> bytes:
    """The 4096 bytes of page *pfn* at *version* (see the module contract)."""
    if pfn < 0 or version < 0:
        raise ValueError(f"pfn and version must be >= 0, got {pfn}, {version}")
    return _HEAD.pack(pfn & 0xFFFFFFFFFFFFFFFF, version & 0xFFFFFFFFFFFFFFFF) \
        + _pattern(rotation(pfn, version))


def decode(data: bytes) -> Optional[Tuple[int, int]]:
    """``(pfn, version)`` if *data* is a contract page, else ``None``."""
    if len(data) != PAGE_SIZE:
        return None
    pfn, version = _HEAD.unpack_from(data)
    if data[_HEAD.size:] != _pattern(rotation(pfn, version)):
        return None
    return pfn, version
