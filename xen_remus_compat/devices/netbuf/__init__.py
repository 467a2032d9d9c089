"""Network output commit: IFB + the ``plug`` qdisc (legacy-api.md §5.3-5.5,
§14.1, §15; xl-side.md §2.5 and Appendix A).

The guest's transmit is the dom0-side vif's *ingress*.  We redirect it to an
IFB device (ingress qdisc ``ffff:``, u32 match-all filter at pref 10, action
``mirred egress redirect``) and hold it there in a ``plug`` qdisc at the
IFB's root.  Per checkpoint: ``postsuspend`` sends ``TCQ_PLUG_BUFFER`` (close
the current epoch), ``commit`` sends ``TCQ_PLUG_RELEASE_ONE`` (let the epoch
closed by the latest BUFFER out).  A new plug qdisc buffers from creation.

* :mod:`.redirect` -- the vif's ingress to the IFB (:class:`Redirect`);
* :mod:`.plug` -- the plug at the IFB's root (:class:`PlugBuffer`, and the
  :class:`PfifoStandIn` for kernels without ``sch_plug``);
* :mod:`.nic` -- :class:`BufferedNIC`, the three together for one vif;
* :mod:`.pool` -- the IFB pool shared with legacy ``xen.remus`` processes;
* :mod:`.cleanup` -- uninstall at exit and on fatal signals.

The netlink messages, the socket and the link operations are the one codec
of :mod:`xen_remus_compat.devices.netlink`; the names below are re-exported
from there so that ``netbuf.<name>`` keeps meaning what it always did.
"""
from __future__ import annotations

import sys
import types

from ...errors import NetbufError, PoolExhausted
from ..netlink.channel import Channel, NetlinkError, netns_path
# the old private names, still used by tests and bench/netbuf.py
from ..netlink.channel import netlink_socket as _netlink_socket  # noqa: F401
from ..netlink.codec import rtattrs
from ..netlink.rtnl import KERNEL_FEATURES, FilterInfo, LinkInfo, QdiscInfo, Rtnl
from ..netlink.tc import (
    DEFAULT_LIMIT, FILTER_PREF, PLUG_ACTION_NAMES, build_fifo, build_filter_del,
    build_filter_dump, build_ingress_add, build_ingress_del, build_plug, build_plug_add,
    build_qdisc_dump, build_redirect_add, build_root_del, check_limit, queue_stats,
)
from ..netlink.tc import mirred_target as _mirred_target  # noqa: F401
from ..netlink.tc import tc_message as _tcmsg  # noqa: F401
from ..netlink.uapi import (
    CLSACT_INGRESS, ETH_P_ALL, ETH_P_IP, INGRESS_HANDLE, NETLINK_EXT_ACK, NETLINK_ROUTE,
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_MULTI, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP,
    NLMSGERR_ATTR_MSG, RTM_DELQDISC, RTM_DELTFILTER, RTM_GETQDISC, RTM_GETTFILTER,
    RTM_NEWQDISC, RTM_NEWTFILTER, SOL_NETLINK, TC_H_INGRESS, TC_H_ROOT, TCA_KIND,
    TCA_OPTIONS, TCA_STATS2, TCA_STATS_QUEUE, TCQ_PLUG_BUFFER, TCQ_PLUG_LIMIT,
    TCQ_PLUG_RELEASE_INDEFINITE, TCQ_PLUG_RELEASE_ONE,
)
from . import cleanup as _cleanup
from .cleanup import CleanupRegistry, cleanup_all, install_signal_handlers
from .nic import BufferedNIC
from .plug import DRAIN_TIMEOUT, PfifoStandIn, PlugBuffer
from .pool import POOL_DIR, IfbClaim, IfbPool
from .redirect import Redirect, sweep_redirects


class _NetbufPackage(types.ModuleType):
    """``netbuf.default_registry`` is :data:`.cleanup.default_registry`, read
    and rebound through the package (tests swap it for a registry of their
    own; :class:`BufferedNIC`, :func:`cleanup_all` and
    :func:`install_signal_handlers` then use the new one, as they did when
    they lived in one module)."""

    @property
    def default_registry(self) -> CleanupRegistry:
        return _cleanup.default_registry

    @default_registry.setter
    def default_registry(self, registry: CleanupRegistry) -> None:
        _cleanup.default_registry = registry


sys.modules[__name__].__class__ = _NetbufPackage

__all__ = [
    # devices
    "BufferedNIC", "Redirect", "sweep_redirects", "PlugBuffer", "PfifoStandIn",
    "DRAIN_TIMEOUT", "IfbPool", "IfbClaim", "POOL_DIR",
    # cleanup
    "CleanupRegistry", "cleanup_all", "install_signal_handlers",
    # errors
    "NetbufError", "NetlinkError", "PoolExhausted",
    # rtnetlink (devices.netlink)
    "Channel", "Rtnl", "LinkInfo", "QdiscInfo", "FilterInfo", "KERNEL_FEATURES",
    "netns_path", "rtattrs", "queue_stats", "check_limit", "DEFAULT_LIMIT", "FILTER_PREF",
    "PLUG_ACTION_NAMES", "build_plug", "build_plug_add", "build_fifo", "build_root_del",
    "build_ingress_add", "build_ingress_del", "build_redirect_add", "build_filter_del",
    "build_qdisc_dump", "build_filter_dump",
    # constants (Linux uapi)
    "NETLINK_ROUTE", "SOL_NETLINK", "NETLINK_EXT_ACK", "NLMSG_NOOP", "NLMSG_ERROR",
    "NLMSG_DONE", "NLM_F_REQUEST", "NLM_F_MULTI", "NLM_F_ACK", "NLM_F_REPLACE",
    "NLM_F_EXCL", "NLM_F_CREATE", "NLM_F_DUMP", "NLM_F_CAPPED", "NLM_F_ACK_TLVS",
    "NLMSGERR_ATTR_MSG", "RTM_NEWQDISC", "RTM_DELQDISC", "RTM_GETQDISC", "RTM_NEWTFILTER",
    "RTM_DELTFILTER", "RTM_GETTFILTER", "TCA_KIND", "TCA_OPTIONS", "TCA_STATS2",
    "TCA_STATS_QUEUE", "TC_H_ROOT", "TC_H_INGRESS", "INGRESS_HANDLE", "CLSACT_INGRESS",
    "ETH_P_ALL", "ETH_P_IP", "TCQ_PLUG_BUFFER", "TCQ_PLUG_RELEASE_ONE",
    "TCQ_PLUG_RELEASE_INDEFINITE", "TCQ_PLUG_LIMIT",
]
