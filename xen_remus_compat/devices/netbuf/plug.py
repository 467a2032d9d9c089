"""The plug qdisc at the root of an IFB (xl-side.md §2.5), and its pfifo
stand-in for kernels without ``sch_plug``.

Per checkpoint: ``postsuspend`` sends ``TCQ_PLUG_BUFFER`` (close the current
epoch), ``commit`` sends ``TCQ_PLUG_RELEASE_ONE`` (let the epoch closed by
the latest BUFFER out).  A new plug qdisc buffers from creation.  The
per-checkpoint messages are encoded once at install and re-sent on the
channel with a new sequence number.

Fixed against the legacy code: the IFB's root qdisc is looked up by ifindex
and any kind is replaced; the 8-byte ``tc_plug_qopt`` is always sent;
uninstall releases what is held (``RELEASE_INDEFINITE``) and waits for the
queue to drain before deleting the qdisc.
"""
from __future__ import annotations

import errno
import time
from typing import Dict, Optional

from ...errors import NetbufError
from ...log import logger
from ..netlink.channel import NetlinkError, is_gone
from ..netlink.rtnl import LinkInfo, Rtnl
from ..netlink.tc import (
    DEFAULT_LIMIT, PLUG_ACTION_NAMES, build_fifo, build_plug, build_plug_add, build_root_del,
    check_limit,
)
from ..netlink.uapi import (
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, TCQ_PLUG_BUFFER,
    TCQ_PLUG_RELEASE_INDEFINITE, TCQ_PLUG_RELEASE_ONE,
)

#: how long uninstall waits for a released plug to drain before deleting it
DRAIN_TIMEOUT = 5.0


class PlugBuffer:
    """The plug qdisc at the root of an IFB (xl-side.md §2.5)."""

    kind = "plug"
    feature = "plug"

    def __init__(self, rtnl: Rtnl, ifb: LinkInfo, limit: int = DEFAULT_LIMIT) -> None:
        self.rtnl, self.ifb = rtnl, ifb
        self.limit = check_limit(limit)
        self.installed = False
        self.replaced: Optional[str] = None
        self.indefinite = False          # RELEASE_INDEFINITE sent, no BUFFER since
        self._msgs: Dict[int, bytearray] = {}

    # per-kind messages (overridden by the stand-in)
    def _add_message(self) -> bytes:
        return build_plug_add(self.ifb.index, self.limit)

    def _action_message(self, action: int) -> bytes:
        return build_plug(self.ifb.index, action, self.limit)

    def install(self) -> None:
        """Replace whatever root qdisc the IFB has (found by ifindex) with ours."""
        rtnl, ifb = self.rtnl, self.ifb
        chan = rtnl.chan
        self._msgs = {a: chan.prepare(self._action_message(a))
                      for a in (TCQ_PLUG_BUFFER, TCQ_PLUG_RELEASE_ONE,
                                TCQ_PLUG_RELEASE_INDEFINITE)}
        old = rtnl.root_qdisc(ifb.index)
        if old is not None:
            self.replaced = old.kind
            if old.kind == self.kind:
                # a previous owner's: start from a fresh one, not its epochs
                logger.info("%s: deleting the stale %s root qdisc", ifb.name, old.kind)
                try:
                    rtnl.request(build_root_del(ifb.index))
                except NetlinkError as e:
                    if not is_gone(e):
                        raise
            else:
                logger.info("%s: replacing its %s root qdisc with %s",
                            ifb.name, old.kind, self.kind)
        try:
            rtnl.with_feature(self.feature, ifb.name,
                              lambda: rtnl.request(self._add_message()))
        except NetlinkError as e:
            raise NetbufError(f"{ifb.name}: cannot install the {self.kind} qdisc: {e}",
                              errno=e.errno) from e
        self.installed = True
        now = rtnl.root_qdisc(ifb.index)
        if now is None or now.kind != self.kind:
            raise NetbufError(f"{ifb.name}: root qdisc is {now.kind if now else 'default'}"
                              f" after installing {self.kind}")

    def _send(self, action: int) -> None:
        try:
            self.rtnl.chan.transact(self._msgs[action])
        except (NetlinkError, KeyError) as e:
            if isinstance(e, KeyError):
                raise NetbufError(f"{self.ifb.name}: {self.kind} qdisc not installed") from e
            raise NetbufError(f"{self.ifb.name}: {self.kind} "
                              f"{PLUG_ACTION_NAMES[action]} failed: {e}",
                              errno=e.errno) from e
        if action in (TCQ_PLUG_BUFFER, TCQ_PLUG_RELEASE_INDEFINITE):
            self.indefinite = action == TCQ_PLUG_RELEASE_INDEFINITE

    def buffer(self) -> None:
        """Close the current epoch (TCQ_PLUG_BUFFER)."""
        self._send(TCQ_PLUG_BUFFER)

    def release_one(self) -> None:
        """Release the epoch closed by the latest BUFFER."""
        self._send(TCQ_PLUG_RELEASE_ONE)

    def release_indefinite(self) -> None:
        """Let everything through until the next BUFFER."""
        self._send(TCQ_PLUG_RELEASE_INDEFINITE)

    def release_all(self) -> None:
        """Let everything held out and wait until the queue is empty (a
        qdisc already gone counts as released)."""
        if not self.installed:
            return
        try:
            if not self.indefinite:
                self.release_indefinite()
            self._drain()
        except NetbufError as e:
            if e.errno is None or e.errno not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
                raise

    def remove(self, release: bool = True) -> None:
        """Release what is held, then delete the qdisc (idempotent).

        ``release=False`` (after a failed checkpoint) deletes the qdisc with
        what it holds: output of epochs the backup never acknowledged is
        dropped, never sent (the guest's TCP retransmits it).
        """
        if not self.installed:
            return
        if release:
            self.release_all()
        try:
            self.rtnl.request(build_root_del(self.ifb.index))
        except NetlinkError as e:
            if not is_gone(e):
                raise NetbufError(f"{self.ifb.name}: cannot delete the {self.kind} "
                                  f"qdisc: {e}", errno=e.errno) from e
        self.installed = False

    def _drain(self, timeout: float = None) -> None:
        """Wait until the released queue is empty: deleting the qdisc
        earlier would throw away what the IFB has not pulled yet (it pulls
        in batches of its txqueuelen)."""
        timeout = DRAIN_TIMEOUT if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                q = self.rtnl.root_qdisc(self.ifb.index)
            except (NetlinkError, OSError):
                return
            if q is None or not q.qlen:
                return
            if time.monotonic() >= deadline:
                logger.warning("%s: %d packets still queued after %.1fs; deleting "
                               "the %s qdisc anyway", self.ifb.name, q.qlen, timeout,
                               self.kind)
                return
            time.sleep(0.002)


class PfifoStandIn(PlugBuffer):
    """A ``pfifo`` root qdisc in place of ``plug``, for kernels without
    sch_plug (the linux test tier and the benchmark on this host).

    Every action sends a pfifo *change* of the same size and path as a plug
    change.  It does NOT hold packets: never use it for protection.
    """

    kind = "pfifo"
    feature = "pfifo"
    packets = 1000

    def _add_message(self) -> bytes:
        return build_fifo(self.ifb.index, self.packets,
                          flags=NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)

    def _action_message(self, action: int) -> bytes:
        return build_fifo(self.ifb.index, self.packets)
