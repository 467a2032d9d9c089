"""``xen.remus.netlink`` (legacy-api.md §6): the rtnetlink codec, same names.

The classes are the legacy ones (native byte order, 4-byte alignment,
``pack()``/``unpack()``), over bytes instead of Python 2 strings.  ``rtnl``
talks through :mod:`.lowlevel_netlink`, the pure-Python replacement of the
C module ``xen.lowlevel.netlink``.

Fixed (§14.2, §15): ``getqdiscs(dev)`` keeps only ``dev``'s qdiscs (the
kernel does not filter the dump, iproute2 filters on the client side) and
an unknown ``dev`` raises :class:`RTNLException` instead of ``NameError``;
``getqdisc(dev)`` returns ``dev``'s root qdisc, not the first device's.
"""
from __future__ import annotations

import socket
import struct
from typing import Dict, Iterator, Optional, Union

from . import lowlevel_netlink

# -- §6.1 constants ----------------------------------------------------------
NETLINK_ROUTE = 0

NLM_F_REQUEST = 1
NLM_F_MULTI = 2
NLM_F_ACK = 4
NLM_F_ECHO = 8

NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_ATOMIC = 0x400
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH

NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800

RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_GETQDISC = 38

IFLA_UNSPEC = 0
IFLA_ADDRESS = 1
IFLA_BROADCAST = 2
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_QDISC = 6
IFLA_STATS = 7
IFLA_COST = 8
IFLA_PRIORITY = 9
IFLA_MASTER = 10
IFLA_WIRELESS = 11
IFLA_PROTINFO = 12
IFLA_TXQLEN = 13
IFLA_MAP = 14
IFLA_WEIGHT = 15

TCA_UNSPEC = 0
TCA_KIND = 1
TCA_OPTIONS = 2
TCA_STATS = 3
TCA_XSTATS = 4
TCA_RATE = 5
TCA_FCNT = 6
TCA_STATS2 = 7

TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1

#: network namespace the handles open in (``None``: ours); for tests and for
#: :mod:`.device`, which uses the same setting
NETNS: Optional[str] = None


class RTNLException(Exception):
    pass


def _b(data) -> bytes:
    return data.encode("latin-1") if isinstance(data, str) else bytes(data)


def align(l: int, alignto: int = 4) -> int:
    """``l`` rounded up to a multiple of ``alignto``."""
    return (l + alignto - 1) & ~(alignto - 1)


# -- §6.2 codec ------------------------------------------------------------------
class rtattr(object):
    "rtattribute"
    fmt = "HH"
    fmtlen = struct.calcsize(fmt)

    def __init__(self, msg=None):
        self.rta_len = 0
        self.rta_type = 0
        self.body = b""
        if msg:
            self.unpack(msg)

    def __len__(self):
        return align(self.rta_len or (self.fmtlen + len(self.body)))

    def pack(self):
        self.body = _b(self.body)
        self.rta_len = self.fmtlen + len(self.body)
        s = struct.pack(self.fmt, self.rta_len, self.rta_type) + self.body
        return s + b"\0" * (align(len(s)) - len(s))

    def unpack(self, msg):
        msg = _b(msg)
        self.rta_len, self.rta_type = struct.unpack(self.fmt, msg[:self.fmtlen])
        self.body = msg[self.fmtlen:self.rta_len]


class rtattrlist(object):
    def __init__(self, msg):
        self._rta = _b(msg)

    def __iter__(self) -> Iterator[rtattr]:
        body = self._rta
        while len(body) > rtattr.fmtlen:
            rta = rtattr(body)
            if rta.rta_len < rtattr.fmtlen:
                return                 # malformed: stop instead of looping
            yield rta
            body = body[len(rta):]


class nlmsg(object):
    "netlink message header"
    fmt = "IHHII"
    fmtlen = struct.calcsize(fmt)

    def __init__(self, msg=None):
        self.nlmsg_len = 0
        self.nlmsg_type = 0
        self.nlmsg_flags = 0
        self.nlmsg_seq = 0
        self.nlmsg_pid = 0
        self.rta = b""
        self.body = b""
        if msg:
            self.unpack(msg)

    def addattr(self, type, data):
        attr = rtattr()
        attr.rta_type = type
        attr.body = _b(data)
        self.rta += attr.pack()

    def settype(self, cmd):
        self.nlmsg_type = cmd

    def pack(self):
        return struct.pack(self.fmt, len(self), self.nlmsg_type, self.nlmsg_flags,
                           self.nlmsg_seq, self.nlmsg_pid) + _b(self.body) + _b(self.rta)

    def unpack(self, msg):
        msg = _b(msg)
        args = struct.unpack(self.fmt, msg[:self.fmtlen])
        (self.nlmsg_len, self.nlmsg_type, self.nlmsg_flags,
         self.nlmsg_seq, self.nlmsg_pid) = args
        self.body = msg[self.fmtlen:]

    def __len__(self):
        return align(self.fmtlen + len(self.body) + len(self.rta))

    def __str__(self):
        return "<netlink message, len %d, type %d>" % (self.nlmsg_len, self.nlmsg_type)


class ifinfomsg(object):
    "interface info message"
    fmt = "BxHiII"
    fmtlen = struct.calcsize(fmt)

    def __init__(self, msg=None):
        self.ifi_family = 0
        self.ifi_type = 0
        self.ifi_index = 0
        self.ifi_flags = 0
        self.ifi_change = 0
        self.body = b""
        if msg:
            self.unpack(msg)

    def unpack(self, msg):
        msg = _b(msg)
        args = struct.unpack(self.fmt, msg[:self.fmtlen])
        (self.ifi_family, self.ifi_type, self.ifi_index, self.ifi_flags,
         self.ifi_change) = args
        self.body = msg[align(self.fmtlen):]

    def __str__(self):
        return "<ifinfo message, family %d, type %d, index %d>" % (
            self.ifi_family, self.ifi_type, self.ifi_index)


class tcmsg(object):
    "TC message"
    fmt = "BxxxiIII"
    fmtlen = struct.calcsize(fmt)

    def __init__(self, msg=None):
        self.tcm_family = socket.AF_UNSPEC
        self.tcm_ifindex = 0
        self.tcm_handle = 0
        self.tcm_parent = 0
        self.tcm_info = 0
        self.rta = b""
        if msg:
            self.unpack(msg)

    def unpack(self, msg):
        msg = _b(msg)
        args = struct.unpack(self.fmt, msg[:self.fmtlen])
        (self.tcm_family, self.tcm_ifindex, self.tcm_handle, self.tcm_parent,
         self.tcm_info) = args
        self.rta = msg[align(self.fmtlen):]

    def pack(self):
        return struct.pack(self.fmt, self.tcm_family, self.tcm_ifindex,
                           self.tcm_handle, self.tcm_parent, self.tcm_info)

    def __str__(self):
        return "<tc message, family %d, index %d>" % (self.tcm_family, self.tcm_ifindex)


class newlinkmsg(object):
    def __init__(self, nlmsg):
        if nlmsg.nlmsg_type != RTM_NEWLINK:
            raise RTNLException("wrong message type")
        self.nlmsg = nlmsg
        self.ifi = ifinfomsg(self.nlmsg.body)
        self.rtattrs = {}
        for rta in rtattrlist(self.ifi.body):
            self.rtattrs[rta.rta_type] = rta.body


class newqdiscmsg(object):
    def __init__(self, nlmsg):
        if nlmsg.nlmsg_type != RTM_NEWQDISC:
            raise RTNLException("wrong message type")
        self.nlmsg = nlmsg
        self.t = tcmsg(self.nlmsg.body)
        self.rtattrs = {}
        for rta in rtattrlist(self.t.rta):
            self.rtattrs[rta.rta_type] = rta.body


# -- §6.3 the handle ---------------------------------------------------------------
def _cstr(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


class rtnl(object):
    """rtnetlink over :class:`lowlevel_netlink.rtnl`, in namespace :data:`NETNS`."""

    def __init__(self):
        self._rth = lowlevel_netlink.rtnl(netns=NETNS)
        self._linkcache: Optional[Dict[int, dict]] = None

    def talk(self, req):
        self._rth.talk(req)

    def close(self):
        self._rth.close()

    def _dump(self, collect):
        self._rth.dump_filter(collect)

    def getlinks(self) -> Dict[int, dict]:
        """``{ifindex: {'index', 'type', 'name', 'address'}}`` (wildcard dump)."""
        links: Dict[int, dict] = {}

        def dumpfilter(addr, msgstr):
            msg = newlinkmsg(nlmsg(msgstr))
            idx = msg.ifi.ifi_index
            links[idx] = {"index": idx, "type": msg.ifi.ifi_type,
                          "name": _cstr(msg.rtattrs.get(IFLA_IFNAME, b"")),
                          "address": msg.rtattrs.get(IFLA_ADDRESS)}

        self._rth.wilddump_request(socket.AF_UNSPEC, RTM_GETLINK)
        self._dump(dumpfilter)
        self._linkcache = links
        return links

    def getlink(self, key, cached=False) -> Optional[dict]:
        """A link by ifindex (int) or name; ``None`` if there is none."""
        if cached and self._linkcache is not None:
            links = self._linkcache
        else:
            links = self.getlinks()
        if isinstance(key, int):
            return links.get(key)
        for link in links.values():
            if link["name"] == key:
                return link
        return None

    def _ifindex(self, dev: Union[int, str]) -> int:
        if isinstance(dev, int):
            return dev
        link = self.getlink(dev)
        if link is None:
            raise RTNLException("unknown device %s" % dev)
        return link["index"]

    def _qdisc_dump(self, ifindex: int):
        found = []

        def dumpfilter(addr, msgstr):
            msg = newqdiscmsg(nlmsg(msgstr))
            if ifindex and msg.t.tcm_ifindex != ifindex:
                return
            found.append({"index": msg.t.tcm_ifindex, "handle": msg.t.tcm_handle,
                          "kind": _cstr(msg.rtattrs.get(TCA_KIND, b"")),
                          "options": msg.rtattrs.get(TCA_OPTIONS),
                          "parent": msg.t.tcm_parent})

        t = tcmsg()
        t.tcm_ifindex = ifindex
        self._rth.dump_request(RTM_GETQDISC, t.pack())
        self._dump(dumpfilter)
        return found

    def getqdiscs(self, dev=None) -> Dict[int, dict]:
        """``{ifindex: {'index', 'handle', 'kind', 'options'}}``; the last qdisc
        dumped per ifindex wins, as before.  ``dev`` (ifindex or name) keeps
        only that device's.  Each dict also has ``parent`` (an addition)."""
        ifindex = self._ifindex(dev) if dev else 0
        out: Dict[int, dict] = {}
        for q in self._qdisc_dump(ifindex):
            out[q["index"]] = q
        return out

    def getqdisc(self, dev) -> Optional[dict]:
        """``dev``'s root qdisc (its last qdisc if none is at the root)."""
        qs = self._qdisc_dump(self._ifindex(dev))
        for q in qs:
            if q["parent"] == TC_H_ROOT:
                return q
        return qs[-1] if qs else None
