"""Network output commit against the real ``sch_plug`` (runs inside the qemu
tier's VM: Debian's kernel).

Expected behaviour is the spec's: legacy-api.md §5.5 and §7, xl-side.md §2.5
(a new plug holds everything; BUFFER closes the epoch; RELEASE_ONE lets the
closed epoch out; RELEASE_INDEFINITE passes everything until the next
BUFFER; the limit is in bytes and what would exceed it is dropped; the
kernel takes ``limit`` only from an add or a LIMIT action).
"""
from __future__ import annotations

import os
import struct

import pytest

from tests.qemu.inside.netlab import UDP_IP_HEADERS, sh
from xen_remus_compat.devices import netbuf


@pytest.fixture(scope="module", autouse=True)
def _real_plug():
    assert os.environ.get("XRC_IN_VM") == "1", "run inside the qemu tier's VM"
    with open("/proc/modules") as f:
        assert any(line.split()[0] == "sch_plug" for line in f), "sch_plug is not loaded"


# -- the baseline: iproute2 alone ---------------------------------------------------------
def test_tc_baseline_plug_actions(lab):
    """``tc`` alone drives the real plug: add holds, block closes the epoch,
    release lets it out in order, release_indefinite passes through."""
    lab.tc("qdisc", "add", "dev", "vh0", "ingress")
    sh("ip", "-n", lab.dom0, "link", "add", "ifbq", "type", "ifb")
    sh("ip", "-n", lab.dom0, "link", "set", "ifbq", "up")
    lab.tc("filter", "add", "dev", "vh0", "parent", "ffff:", "protocol", "all", "pref", "10",
           "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect",
           "dev", "ifbq")
    lab.tc("qdisc", "add", "dev", "ifbq", "root", "plug", "limit", "100000")
    assert lab.root_qdisc("ifbq")["kind"] == "plug"

    lab.send(range(5))
    lab.wait_qdisc("ifbq", qlen=5)
    assert lab.receive() == []                       # a new plug holds
    lab.tc("qdisc", "change", "dev", "ifbq", "root", "plug", "block")
    assert lab.receive() == []                       # closed, not released
    lab.tc("qdisc", "change", "dev", "ifbq", "root", "plug", "release")
    assert lab.receive(5) == [0, 1, 2, 3, 4]
    lab.send(range(5, 8))
    lab.wait_qdisc("ifbq", qlen=3)
    assert lab.receive() == []                       # the new epoch is held
    lab.tc("qdisc", "change", "dev", "ifbq", "root", "plug", "release_indefinite")
    assert lab.receive(3) == [5, 6, 7]
    lab.send(range(8, 10))
    assert lab.receive(2) == [8, 9]                  # pass-through
    assert lab.root_qdisc("ifbq")["drops"] == 0


# -- the project's API ----------------------------------------------------------------------
def test_tc_sees_the_installed_plug(lab, nic):
    n = nic()
    ifb = n.ifbname
    q = lab.root_qdisc(ifb)
    assert q["kind"] == "plug" and q["root"] is True
    flt = lab.tc("filter", "show", "dev", "vh0", "ingress").stdout
    assert "pref 10 u32" in flt
    assert f"mirred (Egress Redirect to device {ifb})" in flt
    n.uninstall()
    assert lab.tc("qdisc", "show", "dev", "vh0", "ingress").stdout == ""
    assert "plug" not in lab.tc("qdisc", "show").stdout


def test_epochs_held_until_commit_and_released_in_order(lab, nic):
    n = nic()
    lab.send(range(0, 10))                           # epoch A
    lab.wait_qdisc(n.ifbname, qlen=10)
    assert lab.receive() == []
    n.postsuspend()                                  # BUFFER: A closed
    lab.send(range(10, 20))                          # epoch B
    lab.wait_qdisc(n.ifbname, qlen=20)
    assert lab.receive() == []
    assert n.commit() is True                        # RELEASE_ONE: A only
    assert lab.receive(10) == list(range(0, 10))
    lab.wait_qdisc(n.ifbname, qlen=10)               # B still held
    n.postsuspend()
    assert lab.receive() == []
    n.commit()
    assert lab.receive(10) == list(range(10, 20))
    lab.wait_qdisc(n.ifbname, qlen=0)


def test_many_checkpoints(lab, nic):
    n = nic()
    for epoch in range(10):
        seqs = list(range(epoch * 7, epoch * 7 + 7))
        lab.send(seqs)
        lab.wait_qdisc(n.ifbname, qlen=7)
        n.postsuspend()
        n.commit()
        assert lab.receive(7) == seqs, f"epoch {epoch}"


def test_nothing_dropped_under_the_default_limit(lab, nic):
    """300 datagrams of 1400 bytes (~430 kB, ten times what the kernel's
    default limit of tx_queue_len x MTU would hold on an IFB) are all held,
    then all released in order: the 10,000,000-byte limit was really sent."""
    n = nic()
    assert n.limit == netbuf.DEFAULT_LIMIT == 10_000_000
    txq = lab.link(lab.dom0, n.ifbname)["txqlen"]
    size, count = 1400, 300
    assert count * (size + UDP_IP_HEADERS) > 2 * txq * 1500
    lab.send(range(count), size=size)
    q = lab.wait_qdisc(n.ifbname, qlen=count)
    assert q["backlog"] >= count * (size + UDP_IP_HEADERS)
    assert lab.receive() == []
    n.postsuspend()
    n.commit()
    assert lab.receive(count, wait=20) == list(range(count))
    assert lab.root_qdisc(n.ifbname)["drops"] == 0


def test_limit_drops_what_exceeds_it(lab, nic):
    """limit 720 bytes, 20 frames of 142 bytes (100 B of payload): 5 fit,
    the other 15 are dropped, and the 5 held ones are released."""
    n = nic(limit=720)
    lab.send(range(20), size=100)
    q = lab.wait_qdisc(n.ifbname, qlen=5, drops=15)
    assert q["backlog"] <= 720
    n.postsuspend()
    n.commit()
    assert lab.receive(5) == [0, 1, 2, 3, 4]


def test_uninstall_releases_what_was_held(lab, nic, tmp_path):
    """Uninstall sends RELEASE_INDEFINITE before deleting the qdisc: both the
    closed epoch and the open one reach the receiver, in order."""
    n = nic()
    ifb = n.ifbname
    lab.send(range(0, 40))
    lab.wait_qdisc(ifb, qlen=40)
    n.postsuspend()
    lab.send(range(40, 80))
    lab.wait_qdisc(ifb, qlen=80)
    assert lab.receive() == []
    n.uninstall()
    assert lab.receive(80) == list(range(80))
    assert lab.tc("qdisc", "show", "dev", "vh0", "ingress").stdout == ""
    assert (tmp_path / "ifb").read_text() == ""


def test_uninstall_releases_a_large_backlog(lab, nic):
    """2000 held datagrams (~480 kB, far under the limit: about what a 1 Gbit/s
    guest sends in one 25 ms epoch) all get out on uninstall.  The IFB drains
    the released plug in rounds (its own queue is only txqueuelen deep), so
    the qdisc must not be deleted before it is empty: deleting purges it."""
    n = nic()
    count = 2000
    lab.send(range(count), size=200)
    lab.wait_qdisc(n.ifbname, qlen=count, wait=30)
    n.uninstall()
    got = lab.receive(count, wait=10)
    assert (len(got), got == list(range(count))) == (count, True)


def test_release_indefinite_passes_through_until_buffer(lab, nic):
    n = nic()
    lab.send(range(3))
    lab.wait_qdisc(n.ifbname, qlen=3)
    n.buffer.release_indefinite()
    assert lab.receive(3) == [0, 1, 2]
    lab.send(range(3, 6))
    assert lab.receive(3) == [3, 4, 5]               # no commit needed
    n.postsuspend()                                  # BUFFER ends pass-through
    lab.send(range(6, 9))
    lab.wait_qdisc(n.ifbname, qlen=3)
    assert lab.receive() == []
    n.postsuspend()
    n.commit()
    assert lab.receive(3) == [6, 7, 8]


# -- the pyroute2 traps, on the real qdisc ------------------------------------------------------
def _plug_options(data: bytes):
    return struct.unpack("=iI", netbuf.rtattrs(data)[netbuf.TCA_OPTIONS][:8])


def test_named_actions_are_what_the_kernel_acts_on(lab, nic):
    """build_plug passes the action to pyroute2 by name, so each message
    carries its own action (not 0 = BUFFER) and the real qdisc obeys it."""
    n = nic()
    idx = n.ifb.index
    for action in (netbuf.TCQ_PLUG_BUFFER, netbuf.TCQ_PLUG_RELEASE_ONE,
                   netbuf.TCQ_PLUG_RELEASE_INDEFINITE):
        assert _plug_options(netbuf.build_plug(idx, action)) == (action, netbuf.DEFAULT_LIMIT)
    lab.send(range(4))
    lab.wait_qdisc(n.ifbname, qlen=4)
    n.rtnl.request(netbuf.build_plug(idx, netbuf.TCQ_PLUG_BUFFER))
    n.rtnl.request(netbuf.build_plug(idx, netbuf.TCQ_PLUG_RELEASE_ONE))
    assert lab.receive(4) == [0, 1, 2, 3]
    lab.send(range(4, 6))
    lab.wait_qdisc(n.ifbname, qlen=2)
    n.rtnl.request(netbuf.build_plug(idx, netbuf.TCQ_PLUG_RELEASE_INDEFINITE))
    assert lab.receive(2) == [4, 5]


def test_limit_only_changes_with_the_limit_action(lab, nic):
    """The per-checkpoint messages carry the limit too, but the kernel only
    takes it with TCQ_PLUG_LIMIT (legacy-api.md §7)."""
    n = nic()
    idx = n.ifb.index
    n.rtnl.request(netbuf.build_plug(idx, netbuf.TCQ_PLUG_BUFFER, limit=1))
    lab.send(range(3), size=100)
    lab.wait_qdisc(n.ifbname, qlen=3)                # limit 1 ignored: nothing dropped
    n.rtnl.request(netbuf.build_plug(idx, netbuf.TCQ_PLUG_LIMIT, limit=1))
    lab.send(range(3, 6), size=100)
    lab.wait_qdisc(n.ifbname, qlen=3, drops=3)       # now it applies
    n.postsuspend()
    n.commit()
    assert lab.receive(3) == [0, 1, 2]


def test_zero_limit_is_refused():
    """limit 0 would make the real qdisc drop everything (next test)."""
    with pytest.raises(ValueError, match="limit"):
        netbuf.check_limit(0)
    with pytest.raises(ValueError, match="limit"):
        netbuf.build_plug(1, netbuf.TCQ_PLUG_BUFFER, limit=0)


def test_pyroute2_traps_are_real(lab, nic):
    """What the guards are for: pyroute2's own plug encoding maps an integer
    action to 0 (BUFFER) and defaults the limit to 0.  On the real qdisc a
    "release" given by number is a second BUFFER, which empties the closed
    epoch's count, so the next commit releases nothing; a limit of 0 drops
    every packet."""
    from pyroute2.netlink.rtnl.tcmsg import sched_plug
    n = nic()
    idx = n.ifb.index
    assert sched_plug.get_parameters({"action": 1}) == {"action": 0, "limit": 0}
    raw = bytearray(netbuf.build_plug(idx, netbuf.TCQ_PLUG_BUFFER))
    at = bytes(raw).index(netbuf.rtattrs(bytes(raw))[netbuf.TCA_OPTIONS])

    def send_encoded(params):
        enc = sched_plug.get_parameters(params)
        raw[at:at + 8] = struct.pack("=iI", enc["action"], enc["limit"])
        n.rtnl.request(bytes(raw))

    lab.send(range(3))
    lab.wait_qdisc(n.ifbname, qlen=3)
    n.postsuspend()                                   # epoch of 3 closed
    send_encoded({"action": netbuf.TCQ_PLUG_RELEASE_ONE, "limit": netbuf.DEFAULT_LIMIT})
    assert lab.receive() == []                        # not a release ...
    n.commit()
    assert lab.receive() == []                        # ... a BUFFER: epoch count lost
    lab.wait_qdisc(n.ifbname, qlen=3)
    n.buffer.release_indefinite()
    assert lab.receive(3) == [0, 1, 2]
    send_encoded({"action": "TCQ_PLUG_LIMIT"})        # pyroute2's default limit: 0
    lab.send(range(3, 6))
    lab.wait_qdisc(n.ifbname, qlen=0, drops=3)
    assert lab.receive() == []


# -- the legacy facade ---------------------------------------------------------------------------
def test_legacy_buffered_nic_on_the_real_plug(lab, tmp_path, monkeypatch, capsys):
    """xen.remus.device.BufferedNIC: unbuffered until the first postsuspend
    (legacy-api.md §5.5), then each checkpoint's output waits for the
    commit of the *next* checkpoint's epoch."""
    from xen_remus_compat.legacy import device, netlink, vif
    monkeypatch.setattr(netlink, "NETNS", lab.dom0)
    monkeypatch.setattr(device, "POOLDIR", str(tmp_path))
    monkeypatch.setattr(device, "_rth", None)
    monkeypatch.setattr(device, "_rtnls", {})
    v = vif.VIF(mac="00:16:3e:00:00:01")
    v.dev = "vh0"
    n = device.BufferedNIC(v)
    try:
        lab.send(range(3))
        assert lab.receive(3) == [0, 1, 2]           # not buffering yet
        n.postsuspend()
        assert capsys.readouterr().out == f"installing buffer on {n.bufdev.devname}...  done.\n"
        lab.send(range(3, 6))                         # after the checkpoint
        lab.wait_qdisc(n.bufdev.devname, qlen=3)
        n.commit()
        assert lab.receive() == []
        n.postsuspend()
        n.commit()
        assert lab.receive(3) == [3, 4, 5]
    finally:
        n.uninstall()
        for r in device._rtnls.values():
            r.close()
        if device._rth is not None:
            device._rth.close()
    assert "plug" not in lab.tc("qdisc", "show").stdout
