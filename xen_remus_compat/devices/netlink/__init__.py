"""The one rtnetlink codec of the package, used by every netlink user: the
network buffering devices (:mod:`..netbuf`) and the legacy
``xen.remus.netlink``, ``xen.remus.qdisc`` and ``xen.lowlevel.netlink``
modules (thin adapters that keep the legacy shapes).

* :mod:`.uapi` -- the kernel's constants;
* :mod:`.codec` -- framing: the fixed layouts (``nlmsghdr``, ``rtattr``,
  ``tcmsg``, ``ifinfomsg``) and attribute encoding/decoding;
* :mod:`.tc` -- tc message definitions (qdiscs, the u32/mirred redirect, the
  plug), bodies encoded by pyroute2's message classes;
* :mod:`.channel` -- our own synchronous socket (request/ack, dumps), the
  per-checkpoint path;
* :mod:`.rtnl` -- one namespace's rtnetlink: links via pyroute2's
  ``IPRoute``, tc via the channel, kernel modules loaded on demand.

Why pyroute2 encodes but does not send: docs/decisions.md, "Network
buffering: pyroute2 for links and encoding, our own socket for tc".
"""
from .channel import Channel, NetlinkError, netns_path
from .rtnl import FilterInfo, LinkInfo, QdiscInfo, Rtnl

__all__ = ["Channel", "NetlinkError", "netns_path", "Rtnl", "LinkInfo", "QdiscInfo",
           "FilterInfo"]
