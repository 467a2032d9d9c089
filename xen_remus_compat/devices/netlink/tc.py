"""tc message definitions (xl-side.md §2.5 and Appendix A; legacy-api.md §5.3,
§7): qdiscs, the u32 + mirred redirect filter, the plug.

Bodies are encoded with pyroute2's ``tcmsg`` marshalling (0.9.7), framed as
a whole message with sequence number 0 (:class:`.channel.Channel` patches it
per request).  Its traps, and how they are avoided here:

* the plug ``action`` must be given to pyroute2 by *name*: its
  ``sched_plug.get_parameters`` maps unknown keys, integers included, to 0 =
  BUFFER.  :func:`build_plug` passes names and checks the encoded bytes;
* ``limit`` defaults to 0 in pyroute2, which the kernel takes literally
  (every packet dropped): the configured limit is always sent (default
  10,000,000 bytes, libxl's value), and 0 is refused;
* ``IPRoute.tc('add-filter', 'u32', ...)`` always adds ``TCA_U32_CLASSID``;
  iproute2's ``tc`` does not, so the filter message is built from its
  parts (it is then byte-identical to ``tc``'s, tests/linux/test_tc_bytes.py).
"""
from __future__ import annotations

import socket
import struct
from typing import Dict, Optional, Sequence, Tuple

from .codec import rtattrs
from .uapi import (
    ETH_P_ALL, INGRESS_HANDLE, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST, RTM_DELQDISC, RTM_DELTFILTER, RTM_GETQDISC,
    RTM_GETTFILTER, RTM_NEWQDISC, RTM_NEWTFILTER, TC_H_INGRESS, TC_H_ROOT, TCA_OPTIONS,
    TCA_STATS2, TCA_STATS_QUEUE, TCQ_PLUG_BUFFER, TCQ_PLUG_LIMIT,
    TCQ_PLUG_RELEASE_INDEFINITE, TCQ_PLUG_RELEASE_ONE,
)

#: struct tc_plug_qopt: int32 action, uint32 limit (always the 8 bytes)
TC_PLUG_QOPT = struct.Struct("=iI")
#: kernel action -> the key pyroute2's sched_plug understands (an int is
#: silently mapped to 0 = BUFFER).
PLUG_ACTION_NAMES: Dict[int, str] = {
    TCQ_PLUG_BUFFER: "TCQ_PLUG_BUFFER",
    TCQ_PLUG_RELEASE_ONE: "TCQ_PLUG_RELEASE_ONE",
    TCQ_PLUG_RELEASE_INDEFINITE: "TCQ_PLUG_RELEASE_INDEFINITE",
    TCQ_PLUG_LIMIT: "TCQ_PLUG_LIMIT",
}
DEFAULT_LIMIT = 10_000_000           # bytes; libxl's value (legacy: 10000)
FILTER_PREF = 10                     # the legacy redirect's pref

_ACK = NLM_F_REQUEST | NLM_F_ACK


def tc_message(msg_type: int, flags: int, ifindex: int, *, handle: int = 0,
               parent: int = 0, info: int = 0, attrs: Sequence = ()) -> bytes:
    """A whole tc message encoded by pyroute2 (``attrs`` in its notation)."""
    from pyroute2.netlink.rtnl.tcmsg import tcmsg
    m = tcmsg()
    m["header"]["type"] = msg_type
    m["header"]["flags"] = flags
    m["header"]["sequence_number"] = 0
    m["header"]["pid"] = 0
    m["family"] = socket.AF_UNSPEC
    m["index"] = ifindex
    m["handle"] = handle
    m["parent"] = parent
    m["info"] = info
    m["attrs"] = list(attrs)
    m.encode()
    return bytes(m.data)


def check_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit < 2**32:
        raise ValueError(f"plug limit {limit!r}: must be a byte count in 1..2**32-1 "
                         "(0 makes the kernel drop every packet)")
    return limit


# -- qdiscs ------------------------------------------------------------------------
def build_plug(ifindex: int, action: int, limit: int = DEFAULT_LIMIT, *,
               flags: int = _ACK) -> bytes:
    """An ``RTM_NEWQDISC`` for the plug at the root of ``ifindex``.

    With flags REQUEST|ACK and handle 0 this is the legacy ``changerequest``
    and what ``tc qdisc change ... plug`` sends (xl-side.md §2.5).
    """
    from pyroute2.netlink.rtnl.tcmsg import sched_plug
    check_limit(limit)
    opts = sched_plug.get_parameters({"action": PLUG_ACTION_NAMES[action],
                                      "limit": limit})
    data = tc_message(RTM_NEWQDISC, flags, ifindex, parent=TC_H_ROOT,
                      attrs=[("TCA_KIND", "plug"), ("TCA_OPTIONS", opts)])
    got = TC_PLUG_QOPT.unpack(rtattrs(data)[TCA_OPTIONS][:TC_PLUG_QOPT.size])
    if got != (action, limit):
        raise RuntimeError(f"pyroute2 encoded plug (action, limit) as {got}, "
                           f"not {(action, limit)}")
    return data


def build_plug_add(ifindex: int, limit: int = DEFAULT_LIMIT) -> bytes:
    """Create or replace the IFB's root qdisc with a plug (``tc qdisc replace
    dev IFB root plug limit N``: action LIMIT; init ignores the action)."""
    return build_plug(ifindex, TCQ_PLUG_LIMIT, limit,
                      flags=_ACK | NLM_F_CREATE | NLM_F_REPLACE)


def build_fifo(ifindex: int, limit: int, *, flags: int = _ACK) -> bytes:
    """A pfifo root qdisc message (stand-in for plug where the kernel lacks it)."""
    return tc_message(RTM_NEWQDISC, flags, ifindex, parent=TC_H_ROOT,
                      attrs=[("TCA_KIND", "pfifo"), ("TCA_OPTIONS", {"limit": limit})])


def build_root_del(ifindex: int) -> bytes:
    """``tc qdisc del dev X root``."""
    return tc_message(RTM_DELQDISC, _ACK, ifindex, parent=TC_H_ROOT)


def build_ingress_add(ifindex: int) -> bytes:
    """``tc qdisc add dev X ingress``."""
    return tc_message(RTM_NEWQDISC, _ACK | NLM_F_CREATE | NLM_F_EXCL,
                      ifindex, handle=INGRESS_HANDLE, parent=TC_H_INGRESS,
                      attrs=[("TCA_KIND", "ingress")])


def build_ingress_del(ifindex: int) -> bytes:
    """``tc qdisc del dev X ingress``."""
    return tc_message(RTM_DELQDISC, _ACK, ifindex,
                      handle=INGRESS_HANDLE, parent=TC_H_INGRESS,
                      attrs=[("TCA_KIND", "ingress")])


def build_qdisc_dump(ifindex: int = 0) -> bytes:
    return tc_message(RTM_GETQDISC, NLM_F_REQUEST | NLM_F_DUMP, ifindex)


# -- filters -----------------------------------------------------------------------
def _filter_info(pref: int, protocol: int) -> int:
    return ((pref & 0xFFFF) << 16) | socket.htons(protocol)


def build_redirect_add(vif_index: int, ifb_index: int, *, protocol: int = ETH_P_ALL,
                       pref: int = FILTER_PREF, parent: int = INGRESS_HANDLE) -> bytes:
    """``tc filter add dev VIF parent ffff: protocol all pref 10 u32 match u32
    0 0 action mirred egress redirect dev IFB`` (legacy-api.md §5.3)."""
    from pyroute2.netlink.rtnl.tcmsg.common_act import get_tca_action
    act = get_tca_action({"action": {"kind": "mirred", "direction": "egress",
                                     "action": "redirect", "ifindex": ifb_index}})
    opts = {"attrs": [("TCA_U32_ACT", act),
                      ("TCA_U32_SEL", {"keys": ["0x0/0x0+0"]})]}
    return tc_message(RTM_NEWTFILTER, _ACK | NLM_F_CREATE | NLM_F_EXCL,
                      vif_index, parent=parent, info=_filter_info(pref, protocol),
                      attrs=[("TCA_KIND", "u32"), ("TCA_OPTIONS", opts)])


def build_filter_del(vif_index: int, *, protocol: int = ETH_P_ALL,
                     pref: int = FILTER_PREF, parent: int = INGRESS_HANDLE) -> bytes:
    """``tc filter del dev VIF parent ffff: protocol all pref 10 u32``."""
    return tc_message(RTM_DELTFILTER, _ACK, vif_index, parent=parent,
                      info=_filter_info(pref, protocol), attrs=[("TCA_KIND", "u32")])


def build_filter_dump(ifindex: int, parent: int) -> bytes:
    return tc_message(RTM_GETTFILTER, NLM_F_REQUEST | NLM_F_DUMP, ifindex, parent=parent)


# -- decoding ----------------------------------------------------------------------
def queue_stats(attrs: Dict[int, bytes]) -> Tuple[Optional[int], Optional[int]]:
    """``(qlen, backlog)`` from a qdisc message's TCA_STATS2, if present."""
    nested = attrs.get(TCA_STATS2)
    if not nested:
        return None, None
    q = rtattrs(nested, 0).get(TCA_STATS_QUEUE)
    if not q or len(q) < 8:
        return None, None
    return struct.unpack_from("=II", q, 0)


def mirred_target(m) -> Optional[int]:
    """The ifindex a u32 filter's mirred action sends to (pyroute2 decode)."""
    try:
        opts = m.get_attr("TCA_OPTIONS")
        acts = opts.get_attr("TCA_U32_ACT") if opts is not None else None
        if acts is None:
            return None
        for name, act in acts["attrs"]:
            if not name.startswith("TCA_ACT_PRIO_") or act.get_attr("TCA_ACT_KIND") != "mirred":
                continue
            parms = act.get_attr("TCA_ACT_OPTIONS").get_attr("TCA_MIRRED_PARMS")
            return parms["ifindex"]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return None
