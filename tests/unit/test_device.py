"""``xen.remus.device`` (legacy-api.md §5) and the devices it delegates to
(devices/netbuf.py, devices/ifbpool.py), against a simulated kernel.

The simulated kernel decodes the messages our code really sends (header,
tcmsg, attributes) and keeps qdisc / filter / link state, with the errors
the Linux kernel gives (xl-side.md §2.5).  The real kernel is the linux tier.
"""
import errno
import os
import signal
import socket
import stat
import struct

import pytest

from tests.support.netbuf_fixtures import (  # noqa: F401 (fixtures)
    fresh_quirks, pool_text, registry)
from xen_remus_compat import errors, quirks
from xen_remus_compat.devices import blockremus, netbuf
from xen_remus_compat.devices.netbuf import pool as ifbpool
from xen_remus_compat.legacy import blkdev, device, qdisc, vif as vifmod
from xen_remus_compat.runner import Result

HDR = struct.Struct("=IHHII")
TC = struct.Struct("=BxxxiIII")
ROOT, INGRESS = 0xFFFFFFFF, 0xFFFFFFF1


class FakeKernel:
    """Links, qdiscs and filters, driven by rtnetlink messages."""

    def __init__(self, kinds=("ingress", "u32", "pfifo", "plug"), ifb=True):
        self.links = {}
        self.next_index = 1
        self.qdiscs = {}          # (ifindex, parent) -> {"kind", "handle", "options"}
        self.filters = {}         # (ifindex, parent, pref, proto) -> redirect target
        self.kinds = set(kinds)
        self.ifb = ifb
        self.log = []             # (type, flags, ifindex, parent, kind, options)
        self._handle = 0x8001
        self.add_link("lo")

    def add_link(self, name, kind=None, up=True):
        idx = self.next_index
        self.next_index += 1
        self.links[idx] = {"name": name, "kind": kind, "up": up}
        return idx

    def index(self, name):
        return next(i for i, l in self.links.items() if l["name"] == name)

    def plug_actions(self, ifindex=None):
        return [struct.unpack("=iI", e[5])[0] for e in self.log
                if e[0] == 36 and e[4] == "plug" and e[5] is not None
                and (ifindex is None or e[2] == ifindex)]

    def handle_msg(self, data):
        _, mtype, flags, _, _ = HDR.unpack_from(data)
        _, idx, handle, parent, info = TC.unpack_from(data, 16)
        attrs = netbuf.rtattrs(data)
        kind = attrs[1].rstrip(b"\0").decode() if 1 in attrs else None
        self.log.append((mtype, flags, idx, parent, kind, attrs.get(2)))
        if idx not in self.links:
            return errno.ENODEV
        key = (idx, parent)
        if mtype == 36:                              # RTM_NEWQDISC
            if kind not in self.kinds:
                return errno.ENOENT
            old = self.qdiscs.get(key)
            if flags & netbuf.NLM_F_CREATE:
                if old and flags & netbuf.NLM_F_EXCL:
                    return errno.EEXIST
                h = 0xFFFF0000 if parent == INGRESS else (self._handle << 16)
                self._handle += 1
                self.qdiscs[key] = {"kind": kind, "handle": h, "options": attrs.get(2)}
                return 0
            if old is None:
                return errno.ENOENT
            if old["kind"] != kind:
                return errno.EINVAL
            old["options"] = attrs.get(2)
            return 0
        if mtype == 37:                              # RTM_DELQDISC
            if key not in self.qdiscs:
                return errno.EINVAL
            del self.qdiscs[key]
            if parent == INGRESS:
                for k in [k for k in self.filters if k[0] == idx]:
                    del self.filters[k]
            return 0
        pref, proto = info >> 16, socket.ntohs(info & 0xFFFF)
        if mtype == 44:                              # RTM_NEWTFILTER
            if (idx, INGRESS) not in self.qdiscs:
                return errno.EINVAL
            if kind not in self.kinds:
                return errno.ENOENT
            from pyroute2.netlink.rtnl.tcmsg import tcmsg
            m = tcmsg(bytes(data))
            m.decode()
            self.filters[(idx, parent, pref, proto)] = netbuf._mirred_target(m)
            return 0
        if mtype == 45:                              # RTM_DELTFILTER
            keys = [k for k in self.filters if k[:3] == (idx, parent, pref) and k[3] == proto]
            if not keys:
                return errno.ENOENT
            for k in keys:
                del self.filters[k]
            return 0
        return errno.EOPNOTSUPP

    def dump(self, data):
        mtype = HDR.unpack_from(data)[1]
        _, idx, _, parent, _ = TC.unpack_from(data, 16)
        out = []
        if mtype == 38:            # like old kernels: the dump ignores tcm_ifindex
            for i in self.links:
                if (i, ROOT) not in self.qdiscs:
                    out.append(netbuf._tcmsg(36, 2, i, parent=ROOT,
                                             attrs=[("TCA_KIND", "noqueue")]))
                for (qi, qp), q in self.qdiscs.items():
                    if qi == i:
                        out.append(netbuf._tcmsg(36, 2, i, handle=q["handle"], parent=qp,
                                                 attrs=[("TCA_KIND", q["kind"])]))
        elif mtype == 46:
            for (fi, fp, pref, proto), target in self.filters.items():
                if fi == idx and fp == parent:
                    msg = bytearray(netbuf.build_redirect_add(fi, target or 0, protocol=proto,
                                                              pref=pref, parent=fp))
                    struct.pack_into("=H", msg, 6, 2)
                    out.append(bytes(msg))
        return out


class FakeChannel:
    prepare = staticmethod(netbuf.Channel.prepare)

    def __init__(self, kernel):
        self.kernel = kernel
        self.sent = []

    def transact(self, buf):
        self.sent.append(bytes(buf))
        err = self.kernel.handle_msg(bytes(buf))
        if err:
            raise netbuf.NetlinkError(err)

    def request(self, data):
        self.transact(self.prepare(data))

    def dump(self, data):
        return self.kernel.dump(data)

    def close(self):
        pass


class FakeRtnl(netbuf.Rtnl):
    def __init__(self, kernel):
        self.runs = []

        def run(argv, **kw):
            self.runs.append(list(argv))
            return Result(list(argv), 1, "", "modprobe: FATAL: Module not found")
        super().__init__(None, run=run, channel=FakeChannel(kernel))
        self.kernel = kernel
        self.closed = 0

    def close(self):
        self.closed += 1

    def links(self):
        return [netbuf.LinkInfo(i, l["name"], l["kind"], l["up"])
                for i, l in sorted(self.kernel.links.items())]

    def _link_call(self, cmd, **kw):
        k = self.kernel
        if cmd == "add":
            if kw.get("kind") == "ifb" and not k.ifb:
                raise netbuf.NetlinkError(errno.EOPNOTSUPP)
            if any(l["name"] == kw["ifname"] for l in k.links.values()):
                raise netbuf.NetlinkError(errno.EEXIST)
            k.add_link(kw["ifname"], kw.get("kind"), up=False)
        elif cmd == "set":
            if kw["index"] not in k.links:
                raise netbuf.NetlinkError(errno.ENODEV)
            k.links[kw["index"]]["up"] = kw["state"] == "up"
        elif cmd == "del":
            if kw["index"] not in k.links:
                raise netbuf.NetlinkError(errno.ENODEV)
            del k.links[kw["index"]]
            for key in [key for key in k.qdiscs if key[0] == kw["index"]]:
                del k.qdiscs[key]


@pytest.fixture
def kernel():
    k = FakeKernel()
    k.add_link("vif5.0", "vif")
    k.add_link("vif6.0", "vif")
    return k


@pytest.fixture
def rtnl(kernel):
    return FakeRtnl(kernel)


def make_nic(rtnl, tmp_path, registry, vif="vif5.0", **kw):
    kw.setdefault("pool", ifbpool.IfbPool(rtnl, pool_dir=str(tmp_path)))
    return netbuf.BufferedNIC(vif, rtnl=rtnl, registry=registry, **kw)


# -- devices/netbuf.py: the buffered NIC ------------------------------------------------
def test_install_creates_ifb_redirects_and_plugs(kernel, rtnl, tmp_path, registry):
    nic = make_nic(rtnl, tmp_path, registry)
    ifb = kernel.index("ifb0")
    vif = kernel.index("vif5.0")
    assert kernel.links[ifb] == {"name": "ifb0", "kind": "ifb", "up": True}
    assert kernel.qdiscs[(vif, INGRESS)]["kind"] == "ingress"
    assert kernel.filters == {(vif, 0xFFFF0000, 10, 0x0003): ifb}
    assert kernel.qdiscs[(ifb, ROOT)]["kind"] == "plug"
    # the add carries the configured limit, never pyroute2's default 0
    assert struct.unpack("=iI", kernel.qdiscs[(ifb, ROOT)]["options"]) == (3, 10_000_000)
    assert pool_text(tmp_path) == "ifb0 %d\n" % os.getpid()
    assert nic.installed and nic.claim.created
    assert len(registry) == 1


def test_checkpoint_actions_and_uninstall(kernel, rtnl, tmp_path, registry):
    nic = make_nic(rtnl, tmp_path, registry, limit=5000)
    ifb = kernel.index("ifb0")
    nic.postsuspend()
    nic.preresume()
    assert nic.commit() is True
    nic.postsuspend()
    nic.commit()
    nic.uninstall()
    assert kernel.plug_actions(ifb) == [3, 0, 1, 0, 1, 2]   # LIMIT, B, R1, B, R1, INDEF
    last = [e[0] for e in kernel.log[-3:]]
    assert last == [36, 37, 37]        # release indefinite, plug del, ingress del
    assert kernel.qdiscs == {} and kernel.filters == {}
    assert "ifb0" not in [l["name"] for l in kernel.links.values()]  # we created it
    assert pool_text(tmp_path) == ""
    assert len(registry) == 0


def test_uninstall_is_idempotent(kernel, rtnl, tmp_path, registry):
    nic = make_nic(rtnl, tmp_path, registry)
    nic.uninstall()
    n = len(kernel.log)
    nic.uninstall()
    assert len(kernel.log) == n


def test_uses_a_free_existing_ifb_and_keeps_it(kernel, rtnl, tmp_path, registry):
    ifb = kernel.add_link("ifb0", "ifb", up=False)
    with make_nic(rtnl, tmp_path, registry) as nic:
        assert nic.ifbname == "ifb0" and not nic.claim.created
        assert kernel.links[ifb]["up"]
    assert kernel.links[ifb] == {"name": "ifb0", "kind": "ifb", "up": False}


def test_pool_skips_busy_and_claimed_ifbs(kernel, rtnl, tmp_path, registry):
    busy = kernel.add_link("ifb0", "ifb")
    kernel.qdiscs[(busy, ROOT)] = {"kind": "plug", "handle": 0x10000, "options": None}
    kernel.add_link("ifb1", "ifb")
    (tmp_path / "ifb").write_text("ifb1 %d\n" % os.getppid())      # alive
    nic = make_nic(rtnl, tmp_path, registry)
    assert nic.ifbname == "ifb2" and nic.claim.created
    assert pool_text(tmp_path) == "ifb1 %d\nifb2 %d\n" % (os.getppid(), os.getpid())
    nic.uninstall()
    assert kernel.qdiscs[(busy, ROOT)]["kind"] == "plug"            # not ours, untouched


def test_dead_owner_reclaimed_and_stale_redirect_swept(kernel, rtnl, tmp_path, registry):
    ifb = kernel.add_link("ifb0", "ifb")
    old_vif = kernel.index("vif6.0")
    kernel.qdiscs[(old_vif, INGRESS)] = {"kind": "ingress", "handle": 0xFFFF0000,
                                         "options": None}
    kernel.filters[(old_vif, 0xFFFF0000, 10, 3)] = ifb
    kernel.qdiscs[(ifb, ROOT)] = {"kind": "plug", "handle": 0x10000, "options": None}
    (tmp_path / "ifb").write_text("ifb0 999999\n")
    pool = ifbpool.IfbPool(rtnl, pool_dir=str(tmp_path), alive=lambda pid: pid != 999999)
    nic = make_nic(rtnl, tmp_path, registry, pool=pool)
    assert nic.ifbname == "ifb0" and nic.claim.reclaimed_from == 999999
    assert (old_vif, 0xFFFF0000, 10, 3) not in kernel.filters      # swept
    # the stale plug was deleted and a fresh one added
    kinds = [(e[0], e[2]) for e in kernel.log if e[2] == ifb]
    assert (37, ifb) in kinds
    assert pool_text(tmp_path) == "ifb0 %d\n" % os.getpid()


def test_root_qdisc_checked_on_the_ifb_itself(kernel, rtnl, tmp_path, registry):
    # a plug on another device must not make us think ours is installed
    lo = kernel.index("lo")
    kernel.qdiscs[(lo, ROOT)] = {"kind": "plug", "handle": 0x20000, "options": None}
    nic = make_nic(rtnl, tmp_path, registry)
    assert kernel.qdiscs[(nic.ifb.index, ROOT)]["kind"] == "plug"
    assert nic.buffer.replaced is None


def test_other_root_qdisc_is_replaced(kernel, rtnl, tmp_path, registry):
    ifb = kernel.add_link("ifb0", "ifb")
    (tmp_path / "ifb").write_text("ifb0 999999\n")
    kernel.qdiscs[(ifb, ROOT)] = {"kind": "pfifo", "handle": 0x10000, "options": None}
    pool = ifbpool.IfbPool(rtnl, pool_dir=str(tmp_path), alive=lambda pid: False)
    nic = make_nic(rtnl, tmp_path, registry, pool=pool)
    assert nic.buffer.replaced == "pfifo"
    assert kernel.qdiscs[(ifb, ROOT)]["kind"] == "plug"


def test_protocol_all_by_default_ip_with_quirk(kernel, rtnl, tmp_path, registry):
    quirks.set_quirks(netbuf_proto_ip=True)
    nic = make_nic(rtnl, tmp_path, registry)
    assert list(kernel.filters) == [(kernel.index("vif5.0"), 0xFFFF0000, 10, 0x0800)]
    nic.uninstall()


def test_missing_plug_is_environment_problem_and_leaves_nothing(rtnl, kernel, tmp_path,
                                                                registry):
    kernel.kinds.discard("plug")
    before = (dict(kernel.qdiscs), dict(kernel.filters), sorted(kernel.links))
    with pytest.raises(errors.EnvironmentProblem) as ei:
        make_nic(rtnl, tmp_path, registry)
    msg = str(ei.value)
    assert "sch_plug" in msg and "CONFIG_NET_SCH_PLUG" in msg and "ifb0" in msg
    assert "ENOENT" in msg
    assert ["modprobe", "-q", "--", "sch_plug"] in rtnl.runs
    assert (dict(kernel.qdiscs), dict(kernel.filters), sorted(kernel.links)) == before
    assert pool_text(tmp_path) == "" and len(registry) == 0


def test_missing_ifb_support(kernel, rtnl, tmp_path, registry):
    kernel.ifb = False
    with pytest.raises(errors.EnvironmentProblem, match="module ifb"):
        make_nic(rtnl, tmp_path, registry)
    assert ["modprobe", "-q", "--", "ifb"] in rtnl.runs
    assert kernel.qdiscs == {} and pool_text(tmp_path) == ""


def test_conflicting_filter_fails_cleanly(kernel, rtnl, tmp_path, registry):
    vif = kernel.index("vif5.0")
    kernel.qdiscs[(vif, INGRESS)] = {"kind": "ingress", "handle": 0xFFFF0000,
                                     "options": None}
    kernel.filters[(vif, 0xFFFF0000, 10, 3)] = 42
    with pytest.raises(netbuf.NetbufError, match="pref 10") as ei:
        make_nic(rtnl, tmp_path, registry)
    assert ei.value.errno == errno.EEXIST
    assert kernel.filters == {(vif, 0xFFFF0000, 10, 3): 42}        # theirs untouched
    assert (vif, INGRESS) in kernel.qdiscs                          # not ours to delete
    assert "ifb0" not in [l["name"] for l in kernel.links.values()]
    assert pool_text(tmp_path) == ""


def test_existing_ingress_kept_only_our_filter_removed(kernel, rtnl, tmp_path, registry):
    vif = kernel.index("vif5.0")
    kernel.qdiscs[(vif, INGRESS)] = {"kind": "ingress", "handle": 0xFFFF0000,
                                     "options": None}
    kernel.filters[(vif, 0xFFFF0000, 20, 3)] = 42
    nic = make_nic(rtnl, tmp_path, registry)
    assert len(kernel.filters) == 2
    nic.uninstall()
    assert kernel.filters == {(vif, 0xFFFF0000, 20, 3): 42}
    assert (vif, INGRESS) in kernel.qdiscs


def test_vif_gone_before_uninstall(kernel, rtnl, tmp_path, registry):
    nic = make_nic(rtnl, tmp_path, registry)
    del kernel.links[kernel.index("vif5.0")]
    nic.uninstall()                              # ENODEV counts as removed
    assert pool_text(tmp_path) == ""


def test_missing_vif(rtnl, tmp_path, registry):
    with pytest.raises(netbuf.NetbufError, match="vif vif9.9 not found"):
        make_nic(rtnl, tmp_path, registry, vif="vif9.9")
    assert pool_text(tmp_path) == ""


def test_context_manager_cleans_on_exception(kernel, rtnl, tmp_path, registry):
    with pytest.raises(RuntimeError):
        with make_nic(rtnl, tmp_path, registry):
            raise RuntimeError("guest died")
    assert kernel.qdiscs == {} and kernel.filters == {} and pool_text(tmp_path) == ""


def test_limit_zero_refused_before_anything(kernel, rtnl, tmp_path, registry):
    with pytest.raises(ValueError, match="drop every packet"):
        make_nic(rtnl, tmp_path, registry, limit=0)
    assert kernel.log == []


def test_hot_path_failure_names_device_and_errno(kernel, rtnl, tmp_path, registry):
    nic = make_nic(rtnl, tmp_path, registry)
    del kernel.qdiscs[(nic.ifb.index, ROOT)]
    with pytest.raises(netbuf.NetbufError, match="ifb0: plug TCQ_PLUG_BUFFER") as ei:
        nic.postsuspend()
    assert ei.value.errno == errno.ENOENT
    nic.uninstall()


def test_pfifo_stand_in_sends_fifo_changes(kernel, rtnl, tmp_path, registry):
    nic = make_nic(rtnl, tmp_path, registry, buffer_class=netbuf.PfifoStandIn)
    nic.postsuspend()
    nic.commit()
    fifo = [e for e in kernel.log if e[4] == "pfifo"]
    assert [e[1] for e in fifo] == [0x0505, 0x0005, 0x0005]
    assert all(struct.unpack("=I", e[5])[0] == 1000 for e in fifo)
    nic.uninstall()


# -- cleanup registry ----------------------------------------------------------------------
class Rec:
    def __init__(self, log, name, fail=False):
        self.log, self.name, self.fail = log, name, fail

    def uninstall(self):
        self.log.append(self.name)
        if self.fail:
            raise netbuf.NetbufError(f"{self.name} failed", errno=errno.EBUSY)


def test_registry_lifo_and_errors_reported(registry):
    log = []
    for name, fail in (("a", False), ("b", True), ("c", False)):
        registry.register(Rec(log, name, fail))
    failures = registry.cleanup_all()
    assert log == ["c", "b", "a"]
    assert [str(f) for f in failures] == ["b failed (EBUSY: Device or resource busy)"]
    assert len(registry) == 0


def test_registry_never_cleans_in_a_forked_child(registry, monkeypatch):
    log = []
    registry.register(Rec(log, "parent"))
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert registry.cleanup_all() == [] and log == []


def test_registry_signal_handler_chains(registry):
    log = []
    registry.register(Rec(log, "nic"))
    prev = signal.signal(signal.SIGUSR1, lambda s, f: log.append(("prev", s)))
    try:
        registry.install_signal_handlers([signal.SIGUSR1])
        os.kill(os.getpid(), signal.SIGUSR1)
        assert log == ["nic", ("prev", signal.SIGUSR1)]
    finally:
        registry.restore_signal_handlers()
        signal.signal(signal.SIGUSR1, prev)


# -- devices/ifbpool.py --------------------------------------------------------------------
def test_pool_file_format_natural_order_and_malformed_lines(rtnl, tmp_path, caplog):
    pool = ifbpool.IfbPool(rtnl, pool_dir=str(tmp_path))
    pool.save({"ifb10": 3, "ifb2": 1, "ifb0": 2})
    assert (tmp_path / "ifb").read_text() == "ifb0 2\nifb2 1\nifb10 3\n"
    (tmp_path / "ifb").write_text("ifb0 12\ngarbage\nifb1 x\n\nifb3 7\n")
    assert pool.load() == {"ifb0": 12, "ifb3": 7}
    assert "malformed pool line" in caplog.text


def test_pool_lock_file_is_kept_and_compatible(rtnl, tmp_path):
    pool = ifbpool.IfbPool(rtnl, pool_dir=str(tmp_path / "remus"))
    with pool.lock():
        assert (tmp_path / "remus" / "ifb.lock").exists()
        assert stat.S_IMODE(os.stat(tmp_path / "remus").st_mode) & 0o755 == 0o755
    assert (tmp_path / "remus" / "ifb.lock").exists()


def test_pid_alive():
    assert ifbpool.pid_alive(os.getpid())
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert not ifbpool.pid_alive(pid)
    assert not ifbpool.pid_alive(0)


def test_pool_exhausted_without_create(kernel, rtnl, tmp_path):
    pool = ifbpool.IfbPool(rtnl, pool_dir=str(tmp_path), create=False)
    with pytest.raises(ifbpool.PoolExhausted, match="no free ifb"):
        pool.claim()


# -- legacy facade: disks --------------------------------------------------------------------
def _disk(uname, dev="xvda", mode="w"):
    return blkdev.parse({"uname": uname, "dev": dev, "mode": mode})


def test_checkpointed_device_hooks_are_noops():
    d = device.CheckpointedDevice()
    assert (d.postsuspend(), d.preresume(), d.commit(), d.uninstall()) == (None,) * 4


def test_plain_disk_not_replicated():
    with pytest.raises(device.ReplicatedDiskException) as ei:
        device.ReplicatedDisk(_disk("phy:/dev/vg/lv"))
    assert str(ei.value) == "Disk is not replicated: phy:/dev/vg/lv,xvda,w"


@pytest.fixture
def fifodir(tmp_path, monkeypatch):
    monkeypatch.setattr(device.ReplicatedDisk, "FIFODIR", str(tmp_path))
    return tmp_path


def _fifos(d, name):
    for p in (d / name, d / (name + ".msg")):
        os.mkfifo(p)
    return d / name, d / (name + ".msg")


@pytest.mark.parametrize("uname", ["tap:remus:backup:9000|aio:/img",
                                   "tap:tapdisk:remus:backup:9000|aio:/img",
                                   "tap2:remus:backup:9000|aio:/img",
                                   "tap2:tapdisk:remus:backup:9000|aio:/img"])
def test_blockremus_disk_protocol(fifodir, uname):
    ctl, msg = _fifos(fifodir, "remus_backup_9000")
    rd = os.open(ctl, os.O_RDWR | os.O_NONBLOCK)
    wr = os.open(msg, os.O_RDWR | os.O_NONBLOCK)
    try:
        disk = device.ReplicatedDisk(_disk(uname))
        assert not disk.is_drbd and disk.installed
        disk.postsuspend()
        assert os.read(rd, 64) == b"flush"           # 5 bytes, no newline (§5.2)
        os.write(wr, b"done")
        assert disk.commit() is True
        disk.uninstall()
        assert disk.ctlfd is None
    finally:
        os.close(rd)
        os.close(wr)


def test_blockremus_fifo_name_not_greedy(fifodir):
    # legacy regex tap:.*(remus.*)\| took the LAST "remus": remus-backup_9000
    _fifos(fifodir, "remus_remus-backup_9000")
    disk = device.ReplicatedDisk(_disk("tap:remus:remus-backup:9000|aio:/img"))
    assert disk._impl.ctlpath == str(fifodir / "remus_remus-backup_9000")
    disk.uninstall()


def test_blockremus_missing_fifo_is_not_created(fifodir):
    with pytest.raises(blockremus.DiskCheckpointError, match="missing"):
        device.ReplicatedDisk(_disk("tap:remus:backup:9000|aio:/img"))
    assert list(fifodir.iterdir()) == []


def test_blockremus_malformed(fifodir):
    with pytest.raises(device.ReplicatedDiskException, match="HOST:PORT"):
        device.ReplicatedDisk(_disk("tap:remus:backup|aio:/img"))


def test_drbd_without_protocol_d(monkeypatch):
    outputs = {"sh-dev": "/dev/drbd0\n", "show": "resource r0 { protocol C; }\n"}

    def run(argv, **kw):
        key = "sh-dev" if "sh-dev" in argv else "show" if "show" in argv else "cstate"
        return Result(argv, 0, outputs.get(key, "Connected\n"), "")
    monkeypatch.setattr(device, "DRBD_RUN", run)
    with pytest.raises(device.ReplicatedDiskException, match="protocol D"):
        device.ReplicatedDisk(_disk("drbd:r0"))


def test_constants():
    assert (device.ReplicatedDisk.FIFODIR, device.ReplicatedDisk.SEND_CHECKPOINT,
            device.ReplicatedDisk.WAIT_CHECKPOINT_ACK) == ("/var/run/tap", 20, 30)


# -- legacy facade: NICs -------------------------------------------------------------------------
def test_imq_refused():
    assert device.IMQBuffer.available() is False
    with pytest.raises(device.BufferedNICException, match="out-of-tree"):
        device.IMQBuffer("imq0").install(None)
    assert device.IMQBuffer.devclass() == "imq"


def test_netbuf_base():
    nb = device.Netbuf("x0")
    assert (nb.devname, nb.vif, device.Netbuf.devclass()) == ("x0", None, "unknown")
    with pytest.raises(device.BufferedNICException, match="unimplemented"):
        nb.install(None)
    with pytest.raises(device.BufferedNICException, match="unimplemented"):
        nb.uninstall()


def test_selectnetbuf_none(monkeypatch):
    monkeypatch.setattr(device, "netbuftypes", [device.IMQBuffer])
    with pytest.raises(device.BufferedNICException, match="no net buffer available"):
        device.selectnetbuf()


@pytest.fixture
def legacy_env(monkeypatch, rtnl, tmp_path):
    monkeypatch.setattr(device, "POOLDIR", str(tmp_path))
    monkeypatch.setattr(device, "_rtnls", {None: rtnl})
    monkeypatch.setattr(device, "_rth", object())      # no real socket in unit tests
    monkeypatch.setattr(netbuf, "default_registry", netbuf.CleanupRegistry())
    return rtnl


def _vif(dev):
    v = vifmod.VIF(mac="0:16:3e:1:2:3")
    v.dev = dev
    return v


def test_selectnetbuf_prefers_ifb(legacy_env, kernel):
    assert device.selectnetbuf() is device.IFBBuffer
    assert [l["name"] for l in kernel.links.values()] == ["lo", "vif5.0", "vif6.0"]  # probe gone


def test_legacy_buffered_nic_lifecycle(legacy_env, kernel, tmp_path, capsys):
    nic = device.BufferedNIC(_vif("vif5.0"))
    ifb = kernel.index("ifb0")
    assert nic.bufdev.devname == "ifb0" and nic.bufdevno == ifb
    assert nic.installed is False and nic.handle == qdisc.TC_H_ROOT
    assert kernel.plug_actions(ifb) == [3, 2]        # added, then pass-through
    assert capsys.readouterr().out == ""
    nic.postsuspend()
    assert capsys.readouterr().out == "installing buffer on ifb0...  done.\n"
    nic.commit()
    nic.postsuspend()
    assert capsys.readouterr().out == ""             # printed once
    assert kernel.plug_actions(ifb) == [3, 2, 0, 1, 0]
    assert nic.q.action == 0
    nic.uninstall()
    assert kernel.qdiscs == {} and kernel.filters == {}
    assert pool_text(tmp_path) == ""
    assert "ifb0" not in [l["name"] for l in kernel.links.values()]


def test_legacy_uninstall_before_first_checkpoint_removes_redirect(legacy_env, kernel,
                                                                   tmp_path):
    nic = device.BufferedNIC(_vif("vif5.0"))
    assert kernel.filters
    nic.uninstall()                                  # legacy left the redirect behind
    assert kernel.filters == {} and kernel.qdiscs == {} and pool_text(tmp_path) == ""


def test_legacy_missing_plug(legacy_env, kernel, tmp_path):
    """Legacy scripts catch BufferedNICException (issue 12, item 8)."""
    kernel.kinds.discard("plug")
    with pytest.raises(device.BufferedNICException, match="sch_plug") as ei:
        device.BufferedNIC(_vif("vif5.0"))
    assert isinstance(ei.value.__cause__, errors.EnvironmentProblem)
    assert kernel.qdiscs == {} and kernel.filters == {} and pool_text(tmp_path) == ""


def test_netbufpool(legacy_env, kernel, tmp_path):
    kernel.add_link("ifb0", "ifb")
    kernel.add_link("ifb1", "ifb")
    pool = device.Netbufpool(device.IFBBuffer)
    assert pool.path == str(tmp_path / "ifb")
    assert pool.devices == ["ifb0", "ifb1"]
    a, b = pool.get(), pool.get()
    assert (type(a), a.devname, b.devname) == (device.IFBBuffer, "ifb0", "ifb1")
    assert pool.load() == {"ifb0": os.getpid(), "ifb1": os.getpid()}
    pool.put(a)
    assert pool.load() == {"ifb1": os.getpid()}
    with pytest.raises(KeyError):
        pool.put("ifb0")
    c = pool.get()                 # no longer fails at two: creates ifb2 when needed
    d = pool.get()
    assert (c.devname, d.devname) == ("ifb0", "ifb2")


def test_ifbbuffer_install_and_uninstall(legacy_env, kernel):
    ifb = kernel.add_link("ifb0", "ifb", up=False)
    buf = device.IFBBuffer("ifb0")
    buf.install(_vif("vif6.0"))
    assert kernel.links[ifb]["up"]
    assert list(kernel.filters.values()) == [ifb]
    buf.uninstall()
    assert kernel.filters == {} and not kernel.links[ifb]["up"]


def test_ifb_left_in_the_state_we_found_it(kernel, rtnl, tmp_path, registry):
    ifb = kernel.add_link("ifb0", "ifb", up=True)
    make_nic(rtnl, tmp_path, registry).uninstall()
    assert kernel.links[ifb]["up"] is True


# -- an HVM emulated NIC (issue 11, item 4): the -emu tap is buffered too -------------

def test_legacy_buffered_nic_buffers_the_emulated_nic_tap(legacy_env, kernel, tmp_path):
    tap = kernel.add_link("vif5.0-emu", "tun")
    v = _vif("vif5.0")
    v.emudev = "vif5.0-emu"
    nic = device.BufferedNIC(v)
    assert nic.emu is not None and nic.emu.vif.dev == "vif5.0-emu"
    assert nic.emu.vif.emudev is None and v.dev == "vif5.0"      # the caller's VIF kept
    ifb, ifb_emu = kernel.index(nic.bufdev.devname), kernel.index(nic.emu.bufdev.devname)
    assert ifb != ifb_emu
    # both guest paths redirected, each to its own IFB
    assert sorted(kernel.filters.values()) == sorted([ifb, ifb_emu])
    assert any(key[0] == tap for key in kernel.filters)
    nic.postsuspend()
    nic.commit()
    assert kernel.plug_actions(ifb) == kernel.plug_actions(ifb_emu) == [3, 2, 0, 1]
    nic.uninstall()
    assert kernel.qdiscs == {} and kernel.filters == {} and pool_text(tmp_path) == ""


def test_legacy_buffered_nic_without_the_emulated_tap_warns(legacy_env, kernel, caplog):
    v = _vif("vif5.0")
    v.emudev = "vif5.0-emu"                 # no device model in dom0 (or a xend host)
    nic = device.BufferedNIC(v)
    assert nic.emu is None
    assert "no emulated NIC device vif5.0-emu" in caplog.text
    nic.uninstall()
    assert kernel.filters == {}
