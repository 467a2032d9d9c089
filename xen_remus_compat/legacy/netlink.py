"""``xen.remus.netlink`` (legacy-api.md §6): the rtnetlink codec, same names.

The classes are the legacy ones (native byte order, 4-byte alignment,
``pack()``/``unpack()``), over bytes instead of Python 2 strings: thin
shapes over the package's one codec (:mod:`..devices.netlink`), which holds
the constants, the layouts and the attribute encoding.  ``rtnl`` talks
through :mod:`.lowlevel_netlink`, the pure-Python replacement of the C
module ``xen.lowlevel.netlink``.

Fixed (§14.2, §15): ``getqdiscs(dev)`` keeps only ``dev``'s qdiscs (the
kernel does not filter the dump, iproute2 filters on the client side) and
an unknown ``dev`` raises :class:`RTNLException` instead of ``NameError``;
``getqdisc(dev)`` returns ``dev``'s root qdisc, not the first device's.
"""
from __future__ import annotations

import socket
from typing import Dict, Iterator, Optional, Union

from ..devices.netlink import codec
from ..devices.netlink.codec import IFINFOMSG, NLMSGHDR, RTATTR, TCMSG, cstr, pack_attr
# §6.1 constants: the kernel's values, from the one codec
from ..devices.netlink.uapi import (  # noqa: F401 (legacy names)
    IFLA_ADDRESS, IFLA_BROADCAST, IFLA_COST, IFLA_IFNAME, IFLA_LINK, IFLA_MAP, IFLA_MASTER,
    IFLA_MTU, IFLA_PRIORITY, IFLA_PROTINFO, IFLA_QDISC, IFLA_STATS, IFLA_TXQLEN,
    IFLA_UNSPEC, IFLA_WEIGHT, IFLA_WIRELESS, NETLINK_ROUTE, NLM_F_ACK, NLM_F_APPEND,
    NLM_F_ATOMIC, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL, NLM_F_MATCH,
    NLM_F_MULTI, NLM_F_REPLACE, NLM_F_REQUEST, NLM_F_ROOT, RTM_DELQDISC, RTM_GETLINK,
    RTM_GETQDISC, RTM_NEWLINK, RTM_NEWQDISC, TC_H_INGRESS, TC_H_ROOT, TCA_FCNT, TCA_KIND,
    TCA_OPTIONS, TCA_RATE, TCA_STATS, TCA_STATS2, TCA_UNSPEC, TCA_XSTATS,
)
from . import lowlevel_netlink

#: network namespace the handles open in (``None``: ours); for tests and for
#: :mod:`.device`, which uses the same setting
NETNS: Optional[str] = None


class RTNLException(Exception):
    pass


def _b(data) -> bytes:
    return data.encode("latin-1") if isinstance(data, str) else bytes(data)


def align(l: int, alignto: int = 4) -> int:
    """``l`` rounded up to a multiple of ``alignto``."""
    return codec.align(l, alignto)


# -- §6.2 codec ------------------------------------------------------------------
class rtattr(object):
    "rtattribute"
    fmt = "HH"
    fmtlen = RTATTR.size

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
        return pack_attr(self.rta_type, self.body)

    def unpack(self, msg):
        msg = _b(msg)
        self.rta_len, self.rta_type = RTATTR.unpack(msg[:self.fmtlen])
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
    fmtlen = NLMSGHDR.size

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
        return NLMSGHDR.pack(len(self), self.nlmsg_type, self.nlmsg_flags,
                             self.nlmsg_seq, self.nlmsg_pid) + _b(self.body) + _b(self.rta)

    def unpack(self, msg):
        msg = _b(msg)
        args = NLMSGHDR.unpack(msg[:self.fmtlen])
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
    fmtlen = IFINFOMSG.size

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
        args = IFINFOMSG.unpack(msg[:self.fmtlen])
        (self.ifi_family, self.ifi_type, self.ifi_index, self.ifi_flags,
         self.ifi_change) = args
        self.body = msg[align(self.fmtlen):]

    def __str__(self):
        return "<ifinfo message, family %d, type %d, index %d>" % (
            self.ifi_family, self.ifi_type, self.ifi_index)


class tcmsg(object):
    "TC message"
    fmt = "BxxxiIII"
    fmtlen = TCMSG.size

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
        args = TCMSG.unpack(msg[:self.fmtlen])
        (self.tcm_family, self.tcm_ifindex, self.tcm_handle, self.tcm_parent,
         self.tcm_info) = args
        self.rta = msg[align(self.fmtlen):]

    def pack(self):
        return TCMSG.pack(self.tcm_family, self.tcm_ifindex,
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
                          "name": cstr(msg.rtattrs.get(IFLA_IFNAME, b"")),
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
                          "kind": cstr(msg.rtattrs.get(TCA_KIND, b"")),
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
