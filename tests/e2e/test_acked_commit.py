"""Acknowledged output commit (issue 13, items 2-4), end to end on simulated
Xen: ``remus --sim -p PORT`` to ``remus-receiver --sim``, the CLI's network
buffers replaced by recorders that stamp each BUFFER (postsuspend), RELEASE
(commit) and the teardown with CLOCK_MONOTONIC, the clock of the engine's
stats file (column 4: CHECKPOINT_END written; column 5: its ack read) and
of the receiver's record of when it applied each checkpoint.

* every release comes after the ack of its checkpoint, which comes after
  the backup applied it;
* a backup killed before it acknowledged checkpoint K (a relay between the
  two passes the stream and every frame but K's ack, then kills the
  backup): K's output is never released, the held output is dropped
  (abandon), exit 1 with one line;
* ``--epochs-in-flight 2``: the guest goes on while one checkpoint awaits
  its ack; commits stay one per checkpoint, in order, each after its own
  ack, and never more than two checkpoints are unsettled (the same cut of
  an ack: nothing of that epoch or later released);
* ``--sync`` keeps today's behaviour (release after the write, no ack) and
  says so in one line.

The qemu tier shows the same on the real ``sch_plug`` with datagrams
(tests/qemu/inside/test_engine_netbuf_inside.py); the failover property
test (tests/e2e/test_failover_property.py) that a killed primary leaves the
backup at or past the last acknowledged checkpoint.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.simreceiver import start_sim_receiver
from tests.support.simwait import checkpoints_taken, wait_for
from xen_remus_compat.remus import backchannel as bc
from xen_remus_compat.sim import simxen
from xen_remus_compat.stream.xl import BANNER

PY = sys.executable

RECORDING_NIC = """
import sys, time
from xen_remus_compat.legacy import device
log = open(sys.argv[1], "a", buffering=1)


class RecordingNIC(device.CheckpointedDevice):
    in_flight_limit = None          # it records, it holds nothing

    def __init__(self, vif):
        log.write("install %.6f\\n" % time.monotonic())

    def postsuspend(self):
        log.write("buffer %.6f\\n" % time.monotonic())

    def commit(self):
        log.write("release %.6f\\n" % time.monotonic())

    def abandon(self):
        log.write("abandon %.6f\\n" % time.monotonic())

    def uninstall(self):
        log.write("uninstall %.6f\\n" % time.monotonic())


device.BufferedNIC = RecordingNIC
from xen_remus_compat.cli import remus
sys.exit(remus.main(sys.argv[2:]))
"""


def need_sim():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")


def start_primary(tmp: Path, port: int, *extra):
    """``remus --sim -i 50 [extra] -p PORT simguest 127.0.0.1`` with recorders."""
    state, events, stats = tmp / "sim", tmp / "events", tmp / "stats"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XEN_REMUS_COMPAT_")}
    env["XEN_REMUS_COMPAT_SIM_VIFS"] = "vif1.0"
    env["XEN_REMUS_COMPAT_STATS_FILE"] = str(stats)
    env = simxen.environment(state, base=env)
    env["PYTHONPATH"] = str(simxen.ROOT)
    p = subprocess.Popen([PY, "-c", RECORDING_NIC, str(events), "--sim", "-i", "50",
                          *extra, "-p", str(port), "simguest", "127.0.0.1"], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    return p, state, events, stats


def read_events(path: Path):
    return [(w, float(t)) for w, t in (line.split() for line in path.read_text().splitlines())]


def read_stats(path: Path):
    """``[(checkpoint, written, acked or None)]``: 5 columns, the first 4 as before."""
    rows = []
    for line in path.read_text().splitlines():
        cols = line.split()
        assert len(cols) == 5, line
        assert float(cols[1]) >= 0 and float(cols[2]) >= 0, line
        rows.append((int(cols[0]), float(cols[3]), None if cols[4] == "-" else float(cols[4])))
    return rows


def stop(p, wait=60):
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
    try:
        return p.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        return p.communicate(timeout=10)


def test_no_release_before_the_ack_of_its_checkpoint(tmp_path):
    need_sim()
    port, sessions, backup = start_sim_receiver()
    p, state, events, stats = start_primary(tmp_path, port)
    try:
        assert wait_for(lambda: checkpoints_taken(state) >= 25, 60), p.stderr.read()
    finally:
        out, err = stop(p)
    backup.join(30)
    assert p.returncode == 0, (out, err)
    assert "*** signalled ***" in out and "Traceback" not in err
    assert "released once it is written" not in err          # acknowledged mode
    rows = read_stats(stats)
    assert len(rows) >= 20 and [n for n, _, _ in rows] == list(range(1, len(rows) + 1))
    # an ack follows its own checkpoint's write (1 ms: the stamp is taken after write())
    assert all(acked is not None and acked >= written - 0.001 for _, written, acked in rows), rows
    log = read_events(events)
    releases = [t for w, t in log if w == "release"]
    # one commit per checkpoint, each after that checkpoint's ack
    assert len(releases) == len(rows)
    early = [(n, acked, rel) for (n, _, acked), rel in zip(rows, releases) if not rel > acked]
    assert early == [], f"released before the ack (checkpoint, ack, release): {early[:5]}"
    # ... and the backup had applied the checkpoint before it acknowledged it
    session = sessions[-1]
    assert session.summary["acks"] == session.checkpoints == len(rows)
    applied = {session.checkpoints - i: t for i, t in
               enumerate(reversed(list(session.checkpoint_times)))}
    assert applied
    # (column 4 is read after the write returned: the backup may be quicker)
    for n, written, acked in rows:
        if n in applied:
            assert applied[n] < acked, (n, written, applied[n], acked)
    latency = sorted(acked - written for _, written, acked in rows)
    print(f"{len(rows)} checkpoints; ack latency p50 {latency[len(latency) // 2] * 1e3:.2f} "
          f"ms, max {latency[-1] * 1e3:.2f} ms")


class AckCutter:
    """A TCP relay primary <-> backup that passes the stream, the greeting,
    the banner and every back channel frame, except the ack of checkpoint
    ``cut``: when that comes, it kills the backup and closes both sides."""

    def __init__(self, backup_port: int, cut: int, kill) -> None:
        self.backup_port, self.cut, self.kill = backup_port, cut, kill
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.acks_passed = []
        self.cut_at = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _forward(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass

    def _back(self, backup, primary):
        head = b""
        try:
            while b"\n" not in head or len(head) - head.index(b"\n") - 1 < len(BANNER):
                data = backup.recv(4096)
                if not data:
                    return
                head += data
            cut = head.index(b"\n") + 1 + len(BANNER)
            primary.sendall(head[:cut])
            dec, rest = bc.Decoder(), head[cut:]
            while True:
                for msg in dec.feed(rest):
                    if msg.kind == bc.ACK and msg.value == self.cut:
                        self.cut_at = time.monotonic()
                        self.kill()
                        return
                    if msg.kind == bc.ACK:
                        self.acks_passed.append(msg.value)
                    primary.sendall(bc.encode(msg.kind, msg.value, msg.payload))
                rest = backup.recv(65536)
                if not rest:
                    return
        except OSError:
            pass

    def _run(self):
        primary, _ = self.lsock.accept()
        self.lsock.close()
        backup = socket.create_connection(("127.0.0.1", self.backup_port))
        fwd = threading.Thread(target=self._forward, args=(primary, backup), daemon=True)
        fwd.start()
        self._back(backup, primary)
        for s in (primary, backup):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        fwd.join(10)
        primary.close()
        backup.close()


CUT = 6


def run_cutting_ack(tmp_path: Path, *extra):
    """``remus`` to ``remus-receiver --sim --once`` through an
    :class:`AckCutter` that kills the backup at the ack of checkpoint CUT;
    both ended: ``(receiver, primary, out, err, state, events, stats, cutter)``."""
    need_sim()
    ready = tmp_path / "port"
    rcv = subprocess.Popen(
        [PY, "-m", "xen_remus_compat.cli.receiver", "--sim", "--once", "--json",
         "--listen", "127.0.0.1", "--port", "0", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert wait_for(lambda: ready.exists() and ready.read_text().strip(), 30)

        def kill_backup():
            os.killpg(rcv.pid, signal.SIGKILL)
        cutter = AckCutter(int(ready.read_text()), CUT, kill_backup)
        p, state, events, stats = start_primary(tmp_path, cutter.port, *extra)
        try:
            out, err = p.communicate(timeout=90)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.communicate()
    finally:
        if rcv.poll() is None:
            os.killpg(rcv.pid, signal.SIGKILL)
        rcv.communicate(timeout=30)
    return rcv, p, out, err, state, events, stats, cutter


def test_a_backup_killed_before_its_ack_never_sees_that_epoch_released(tmp_path):
    rcv, p, out, err, state, events, stats, cutter = run_cutting_ack(tmp_path)
    assert rcv.returncode == -signal.SIGKILL
    assert p.returncode == 1, (out, err)
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert (f"closed the connection before acknowledging checkpoint {CUT}; guest running, "
            "protection stopped") in lines[0], out
    assert "Traceback" not in err
    assert cutter.acks_passed == list(range(1, CUT))
    rows = read_stats(stats)
    assert [n for n, _, _ in rows] == list(range(1, CUT + 1))
    assert all(acked is not None for _, _, acked in rows[:-1]) and rows[-1][2] is None
    log = read_events(events)
    words = [w for w, _ in log]
    # checkpoints 1..CUT-1 released, each after its ack; CUT's output held, then dropped
    assert words.count("release") == CUT - 1, words
    assert words[-2:] == ["buffer", "abandon"], words[-6:]
    assert "uninstall" not in words
    releases = [t for w, t in log if w == "release"]
    assert all(rel > acked for rel, (_, _, acked) in zip(releases, rows))
    assert all(t < cutter.cut_at for t in releases)
    st = simxen.read_state(state)
    assert st.final_state == "running"


def test_sync_releases_after_the_write_and_says_so(tmp_path):
    need_sim()
    port, sessions, backup = start_sim_receiver()
    p, state, events, stats = start_primary(tmp_path, port, "--sync")
    try:
        assert wait_for(lambda: checkpoints_taken(state) >= 5, 60), p.stderr.read()
    finally:
        out, err = stop(p)
    backup.join(30)
    assert p.returncode == 0, (out, err)
    notes = [line for line in err.splitlines() if "released once it is written" in line]
    assert notes == ["remus: --sync: each checkpoint's output is released once it is "
                     "written, as xl remus does"], err
    rows = read_stats(stats)
    assert rows and all(acked is None for _, _, acked in rows)
    releases = [t for w, t in read_events(events) if w == "release"]
    assert len(releases) == len(rows)
    assert all(rel > written for rel, (_, written, _) in zip(releases, rows))
    assert sessions[-1].summary["acks"] is None      # the legacy greeting: no back channel


def test_two_epochs_in_flight_commit_in_order_after_their_acks(tmp_path):
    need_sim()
    port, sessions, backup = start_sim_receiver()
    p, state, events, stats = start_primary(tmp_path, port, "--epochs-in-flight", "2")
    try:
        assert wait_for(lambda: checkpoints_taken(state) >= 25, 60), p.stderr.read()
    finally:
        out, err = stop(p)
    backup.join(30)
    assert p.returncode == 0, (out, err)
    assert "Traceback" not in err
    rows = read_stats(stats)
    assert len(rows) >= 20 and [n for n, _, _ in rows] == list(range(1, len(rows) + 1))
    releases = [t for w, t in read_events(events) if w == "release"]
    # a clean stop settles the last checkpoints too: one commit each, in order
    assert len(releases) == len(rows), (len(releases), len(rows))
    assert all(acked is not None for _, _, acked in rows), rows[-3:]
    assert all(rel > acked for rel, (_, _, acked) in zip(releases, rows))
    written = [w for _, w, _ in rows]
    # never more than two unsettled: checkpoint k is committed before k+2 is written
    assert all(releases[k] < written[k + 2] for k in range(len(rows) - 2))
    # and the guest did go on: most commits come after the next checkpoint
    # was written (with one in flight, none does)
    ahead = sum(releases[k] > written[k + 1] for k in range(len(rows) - 1))
    assert ahead >= (len(rows) - 1) // 2, (ahead, len(rows))


def test_two_epochs_in_flight_a_cut_ack_releases_nothing_from_there(tmp_path):
    rcv, p, out, err, state, events, stats, cutter = run_cutting_ack(
        tmp_path, "--epochs-in-flight", "2")
    assert p.returncode == 1, (out, err)
    lines = out.splitlines()
    # the ack's wait or the next write sees the backup gone, as may be
    assert len(lines) == 1 and "closed the connection" in lines[0], out
    assert "Traceback" not in err
    rows = read_stats(stats)
    # CUT and at most one more were written (a line each, in flight or not);
    # none of them acknowledged
    assert [n for n, _, _ in rows] == list(range(1, len(rows) + 1))
    assert CUT <= len(rows) <= CUT + 1, rows
    assert all(a is not None for _, _, a in rows[:CUT - 1])
    assert all(a is None for _, _, a in rows[CUT - 1:])
    log = read_events(events)
    words = [w for w, _ in log]
    assert words.count("release") == CUT - 1 and words[-1] == "abandon", words[-6:]
    releases = [t for w, t in log if w == "release"]
    assert all(t < cutter.cut_at for t in releases)
    assert simxen.read_state(state).final_state == "running"
