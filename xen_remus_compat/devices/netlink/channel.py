"""One synchronous NETLINK_ROUTE socket of our own (legacy-api.md §6.3).

pyroute2 (0.9.7) is not used to *send* tc messages: the synchronous
``IPRoute.nlm_request()`` raises ``KeyError('nlm_generator')`` and
``IPRoute.tc()`` costs ~50x a raw round trip through its asyncio core, far
over the checkpoint budget (design.md, "Performance budget";
``bench/netbuf.py``).  :class:`Channel` sends a request and waits for its
ack, or runs a dump, with no event loop: the per-checkpoint path is one
send and one receive of a message encoded once.
"""
from __future__ import annotations

import errno
import os
import socket
import time
from typing import Iterator, List, Optional, Tuple

from ...errors import NetbufError
from .codec import NLMSGERR, NLMSGHDR, SEQ_OFFSET, U32, rtattrs, set_flags
from .uapi import (
    NETLINK_EXT_ACK, NETLINK_ROUTE, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED,
    NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSGERR_ATTR_MSG, SOL_NETLINK,
)

_HDR = NLMSGHDR
_U32 = U32
_I32 = NLMSGERR


class NetlinkError(OSError):
    """The kernel refused a request: ``errno`` plus its extended-ack text."""

    def __init__(self, err: int, extack: str = "") -> None:
        super().__init__(err, os.strerror(err))
        self.extack = extack

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno, str(self.errno))
        text = f"{name}: {self.strerror}"
        return f"{text} ({self.extack})" if self.extack else text


def is_gone(e: OSError) -> bool:
    """Errors that mean "already removed" when tearing down."""
    return e.errno in (errno.ENOENT, errno.ENODEV, errno.EINVAL)


def netns_path(name: str) -> str:
    return name if "/" in name else os.path.join("/var/run/netns", name)


def netlink_socket(netns: Optional[str]) -> socket.socket:
    """An unbound NETLINK_ROUTE socket, in network namespace ``netns``."""
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_ROUTE)
    path = netns_path(netns)
    if not os.path.exists(path):
        raise NetbufError(f"network namespace {netns}: {path} does not exist",
                          errno=errno.ENOENT)
    from pyroute2 import netns as prnetns
    return prnetns.create_socket(netns=path, family=socket.AF_NETLINK,
                                 socket_type=socket.SOCK_RAW, proto=NETLINK_ROUTE,
                                 flags=0)


class Channel:
    """One synchronous NETLINK_ROUTE socket: request/ack and dumps, no event loop.

    Like the legacy C handle (legacy-api.md §6.3): ``seq`` starts at the
    current time and every request gets ``++seq``; replies with another
    sequence number are skipped.
    """

    def __init__(self, netns: Optional[str] = None, *, sock: Optional[socket.socket] = None,
                 bufsize: int = 65536) -> None:
        if sock is None:
            sock = netlink_socket(netns)
        self.sock = sock
        self.netns = netns
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        except OSError:
            pass                        # pre-4.12 kernels: plain errno only
        sock.bind((0, 0))
        self.pid = sock.getsockname()[0]
        self.seq = int(time.time()) & 0x7FFFFFFF
        self._rbuf = bytearray(bufsize)
        self._rview = memoryview(self._rbuf)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fileno(self) -> int:
        return self.sock.fileno()

    @staticmethod
    def prepare(data: bytes) -> bytearray:
        """A reusable copy of ``data`` with NLM_F_ACK set (see :meth:`transact`)."""
        buf = bytearray(data)
        set_flags(buf, NLM_F_ACK)
        return buf

    def transact(self, buf: bytearray) -> None:
        """Send a prepared request (its seq is overwritten) and wait for its ack.

        The hot path of every checkpoint: one send, one receive.
        """
        self.seq = seq = (self.seq + 1) & 0xFFFFFFFF
        _U32.pack_into(buf, SEQ_OFFSET, seq)
        sock = self.sock
        sock.send(buf)
        rbuf = self._rbuf
        while True:
            n = sock.recv_into(rbuf)
            off = 0
            while off + 16 <= n:
                length, mtype, mflags, mseq, _ = _HDR.unpack_from(rbuf, off)
                if mseq == seq and mtype == NLMSG_ERROR:
                    err = _I32.unpack_from(rbuf, off + 16)[0]
                    if err:
                        raise netlink_error(rbuf, off, length, mflags, -err)
                    return
                if length < 16:
                    break
                off += (length + 3) & ~3

    def request(self, data: bytes) -> None:
        """Send one request and wait for the kernel's ack."""
        self.transact(self.prepare(data))

    def send_dump(self, data: bytes) -> int:
        """Send a dump request as given (flags untouched); returns its seq."""
        buf = bytearray(data)
        self.seq = seq = (self.seq + 1) & 0xFFFFFFFF
        _U32.pack_into(buf, SEQ_OFFSET, seq)
        self.sock.send(buf)
        return seq

    def iter_dump(self, seq: int) -> Iterator[Tuple[Tuple[int, int], bytes]]:
        """``((pid, groups), message)`` for each reply to dump ``seq``, until
        NLMSG_DONE; an NLMSG_ERROR raises :class:`NetlinkError`."""
        rbuf = self._rbuf
        while True:
            n, addr = self.sock.recvfrom_into(rbuf)
            data = bytes(rbuf[:n])
            off = 0
            while off + 16 <= n:
                length, mtype, mflags, mseq, _ = _HDR.unpack_from(data, off)
                if length < 16:
                    break
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return
                    if mtype == NLMSG_ERROR:
                        err = _I32.unpack_from(data, off + 16)[0]
                        if err:
                            raise netlink_error(data, off, length, mflags, -err)
                        return
                    if mtype != NLMSG_NOOP:
                        yield addr, data[off:off + length]
                off += (length + 3) & ~3

    def dump(self, data: bytes) -> List[bytes]:
        """Send a dump request; every reply message until NLMSG_DONE."""
        return [m for _, m in self.iter_dump(self.send_dump(data))]


def netlink_error(buf, off: int, length: int, flags: int, err: int) -> NetlinkError:
    """An NLMSG_ERROR at ``off`` as an exception, with the extended-ack text."""
    extack = ""
    if flags & NLM_F_ACK_TLVS:
        orig_len = _U32.unpack_from(buf, off + 20)[0]
        tlv = off + 20 + (16 if flags & NLM_F_CAPPED else ((orig_len + 3) & ~3))
        msg = rtattrs(bytes(buf[:off + length]), tlv).get(NLMSGERR_ATTR_MSG)
        if msg:
            extack = msg.rstrip(b"\0").decode("utf-8", "replace")
    return NetlinkError(err, extack)
