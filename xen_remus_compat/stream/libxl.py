"""libxl migration stream v2 (docs/specs/libxl-migration-stream.pandoc rev 2).

xl-side.md §3.3.  The header is big-endian; records use the shared framing
of :mod:`.records`.  Body rules are those of libxl 4.17's reader
(``libxl_stream_read.c: process_record``) and of Xen's own verifier
(``xen/migration/libxl.py``), with the Python 3 bug of the latter fixed
(xenstore data is checked as bytes, xl-side.md §5.2).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

from .records import RecordBodyError, Rules, pack_record

# --- header (spec "Header") ------------------------------------------------
HEADER = struct.Struct(">QII")            # ident, version, options
IDENT = 0x4C6962786C466D74                # "LibxlFmt"
VERSION = 2
OPT_BIG_ENDIAN = 1 << 0
OPT_LEGACY = 1 << 1
OPT_RESERVED = 0xFFFFFFFC

# --- record types (spec "Record Overview") -----------------------------------
END = 0x00000000
LIBXC_CONTEXT = 0x00000001
EMULATOR_XENSTORE_DATA = 0x00000002
EMULATOR_CONTEXT = 0x00000003
CHECKPOINT_END = 0x00000004
CHECKPOINT_STATE = 0x00000005

#: libxl itself has no record size limit (it mallocs the length it reads);
#: we apply libxc's 128 MiB (REC_LENGTH_MAX) to libxl records too.
MAX_BODY = 128 << 20

# --- emulator sub-header (spec "Emulator Records") --------------------------
EMULATOR_HEADER = struct.Struct("<II")    # emulator_id, index
EMULATOR_IDS = {0: "unknown", 1: "qemu-traditional", 2: "qemu-upstream"}
EMULATOR_QEMU_TRADITIONAL = 1
EMULATOR_QEMU_UPSTREAM = 2

CHECKPOINT_STATE_BODY = struct.Struct("<II")  # control_id, padding
CHECKPOINT_STATES = {0: "NEW", 1: "SVM_SUSPENDED", 2: "SVM_READY",
                     3: "SVM_RESUMED"}


def _empty(body: bytes, rules: Rules) -> str:
    if body:
        raise RecordBodyError(f"record must be empty, has {len(body)} bytes")
    return ""


def _emulator_header(body: bytes) -> Tuple[int, int]:
    if len(body) < EMULATOR_HEADER.size:
        raise RecordBodyError(f"record too short to contain the emulator "
                              f"header: {len(body)} < {EMULATOR_HEADER.size}")
    emu_id, index = EMULATOR_HEADER.unpack_from(body)
    if emu_id not in EMULATOR_IDS:
        raise RecordBodyError(f"unrecognised emulator id 0x{emu_id:x}")
    return emu_id, index


def xenstore_pairs(data: bytes) -> List[Tuple[bytes, bytes]]:
    """Split packed ``key\\0value\\0`` data (spec EMULATOR_XENSTORE_DATA)."""
    if not data:
        return []
    if data[-1] != 0:
        raise RecordBodyError("xenstore data not NUL terminated",
                              EMULATOR_HEADER.size + len(data) - 1)
    parts = data[:-1].split(b"\0")
    if len(parts) % 2:
        raise RecordBodyError(f"xenstore data: expected an even number of "
                              f"strings, got {len(parts)}", EMULATOR_HEADER.size)
    return list(zip(parts[0::2], parts[1::2]))


def _xenstore(body: bytes, rules: Rules) -> str:
    emu_id, index = _emulator_header(body)
    pairs = xenstore_pairs(body[EMULATOR_HEADER.size:])
    return f"{EMULATOR_IDS[emu_id]} index {index}, {len(pairs)} keys"


def _emulator_context(body: bytes, rules: Rules) -> str:
    emu_id, index = _emulator_header(body)
    return (f"{EMULATOR_IDS[emu_id]} index {index}, "
            f"{len(body) - EMULATOR_HEADER.size} bytes of state")


def _checkpoint_state(body: bytes, rules: Rules) -> str:
    if len(body) != CHECKPOINT_STATE_BODY.size:
        raise RecordBodyError(f"CHECKPOINT_STATE body must be "
                              f"{CHECKPOINT_STATE_BODY.size} bytes, has "
                              f"{len(body)}")
    control, pad = CHECKPOINT_STATE_BODY.unpack(body)
    if pad:
        rules.only_strict(f"CHECKPOINT_STATE padding is 0x{pad:x}, not 0", 4)
    return CHECKPOINT_STATES.get(control, f"control 0x{control:x}")


@dataclass(frozen=True)
class RecordType:
    """One row of the spec's record table: code, name, body check."""

    code: int
    name: str
    check: Callable[[bytes, Rules], str]


RECORD_TYPES: Dict[int, RecordType] = {r.code: r for r in (
    RecordType(END, "END", _empty),
    RecordType(LIBXC_CONTEXT, "LIBXC_CONTEXT", _empty),
    RecordType(EMULATOR_XENSTORE_DATA, "EMULATOR_XENSTORE_DATA", _xenstore),
    RecordType(EMULATOR_CONTEXT, "EMULATOR_CONTEXT", _emulator_context),
    RecordType(CHECKPOINT_END, "CHECKPOINT_END", _empty),
    RecordType(CHECKPOINT_STATE, "CHECKPOINT_STATE", _checkpoint_state),
)}


# --- writers ----------------------------------------------------------------
def pack_header(options: int = 0) -> bytes:
    """The 16-byte stream header libxl writes (little-endian stream)."""
    return HEADER.pack(IDENT, VERSION, options)


def check_header(raw: bytes, rules: Rules) -> Tuple[int, str]:
    """Validate a header as libxl's ``stream_header_done``; (options, text)."""
    ident, version, options = HEADER.unpack(raw)
    if ident != IDENT:
        raise RecordBodyError(f"Invalid ident: expected 0x{IDENT:016x}, got "
                              f"0x{ident:016x}")
    if version != VERSION:
        raise RecordBodyError(f"Unexpected Version: expected {VERSION}, got "
                              f"{version}", 8)
    if options & OPT_BIG_ENDIAN:
        raise RecordBodyError("Unable to handle big endian streams", 12)
    if options & OPT_RESERVED:
        rules.only_strict(f"reserved bits set in header options: "
                              f"0x{options & OPT_RESERVED:x}", 12)
    legacy = ", converted from legacy" if options & OPT_LEGACY else ""
    return options, f"v{version}, little endian{legacy}"


def end_record() -> bytes:
    return pack_record(END)


def libxc_context_record() -> bytes:
    return pack_record(LIBXC_CONTEXT)


def checkpoint_end_record() -> bytes:
    return pack_record(CHECKPOINT_END)


def emulator_xenstore_record(pairs: List[Tuple[str, str]], *,
                             emulator_id: int = EMULATOR_QEMU_UPSTREAM,
                             index: int = 0) -> bytes:
    """EMULATOR_XENSTORE_DATA from ``(key, value)`` pairs (HVM only)."""
    data = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs)
    return pack_record(EMULATOR_XENSTORE_DATA,
                       EMULATOR_HEADER.pack(emulator_id, index) + data)


def emulator_context_record(blob: bytes, *,
                            emulator_id: int = EMULATOR_QEMU_UPSTREAM,
                            index: int = 0) -> bytes:
    """EMULATOR_CONTEXT wrapping a device-model state blob (HVM only)."""
    return pack_record(EMULATOR_CONTEXT,
                       EMULATOR_HEADER.pack(emulator_id, index) + bytes(blob))
