"""``xen.lowlevel.netlink`` (legacy-api.md §6.3) in pure Python.

The C module (a copy of iproute2's libnetlink) is gone with xend (§15); the
alias finder maps ``xen.lowlevel.netlink`` here.  Type ``rtnl`` keeps its
methods and errors: ``talk``, ``wilddump_request``, ``dump_request``,
``dump_filter``; failures are ``IOError`` with the legacy messages, now
carrying the kernel's errno.  The socket is the one of
:class:`xen_remus_compat.devices.netlink.Channel`, and the messages are
framed by :mod:`xen_remus_compat.devices.netlink.codec`.
"""
from __future__ import annotations

import socket
import sys
import time
from typing import Callable, Optional

from ..devices.netlink.channel import Channel, NetlinkError, netlink_socket
from ..devices.netlink.codec import RTGENMSG, SOCKADDR_NL, message
from ..devices.netlink.uapi import NLM_F_MATCH, NLM_F_REQUEST, NLM_F_ROOT
from ..errors import NetbufError

_DUMP_FLAGS = NLM_F_ROOT | NLM_F_MATCH | NLM_F_REQUEST      # 0x301
BUFSIZE = 32768


class rtnl(object):
    "rtnetlink handle"

    def __init__(self, netns: Optional[str] = None, sock: Optional[socket.socket] = None):
        """``netns`` and ``sock`` are extensions (tests, namespaces)."""
        try:
            if sock is None and netns is None:
                sock = netlink_socket(None)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFSIZE)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFSIZE)
            self._chan = Channel(netns, sock=sock)
        except (OSError, NetbufError) as e:
            raise IOError(getattr(e, "errno", None) or 0,
                          "could not open rtnl handle") from e
        self._chan.seq = int(time.time()) & 0xFFFFFFFF
        self._dumpseq: Optional[int] = None

    def close(self):
        self._chan.close()

    def fileno(self):
        return self._chan.fileno()

    def talk(self, msg, peer=0, groups=0):
        """Send ``msg`` (seq overwritten, NLM_F_ACK added); wait for the ack."""
        try:
            self._chan.request(bytes(msg))
        except NetlinkError as e:
            print("RTNETLINK answers: %s" % e.strerror, file=sys.stderr)
            raise IOError(e.errno, "error sending message") from e
        except OSError as e:
            raise IOError(e.errno, "error sending message") from e

    def _send_dump(self, msg: bytes) -> None:
        try:
            self._dumpseq = self._chan.send_dump(msg)
        except OSError as e:
            raise IOError(e.errno, "could not send dump request") from e

    def wilddump_request(self, family, type):
        """Header plus a 1-byte ``rtgenmsg`` (padded to 20 bytes), flags 0x301."""
        self._send_dump(message(type, _DUMP_FLAGS, RTGENMSG.pack(family)))

    def dump_request(self, type, payload):
        self._send_dump(message(type, _DUMP_FLAGS, bytes(payload)))

    def dump_filter(self, filter: Callable):
        """``filter(sockaddr_nl_bytes, message_bytes)`` for each reply to the
        last dump request, until NLMSG_DONE."""
        if self._dumpseq is None:
            raise IOError(0, "no dump request sent")
        seq, self._dumpseq = self._dumpseq, None
        try:
            for (pid, groups), msg in self._chan.iter_dump(seq):
                addr = SOCKADDR_NL.pack(socket.AF_NETLINK, 0, pid, groups)
                filter(addr, msg)
        except NetlinkError as e:
            print("RTNETLINK answers: %s" % e.strerror, file=sys.stderr)
            raise IOError(e.errno, "dump terminated") from e
