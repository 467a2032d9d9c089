"""Network buffering on this kernel, inside network namespaces we create.

Topology per test: a "dom0" namespace holding the host ends ``vh<i>`` of veth
pairs whose other ends ``vg<i>`` sit in "guest" namespaces; addresses are
TEST-NET ones assigned inside those namespaces only.  Nothing outside them
is touched; they are deleted in fixtures even when a test fails.

This kernel (6.18 here) has no sch_plug: the redirect tests use the pfifo
stand-in as the IFB's root qdisc, and the plug tests assert the clear
EnvironmentProblem.  Under a kernel with sch_plug (the qemu tier boots
Debian's) the same file runs the real plug semantics instead.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Iterator

import pytest

from tests.conftest import ROOT, tier_unavailable
from tests.support.netbuf_fixtures import (  # noqa: F401 (fixtures)
    fresh_quirks, pool_text, registry)
from xen_remus_compat import errors, quirks
from xen_remus_compat.devices import netbuf

SUBNETS = ["192.0.2", "198.51.100", "203.0.113"]     # RFC 5737, one per guest
PORT = 40123


def sh(*argv, check=True, input=None):
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input,
                          timeout=30)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(argv)}: rc {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def linux_tier():
    if os.geteuid() != 0:
        tier_unavailable("linux", "needs root for network namespaces")
    probe = "xrcnbprobe%d" % os.getpid()
    proc = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if proc.returncode:
        tier_unavailable("linux", f"cannot create a network namespace: {proc.stderr.strip()}")
    try:
        proc = subprocess.run(["ip", "-n", probe, "link", "add", "ifbprobe", "type", "ifb"],
                              capture_output=True, text=True)
        if proc.returncode:
            tier_unavailable("linux", f"no IFB devices on this kernel: {proc.stderr.strip()}")
        plug = subprocess.run(["tc", "-n", probe, "qdisc", "add", "dev", "ifbprobe",
                               "root", "plug"], capture_output=True, text=True)
        return {"plug": plug.returncode == 0}
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)


class Topo:
    """A dom0 namespace and guest namespaces joined by veth pairs."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.host = f"xrcnb-{tag}-h"
        self.guests = []
        self.tag = tag
        self._mkns(self.host)

    def _mkns(self, name):
        sh("ip", "netns", "add", name)
        sh("ip", "netns", "exec", name, "sysctl", "-qw",
           "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def add_guest(self) -> int:
        i = len(self.guests)
        g = f"xrcnb-{self.tag}-g{i}"
        self._mkns(g)
        self.guests.append(g)
        net = SUBNETS[i]
        sh("ip", "-n", self.host, "link", "add", f"vh{i}", "type", "veth",
           "peer", "name", f"vg{i}", "netns", g)
        sh("ip", "-n", self.host, "addr", "add", f"{net}.1/24", "dev", f"vh{i}")
        sh("ip", "-n", g, "addr", "add", f"{net}.2/24", "dev", f"vg{i}")
        sh("ip", "-n", self.host, "link", "set", f"vh{i}", "up")
        sh("ip", "-n", g, "link", "set", f"vg{i}", "up")
        return i

    def destroy(self) -> None:
        for ns in [self.host] + self.guests:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    # -- observation ------------------------------------------------------------
    def snapshot(self) -> dict:
        """Everything our code may change in the dom0 namespace."""
        links = json.loads(sh("ip", "-n", self.host, "-j", "link", "show").stdout)
        snap = {"links": sh("ip", "-n", self.host, "-d", "link", "show").stdout,
                "qdiscs": sh("tc", "-n", self.host, "qdisc", "show").stdout}
        for link in links:
            name = link["ifname"]
            snap["filters " + name] = sh("tc", "-n", self.host, "filter", "show", "dev",
                                         name, "ingress", check=False).stdout
        return snap

    def stats(self, dev: str) -> dict:
        out = json.loads(sh("ip", "-n", self.host, "-s", "-j", "link", "show", "dev",
                            dev).stdout)
        return out[0]["stats64"]

    def filters(self, dev: str) -> str:
        return sh("tc", "-n", self.host, "filter", "show", "dev", dev, "ingress").stdout

    # -- traffic ----------------------------------------------------------------
    def listener(self, i: int) -> socket.socket:
        from pyroute2 import netns
        s = netns.create_socket(netns=self.host, family=socket.AF_INET,
                                socket_type=socket.SOCK_DGRAM, flags=0)
        s.bind((f"{SUBNETS[i]}.1", PORT))
        s.settimeout(0.5)
        return s

    def send_udp(self, i: int, count: int) -> None:
        from pyroute2 import netns
        s = netns.create_socket(netns=self.guests[i], family=socket.AF_INET,
                                socket_type=socket.SOCK_DGRAM, flags=0)
        try:
            for n in range(count):
                s.sendto(b"epoch-%d" % n, (f"{SUBNETS[i]}.1", PORT))
        finally:
            s.close()

    def send_raw(self, i: int, count: int, ethertype: int = 0x88B5) -> None:
        """Frames of a non-IP ethertype from the guest side."""
        from pyroute2 import netns
        s = netns.create_socket(netns=self.guests[i], family=socket.AF_PACKET,
                                socket_type=socket.SOCK_RAW, flags=0)
        try:
            s.bind((f"vg{i}", 0))
            frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ethertype)
            frame += b"remus" * 10
            for _ in range(count):
                s.send(frame)
        finally:
            s.close()


def recv_all(sock: socket.socket, count: int, wait: float = 2.0) -> list:
    got, deadline = [], time.monotonic() + wait
    while len(got) < count and time.monotonic() < deadline:
        try:
            got.append(sock.recv(100))
        except socket.timeout:
            pass
    return got


def wait_tx(topo: Topo, dev: str, base: int, want: int, wait: float = 2.0) -> int:
    deadline = time.monotonic() + wait
    while True:
        delta = topo.stats(dev)["tx"]["packets"] - base
        if delta >= want or time.monotonic() > deadline:
            return delta
        time.sleep(0.05)


@contextlib.contextmanager
def one_guest_topo() -> Iterator[Topo]:
    """A Topo with one guest, deleted on the way out even when a test fails."""
    t = Topo()
    try:
        t.add_guest()
        yield t
    finally:
        t.destroy()


@pytest.fixture
def topo(linux_tier):
    with one_guest_topo() as t:
        yield t


def nic(topo, tmp_path, registry, vif="vh0", **kw):
    kw.setdefault("buffer_class", netbuf.PfifoStandIn)
    return netbuf.BufferedNIC(vif, netns=topo.host, pool_dir=str(tmp_path),
                              registry=registry, **kw)


# -- the redirect, on the real kernel --------------------------------------------------
def test_guest_traffic_crosses_the_ifb(topo, tmp_path, registry):
    before = topo.snapshot()
    listener = topo.listener(0)
    n = nic(topo, tmp_path, registry)
    try:
        assert n.ifbname == "ifb0" and n.claim.created       # the namespace had none
        assert "qdisc pfifo" in sh("tc", "-n", topo.host, "qdisc", "show", "dev",
                                   "ifb0").stdout
        flt = topo.filters("vh0")
        assert "protocol all pref 10 u32" in flt
        assert "mirred (Egress Redirect to device ifb0)" in flt
        base = topo.stats("ifb0")["tx"]["packets"]
        topo.send_udp(0, 20)
        got = recv_all(listener, 20)
        assert sorted(got) == sorted(b"epoch-%d" % i for i in range(20))
        assert wait_tx(topo, "ifb0", base, 20) >= 20
        n.postsuspend()
        n.commit()
        assert pool_text(tmp_path) == "ifb0 %d\n" % os.getpid()
    finally:
        n.uninstall()
        listener.close()
    assert topo.snapshot() == before
    assert pool_text(tmp_path) == ""


@pytest.mark.parametrize("proto_ip", [False, True])
def test_non_ip_frames_follow_the_protocol_setting(topo, tmp_path, registry, proto_ip):
    quirks.set_quirks(netbuf_proto_ip=proto_ip)
    before = topo.snapshot()
    with nic(topo, tmp_path, registry) as n:
        want = "protocol ip pref 10" if proto_ip else "protocol all pref 10"
        assert want in topo.filters("vh0")
        base = topo.stats(n.ifbname)["tx"]["packets"]
        topo.send_raw(0, 20)
        time.sleep(0.3)
        delta = wait_tx(topo, n.ifbname, base, 20, wait=1.0)
        if proto_ip:
            assert delta < 20          # the legacy hole: non-IP output bypasses the buffer
        else:
            assert delta >= 20
    assert topo.snapshot() == before


def test_second_protected_vif(topo, tmp_path, registry):
    topo.add_guest()
    before = topo.snapshot()
    l0, l1 = topo.listener(0), topo.listener(1)
    a = nic(topo, tmp_path, registry, "vh0")
    b = nic(topo, tmp_path, registry, "vh1")
    try:
        assert {a.ifbname, b.ifbname} == {"ifb0", "ifb1"}
        assert f"redirect to device {b.ifbname}" in topo.filters("vh1").replace(
            "Egress Redirect to device", "redirect to device")
        base_a = topo.stats(a.ifbname)["tx"]["packets"]
        base_b = topo.stats(b.ifbname)["tx"]["packets"]
        topo.send_udp(1, 10)
        assert len(recv_all(l1, 10)) == 10
        assert wait_tx(topo, b.ifbname, base_b, 10) >= 10
        assert topo.stats(a.ifbname)["tx"]["packets"] - base_a < 10
        assert len(pool_text(tmp_path).splitlines()) == 2
    finally:
        b.uninstall()
        a.uninstall()
        l0.close()
        l1.close()
    assert topo.snapshot() == before


# -- the plug ------------------------------------------------------------------------------
def test_plug_step(topo, tmp_path, registry, linux_tier):
    before = topo.snapshot()
    if linux_tier["plug"]:
        with nic(topo, tmp_path, registry, buffer_class=netbuf.PlugBuffer) as n:
            assert "qdisc plug" in sh("tc", "-n", topo.host, "qdisc", "show", "dev",
                                      n.ifbname).stdout
    else:
        with pytest.raises(errors.EnvironmentProblem) as ei:
            nic(topo, tmp_path, registry, buffer_class=netbuf.PlugBuffer)
        msg = str(ei.value)
        assert "sch_plug" in msg and "CONFIG_NET_SCH_PLUG" in msg
        assert "ifb0" in msg and "ENOENT" in msg
    assert topo.snapshot() == before
    assert pool_text(tmp_path) == "" and len(registry) == 0


def test_plug_holds_output_until_release(topo, tmp_path, registry, linux_tier):
    if not linux_tier["plug"]:
        tier_unavailable("linux", "this kernel has no sch_plug (CONFIG_NET_SCH_PLUG); "
                                  "plug semantics run in the qemu tier (Debian's kernel)")
    listener = topo.listener(0)
    try:
        # resolve ARP before buffering: a buffered ARP request would hold the
        # first datagram back one more epoch (seen on the real plug, qemu tier)
        topo.send_udp(0, 1)
        assert recv_all(listener, 1) == [b"epoch-0"]
        with nic(topo, tmp_path, registry, buffer_class=netbuf.PlugBuffer) as n:
            topo.send_udp(0, 1)            # buffered from creation
            assert recv_all(listener, 1, wait=0.5) == []
            n.postsuspend()                # closes the epoch: still held
            assert recv_all(listener, 1, wait=0.3) == []
            n.commit()                     # releases it
            assert recv_all(listener, 1) == [b"epoch-0"]
            topo.send_udp(0, 1)
            assert recv_all(listener, 1, wait=0.3) == []
            n.postsuspend()
            n.commit()
            assert recv_all(listener, 1) == [b"epoch-0"]
    finally:
        listener.close()


# -- exit paths ------------------------------------------------------------------------------
def test_exception_inside_with_leaves_nothing(topo, tmp_path, registry):
    before = topo.snapshot()
    with pytest.raises(RuntimeError):
        with nic(topo, tmp_path, registry):
            raise RuntimeError("checkpoint failed")
    assert topo.snapshot() == before and pool_text(tmp_path) == ""


def test_failed_install_leaves_their_state_alone(topo, tmp_path, registry):
    sh("tc", "-n", topo.host, "qdisc", "add", "dev", "vh0", "ingress")
    sh("tc", "-n", topo.host, "filter", "add", "dev", "vh0", "parent", "ffff:",
       "protocol", "all", "pref", "10", "u32", "match", "u32", "0", "0", "classid", "1:1")
    before = topo.snapshot()
    with pytest.raises(netbuf.NetbufError, match="pref 10"):
        nic(topo, tmp_path, registry)
    assert topo.snapshot() == before and pool_text(tmp_path) == ""


def test_registry_cleanup(topo, tmp_path, registry):
    topo.add_guest()
    before = topo.snapshot()
    a = nic(topo, tmp_path, registry, "vh0")
    with pytest.raises(netbuf.NetbufError, match="already protected"):
        nic(topo, tmp_path, registry, "vh0")         # the same vif twice
    b = nic(topo, tmp_path, registry, "vh1")
    assert (a.ifbname, b.ifbname) == ("ifb0", "ifb1")
    assert len(registry) == 2
    assert registry.cleanup_all() == []
    assert topo.snapshot() == before and pool_text(tmp_path) == ""


CHILD = textwrap.dedent("""
    import sys
    from xen_remus_compat.devices import netbuf
    ns, vif, pooldir, mode = sys.argv[1:5]
    nic = netbuf.BufferedNIC(vif, netns=ns, pool_dir=pooldir,
                             buffer_class=netbuf.PfifoStandIn)
    if mode == "sigterm":
        netbuf.install_signal_handlers()
    print("READY", nic.ifbname, flush=True)
    if mode == "exit":
        sys.exit(0)
    sys.stdin.readline()
    nic.uninstall()
    print("DONE", flush=True)
""")


def child(topo, tmp_path, vif, mode):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", CHILD, topo.host, vif, str(tmp_path), mode],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline().split()
    if not line or line[0] != "READY":
        p.kill()
        raise AssertionError(f"child failed: {line} {p.communicate(timeout=10)}")
    return p, line[1]


def test_pool_across_two_processes(topo, tmp_path):
    topo.add_guest()
    before = topo.snapshot()
    p0, ifb0 = child(topo, tmp_path, "vh0", "wait")
    p1, ifb1 = child(topo, tmp_path, "vh1", "wait")
    try:
        assert ifb0 != ifb1
        claims = dict(line.split() for line in pool_text(tmp_path).splitlines())
        assert claims == {ifb0: str(p0.pid), ifb1: str(p1.pid)}
    finally:
        outs = [p.communicate("go\n", timeout=20) for p in (p0, p1)]
    assert [o[0].split()[-1] for o in outs] == ["DONE", "DONE"]
    assert pool_text(tmp_path) == ""
    assert topo.snapshot() == before


def test_killed_owner_claim_is_reclaimed(topo, tmp_path, registry):
    topo.add_guest()
    p, ifb = child(topo, tmp_path, "vh0", "wait")
    p.kill()
    p.wait(timeout=10)
    assert pool_text(tmp_path) == f"{ifb} {p.pid}\n"
    assert f"device {ifb}" in topo.filters("vh0")         # the dead owner's redirect
    with nic(topo, tmp_path, registry, "vh1") as n:
        assert n.ifbname == ifb and n.claim.reclaimed_from == p.pid
        assert "mirred" not in topo.filters("vh0")          # swept
        assert pool_text(tmp_path) == f"{ifb} {os.getpid()}\n"
    assert pool_text(tmp_path) == ""
    assert "mirred" not in topo.filters("vh1")


@pytest.mark.parametrize("mode", ["sigterm", "exit"])
def test_signal_and_exit_paths_leave_nothing(topo, tmp_path, mode):
    before = topo.snapshot()
    p, ifb = child(topo, tmp_path, "vh0", mode)
    assert pool_text(tmp_path) == f"{ifb} {p.pid}\n" or mode == "exit"
    if mode == "sigterm":
        p.send_signal(signal.SIGTERM)
    p.communicate(timeout=20)
    assert p.returncode == (-signal.SIGTERM if mode == "sigterm" else 0)
    assert topo.snapshot() == before
    assert pool_text(tmp_path) == ""


# -- the legacy facade ------------------------------------------------------------------------
@pytest.fixture
def legacy(topo, tmp_path, monkeypatch):
    from xen_remus_compat.legacy import device, netlink
    monkeypatch.setattr(netlink, "NETNS", topo.host)
    monkeypatch.setattr(device, "POOLDIR", str(tmp_path))
    monkeypatch.setattr(device, "_rth", None)
    monkeypatch.setattr(device, "_rtnls", {})
    yield device
    for r in device._rtnls.values():
        r.close()
    if device._rth is not None:
        device._rth.close()


def _vif(dev):
    from xen_remus_compat.legacy import vif
    v = vif.VIF(mac="00:16:3e:00:00:01")
    v.dev = dev
    return v


def test_legacy_buffered_nic(topo, tmp_path, legacy, monkeypatch, capsys):
    monkeypatch.setattr(legacy, "BUFFER_CLASS", netbuf.PfifoStandIn)
    before = topo.snapshot()
    listener = topo.listener(0)
    try:
        n = legacy.BufferedNIC(_vif("vh0"))
        assert legacy.getrth().getqdisc(n.bufdevno)["kind"] == "pfifo"
        n.postsuspend()
        assert capsys.readouterr().out == "installing buffer on ifb0...  done.\n"
        n.commit()
        base = topo.stats("ifb0")["tx"]["packets"]
        topo.send_udp(0, 5)
        assert len(recv_all(listener, 5)) == 5
        assert wait_tx(topo, "ifb0", base, 5) >= 5
        n.uninstall()
    finally:
        listener.close()
    assert topo.snapshot() == before and pool_text(tmp_path) == ""


def test_legacy_plug_missing(topo, tmp_path, legacy, linux_tier):
    """Legacy scripts catch BufferedNICException: a kernel without sch_plug
    raises that, with the reason (it used to let an EnvironmentProblem out)."""
    if linux_tier["plug"]:
        tier_unavailable("linux", "kernel has sch_plug: the missing-plug path is not testable")
    before = topo.snapshot()
    with pytest.raises(legacy.BufferedNICException, match="sch_plug") as ei:
        legacy.BufferedNIC(_vif("vh0"))
    assert "CONFIG_NET_SCH_PLUG" in str(ei.value) and "ifb0" in str(ei.value)
    assert isinstance(ei.value.__cause__, errors.EnvironmentProblem)
    assert topo.snapshot() == before and pool_text(tmp_path) == ""
