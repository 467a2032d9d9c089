"""rtnetlink in one network namespace: links through pyroute2's ``IPRoute``,
tc through our :class:`~.channel.Channel`, and the kernel modules a request
may need (xl-side.md §2.5).

pyroute2 (0.9.7) use: links (list the IFBs, ``link add kind ifb``,
up/down/delete) go through ``IPRoute``'s high-level ``link()`` /
``get_links()``; tc dumps are decoded with its ``tcmsg`` class.
"""
from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from ... import errors, runner
from ...errors import NetbufError
from ...log import logger
from .channel import Channel, NetlinkError, is_gone, netns_path
from .codec import rtattrs
from .tc import build_filter_dump, build_qdisc_dump, mirred_target, queue_stats
from .uapi import TC_H_INGRESS, TC_H_ROOT, TCA_OPTIONS

#: kernel feature -> (module, config option, what it is), for error messages
KERNEL_FEATURES: Dict[str, Tuple[str, str, str]] = {
    "ifb": ("ifb", "CONFIG_IFB", "IFB (intermediate functional block) devices"),
    "ingress": ("sch_ingress", "CONFIG_NET_SCH_INGRESS", "the ingress qdisc"),
    "redirect": ("cls_u32 act_mirred", "CONFIG_NET_CLS_U32, CONFIG_NET_ACT_MIRRED",
                 "the u32 classifier or the mirred action"),
    "plug": ("sch_plug", "CONFIG_NET_SCH_PLUG", "the plug qdisc"),
    "pfifo": ("sch_fifo", "CONFIG_NET_SCHED", "the pfifo qdisc"),
}


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    kind: Optional[str]
    up: bool


@dataclass(frozen=True)
class QdiscInfo:
    index: int
    kind: str
    handle: int
    parent: int
    options: Optional[bytes] = None
    qlen: Optional[int] = None       # packets queued (TCA_STATS2/QUEUE)
    backlog: Optional[int] = None    # bytes queued


@dataclass(frozen=True)
class FilterInfo:
    index: int
    parent: int
    pref: int
    protocol: int
    kind: str
    handle: int
    redirect_to: Optional[int]      # mirred target ifindex, if any


def pr_error(e: Exception) -> NetlinkError:
    """A pyroute2 ``NetlinkError`` as ours."""
    code = getattr(e, "code", None) or errno.EIO
    text = e.args[1] if len(getattr(e, "args", ())) > 1 else ""
    return NetlinkError(abs(code), "" if text == os.strerror(abs(code)) else str(text))


class Rtnl:
    """rtnetlink in one network namespace (``None``: ours).

    pyroute2's ``IPRoute`` handles links; a :class:`Channel` carries the tc
    messages.  Both are opened on first use.  ``run`` runs ``modprobe``
    (the only command we start) when a kernel feature is missing.
    """

    def __init__(self, netns: Optional[str] = None, *, run: Callable = runner.run,
                 iproute_factory: Optional[Callable] = None,
                 channel: Optional[Channel] = None) -> None:
        self.netns = netns
        self.run = run
        self._iproute_factory = iproute_factory
        self._ipr = None
        self._chan = channel
        self._probed: Dict[str, bool] = {}

    # -- handles --------------------------------------------------------------
    @property
    def ipr(self):
        if self._ipr is None:
            if self._iproute_factory is not None:
                self._ipr = self._iproute_factory(self.netns)
            else:
                from pyroute2 import IPRoute
                if self.netns is None:
                    self._ipr = IPRoute()
                else:
                    path = netns_path(self.netns)
                    if not os.path.exists(path):
                        raise NetbufError(f"network namespace {self.netns}: {path} "
                                          "does not exist", errno=errno.ENOENT)
                    self._ipr = IPRoute(netns=path, flags=0)
        return self._ipr

    @property
    def chan(self) -> Channel:
        if self._chan is None:
            self._chan = Channel(self.netns)
        return self._chan

    def close(self) -> None:
        ipr, self._ipr = self._ipr, None
        chan, self._chan = self._chan, None
        if ipr is not None:
            ipr.close()
        if chan is not None:
            chan.close()

    def __enter__(self) -> "Rtnl":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- links ------------------------------------------------------------------
    def _link_call(self, *argv, **kw):
        from pyroute2.netlink.exceptions import NetlinkError as PRNetlinkError
        try:
            return self.ipr.link(*argv, **kw)
        except PRNetlinkError as e:
            raise pr_error(e) from e

    def links(self) -> List[LinkInfo]:
        from pyroute2.netlink.exceptions import NetlinkError as PRNetlinkError
        try:
            msgs = list(self.ipr.get_links())
        except PRNetlinkError as e:
            raise pr_error(e) from e
        out = []
        for m in msgs:
            kind = None
            linkinfo = m.get_attr("IFLA_LINKINFO")
            if linkinfo is not None:
                kind = linkinfo.get_attr("IFLA_INFO_KIND")
            out.append(LinkInfo(index=m["index"], name=m.get_attr("IFLA_IFNAME"),
                                kind=kind, up=bool(m["flags"] & 1)))
        return out

    def link(self, key) -> Optional[LinkInfo]:
        """A link by ifindex (int) or name."""
        for l in self.links():
            if (l.index == key) if isinstance(key, int) else (l.name == key):
                return l
        return None

    def require_link(self, name: str, what: str = "interface") -> LinkInfo:
        link = self.link(name)
        if link is None:
            where = f" in network namespace {self.netns}" if self.netns else ""
            raise NetbufError(f"{what} {name} not found{where}", errno=errno.ENODEV)
        return link

    def ifb_links(self) -> List[LinkInfo]:
        return [l for l in self.links() if l.kind == "ifb"]

    def create_ifb(self, name: str) -> LinkInfo:
        """``ip link add NAME type ifb`` (loading ``ifb`` once if needed)."""
        self.with_feature("ifb", name, lambda: self._link_call("add", ifname=name, kind="ifb"))
        return self.require_link(name, "new IFB")

    def ifb_supported(self) -> bool:
        """Can we have IFB devices here?  True if one exists or a probe one
        can be created (and is deleted again)."""
        if self.ifb_links():
            return True
        probe = "ifbprobe%d" % (os.getpid() % 10_000_000)
        try:
            link = self.create_ifb(probe)
        except errors.EnvironmentProblem as e:
            logger.debug("IFB not available: %s", e)
            return False
        self.delete_link(link.index)
        return True

    def set_up(self, index: int, up: bool = True) -> None:
        self._link_call("set", index=index, state="up" if up else "down")

    def delete_link(self, index: int) -> None:
        try:
            self._link_call("del", index=index)
        except NetlinkError as e:
            if e.errno != errno.ENODEV:
                raise

    # -- tc ---------------------------------------------------------------------
    def request(self, data: bytes) -> None:
        self.chan.request(data)

    def qdiscs(self, index: int) -> List[QdiscInfo]:
        """The qdiscs of link ``index`` only (the dump is filtered here too:
        the legacy code trusted the kernel to filter, §6.3)."""
        from pyroute2.netlink.rtnl.tcmsg import tcmsg
        out = []
        for raw in self.chan.dump(build_qdisc_dump(index)):
            m = tcmsg(raw)
            m.decode()
            if m["index"] != index:
                continue
            attrs = rtattrs(raw)
            qlen, backlog = queue_stats(attrs)
            out.append(QdiscInfo(index=m["index"], kind=m.get_attr("TCA_KIND"),
                                 handle=m["handle"], parent=m["parent"],
                                 options=attrs.get(TCA_OPTIONS), qlen=qlen,
                                 backlog=backlog))
        return out

    def root_qdisc(self, index: int) -> Optional[QdiscInfo]:
        """The root qdisc of ``index`` if one was installed (handle != 0);
        ``None`` for the kernel's default (noop, noqueue, pfifo_fast, mq)."""
        for q in self.qdiscs(index):
            if q.parent == TC_H_ROOT and q.handle != 0:
                return q
        return None

    def ingress_qdisc(self, index: int) -> Optional[QdiscInfo]:
        for q in self.qdiscs(index):
            if q.parent == TC_H_INGRESS:
                return q
        return None

    def filters(self, index: int, parent: int) -> List[FilterInfo]:
        from pyroute2.netlink.rtnl.tcmsg import tcmsg
        try:
            msgs = self.chan.dump(build_filter_dump(index, parent))
        except NetlinkError as e:
            if is_gone(e):
                return []
            raise
        out = []
        for raw in msgs:
            m = tcmsg(raw)
            m.decode()
            if m["index"] != index:
                continue
            info = m["info"]
            out.append(FilterInfo(index=index, parent=m["parent"], pref=info >> 16,
                                  protocol=socket.ntohs(info & 0xFFFF),
                                  kind=m.get_attr("TCA_KIND"), handle=m["handle"],
                                  redirect_to=mirred_target(m)))
        return out

    # -- kernel features ----------------------------------------------------------
    def modprobe(self, modules: str) -> bool:
        ok = True
        for mod in modules.split():
            try:
                res = self.run(["modprobe", "-q", "--", mod])
            except OSError as e:
                logger.debug("modprobe %s: %s", mod, e)
                return False
            ok = ok and res.returncode == 0
        return ok

    def with_feature(self, feature: str, dev: str, fn: Callable[[], object]):
        """Run ``fn``; if the kernel says the feature is unknown, load its
        module once and retry; still unknown -> :class:`EnvironmentProblem`."""
        try:
            return fn()
        except NetlinkError as e:
            first = _unknown_feature(e)
        module, config, what = KERNEL_FEATURES[feature]
        if not self._probed.get(feature) and self.modprobe(module):
            self._probed[feature] = True
            try:
                return fn()
            except NetlinkError as e:
                first = _unknown_feature(e)
        self._probed[feature] = True
        raise errors.EnvironmentProblem(
            f"{dev}: this kernel lacks {what} (module {module}, {config}); network "
            f"buffering needs it: load it ('modprobe {module.split()[0]}') or boot a "
            f"kernel built with it, e.g. Debian's [kernel said {first}]") from first


def _unknown_feature(e: NetlinkError) -> NetlinkError:
    """``e`` if the kernel says it lacks something (ENOENT: unknown qdisc,
    filter or action kind; EOPNOTSUPP: unknown link kind); raised otherwise."""
    if e.errno not in (errno.ENOENT, errno.EOPNOTSUPP):
        raise e
    return e
