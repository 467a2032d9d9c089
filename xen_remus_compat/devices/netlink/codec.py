"""Netlink framing: the fixed layouts and the attribute codec.

The one place where netlink bytes are laid out by hand.  Each fixed part of
a message is a :class:`struct.Struct` in native byte order with the kernel's
sizes and explicit padding (what the legacy formats ``IHHII``, ``HH``,
``BxxxiIII``, ``BxHiII`` meant on Linux; legacy-api.md §6.2).  Message
*bodies* of tc requests are encoded by pyroute2's message classes
(:mod:`.tc`); this module frames them, decodes replies, and serves the
legacy ``xen.remus.netlink`` classes, which keep their shapes on top of it.
"""
from __future__ import annotations

import struct
from typing import Dict

from .uapi import NLA_TYPE_MASK

#: struct nlmsghdr: length, type, flags, seq, pid
NLMSGHDR = struct.Struct("=IHHII")
#: struct rtattr: length (header included, padding excluded), type
RTATTR = struct.Struct("=HH")
#: struct tcmsg: family, 3 pad bytes, ifindex, handle, parent, info
TCMSG = struct.Struct("=BxxxiIII")
#: struct ifinfomsg: family, pad, type, index, flags, change
IFINFOMSG = struct.Struct("=BxHiII")
#: struct rtgenmsg: family, padded to 4 bytes (wildcard dumps)
RTGENMSG = struct.Struct("=Bxxx")
#: struct sockaddr_nl: family, pad, pid, groups (the sender of a reply)
SOCKADDR_NL = struct.Struct("=HHII")
#: struct nlmsgerr's first field: 0 (ack) or a negative errno
NLMSGERR = struct.Struct("=i")
U32 = struct.Struct("=I")

#: where the header's flags and sequence number are (patched in place)
FLAGS_OFFSET = 6
SEQ_OFFSET = 8
#: where a tc message's attributes start: nlmsghdr + tcmsg
TC_ATTRS_OFFSET = NLMSGHDR.size + TCMSG.size


def align(length: int, alignto: int = 4) -> int:
    """``length`` rounded up to a multiple of ``alignto``."""
    return (length + alignto - 1) & ~(alignto - 1)


def pack_attr(rta_type: int, body: bytes) -> bytes:
    """One rtattr: header, ``body``, NUL padding to 4 bytes."""
    length = RTATTR.size + len(body)
    return RTATTR.pack(length, rta_type) + body + b"\0" * (align(length) - length)


def rtattrs(data: bytes, offset: int = TC_ATTRS_OFFSET) -> Dict[int, bytes]:
    """``{type: payload}`` of the attributes from ``offset`` (default: after
    the headers of a tc message); the type's flag bits are masked off."""
    out: Dict[int, bytes] = {}
    end = len(data)
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size:
            break
        out[kind & NLA_TYPE_MASK] = bytes(data[offset + RTATTR.size:offset + length])
        offset += align(length)
    return out


def cstr(data: bytes) -> str:
    """A NUL-terminated string attribute as text."""
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def message(mtype: int, flags: int, payload: bytes = b"", seq: int = 0, pid: int = 0) -> bytes:
    """A whole message: the header (length = 16 + payload) and ``payload``."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), mtype, flags, seq, pid) + payload


def set_flags(buf: bytearray, flags: int) -> None:
    """OR ``flags`` into the header of the message in ``buf``."""
    struct.pack_into("=H", buf, FLAGS_OFFSET,
                     struct.unpack_from("=H", buf, FLAGS_OFFSET)[0] | flags)
