"""Output commit end to end: the real ``remus`` command protecting the
simulated guest, with a netbuf on the real ``sch_plug`` (runs inside the qemu
tier's VM: Debian's kernel).

Issue "Output commit", check "The engine with devices".  The spec: a
checkpoint's network output is released only after the backup has the
checkpoint (legacy-api.md §1.2 step 3, §5.5; xl-side.md §2.5): per epoch
``postsuspend`` closes the epoch (TCQ_PLUG_BUFFER), the engine writes libxl's
CHECKPOINT_END, and only then ``commit`` lets the closed epoch out
(TCQ_PLUG_RELEASE_ONE).  A clean stop releases what is held
(RELEASE_INDEFINITE, then drain); after a failed checkpoint the held output
belongs to epochs the backup never got and is dropped (``abandon``).

Topology (tests/qemu/inside/netlab.py): namespace "dom0" holds ``vh0`` (the
vif) at 192.0.2.1, namespace "guest" holds its veth peer ``vg0`` at
192.0.2.2; static neighbour entries and no IPv6, so every frame is one of
our datagrams.  The guest side sends numbered UDP datagrams to a listener
bound to vh0's address: they cross vh0's ingress -> u32/mirred -> IFB ->
plug -> back into dom0's stack.  ``remus --sim --blackhole`` runs in "dom0"
(``ip netns exec``) with ``XEN_REMUS_COMPAT_SIM_VIFS=vh0``; its stats file
gives the CLOCK_MONOTONIC time at which each CHECKPOINT_END was written
(column 4).  The clock is the same for every process of the VM.

remus is started under simxen already (``simxen.environment``), so ``--sim``
does not re-execute itself: one interpreter start less (~2 s under TCG),
and SIGTERM reaches the engine's process directly, as on a real host.  The
sender keeps going through the stop, so the teardown order is tested too:
deleting the plug while the redirect still feeds it loses a datagram (the
kernel swaps in noop_qdisc during the deletion).

Why no tolerance on "arrival >= CHECKPOINT_END written": the datagram's
send time is read before ``send()``, the END time after the write returns
and before the commit hook sends RELEASE_ONE, and the arrival time after
``recv()`` returns; release -> delivery -> recv -> clock read is a causal
chain, so the comparison is exact whatever the scheduling.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from tests.qemu.inside.netlab import (DOM0_ADDR, PORT, SO_SNDBUFFORCE, SOCKBUF, in_netns,
                                      sh)
from xen_remus_compat.sim import simxen

REMUS = Path(sys.executable).with_name("remus")
POOL_DIR = Path("/var/run/remus")         # the VM's own /run (a tmpfs per boot)
INTERVAL_MS = 100
PERIOD = 0.004                            # seconds between datagrams
PAYLOAD = struct.Struct("!Id")            # sequence number, CLOCK_MONOTONIC send time


@pytest.fixture(scope="module", autouse=True)
def _real_plug():
    assert os.environ.get("XRC_IN_VM") == "1", "run inside the qemu tier's VM"
    with open("/proc/modules") as f:
        assert any(line.split()[0] == "sch_plug" for line in f), "sch_plug is not loaded"
    ok, why = simxen.available()
    assert ok, why
    assert REMUS.exists(), f"the remus command is not installed at {REMUS}"


# -- observation --------------------------------------------------------------------------
def settled(lab, wait: float = 10.0) -> None:
    """Until both veth ends are operationally up (the kernel's link watch
    sets that asynchronously after ``link set up``): a snapshot taken
    earlier would differ from a later one without anyone changing a thing."""
    deadline = time.monotonic() + wait
    while True:
        states = [lab.link(ns, dev)["operstate"]
                  for ns, dev in ((lab.dom0, "vh0"), (lab.guest, "vg0"))]
        if states == ["UP", "UP"]:
            return
        assert time.monotonic() < deadline, f"veth never came up: {states}"
        time.sleep(0.05)


def snapshot(lab) -> Dict[str, str]:
    """What remus may change, in both namespaces (links incl. IFBs, qdiscs,
    vh0's ingress filters, addresses and neighbours)."""
    settled(lab)
    snap = {}
    for ns in (lab.dom0, lab.guest):       # few processes: each costs ~0.2 s under TCG
        snap[f"{ns} ip"] = _batch(["ip", "-n", ns, "-d"],
                                  ["link show", "addr show", "neigh show"])
    snap["tc"] = "".join(_batch(["tc", "-n", ns], ["qdisc show"]) for ns in (lab.dom0, lab.guest))
    snap["vh0 ingress filters"] = _batch(["tc", "-n", lab.dom0],
                                         ["filter show dev vh0 ingress"])
    return snap


def _batch(argv: List[str], commands: List[str]) -> str:
    proc = subprocess.run(argv + ["-batch", "-"], input="".join(c + "\n" for c in commands),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{argv} {commands}: {proc.stderr}"
    return proc.stdout


def pool_claims() -> str:
    table = POOL_DIR / "ifb"
    return table.read_text() if table.exists() else ""


def read_stats(path: Path, acks: bool = False) -> List[Tuple]:
    """``(checkpoint, CHECKPOINT_END monotonic time)`` per line (with ``acks``:
    ``(checkpoint, end, ack time or None)``); the first three columns keep
    their meaning (demo.py reads column 2), the fifth is the ack's time."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        cols = line.split()
        assert len(cols) == 5, f"stats line {line!r}: expected 5 columns"
        n, py_us, pause_us, end = int(cols[0]), float(cols[1]), float(cols[2]), float(cols[3])
        assert py_us >= 0 and pause_us >= 0, line
        ack = None if cols[4] == "-" else float(cols[4])
        out.append((n, end, ack) if acks else (n, end))
    return out


class Traffic:
    """Numbered datagrams from the guest side every PERIOD s, each carrying its
    send time; a receiver thread in dom0 stamps each arrival."""

    def __init__(self, lab) -> None:
        with in_netns(lab.guest):
            self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # held datagrams still count against the sender's buffer (veth keeps skb->sk)
        self.tx.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SOCKBUF)
        self.tx.connect((DOM0_ADDR, PORT))
        self.rx = lab.listener()
        # seq, clock read before send() (in the datagram), after send() returned
        # (the datagram is then in the plug: veth delivers in the sender's softirq)
        self.sent: List[Tuple[int, float, float]] = []
        self.got: List[Tuple[int, float, float]] = []     # seq, sent at, arrived at
        self.errors: List[str] = []
        self._sending = threading.Event()
        self._stop_rx = threading.Event()
        self._tx_thread: Optional[threading.Thread] = None
        self._rx_thread = threading.Thread(target=self._receive, daemon=True)
        self._rx_thread.start()

    def _receive(self) -> None:
        while not self._stop_rx.is_set():
            r, _, _ = select.select([self.rx], [], [], 0.05)
            if not r:
                continue
            while True:
                try:
                    data = self.rx.recv(2048)
                except BlockingIOError:
                    break
                arrived = time.monotonic()
                seq, sent_at = PAYLOAD.unpack_from(data)
                self.got.append((seq, sent_at, arrived))

    def _send(self) -> None:
        seq = len(self.sent)
        pad = b"p" * 32
        while self._sending.is_set():
            before = time.monotonic()
            try:
                self.tx.send(PAYLOAD.pack(seq, before) + pad)
            except OSError as e:
                self.errors.append(f"datagram {seq}: {e}")
                return
            self.sent.append((seq, before, time.monotonic()))
            seq += 1
            time.sleep(PERIOD)

    def start(self) -> None:
        self._sending.set()
        self._tx_thread = threading.Thread(target=self._send, daemon=True)
        self._tx_thread.start()

    def stop(self) -> None:
        self._sending.clear()
        if self._tx_thread is not None:
            self._tx_thread.join(5)

    def wait_for_last(self, wait: float = 10.0) -> None:
        """Until the last datagram sent arrived or ``wait`` passed, then 0.3 s
        more for anything extra (stop sending first)."""
        deadline = time.monotonic() + wait
        last = self.sent[-1][0] if self.sent else None
        while time.monotonic() < deadline:
            if last is None or (self.got and self.got[-1][0] >= last):
                break
            time.sleep(0.02)
        time.sleep(0.3)

    def close(self) -> None:
        self.stop()
        self._stop_rx.set()
        self._rx_thread.join(5)
        self.tx.close()


# -- running remus ------------------------------------------------------------------------
class Remus:
    """``ip netns exec DOM0 remus --sim -i 100 --blackhole simguest`` (or, with
    ``port``, ``-p PORT simguest 127.0.0.1``: to remus-receiver, acknowledged)."""

    def __init__(self, lab, tmp: Path, fail: str = "", port: Optional[int] = None) -> None:
        self.stats = tmp / "stats"
        self.state = tmp / "sim"
        base = {k: v for k, v in os.environ.items() if not k.startswith("XEN_REMUS_COMPAT_")}
        base.update({"XEN_REMUS_COMPAT_SIM_VIFS": "vh0",
                     "XEN_REMUS_COMPAT_STATS_FILE": str(self.stats)})
        domain = simxen.SimDomain(fail=(fail,) if fail else ())
        env = simxen.environment(self.state, domain, base=base)
        self.started = time.monotonic()
        where = ["--blackhole", "simguest"] if port is None else \
            ["-p", str(port), "simguest", "127.0.0.1"]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.dom0, str(REMUS), "--sim", "-i", str(INTERVAL_MS),
             *where], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        self.out = self.err = ""
        self.ended: Optional[float] = None

    def wait_checkpoints(self, count: int, wait: float = 40.0) -> List[Tuple[int, float]]:
        deadline = time.monotonic() + wait
        while True:
            stats = read_stats(self.stats)
            if len(stats) >= count:
                return stats
            if self.proc.poll() is not None:
                self.finish()
                raise AssertionError(f"remus exited {self.proc.returncode} after "
                                     f"{len(stats)} checkpoints:\n{self.out}\n{self.err}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"only {len(stats)} checkpoints in {wait} s:\n"
                                     f"{self.out}\n{self.err}")
            time.sleep(0.01)

    def finish(self, wait: float = 30.0) -> int:
        try:
            self.out, self.err = self.proc.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"remus did not exit within {wait} s:\n{self.out}\n"
                                 f"{self.err}") from None
        self.ended = time.monotonic()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.out, self.err = self.proc.communicate(timeout=10)

    def sim(self) -> simxen.SimState:
        return simxen.read_state(self.state)


@pytest.fixture
def run(lab, tmp_path):
    """``run(fail="")``: remus started on vh0, with its traffic, cleaned up."""
    made = []
    pool_existed = POOL_DIR.exists()

    def start(fail: str = "", port: Optional[int] = None) -> Tuple[Remus, Traffic]:
        traffic = Traffic(lab)
        remus = Remus(lab, tmp_path, fail, port)
        made.append((remus, traffic))
        return remus, traffic

    yield start
    for remus, traffic in made:
        if remus.proc.poll() is None:
            remus.kill()
        traffic.close()
    if not pool_existed and POOL_DIR.exists():
        sh("rm", "-rf", str(POOL_DIR))


def first_end_after(ends: List[float], t: float) -> Optional[float]:
    return next((e for e in ends if e > t), None)


# -- the checks ---------------------------------------------------------------------------
def test_output_waits_for_its_checkpoint_and_sigterm_releases_the_rest(lab, run):
    before = snapshot(lab)
    remus, traffic = run()
    remus.wait_checkpoints(1)              # the first BUFFER was sent: output is held
    print(f"first checkpoint {time.monotonic() - remus.started:.2f} s after the start")
    traffic.start()                        # and it goes on until remus has exited
    remus.wait_checkpoints(10)             # ~1 s of traffic over ~9 checkpoints
    time.sleep(0.03)                       # mid-epoch: some output is held now
    signalled = time.monotonic()
    os.kill(remus.proc.pid, signal.SIGTERM)
    rc = remus.finish()
    traffic.stop()
    traffic.wait_for_last()
    print(f"stopped in {remus.ended - signalled:.2f} s; {len(traffic.sent)} datagrams")
    assert rc == 0, (remus.out, remus.err)
    assert "*** signalled ***" in remus.out
    assert "installing buffer on ifb0...  done." in remus.out    # the netbuf was engaged
    assert "Traceback" not in remus.err
    assert not traffic.errors

    stats = read_stats(remus.stats)
    ends = [end for _, end in stats]
    assert [n for n, _ in stats] == list(range(1, len(ends) + 1))
    assert ends == sorted(ends) and remus.started < ends[0] and ends[-1] < remus.ended

    got = {seq: (sent_at, arrived) for seq, sent_at, arrived in traffic.got}
    order = [seq for seq, _, _ in traffic.got]
    assert len(traffic.sent) >= 100
    assert order == sorted(order) and len(set(order)) == len(order), "out of order"
    # the clean stop released what was held (RELEASE_INDEFINITE + drain):
    # everything sent before the SIGTERM arrived, and it was not nothing
    before_stop = [seq for seq, _, in_plug in traffic.sent if in_plug < signalled]
    lost = [seq for seq in before_stop if seq not in got]
    assert lost == [], f"sent before the stop, never arrived: {lost[:10]}"
    held = [seq for seq, sent_at, in_plug in traffic.sent
            if sent_at > ends[-1] and in_plug < signalled]
    assert held, "nothing was sent after the last checkpoint and before the stop"
    # ... and so did what was sent during the teardown (the redirect goes
    # before the plug: deleting a root qdisc drops what arrives meanwhile)
    during = [(seq, round(sent_at - signalled, 3), round(remus.ended - in_plug, 3))
              for seq, sent_at, in_plug in traffic.sent if seq not in got]
    assert during == [], f"lost (seq, s after SIGTERM, s before remus exited): {during}"
    # each one waited for the first CHECKPOINT_END written after it was sent;
    # those sent after the last one were held until the SIGTERM
    early = []
    for seq, (sent_at, arrived) in got.items():
        end = first_end_after(ends, sent_at)
        bound = end if end is not None else signalled
        if not arrived > bound:
            early.append((seq, sent_at, arrived, end))
    assert early == [], (f"{len(early)} of {len(got)} datagrams arrived before the "
                         f"CHECKPOINT_END that covers them (seq, sent, arrived, end): "
                         f"{early[:5]}")

    st = remus.sim()
    assert st.final_state == "running"
    assert len(st.checkpoints) >= len(ends)
    assert snapshot(lab) == before
    assert pool_claims() == ""


FAIL_EPOCH = 6


def test_failed_checkpoint_drops_the_held_output(lab, run):
    """SIMXEN_FAIL=write@6: the stream write fails in epoch 6, after its
    postsuspend closed the epoch.  Checkpoints 1..5 complete; what the guest
    sent after the 5th one's BUFFER was never covered by a checkpoint and
    must never reach the peer."""
    before = snapshot(lab)
    remus, traffic = run(fail=f"write@{FAIL_EPOCH}")
    remus.wait_checkpoints(1)
    traffic.start()
    rc = remus.finish()
    print(f"failed and exited {remus.ended - remus.started:.2f} s after the start")
    time.sleep(0.15)                       # datagrams after the teardown pass straight
    traffic.stop()
    traffic.wait_for_last()
    assert not traffic.errors

    assert rc == 1, (remus.out, remus.err)
    assert "xc_domain_save failed: Failed to write page data to stream" in remus.out
    assert "*** signalled ***" not in remus.out
    assert "Traceback" not in remus.err and "internal error" not in remus.err

    stats = read_stats(remus.stats)
    assert [n for n, _ in stats] == list(range(1, FAIL_EPOCH))
    last_end = stats[-1][1]
    st = remus.sim()
    assert st.final_state == "running"
    suspends = {rs.suspensions: rs.monotonic for rs in st.runstates if rs.state == "suspended"}
    assert max(suspends) == FAIL_EPOCH
    last_good_suspend = suspends[FAIL_EPOCH - 1]     # before the last BUFFER that was committed
    resumed = st.runstates[-1].monotonic             # after the failure, before abandon

    got = {seq: (sent_at, arrived) for seq, sent_at, arrived in traffic.got}
    seqs = [seq for seq, _, _ in traffic.got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # in the plug before the last committed BUFFER: released by its commit
    released = [seq for seq, _, in_plug in traffic.sent if in_plug < last_good_suspend]
    # sent after the last committed BUFFER, in the plug before the abandon
    dropped = [seq for seq, sent_at, in_plug in traffic.sent
               if sent_at > last_end and in_plug < resumed]
    after = [seq for seq, sent_at, _ in traffic.sent if sent_at > remus.ended]
    print(f"released {len(released)}, dropped {len(dropped)}, after {len(after)}")
    assert len(released) >= 20 and len(dropped) >= 5 and len(after) >= 5
    assert all(seq in got for seq in released), "a committed epoch's output was lost"
    leaked = [seq for seq in dropped if seq in got]
    assert leaked == [], (f"datagrams of the failed epoch reached the peer: {leaked[:10]} "
                          f"(last CHECKPOINT_END {last_end:.6f}, resumed {resumed:.6f})")
    ends = [end for _, end in stats]
    for seq in released:
        sent_at, arrived = got[seq]
        assert arrived > first_end_after(ends, sent_at), seq
    assert all(seq in got for seq in after), "the vif does not pass traffic after remus"

    assert snapshot(lab) == before
    assert pool_claims() == ""


# -- acknowledged output commit (issue 13) ---------------------------------------------------
RECEIVER = Path(sys.executable).with_name("remus-receiver")


class Backup:
    """``ip netns exec DOM0 remus-receiver --sim --once`` on 127.0.0.1: the
    primary's back channel acknowledges each checkpoint once it is applied."""

    def __init__(self, lab, tmp: Path) -> None:
        assert RECEIVER.exists(), f"remus-receiver is not installed at {RECEIVER}"
        ready = tmp / "backup-port"
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.dom0, str(RECEIVER), "--sim", "--once", "--json",
             "--listen", "127.0.0.1", "--port", "0", "--ready-file", str(ready)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True)
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text().strip()):
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "remus-receiver did not start"
            time.sleep(0.05)
        self.port = int(ready.read_text())
        self.killed_at: Optional[float] = None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.killed_at = time.monotonic()
            os.killpg(self.proc.pid, signal.SIGKILL)

    def finish(self, wait: float = 60.0) -> Tuple[str, str]:
        try:
            return self.proc.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.communicate(timeout=10)


@pytest.fixture
def backup(lab, tmp_path):
    made = []

    def start() -> Backup:
        b = Backup(lab, tmp_path)
        made.append(b)
        return b
    yield start
    for b in made:
        b.kill()
        b.finish()


def test_acked_output_waits_for_the_backups_ack(lab, run, backup):
    """``remus -p`` to remus-receiver: no datagram reaches the peer before
    the ack of the checkpoint that covers it (column 5 of the stats file:
    when the primary read the ack, before its commit hook's RELEASE_ONE)."""
    before = snapshot(lab)
    b = backup()
    remus, traffic = run(port=b.port)
    remus.wait_checkpoints(1)
    traffic.start()
    remus.wait_checkpoints(10)
    time.sleep(0.03)
    signalled = time.monotonic()
    os.kill(remus.proc.pid, signal.SIGTERM)
    rc = remus.finish()
    traffic.stop()
    traffic.wait_for_last()
    out, err = b.finish()
    assert rc == 0, (remus.out, remus.err)
    assert "released once it is written" not in remus.err      # acknowledged mode
    assert "Traceback" not in remus.err and not traffic.errors
    assert '"acks": ' in out, (out, err)

    rows = read_stats(remus.stats, acks=True)
    assert [n for n, _, _ in rows] == list(range(1, len(rows) + 1)) and len(rows) >= 10
    assert all(ack is not None and ack >= end for _, end, ack in rows), rows
    ends = [end for _, end, _ in rows]
    acks = {end: ack for _, end, ack in rows}
    got = {seq: (sent_at, arrived) for seq, sent_at, arrived in traffic.got}
    assert len(got) >= 50
    early = []
    for seq, (sent_at, arrived) in got.items():
        end = first_end_after(ends, sent_at)
        bound = acks[end] if end is not None else signalled
        if not arrived > bound:
            early.append((seq, sent_at, arrived, end, acks.get(end)))
    assert early == [], (f"{len(early)} of {len(got)} datagrams arrived before the ack "
                         f"of the checkpoint that covers them (seq, sent, arrived, end, ack): "
                         f"{early[:5]}")
    lat = sorted(ack - end for _, end, ack in rows)
    print(f"{len(rows)} checkpoints, {len(got)} datagrams; ack latency p50 "
          f"{lat[len(lat) // 2] * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms")
    assert snapshot(lab) == before
    assert pool_claims() == ""


def test_a_killed_backup_never_sees_its_unacknowledged_output_released(lab, run, backup):
    """SIGKILL of the backup mid-run: the primary stops (exit 1) and abandons
    its buffers.  Output of checkpoints acknowledged before was released;
    what was sent after the END of the last acknowledged checkpoint and held
    when the backup died never reaches the peer."""
    before = snapshot(lab)
    b = backup()
    remus, traffic = run(port=b.port)
    remus.wait_checkpoints(1)
    traffic.start()
    remus.wait_checkpoints(8)
    time.sleep(0.04)
    b.kill()
    rc = remus.finish()
    time.sleep(0.15)
    traffic.stop()
    traffic.wait_for_last()
    assert rc == 1, (remus.out, remus.err)
    assert "guest running, protection stopped" in remus.out or \
        "closed the connection" in remus.out, remus.out
    assert "Traceback" not in remus.err and not traffic.errors

    rows = read_stats(remus.stats, acks=True)
    acked = [(n, end) for n, end, ack in rows if ack is not None]
    assert acked and [n for n, _ in acked] == list(range(1, len(acked) + 1))
    last_acked, last_end = acked[-1]
    assert all(ack is None for n, _, ack in rows if n > last_acked)
    st = remus.sim()
    assert st.final_state == "running"
    suspends = {rs.suspensions: rs.monotonic for rs in st.runstates if rs.state == "suspended"}
    got = {seq: (sent_at, arrived) for seq, sent_at, arrived in traffic.got}
    # in the plug before the last acknowledged checkpoint's BUFFER: released
    released = [seq for seq, _, in_plug in traffic.sent if in_plug < suspends[last_acked]]
    # after its END (so in a later epoch) and in the plug before the backup died
    dropped = [seq for seq, sent_at, in_plug in traffic.sent
               if sent_at > last_end and in_plug < b.killed_at]
    print(f"acknowledged {last_acked} of {len(rows)} checkpoints written; released "
          f"{len(released)}, dropped {len(dropped)}")
    assert len(released) >= 20 and dropped
    assert all(seq in got for seq in released), "an acknowledged epoch's output was lost"
    leaked = [seq for seq in dropped if seq in got]
    assert leaked == [], (f"output of unacknowledged checkpoints reached the peer: "
                          f"{leaked[:10]} (last ack for checkpoint {last_acked})")
    assert snapshot(lab) == before
    assert pool_claims() == ""
