"""``xen.remus.qdisc`` (legacy-api.md §7): qdisc request builders, same names.

Fixed (§14.2, §15):

* ``PlugQdisc`` always packs the 8-byte ``struct tc_plug_qopt {int32 action;
  uint32 limit}``: the legacy version test (``major >= 3 and minor >= 4``)
  sent 4 bytes on 4.0-4.3, 5.0-5.3 and 6.0-6.3 kernels, which sch_plug
  rejects with EINVAL.  ``kernelversion`` is still there, computed on first
  access instead of at import;
* ``Qdisc.optstr`` reads the right attribute.

The legacy plug limit (10000 bytes) is kept here, since this module's bytes
are its API; the buffering devices (:mod:`..devices.netbuf`) default to
10,000,000.  Requests are legacy :mod:`.netlink` shapes over the package's
one codec (:mod:`..devices.netlink`), whose constants and ``tc_plug_qopt``
layout are used here.
"""
from __future__ import annotations

import platform
import socket
import struct

from ..devices.netlink import uapi
from ..devices.netlink.tc import TC_PLUG_QOPT
from ..devices.netlink.uapi import TC_H_ROOT, TC_PRIO_MAX
from . import netlink

TC_PLUG_BUFFER = uapi.TCQ_PLUG_BUFFER
TC_PLUG_RELEASE_ONE = uapi.TCQ_PLUG_RELEASE_ONE
#: kernel values beyond the legacy two (xl-side.md Appendix A)
TC_PLUG_RELEASE_INDEFINITE = uapi.TCQ_PLUG_RELEASE_INDEFINITE
TC_PLUG_LIMIT = uapi.TCQ_PLUG_LIMIT
#: the names of RELEASE-4.1.0 (same values, §0.3)
TC_PLUG_CHECKPOINT = TC_PLUG_BUFFER
TC_PLUG_RELEASE = TC_PLUG_RELEASE_ONE

PLUG_LIMIT = 10000
#: ``PlugQdisc.parse`` words (§7)
PLUG_ACTIONS = {"checkpoint": TC_PLUG_BUFFER, "release": TC_PLUG_RELEASE_ONE}

qdisc_kinds = {}


class QdiscException(Exception):
    pass


def __getattr__(name):
    # ``kernelversion``: the legacy value, now computed lazily (§0.2)
    if name == "kernelversion":
        value = platform.platform(terse=True).split("-")[1].split(".")
        globals()["kernelversion"] = value
        return value
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


# -- request builders ---------------------------------------------------------
class request(object):
    "qdisc request message"

    def __init__(self, cmd, flags=0, dev=None, handle=0):
        self.n = netlink.nlmsg()
        self.t = netlink.tcmsg()
        self.n.nlmsg_flags = netlink.NLM_F_REQUEST | flags
        self.n.nlmsg_type = cmd
        self.t.tcm_family = socket.AF_UNSPEC
        self.t.tcm_parent = handle or TC_H_ROOT
        if dev:
            self.t.tcm_ifindex = dev

    def pack(self):
        self.n.body = self.t.pack()
        return self.n.pack()


class _qdiscrequest(request):
    def __init__(self, cmd, flags, dev, handle, qdisc):
        super(_qdiscrequest, self).__init__(cmd, flags=flags, dev=dev, handle=handle)
        self.n.addattr(netlink.TCA_KIND, qdisc.kind + "\0")
        opts = qdisc.pack()
        if opts:
            self.n.addattr(netlink.TCA_OPTIONS, opts)


class addrequest(_qdiscrequest):
    def __init__(self, dev, handle, qdisc):
        super(addrequest, self).__init__(netlink.RTM_NEWQDISC,
                                         netlink.NLM_F_EXCL | netlink.NLM_F_CREATE,
                                         dev, handle, qdisc)


class changerequest(_qdiscrequest):
    def __init__(self, dev, handle, qdisc):
        super(changerequest, self).__init__(netlink.RTM_NEWQDISC, 0, dev, handle, qdisc)


class delrequest(request):
    def __init__(self, dev, handle):
        super(delrequest, self).__init__(netlink.RTM_DELQDISC, dev=dev, handle=handle)


# -- qdiscs ----------------------------------------------------------------------
class Qdisc(object):
    def __new__(cls, qdict=None, *args, **opts):
        if qdict:
            cls = qdisc_kinds.get(qdict.get("kind"), cls)
        return super(Qdisc, cls).__new__(cls)

    def __init__(self, qdict):
        self._qdict = qdict
        self.kind = qdict["kind"]
        self.handle = qdict["handle"] >> 16

    def parse(self, opts):
        if opts:
            raise QdiscException("cannot parse qdisc parameters")

    def optstr(self):
        if self._qdict.get("options"):
            return "[cannot parse qdisc parameters]"
        return ""

    def pack(self):
        return b""


class PrioQdisc(Qdisc):
    fmt = "i%dB" % (TC_PRIO_MAX + 1)

    def __init__(self, qdict):
        super(PrioQdisc, self).__init__(qdict)
        if qdict.get("options"):
            self.unpack(qdict["options"])
        else:
            self.bands = 3
            self.priomap = [1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]

    def pack(self):
        return b""          # packing deliberately disabled, as before

    def unpack(self, opts):
        args = struct.unpack(self.fmt, bytes(opts)[:struct.calcsize(self.fmt)])
        self.bands = args[0]
        self.priomap = list(args[1:])

    def optstr(self):
        return "bands %d priomap  %s" % (self.bands, " ".join(str(p) for p in self.priomap))


class CfifoQdisc(Qdisc):
    fmt = "II"

    def __init__(self, qdict):
        super(CfifoQdisc, self).__init__(qdict)
        if qdict.get("options"):
            self.unpack(qdict["options"])
        else:
            self.epoch = 0
            self.vmid = 0

    def pack(self):
        return struct.pack(self.fmt, self.epoch, self.vmid)

    def unpack(self, opts):
        self.epoch, self.vmid = struct.unpack(self.fmt, bytes(opts)[:8])

    def parse(self, opts):
        args = list(opts)
        try:
            while args:
                arg = args.pop(0)
                if arg == "epoch":
                    self.epoch = int(args.pop(0))
                elif str(arg).lower() == "vmid":
                    self.vmid = int(args.pop(0))
        except (IndexError, ValueError) as inst:
            raise QdiscException(str(inst))

    def optstr(self):
        return "epoch %d vmID %d" % (self.epoch, self.vmid)


class PlugQdisc(Qdisc):
    fmt = "iI"

    def __init__(self, qdict=None):
        if not qdict:
            qdict = {"kind": "plug", "handle": TC_H_ROOT}
        super(PlugQdisc, self).__init__(qdict)
        self.action = 0
        self.limit = PLUG_LIMIT

    def pack(self):
        return TC_PLUG_QOPT.pack(self.action, self.limit)

    def parse(self, args):
        if not args:
            raise QdiscException("no action given")
        if args[0] not in PLUG_ACTIONS:
            raise QdiscException("unknown action")
        self.action = PLUG_ACTIONS[args[0]]


qdisc_kinds["prio"] = PrioQdisc
qdisc_kinds["pfifo_fast"] = PrioQdisc
qdisc_kinds["cfifo"] = CfifoQdisc
qdisc_kinds["plug"] = PlugQdisc
