"""The vif's ingress (the guest's transmit), redirected to an IFB
(legacy-api.md §5.3, §14.1): ingress qdisc ``ffff:``, u32 match-all filter
at pref 10, action ``mirred egress redirect``.

Fixed against the legacy code: all protocols are redirected (``protocol
all``; ``proto ip`` only with the ``netbuf_proto_ip`` quirk).

What a killed owner left is swept (:func:`sweep_dead_owner`): the pool
table records who owns each IFB (``<ifb> <pid>``, written before anything
else is installed), the redirect names its IFB, and the plug sits on it, so
a redirect to an IFB whose owner is dead is known to be stale.
"""
from __future__ import annotations

import errno
from typing import List, Optional

from ... import quirks
from ...errors import NetbufError
from ...log import logger
from ..netlink.channel import NetlinkError, is_gone
from ..netlink.rtnl import LinkInfo, Rtnl
from ..netlink.tc import (
    FILTER_PREF, build_filter_del, build_ingress_add, build_ingress_del, build_redirect_add,
    build_root_del,
)
from ..netlink.uapi import CLSACT_INGRESS, ETH_P_ALL, ETH_P_IP, INGRESS_HANDLE


class Redirect:
    """The vif's ingress, redirected to the IFB (legacy-api.md §5.3, §14.1)."""

    def __init__(self, rtnl: Rtnl, vif: LinkInfo, ifb: LinkInfo, *,
                 protocol: Optional[int] = None, pref: int = FILTER_PREF) -> None:
        if protocol is None:
            protocol = ETH_P_IP if quirks.get().netbuf_proto_ip else ETH_P_ALL
        self.rtnl, self.vif, self.ifb = rtnl, vif, ifb
        self.protocol, self.pref = protocol, pref
        self.parent = INGRESS_HANDLE
        self.created_ingress = False
        self.installed = False

    def install(self) -> None:
        rtnl, vif = self.rtnl, self.vif
        existing = rtnl.ingress_qdisc(vif.index)
        if existing is None:
            try:
                rtnl.with_feature("ingress", vif.name,
                                  lambda: rtnl.request(build_ingress_add(vif.index)))
                self.created_ingress = True
            except NetlinkError as e:
                if e.errno != errno.EEXIST:
                    raise NetbufError(f"{vif.name}: cannot add the ingress qdisc: {e}",
                                      errno=e.errno) from e
        elif existing.kind == "clsact":
            self.parent = CLSACT_INGRESS
        for f in rtnl.filters(vif.index, self.parent):
            if f.pref == self.pref:
                target = (f" redirecting to ifindex {f.redirect_to}"
                          if f.redirect_to is not None else "")
                raise NetbufError(
                    f"{vif.name}: its ingress already has a {f.kind} filter at pref "
                    f"{self.pref}{target}; refusing to mix ours with it (is this vif "
                    "already protected?)", errno=errno.EEXIST)
        try:
            rtnl.with_feature("redirect", vif.name, lambda: rtnl.request(
                build_redirect_add(vif.index, self.ifb.index, protocol=self.protocol,
                                   pref=self.pref, parent=self.parent)))
        except NetlinkError as e:
            raise NetbufError(f"{vif.name}: cannot redirect its ingress to "
                              f"{self.ifb.name}: {e}", errno=e.errno) from e
        self.installed = True

    def remove(self) -> None:
        """Idempotent; a vanished vif counts as removed."""
        rtnl, vif = self.rtnl, self.vif
        try:
            if self.created_ingress:
                rtnl.request(build_ingress_del(vif.index))
            elif self.installed:
                rtnl.request(build_filter_del(vif.index, protocol=self.protocol,
                                              pref=self.pref, parent=self.parent))
        except NetlinkError as e:
            if not is_gone(e):
                raise NetbufError(f"{vif.name}: cannot remove the redirect to "
                                  f"{self.ifb.name}: {e}", errno=e.errno) from e
        self.created_ingress = False
        self.installed = False


def sweep_redirects(rtnl: Rtnl, ifb: LinkInfo) -> List[str]:
    """Remove u32 filters, on any link's ingress, that redirect to ``ifb``:
    left by a dead owner of a reclaimed IFB, they would mix another guest's
    traffic into our buffer.  Returns the links cleaned."""
    cleaned = []
    for link in rtnl.links():
        ingress = rtnl.ingress_qdisc(link.index)
        if ingress is None:
            continue
        parent = CLSACT_INGRESS if ingress.kind == "clsact" else INGRESS_HANDLE
        for f in rtnl.filters(link.index, parent):
            if f.redirect_to != ifb.index or f.kind != "u32":
                continue
            logger.warning("%s: removing a stale redirect to %s (pref %d) left by "
                           "its previous owner", link.name, ifb.name, f.pref)
            try:
                rtnl.request(build_filter_del(link.index, protocol=f.protocol,
                                              pref=f.pref, parent=parent))
            except NetlinkError as e:
                if not is_gone(e):
                    raise
            cleaned.append(link.name)
    return cleaned


def sweep_dead_owner(rtnl: Rtnl, vif: LinkInfo, pool, *,
                     pref: int = FILTER_PREF) -> Optional[str]:
    """Remove what an owner killed without uninstalling (SIGKILL, a crash)
    left on ``vif``: its redirect at ``pref``, the ingress qdisc if nothing
    else is on it, the plug on its IFB with what that holds, and its claim
    in ``pool`` (an :class:`~.pool.IfbPool`: its table says whose each IFB
    is).  Returns the IFB swept, or None when the vif carries nothing of a
    dead owner's (nothing at ``pref``; a filter that is not ours; an IFB
    that is gone, not in the pool, or whose owner is alive: then
    :meth:`Redirect.install` refuses, as before).

    What the plug holds is dropped, not released: it is output of epochs
    the dead owner's backup never acknowledged, and that backup has failed
    over from the last checkpoint it holds (docs/netbuf.md).
    """
    ingress = rtnl.ingress_qdisc(vif.index)
    if ingress is None:
        return None
    parent = CLSACT_INGRESS if ingress.kind == "clsact" else INGRESS_HANDLE
    ours = [f for f in rtnl.filters(vif.index, parent) if f.pref == pref]
    targets = {f.redirect_to for f in ours if f.redirect_to is not None}
    if not ours or any(f.kind != "u32" for f in ours) or len(targets) != 1:
        return None
    (target,) = targets
    ifb = rtnl.link(target)
    if ifb is None:                 # to a device gone: not provably a dead owner's
        return None
    with pool.lock():
        table = pool.load()
        owner = table.get(ifb.name)
        if owner is None or owner == pool.getpid() or pool.alive(owner):
            return None
        logger.warning("%s: removing what dead pid %d left: its redirect to %s and "
                       "the buffer there (the output it held is dropped)",
                       vif.name, owner, ifb.name)
        try:
            rtnl.request(build_filter_del(vif.index, protocol=ours[0].protocol,
                                          pref=pref, parent=parent))
            if ingress.kind == "ingress" and not rtnl.filters(vif.index, parent):
                rtnl.request(build_ingress_del(vif.index))
            if rtnl.root_qdisc(ifb.index) is not None:
                rtnl.request(build_root_del(ifb.index))
            sweep_redirects(rtnl, ifb)
            now = rtnl.link(ifb.index)
            if now is not None and now.up:
                rtnl.set_up(ifb.index, False)
        except NetlinkError as e:
            if not is_gone(e):
                raise NetbufError(f"{vif.name}: cannot remove what dead pid {owner} "
                                  f"left on it: {e}", errno=e.errno) from e
        del table[ifb.name]
        pool.save(table)
        return ifb.name
