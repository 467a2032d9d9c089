"""The IFB pool shared with legacy ``xen.remus`` processes (legacy-api.md §5.4).

On-disk convention, kept exactly (§14.1): the table ``/var/run/remus/ifb``
holds one claim per line, ``<iface> <pid>``, sorted by interface name; it is
read and written only under an exclusive ``fcntl.lockf`` lock on
``/var/run/remus/ifb.lock``; a claim whose pid is dead may be taken over.
A legacy process and this one can therefore share the pool.

Fixed against the legacy pool:

* the devices are the kernel's IFB links (rtnetlink, link kind ``ifb``),
  not ``ifconfig -a -s`` (net-tools is gone, §15);
* when every IFB is taken a new one is created (``link add kind ifb``) and
  deleted again when its claim is released, instead of failing at the two
  devices ``modprobe ifb`` makes;
* an unclaimed IFB that carries a root qdisc is left alone: something else
  (libxl's ``remus-netbuf-setup``, an administrator) is using it;
* a pid we may not signal (EPERM) is alive, not dead;
* the lock file is not deleted on unlock (deleting it let a third process
  lock a fresh inode while a second one still waited on the old one), and
  after locking we check that we hold the file that is on disk, in case a
  legacy process deleted it under us.
"""
from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass
from typing import Callable, Dict, Optional

from ... import atomic
from ...errors import PoolExhausted
from ...log import logger

POOL_DIR = "/var/run/remus"
DEVCLASS = "ifb"


def pid_alive(pid: int) -> bool:
    """True unless the kernel says no such process (ESRCH)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _natural_key(name: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


class PoolLock:
    """Exclusive ``lockf`` on ``<table>.lock``, compatible with legacy ``util.Lock``."""

    def __init__(self, table_path: str) -> None:
        self.path = table_path + ".lock"
        self.fd: Optional[int] = None

    def __enter__(self) -> "PoolLock":
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
                try:
                    now = os.stat(self.path)
                except FileNotFoundError:
                    now = None
            except BaseException:
                os.close(fd)
                raise
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                self.fd = fd
                return self
            # a legacy holder unlinked the file while we waited: lock the new one
            os.close(fd)

    def __exit__(self, *exc) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            try:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


@dataclass
class IfbClaim:
    """One IFB held by this process."""

    name: str
    index: int
    created: bool = False
    #: the dead pid whose claim we took over, if any
    reclaimed_from: Optional[int] = None


class IfbPool:
    """Claims IFB devices for this process, coordinated through the pool file.

    ``rtnl`` is a :class:`~xen_remus_compat.devices.netlink.Rtnl` (or a fake
    with ``ifb_links()``, ``root_qdisc(index)``, ``create_ifb(name)``,
    ``delete_link(index)``).
    """

    def __init__(self, rtnl, *, devclass: str = DEVCLASS, pool_dir: str = POOL_DIR,
                 create: bool = True, getpid: Callable[[], int] = os.getpid,
                 alive: Callable[[int], bool] = pid_alive) -> None:
        self.rtnl = rtnl
        self.devclass = devclass
        self.pool_dir = pool_dir
        self.path = os.path.join(pool_dir, devclass)
        self.create = create
        self.getpid = getpid
        self.alive = alive

    # -- the table ----------------------------------------------------------
    def load(self) -> Dict[str, int]:
        """The claims; ``{}`` when the file is missing. Bad lines are skipped."""
        try:
            with open(self.path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return {}
        table: Dict[str, int] = {}
        for lineno, line in enumerate(lines, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].isdigit():
                logger.warning("%s:%d: ignoring malformed pool line %r",
                               self.path, lineno, line)
                continue
            table[fields[0]] = int(fields[1])
        return table

    def save(self, table: Dict[str, int]) -> None:
        text = "".join("%s %d\n" % (dev, table[dev])
                       for dev in sorted(table, key=_natural_key))
        atomic.write_atomic(self.path, text, mode=0o644, fsync=False)

    def lock(self) -> PoolLock:
        os.makedirs(self.pool_dir, mode=0o755, exist_ok=True)
        return PoolLock(self.path)

    # -- claims -------------------------------------------------------------
    def claim(self) -> IfbClaim:
        """The first free IFB (unclaimed and idle, or claimed by a dead pid);
        a new one when there is none."""
        me = self.getpid()
        with self.lock():
            table = self.load()
            links = sorted(self.rtnl.ifb_links(), key=lambda l: _natural_key(l.name))
            names = {l.name for l in links}
            for dev in [d for d in table if d not in names and not self.alive(table[d])]:
                del table[dev]          # stale claim on a device that is gone
            chosen = None
            for link in links:
                owner = table.get(link.name)
                if owner is None:
                    busy = self.rtnl.root_qdisc(link.index)
                    if busy is not None:
                        logger.debug("%s: unclaimed but has a %s root qdisc; "
                                     "leaving it alone", link.name, busy.kind)
                        continue
                    chosen = IfbClaim(link.name, link.index)
                    break
                if owner != me and not self.alive(owner):
                    logger.warning("%s: taking over the claim of dead pid %d",
                                   link.name, owner)
                    chosen = IfbClaim(link.name, link.index, reclaimed_from=owner)
                    break
            if chosen is None:
                if not self.create:
                    raise PoolExhausted(f"no free {self.devclass} device in {self.path} "
                                        f"({len(links)} present, all claimed)")
                name = self._free_name()
                link = self.rtnl.create_ifb(name)
                chosen = IfbClaim(link.name, link.index, created=True)
                logger.info("created %s: all %d existing IFB devices are claimed",
                            link.name, len(links))
            table[chosen.name] = me
            try:
                self.save(table)
            except BaseException:
                if chosen.created:
                    self.rtnl.delete_link(chosen.index)
                raise
            return chosen

    def release(self, claim: IfbClaim) -> None:
        """Drop our claim (idempotent); delete the IFB if we created it."""
        me = self.getpid()
        with self.lock():
            table = self.load()
            owner = table.get(claim.name)
            try:
                if claim.created:
                    self.rtnl.delete_link(claim.index)
            finally:
                if owner == me:
                    del table[claim.name]
                    self.save(table)
                elif owner is not None:
                    logger.warning("%s: pool claim now belongs to pid %d, not us "
                                   "(%d); leaving it", claim.name, owner, me)

    def _free_name(self) -> str:
        taken = {l.name for l in self.rtnl.links()}
        n = 0
        while "%s%d" % (self.devclass, n) in taken:
            n += 1
        return "%s%d" % (self.devclass, n)

