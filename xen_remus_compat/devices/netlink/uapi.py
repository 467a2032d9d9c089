"""rtnetlink constants: the Linux uapi values (legacy-api.md §6.1; xl-side.md
Appendix A), under their kernel names.

Every netlink user takes its numbers from here: the netbuf devices and the
legacy ``xen.remus.netlink`` / ``xen.remus.qdisc`` modules, which re-export
them under the legacy names.
"""
from __future__ import annotations

# -- sockets (linux/netlink.h) -------------------------------------------------
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_EXT_ACK = 11

# -- message header ------------------------------------------------------------
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ECHO = 0x8
# GET modifiers
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_ATOMIC = 0x400
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
# NEW modifiers
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
# ACK flags (extended ack)
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
#: rtattr type bits (the rest are NLA_F_NESTED / NLA_F_NET_BYTEORDER)
NLA_TYPE_MASK = 0x3FFF

# -- message types (linux/rtnetlink.h) ---------------------------------------------
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46

# -- link attributes (linux/if_link.h) ------------------------------------------
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

# -- tc attributes (linux/rtnetlink.h, linux/gen_stats.h) ------------------------
TCA_UNSPEC = 0
TCA_KIND = 1
TCA_OPTIONS = 2
TCA_STATS = 3
TCA_XSTATS = 4
TCA_RATE = 5
TCA_FCNT = 6
TCA_STATS2 = 7                   # nested gnet_stats
TCA_STATS_QUEUE = 3              # in TCA_STATS2: struct gnet_stats_queue (qlen, backlog, ...)

# -- tc handles (linux/pkt_sched.h) ---------------------------------------------
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
INGRESS_HANDLE = 0xFFFF0000          # "ffff:"
CLSACT_INGRESS = 0xFFFFFFF2          # "ffff:fff2", the ingress hook of clsact
TC_PRIO_MAX = 15

# -- ethertypes (linux/if_ether.h) ----------------------------------------------------
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800

# -- sch_plug actions (struct tc_plug_qopt, linux/pkt_sched.h) --------------------------
TCQ_PLUG_BUFFER = 0
TCQ_PLUG_RELEASE_ONE = 1
TCQ_PLUG_RELEASE_INDEFINITE = 2
TCQ_PLUG_LIMIT = 3
