"""The xl layer of a migration: handshake strings and the save-file header.

Facts from xl-side.md §3.1-§3.2 (Xen 4.17 ``tools/xl/xl.h``,
``xl_saverestore.c: save_domain_core_writeconfig``, ``xl_vmcontrol.c:
create_domain``).  Integers are in the saving host's byte order; x86 hosts
write little-endian, which is the only order this module writes or accepts
(``xl`` itself rejects any other with "File has wrong byte order").
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from .source import ByteSource, StreamError

#: 32 bytes, ends ``\n \0 \r`` (xl.h ``savefileheader_magic``).
MAGIC = b"Xen saved domain, xl format\n \0 \r"
BYTEORDER = 0x01020304                     # SAVEFILE_BYTEORDER_VALUE
#: magic, byteorder, mandatory_flags, optional_flags, optional_data_len
HEADER = struct.Struct("<32sIIII")
CONFIG_LEN = struct.Struct("<I")           # first item of the optional data

MANDATORY_FLAG_JSON = 1 << 0               # XL_MANDATORY_FLAG_JSON
MANDATORY_FLAG_STREAMV2 = 1 << 1           # XL_MANDATORY_FLAG_STREAMv2
MANDATORY_FLAGS_ALL = MANDATORY_FLAG_JSON | MANDATORY_FLAG_STREAMV2
FLAG_NAMES = {MANDATORY_FLAG_JSON: "JSON", MANDATORY_FLAG_STREAMV2: "STREAMv2"}

#: Our ceiling for the optional data (the JSON config): xl itself has none
#: (it mallocs whatever the header says); a domain config is kilobytes.
MAX_OPTIONAL_DATA = 16 << 20

#: Handshake messages, exactly as on the wire (xl-side.md §3.1).  The banner
#: has no NUL; the others are sent with ``sizeof()``, i.e. with their NUL.
BANNER = b"xl migration receiver ready, send binary domain data.\n"
READY = b"domain received, ready to unpause\0"
GO = b"domain is yours, you are cleared to unpause\0"
REPORT = b"my copy unpause results are as follows\0"   # + 1 status byte
HANDSHAKE = {"banner": BANNER, "ready": READY, "go": GO, "report": REPORT}


@dataclass
class Header:
    """A parsed xl header; ``config`` is the raw config bytes (NUL kept)."""

    mandatory_flags: int
    optional_flags: int
    optional_data_len: int
    config: bytes
    offset: int = 0

    @property
    def size(self) -> int:
        return HEADER.size + self.optional_data_len

    @property
    def streamv2(self) -> bool:
        return bool(self.mandatory_flags & MANDATORY_FLAG_STREAMV2)

    @property
    def is_json(self) -> bool:
        return bool(self.mandatory_flags & MANDATORY_FLAG_JSON)

    def config_text(self) -> str:
        """The config without its trailing NUL, decoded as UTF-8."""
        raw = self.config
        if raw.endswith(b"\0"):
            raw = raw[:-1]
        return raw.decode("utf-8", "replace")

    def config_json(self) -> Optional[dict]:
        """The ``libxl_domain_config`` when the JSON flag is set, else None."""
        if not self.is_json or not self.config:
            return None
        return json.loads(self.config_text())

    def describe(self) -> str:
        flags = "|".join(n for bit, n in FLAG_NAMES.items()
                         if self.mandatory_flags & bit) or "0"
        return (f"flags 0x{self.mandatory_flags:x} ({flags})/"
                f"0x{self.optional_flags:x}, optional data "
                f"{self.optional_data_len}, config {len(self.config)} bytes")


ConfigLike = Union[dict, str, bytes]


def config_bytes(config: ConfigLike) -> bytes:
    """The config as xl sends it: JSON text plus one NUL (xl-side §3.2)."""
    if isinstance(config, dict):
        data = json.dumps(config, indent=4).encode("utf-8")
    elif isinstance(config, str):
        data = config.encode("utf-8")
    else:
        data = bytes(config)
    if data.endswith(b"\0"):
        data = data[:-1]
    if b"\0" in data:
        raise ValueError("domain config contains a NUL byte")
    return data + b"\0"


def pack_header(config: Optional[ConfigLike], *, json_config: bool = True,
                mandatory_flags: Optional[int] = None) -> bytes:
    """Header + optional data exactly as ``save_domain_core_writeconfig``.

    ``mandatory_flags`` defaults to STREAMv2, plus JSON when a non-empty JSON
    config is given; ``json_config=False`` sends an xl.cfg text config.
    """
    cfg = config_bytes(config) if config is not None else b""
    flags = MANDATORY_FLAG_STREAMV2
    if cfg and json_config:
        flags |= MANDATORY_FLAG_JSON
    if mandatory_flags is not None:
        flags = mandatory_flags
    optional = CONFIG_LEN.pack(len(cfg)) + cfg
    return HEADER.pack(MAGIC, BYTEORDER, flags, 0, len(optional)) + optional


def read_header(src: ByteSource) -> Header:
    """Read and check an xl header the way ``create_domain`` does.

    Errors carry xl's own wording and the offset of the offending field.
    """
    start = src.offset
    raw = src.read_exact(HEADER.size, "xl header")
    magic, byteorder, mandatory, optional, optlen = HEADER.unpack(raw)
    if magic != MAGIC:
        raise src.error("File has wrong magic number - corrupt or for a "
                        f"different tool? (got {magic[:32]!r})", start)
    if byteorder != BYTEORDER:
        raise src.error(f"File has wrong byte order (byteorder field "
                        f"0x{byteorder:08x}, expected 0x{BYTEORDER:08x})",
                        start + 32)
    bad = mandatory & ~MANDATORY_FLAGS_ALL
    if bad:
        raise src.error(f"Savefile has mandatory flag(s) 0x{bad:x} which are "
                        "not supported; need newer xl", start + 36)
    if optlen > MAX_OPTIONAL_DATA:
        raise src.error(f"xl header optional data length {optlen} exceeds "
                        f"the limit of {MAX_OPTIONAL_DATA} bytes", start + 44)
    config = b""
    if optlen:
        opt_at = src.offset
        opt = src.read_exact(optlen, "xl header optional data")
        if optlen < CONFIG_LEN.size:
            raise src.error("Savefile truncated. (optional data shorter than "
                            "the config length field)", opt_at)
        (cfglen,) = CONFIG_LEN.unpack_from(opt)
        if cfglen > optlen - CONFIG_LEN.size:
            raise src.error(f"Savefile truncated. (config length {cfglen} > "
                            f"{optlen - CONFIG_LEN.size} bytes of optional "
                            "data left)", opt_at)
        config = bytes(opt[CONFIG_LEN.size:CONFIG_LEN.size + cfglen])
    hdr = Header(mandatory, optional, optlen, config, start)
    if hdr.is_json and config and not config.endswith(b"\0"):
        raise src.error("JSON domain config is not NUL-terminated",
                        start + HEADER.size + CONFIG_LEN.size)
    return hdr


def check_config(hdr: Header, src: ByteSource) -> Optional[dict]:
    """Decode the JSON config, turning a JSON error into a stream error.

    Python's JSON decoder recurses once per nesting level: a config nested
    deeper than the interpreter's stack (libxl's own JSON parser, yajl,
    stops at 128 levels) is malformed input like any other, not our bug.
    """
    try:
        cfg = hdr.config_json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise src.error(f"domain config in the xl header is not valid JSON: "
                        f"{exc}", hdr.offset + HEADER.size + CONFIG_LEN.size
                        ) from exc
    except RecursionError:
        raise src.error("domain config in the xl header is not valid JSON: "
                        "nested too deeply",
                        hdr.offset + HEADER.size + CONFIG_LEN.size) from None
    if cfg is not None and not isinstance(cfg, dict):
        raise src.error("domain config in the xl header is not a JSON object",
                        hdr.offset + HEADER.size + CONFIG_LEN.size)
    return cfg


def expect_message(read: Callable[[int], bytes], name: str) -> None:
    """Read one handshake message (``banner``, ``ready``...) and check it.

    Mirrors ``migrate_read_fixedmessage``: a short read or other bytes are
    an error that quotes what arrived.
    """
    want = HANDSHAKE[name]
    got = b""
    while len(got) < len(want):
        chunk = read(len(want) - len(got))
        if not chunk:
            break
        got += chunk
    if got != want:
        raise StreamError(f"{name} contained unexpected data instead of "
                          f"{want!r}: got {got!r}", source="migration stream",
                          offset=0)


def shown(text: str) -> str:
    """``text`` safe to print on one line: what is not printable (newline,
    ESC, a lone surrogate from a JSON ``\\udXXX`` escape...) is written as
    its Python escape, so a name read from a stream cannot forge output
    lines, move the cursor, or fail to encode."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def config_name(config: Optional[dict]) -> Optional[str]:
    """``c_info.name`` of a ``libxl_domain_config``, if present."""
    if not config:
        return None
    c_info: Any = config.get("c_info") or {}
    name = c_info.get("name") if isinstance(c_info, dict) else None
    return name if isinstance(name, str) else None
