"""Output buffering for one vif (legacy-api.md §5.3-5.5, §14.1): an IFB
claimed from the pool, the vif's ingress redirected to it, and a plug at its
root, installed all or nothing and removed on every exit path.

The plug is installed with the redirect (buffering from the start, as libxl
does); uninstall releases what is held and removes everything it installed,
idempotently.  Every instance is registered with a cleanup registry
(:mod:`.cleanup`) until it is uninstalled.  What an owner killed before it
could uninstall left on the vif is swept first (:func:`.redirect.sweep_dead_owner`).
"""
from __future__ import annotations

import errno
from typing import Callable, List, Optional

from ... import errors
from ...errors import NetbufError
from ...log import logger
from ..netlink.channel import NetlinkError
from ..netlink.rtnl import LinkInfo, Rtnl
from ..netlink.tc import DEFAULT_LIMIT, FILTER_PREF, check_limit
from .cleanup import CleanupRegistry, current_registry
from .plug import PlugBuffer
from .pool import POOL_DIR, IfbClaim, IfbPool
from .redirect import Redirect, sweep_dead_owner, sweep_redirects


class BufferedNIC:
    """Output buffering for one vif: IFB claim + redirect + plug.

    Construction installs everything (``install=False`` defers it); use it as
    a context manager or call :meth:`uninstall`, which is idempotent and is
    also run by the cleanup registry at exit or on a fatal signal.
    """

    #: epochs whose output it can hold apart at once: the kernel's plug
    #: qdisc counts the packets of one closed epoch (a second
    #: TCQ_PLUG_BUFFER before a TCQ_PLUG_RELEASE_ONE overwrites the count,
    #: so a later release would let out packets of an unacknowledged epoch)
    in_flight_limit = 1
    in_flight_why = ("the kernel's plug qdisc (sch_plug) holds the output of "
                     "one closed epoch only")

    def __init__(self, vif: str, *, netns: Optional[str] = None, rtnl: Optional[Rtnl] = None,
                 pool: Optional[IfbPool] = None, pool_dir: str = POOL_DIR,
                 limit: int = DEFAULT_LIMIT, buffer_class: type = PlugBuffer,
                 protocol: Optional[int] = None, registry: Optional[CleanupRegistry] = None,
                 install: bool = True, owners: Optional[IfbPool] = None) -> None:
        self.vifname = vif
        self._own_rtnl = rtnl is None
        self.rtnl = rtnl if rtnl is not None else Rtnl(netns)
        self.pool = pool if pool is not None else IfbPool(self.rtnl, pool_dir=pool_dir)
        #: the pool table that says who owns an IFB (for the dead-owner sweep)
        self.owners = owners if owners is not None else (
            self.pool if isinstance(self.pool, IfbPool) else None)
        self.limit = check_limit(limit)
        self.buffer_class = buffer_class
        self.protocol = protocol
        self.registry = registry if registry is not None else current_registry()
        self.claim: Optional[IfbClaim] = None
        self.ifb: Optional[LinkInfo] = None
        self.vif: Optional[LinkInfo] = None
        self.redirect: Optional[Redirect] = None
        self.buffer: Optional[PlugBuffer] = None
        self._ifb_up = False
        self._busy = False
        if install:
            self.install()

    @property
    def ifbname(self) -> Optional[str]:
        return self.ifb.name if self.ifb else None

    @property
    def installed(self) -> bool:
        return bool(self.buffer and self.buffer.installed)

    def claim_created(self) -> bool:
        """Whether our IFB was created for us (it is deleted, not set down)."""
        return bool(self.claim and self.claim.created)

    def __repr__(self) -> str:
        return f"<BufferedNIC {self.vifname} -> {self.ifbname}>"

    # -- install ----------------------------------------------------------------
    def install(self) -> None:
        """Claim an IFB, redirect the vif to it and plug it (all or nothing)."""
        self.install_redirect()
        self.install_buffer()

    def _guard(self, step: Callable[[], None]) -> None:
        self.registry.register(self)
        try:
            step()
        except BaseException:
            try:
                self.uninstall()
            except Exception as e:            # keep the original error
                logger.error("%s: cleanup after a failed install: %s", self, e)
            raise

    def install_redirect(self) -> None:
        if self.redirect is not None and self.redirect.installed:
            return
        self._guard(self._install_redirect)

    def _install_redirect(self) -> None:
        self.vif = self.rtnl.require_link(self.vifname, "vif")
        if self.owners is not None and (self.redirect is None or not self.redirect.installed):
            sweep_dead_owner(self.rtnl, self.vif, self.owners, pref=FILTER_PREF)
        if self.claim is None:
            self.claim = self.pool.claim()
        self.ifb = self.rtnl.require_link(self.claim.name, "IFB")
        if self.claim.reclaimed_from is not None:
            sweep_redirects(self.rtnl, self.ifb)
        if not self.ifb.up:             # leave it as we found it at uninstall
            self.rtnl.set_up(self.ifb.index, True)
            self._ifb_up = True
        elif self.claim.reclaimed_from is not None:
            self._ifb_up = True         # up for its dead owner: down when we are done
        self.redirect = Redirect(self.rtnl, self.vif, self.ifb, protocol=self.protocol)
        self.redirect.install()

    def install_buffer(self) -> None:
        if self.installed:
            return
        self._guard(self._install_buffer)

    def _install_buffer(self) -> None:
        if self.ifb is None:
            self._install_redirect()
        self.buffer = self.buffer_class(self.rtnl, self.ifb, self.limit)
        self.buffer.install()

    # -- checkpoint hooks (legacy-api.md §14.1) ------------------------------------
    def postsuspend(self) -> None:
        self.buffer.buffer()

    def preresume(self) -> None:
        pass

    def commit(self) -> bool:
        self.buffer.release_one()
        return True

    # -- teardown -----------------------------------------------------------------
    def uninstall(self, release: bool = True) -> None:
        """Release what is held and remove everything we installed.

        ``release=False`` is for a failed checkpoint: what the plug holds
        belongs to epochs the backup never acknowledged and is dropped.
        Every step runs even if an earlier one fails; the first failure is
        raised at the end (with the others logged).
        """
        if self._busy:                   # re-entered from a signal handler
            return
        self._busy = True
        failures: List[BaseException] = []

        def step(what: str, fn: Callable[[], None]) -> None:
            try:
                fn()
            except Exception as e:
                logger.error("%s: %s: %s", self, what, e)
                failures.append(e)

        try:
            # Held output goes out first, in order, while the vif's output
            # still goes through the plug; then the redirect goes; the plug
            # is deleted last: deleting a root qdisc drops whatever reaches
            # the device meanwhile (the kernel puts noop_qdisc in its place
            # for an RCU grace period; seen on the real plug, qemu tier).
            if self.buffer is not None and release:
                step("releasing the buffer", self.buffer.release_all)
            if self.redirect is not None:
                step("removing the redirect", self.redirect.remove)
            if self.buffer is not None:
                step("removing the buffer" if release else
                     "dropping unacknowledged output and removing the buffer",
                     lambda: self.buffer.remove(release=release))
            if self._ifb_up and self.ifb is not None and not self.claim_created():
                def down():
                    try:
                        self.rtnl.set_up(self.ifb.index, False)
                    except NetlinkError as e:
                        if e.errno != errno.ENODEV:
                            raise
                step(f"setting {self.ifb.name} down", down)
            self._ifb_up = False
            if self.claim is not None:
                claim = self.claim
                step(f"releasing {claim.name}", lambda: self.pool.release(claim))
                self.claim = None
            self.registry.unregister(self)
            if self._own_rtnl:
                step("closing rtnetlink", self.rtnl.close)
        finally:
            self._busy = False
        if failures:
            first = failures[0]
            if isinstance(first, errors.CompatError):
                raise first
            raise NetbufError(f"{self}: uninstall incomplete: {first}",
                              errno=getattr(first, "errno", None)) from first

    def __enter__(self) -> "BufferedNIC":
        return self

    def __exit__(self, *exc) -> None:
        self.uninstall()
