"""``xen.remus.device`` (legacy-api.md §5): checkpointed disks and NICs.

Same names, signatures and messages; the work is done by
:mod:`xen_remus_compat.devices` (``blockremus``, ``drbd``, ``netbuf``
and its IFB pool).  Fixed against the legacy module (§14.2, §15):

* disks: the block-remus fifo name is parsed (``remus_<host>_<port>``), not
  cut out by a greedy regex; ``tap2:`` unames are accepted; fifos are never
  created by opening them;
* NICs: all protocols are redirected (``netbuf_proto_ip`` quirk: IPv4
  only); the IFB pool creates devices instead of failing at two and works
  without ``ifconfig``; the plug qdisc is checked on *its* device and any
  other root qdisc is replaced; 8-byte plug options always; ``uninstall``
  removes everything, also before the first checkpoint; an HVM emulated
  NIC's tap (``vif.emudev``, ``<vif>-emu``) is buffered with its vif;
* the plug is installed when the NIC is built, in pass-through mode
  (``RELEASE_INDEFINITE``), so a kernel without ``sch_plug`` is reported
  before the guest is ever suspended; the first ``postsuspend`` prints the
  legacy ``installing buffer on <ifb>...  done.`` and starts buffering, so
  output is unbuffered until then, as before;
* IMQ is refused with a reason (an out-of-tree patch, gone).

Module settings, for tests and unusual hosts: ``netlink.NETNS`` (network
namespace of every NIC operation, ``None``: ours), ``POOLDIR`` (the pool
table's directory), ``BUFFER_CLASS`` (the root qdisc driver), ``DRBD_RUN``
(the command runner of DRBD disks, ``None``: the real one).
"""
from __future__ import annotations

import copy
import os
import sys
from typing import Dict, Optional

from .. import errors
from ..devices import blockremus, drbd, netbuf
from ..devices.netbuf import pool as ifbpool
from ..log import logger
from . import netlink, qdisc, util

POOLDIR = ifbpool.POOL_DIR
BUFFER_CLASS = netbuf.PlugBuffer
DRBD_RUN = None


class ReplicatedDiskException(Exception):
    pass


class BufferedNICException(Exception):
    pass


class CheckpointedDevice(object):
    "Base class for buffered devices"

    def postsuspend(self):
        "called after guest has suspended"
        pass

    def preresume(self):
        "called before guest resumes"
        pass

    def commit(self):
        "called when backup has acknowledged checkpoint reception"
        pass

    def uninstall(self):
        "called when checkpointing stops"
        pass


# -- disks (§5.2) ---------------------------------------------------------------------
def _remus_peer(uname: str, rest: str):
    name, bar, _inner = rest.partition("|")
    host, colon, port = name.rpartition(":")
    if not bar or not colon or not host or not port:
        raise ReplicatedDiskException(
            "remus disk %s: expected <prefix>HOST:PORT|TYPE:PATH" % uname)
    return host, port


#: uname prefix -> kind; the first match wins (longest prefixes first)
DISK_KINDS = (
    ("tap:tapdisk:remus:", "blockremus"),
    ("tap2:tapdisk:remus:", "blockremus"),
    ("tap:remus:", "blockremus"),
    ("tap2:remus:", "blockremus"),
    ("drbd:", "drbd"),
)


class ReplicatedDisk(CheckpointedDevice):
    """A replicated disk: blktap2 block-remus or Remus DRBD (protocol D)."""

    FIFODIR = blockremus.FIFODIR
    SEND_CHECKPOINT = drbd.SEND_CHECKPOINT
    WAIT_CHECKPOINT_ACK = drbd.WAIT_CHECKPOINT_ACK

    def __init__(self, disk):
        self.ctlfd = None
        self.msgfd = None
        self.is_drbd = False
        self._impl = None
        uname = getattr(disk, "uname", "") or ""
        for prefix, kind in DISK_KINDS:
            if uname.startswith(prefix):
                break
        else:
            raise ReplicatedDiskException("Disk is not replicated: %s" % str(disk))
        rest = uname[len(prefix):]
        if kind == "blockremus":
            self.installed = False
            host, port = _remus_peer(uname, rest)
            self._impl = blockremus.BlockRemusDisk(host, port, fifodir=self.FIFODIR,
                                                   label="remus disk %s" % uname)
            self.ctlfd, self.msgfd = self._impl.ctlfd, self._impl.msgfd
            self.installed = True
        else:
            kw = {"run": DRBD_RUN} if DRBD_RUN is not None else {}
            try:
                self._impl = drbd.DrbdDisk(rest, **kw)
            except drbd.DrbdError as e:
                raise ReplicatedDiskException(str(e)) from e
            self.ctlfd = self._impl.fd
            self.is_drbd = True

    @property
    def in_flight_limit(self):
        return getattr(self._impl, "in_flight_limit", 1)

    @property
    def in_flight_why(self):
        return getattr(self._impl, "in_flight_why", "")

    @property
    def ackwait(self):
        return bool(getattr(self._impl, "ackwait", False))

    def postsuspend(self):
        self._impl.postsuspend()

    def preresume(self):
        self._impl.preresume()

    def commit(self):
        return self._impl.commit()

    def uninstall(self):
        if self._impl is not None:
            self._impl.uninstall()
        self.ctlfd = self.msgfd = None

    def __del__(self):
        try:
            self.uninstall()
        except Exception:
            pass


# -- network buffers (§5.3-5.5) -------------------------------------------------------
_rth = None
_rtnls: Dict[Optional[str], netbuf.Rtnl] = {}


def getrth():
    """The shared legacy :class:`netlink.rtnl` handle (created on first use)."""
    global _rth
    if _rth is None:
        _rth = netlink.rtnl()
    return _rth


def _devrtnl() -> netbuf.Rtnl:
    rtnl = _rtnls.get(netlink.NETNS)
    if rtnl is None:
        rtnl = _rtnls[netlink.NETNS] = netbuf.Rtnl(netlink.NETNS)
    return rtnl


def _nicerror(e: BaseException) -> BufferedNICException:
    exc = BufferedNICException(str(e))
    exc.errno = getattr(e, "errno", None)
    return exc


#: what the devices layer raises when a NIC cannot be buffered; legacy
#: scripts catch BufferedNICException (a kernel without sch_plug, ifb, ...
#: is an EnvironmentProblem there)
_NIC_FAILURES = (netbuf.NetbufError, errors.EnvironmentProblem, netbuf.PoolExhausted)


class Netbuf(object):
    "Proxy for netdev to which packets are redirected for buffering"

    def __init__(self, devname):
        self.devname = devname
        self.vif = None

    @staticmethod
    def devclass():
        return "unknown"

    @classmethod
    def available(cls):
        return cls._hasdev(cls.devclass())

    def install(self, vif):
        raise BufferedNICException("unimplemented")

    def uninstall(self):
        raise BufferedNICException("unimplemented")

    @staticmethod
    def _hasdev(devclass):
        """Whether ``devclass`` devices exist or can be made (fresh look)."""
        if devclass != "ifb":
            rtnl = _devrtnl()
            if any(l.name.startswith(devclass) for l in rtnl.links()):
                return True
            return util.modprobe(devclass) and any(
                l.name.startswith(devclass) for l in rtnl.links())
        try:
            return _devrtnl().ifb_supported()
        except (OSError, errors.CompatError) as e:
            logger.warning("checking for IFB devices: %s", e)
            return False


class IFBBuffer(Netbuf):
    """Redirect the vif's ingress (the guest's transmit) to an IFB device."""

    def __init__(self, devname):
        super(IFBBuffer, self).__init__(devname)
        self._nic: Optional[netbuf.BufferedNIC] = None

    @staticmethod
    def devclass():
        return "ifb"

    def install(self, vif):
        """IFB up, ingress qdisc on ``vif.dev``, u32/mirred redirect to the IFB."""
        self.vif = vif
        if self._nic is None:
            rtnl = _devrtnl()
            self._nic = netbuf.BufferedNIC(
                vif.dev, rtnl=rtnl,
                pool=_FixedPool(rtnl, self.devname, getattr(self, "_claim", None)),
                buffer_class=BUFFER_CLASS, install=False,
                owners=ifbpool.IfbPool(rtnl, pool_dir=POOLDIR))
        try:
            self._nic.install_redirect()
        except _NIC_FAILURES as e:
            raise _nicerror(e) from e

    def uninstall(self):
        """Remove the redirect and set the IFB down (the pool claim is the
        pool's business, as before)."""
        if self._nic is not None:
            self._nic.uninstall()


class _FixedPool(object):
    """An IfbPool stand-in that hands out one already-claimed device."""

    def __init__(self, rtnl, name, claim=None):
        self.rtnl, self.name, self._claim = rtnl, name, claim

    def claim(self):
        if self._claim is not None:
            return self._claim
        link = self.rtnl.require_link(self.name, "IFB")
        return ifbpool.IfbClaim(link.name, link.index)

    def release(self, claim):
        pass


class IMQBuffer(Netbuf):
    """Refused: IMQ was an out-of-tree kernel patch (plus a patched ebtables)."""

    imqebt = "/usr/lib/xen/bin/imqebt"
    REASON = ("IMQ network buffering is not supported: IMQ was an out-of-tree "
              "kernel patch with a patched ebtables and is gone from current "
              "kernels; IFB is used instead")

    @staticmethod
    def devclass():
        return "imq"

    @classmethod
    def available(cls):
        logger.debug("%s", cls.REASON)
        return False

    def install(self, vif):
        raise BufferedNICException(self.REASON)

    def uninstall(self):
        raise BufferedNICException(self.REASON)


netbuftypes = [IFBBuffer, IMQBuffer]


def selectnetbuf():
    "Find the best available buffer type"
    for driver in netbuftypes:
        if driver.available():
            return driver
    raise BufferedNICException("no net buffer available")


class Netbufpool(object):
    """Allocates/releases proxy netdevs (IFB/IMQ) across processes, through
    the legacy table ``/var/run/remus/<class>`` (lines ``<iface> <pid>``)."""

    def __init__(self, netbufclass):
        self.netbufclass = netbufclass
        self.path = os.path.join(POOLDIR, netbufclass.devclass())
        self._pool = ifbpool.IfbPool(_devrtnl(), devclass=netbufclass.devclass(),
                                     pool_dir=POOLDIR)
        self.devices = self.getdevs()
        os.makedirs(POOLDIR, mode=0o755, exist_ok=True)

    def get(self):
        "allocate a free device"
        try:
            claim = self._pool.claim()
        except ifbpool.PoolExhausted as e:
            raise BufferedNICException("no free devices") from e
        dev = self.netbufclass(claim.name)
        dev._claim = claim
        return dev

    def put(self, dev):
        "release claim on device"
        name = getattr(dev, "devname", dev)
        with self._pool.lock():
            if name not in self._pool.load():
                raise KeyError(name)
        claim = getattr(dev, "_claim", None) or ifbpool.IfbClaim(name, 0)
        self._pool.release(claim)

    def load(self):
        return self._pool.load()

    def save(self, table):
        self._pool.save(table)

    def getdevs(self):
        devclass = self.netbufclass.devclass()
        names = [l.name for l in _devrtnl().links() if l.name.startswith(devclass)]
        return sorted(names, key=ifbpool._natural_key)


class BufferedNIC(CheckpointedDevice):
    """Buffer a protected domain's network output (IFB + plug)."""

    in_flight_limit = netbuf.BufferedNIC.in_flight_limit
    in_flight_why = netbuf.BufferedNIC.in_flight_why

    def __init__(self, vif):
        self.installed = False
        self.vif = vif
        #: not legacy: the buffer of the tap an HVM emulated NIC uses
        #: (``vif.emudev``, set by ``vm.getvifs``); it goes with this one
        self.emu = None
        self.pool = Netbufpool(selectnetbuf())
        self.rth = getrth()
        self.setup()
        emudev = getattr(vif, "emudev", None)
        if emudev:
            self._buffer_emulated(emudev)

    def _buffer_emulated(self, emudev):
        """xl names the emulated NIC's tap ``<vif>-emu``; the guest sends
        through it until its PV drivers take over (then through the vif),
        so both are buffered.  No such link (no device model in dom0, a
        xend host): the vif alone, with a warning."""
        if _devrtnl().link(emudev) is None:
            logger.warning("%s: no emulated NIC device %s; only the PV path "
                           "is buffered", getattr(self.vif, "dev", self.vif), emudev)
            return
        tap = copy.copy(self.vif)
        tap.dev, tap.emudev = emudev, None
        try:
            self.emu = BufferedNIC(tap)
        except BaseException:
            self.uninstall()
            raise

    def __del__(self):
        try:
            self.uninstall()
        except Exception:
            pass

    def setup(self):
        """Claim an IFB, redirect the vif to it, and put the plug in place
        in pass-through mode (so a missing sch_plug shows up now)."""
        self.bufdev = self.pool.get()
        rtnl = _devrtnl()
        link = rtnl.link(self.bufdev.devname)
        if link is None:
            self.pool.put(self.bufdev)
            raise BufferedNICException("could not find device %s" % self.bufdev.devname)
        try:
            self.bufdev.install(self.vif)
        except BaseException:
            self.pool.put(self.bufdev)
            raise
        self._nic = self.bufdev._nic
        self._nic.pool = self.pool._pool        # uninstall releases the claim
        self.bufdevno = link.index
        self.handle = qdisc.TC_H_ROOT
        self.q = qdisc.PlugQdisc()
        try:
            self._nic.install_buffer()
            self._nic.buffer.release_indefinite()
        except _NIC_FAILURES as e:
            raise _nicerror(e) from e

    def postsuspend(self):
        if not self.installed:
            self.install()
        self._sendqmsg(qdisc.TC_PLUG_BUFFER)
        if self.emu is not None:
            self.emu.postsuspend()

    def commit(self):
        self._sendqmsg(qdisc.TC_PLUG_RELEASE_ONE)
        if self.emu is not None:
            self.emu.commit()

    def _sendqmsg(self, action):
        self.q.action = action
        try:
            self._nic.buffer._send(action)
        except netbuf.NetbufError as e:
            raise IOError(e.errno or 0, "error sending message") from e
        return True

    def install(self):
        """Start buffering (the plug is already the IFB's root qdisc)."""
        devname = self.bufdev.devname
        sys.stdout.write("installing buffer on %s... " % devname)
        sys.stdout.flush()
        q0 = _devrtnl().root_qdisc(self.bufdevno)
        if q0 is None or q0.kind != self._nic.buffer.kind:
            print()
            raise BufferedNICException("the buffer qdisc on %s is gone (root qdisc: %s)"
                                       % (devname, q0.kind if q0 else "default"))
        self.installed = True
        print(" done.")

    def abandon(self):
        """Not in the legacy API: after a failed checkpoint, drop what the
        plug holds (unacknowledged output) and remove everything."""
        self._remove(release=False)

    def uninstall(self):
        """Remove plug, redirect and claim (always; errors logged, as the legacy
        code swallowed them); what the plug holds is released."""
        self._remove(release=True)

    def _remove(self, release):
        emu = getattr(self, "emu", None)
        if emu is not None:
            emu._remove(release)
        nic = getattr(self, "_nic", None)
        self.installed = False
        if nic is None:
            return
        try:
            nic.uninstall(release=release)
        except (errors.CompatError, OSError) as e:
            logger.error("uninstalling the buffer of %s: %s",
                         getattr(self.vif, "dev", self.vif), e)
