"""Local capture during the pause (issue 13, item 1), on simulated Xen.

The trampoline with ``capture = True`` hands libxc a socket pair drained by
a C thread: from each suspension on libxc's bytes go into memory, and the
epoch is sent once the guest runs again, before the checkpoint callback.
Checked in a child process whose "link" is a socket pair read by a thread
(fast, or at a fixed rate), the checkpoint callback writing a marker where
the engine writes CHECKPOINT_END:

* the bytes on the link are exactly libxc's (simxen's SIMXEN_TEE copy), in
  libxc's order, each marker right after its epoch's CHECKPOINT record, and
  the memory rebuilt from them is what simxen recorded at every checkpoint
  (with and without capture);
* no byte of an epoch reaches the link before the guest is resumed (and
  without capture some do: the check can fail);
* over a slow link the pause stays a small fraction of the epoch's
  transmission, which happens with the guest running (without capture the
  pause is the transmission);
* a link that fails or stalls while an epoch is being sent: the existing
  errors (``xc_domain_save failed: Failed to write ...``, the write
  deadline's ``stopped taking the stream``), the guest running;
* the memory bound: an epoch larger than ``capture_limit`` is written
  through for its rest, said once, nothing lost;
* through the engine: an HVM guest's device-model records and the
  primary's heartbeats stay in their places (our verifier, the receiver).
"""
from __future__ import annotations

import errno
import json
import os
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
from xen_remus_compat.sim.simxen import SimDomain
from xen_remus_compat.stream import verify

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
MARK = b"\xfe\xedXRCMK"             # + 8 bytes: the checkpoint's number
#: libxc's CHECKPOINT record: type 0x0e, length 0
CHECKPOINT_RECORD = (0x0E).to_bytes(4, "little") + bytes(4)

CHILD = r'''
import json, os, socket, sys, threading, time
from xen_remus_compat import _checkpoint as C
A = json.loads(sys.argv[1])
MARK = bytes.fromhex(A["mark"])
a, b = socket.socketpair()
if A.get("rate"):
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
got = bytearray()
arrivals = []                       # (monotonic, bytes received so far)
def consume():
    t0 = time.monotonic()
    while True:
        if A.get("close_at") and len(got) >= A["close_at"]:
            b.close()
            return
        if A.get("stall_at") and len(got) >= A["stall_at"]:
            time.sleep(30)
            return
        d = b.recv(65536)
        if not d:
            return
        got.extend(d)
        arrivals.append((time.monotonic(), len(got)))
        if A.get("rate"):
            ahead = t0 + len(got) / A["rate"] - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
reader = threading.Thread(target=consume, daemon=True)
reader.start()
n = [0]
def ckpt():
    n[0] += 1
    os.write(a.fileno(), MARK + n[0].to_bytes(8, "big"))
    return n[0] < A["count"]
cp = C.checkpointer()
cp.open(1)
cp.capture = A["capture"]
if A.get("limit"):
    cp.capture_limit = A["limit"]
if A.get("write_timeout"):
    cp.write_timeout = A["write_timeout"]
error = None
try:
    cp.start(a, None, None, ckpt, A.get("interval", 0), 0)
except C.error as e:
    error = {"msg": str(e), "errno": e.errno}
cp.close()
a.shutdown(socket.SHUT_WR) if error is None else None
reader.join(60 if error is None else 0.1)
with open(A["out"], "wb") as f:
    f.write(got)
print(json.dumps({"error": error, "checkpoints": n[0], "arrivals": arrivals,
                  "stats": cp.capture_stats}))
'''


@pytest.fixture(scope="module", autouse=True)
def built():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")


class Run:
    """A child's outcome; the link's bytes are looked at once, here, and not
    kept (the pytest process's peak memory is every later child's
    ``ru_maxrss``: tests/e2e/test_cli.py bounds it)."""

    def __init__(self, tmp: Path, res: dict, stderr: str) -> None:
        self.tmp, self.res, self.stderr = tmp, res, stderr
        self.error = res["error"]
        self.state = simxen.read_state(tmp / "state")
        self.arrivals = res["arrivals"]
        self.tee = tmp / "tee"
        link = (tmp / "link").read_bytes()
        self.markers, pos = [], 0
        while (pos := link.find(MARK, pos)) >= 0:
            self.markers.append(pos)
            pos += len(MARK) + 8
        #: the 8 bytes before each marker
        self.before_markers = [link[m - 8:m] for m in self.markers]
        self.libxcs_bytes = self._same_as_tee(memoryview(link))
        del link

    def _same_as_tee(self, link: memoryview) -> bool:
        """The link without the markers is, byte for byte, simxen's tee."""
        if not self.tee.exists():
            return False
        segments, prev = [], 0
        for m in self.markers:
            segments.append(link[prev:m])
            prev = m + len(MARK) + 8
        segments.append(link[prev:])
        with open(self.tee, "rb") as f:
            for seg in segments:
                for off in range(0, len(seg), 1 << 20):
                    piece = seg[off:off + (1 << 20)]
                    if f.read(len(piece)) != piece:
                        return False
            return f.read(1) == b""

    def arrival(self, offset: int) -> float:
        """When the byte at ``offset`` reached the reader."""
        return next(t for t, n in self.arrivals if n > offset)

    def pauses(self):
        return [b - a for a, b in self.state.suspended_intervals()]


def run(tmp: Path, *, capture: bool, pages: int = 1024, count: int = 4,
        dirty_rate: float = 1e6, **args) -> Run:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "tee").unlink(missing_ok=True)
    dom = SimDomain(pages=pages, dirty_rate=dirty_rate, dirty_pattern="sequential")
    env = simxen.environment(tmp / "state", dom)
    env["SIMXEN_TEE"] = str(tmp / "tee")
    env["PYTHONPATH"] = str(ROOT)
    args.update(mark=MARK.hex(), capture=capture, count=count, out=str(tmp / "link"))
    proc = subprocess.run([PY, "-c", CHILD, json.dumps(args)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return Run(tmp, json.loads(proc.stdout.splitlines()[-1]), proc.stderr)


@pytest.mark.parametrize("capture", [True, False])
def test_the_link_carries_libxcs_bytes_in_libxcs_order(tmp_path, capture):
    r = run(tmp_path, capture=capture, pages=512, count=5)
    assert r.error is None and r.res["checkpoints"] == 5, r.stderr
    # byte for byte what libxc wrote, the callback's bytes where it wrote them
    assert r.libxcs_bytes
    assert len(r.markers) == 5 and set(r.before_markers) == {CHECKPOINT_RECORD}
    # the stream rebuilds the memory simxen recorded at every checkpoint
    rep = simxen.replay(r.tee, r.state)
    assert rep.ok and rep.checkpoints == 5, rep.problems
    assert verify.verify(r.tee, fmt="libxc", strict=False).checkpoints == 5
    stats = r.res["stats"]
    if capture:
        # every epoch went through memory: its dirty pages at least
        assert stats["overflows"] == 0 and stats["peak"] >= 512 * 4096
        assert stats["captured"] >= 4 * 512 * 4096
    else:
        assert stats == {"peak": 0, "overflows": 0, "captured": 0}


def test_no_byte_of_an_epoch_is_on_the_link_before_the_guest_resumes(tmp_path):
    def early(r):
        """Epochs (2..) whose first byte reached the link before its resume."""
        marks, spans = r.markers, r.state.suspended_intervals()
        out = []
        for n in range(2, len(marks) + 1):
            first = marks[n - 2] + len(MARK) + 8       # after checkpoint n-1's marker
            if r.arrival(first) <= spans[n - 1][1]:
                out.append(n)
        return out

    r = run(tmp_path / "capture", capture=True, count=6)
    assert r.error is None and len(r.state.suspended_intervals()) == 6, r.stderr
    assert early(r) == []
    # the check can fail: without capture libxc writes during the pause
    direct = run(tmp_path / "direct", capture=False, count=6)
    assert direct.error is None
    assert early(direct), "without capture no epoch reached the link during its pause?"


def test_a_slow_link_does_not_lengthen_the_pause(tmp_path):
    """4 MB epochs over a 20 MB/s link: 0.2 s of transmission each."""
    def epochs(r):
        """(pause, transmission with the guest running) of epochs 2.."""
        marks, spans = r.markers, r.state.suspended_intervals()
        return [(spans[n - 1][1] - spans[n - 1][0], r.arrival(marks[n - 1]) - spans[n - 1][1])
                for n in range(2, len(marks) + 1)]

    r = run(tmp_path / "capture", capture=True, pages=1024, count=4, rate=20e6)
    assert r.error is None, r.stderr
    e = epochs(r)
    assert len(e) == 3
    # the epoch goes out after the resume, and the pause is a small part of it
    # (every pause shorter than its epoch's transmission, typically 1/4 of it)
    assert all(pause < sending for pause, sending in e), e
    assert sorted(pause / sending for pause, sending in e)[1] < 0.25, e
    direct = run(tmp_path / "direct", capture=False, pages=1024, count=4, rate=20e6)
    assert direct.error is None
    d = epochs(direct)
    # without capture the pause is the transmission
    assert sorted(p for p, _ in d)[1] > 4 * sorted(p for p, _ in e)[1], (d, e)


def test_in_timer_mode_the_next_checkpoint_waits_with_the_guest_running(tmp_path):
    """A 20 ms interval, 2 MB epochs over a 10 MB/s link: each epoch takes
    0.2 s to send, ten intervals.  The timer's next suspension waits for
    the save loop (the epoch sent, its callback done): the guest runs
    meanwhile and every suspension is a short capture.  (The timer thread
    used to suspend the guest one interval after the resume, while the
    epoch was still on its way: a pause as long as the link, that no pause
    column saw.)"""
    r = run(tmp_path, capture=True, pages=512, count=4, rate=10e6, interval=20)
    assert r.error is None and r.res["checkpoints"] == 4, r.stderr
    spans = r.state.suspended_intervals()
    assert len(spans) >= 4, spans
    sends = [r.arrival(m) - spans[n][1] for n, m in enumerate(r.markers)]
    # each epoch's transmission, with the guest running, is a good part of
    # the cycle (the link's 0.2 s)
    assert sorted(sends)[1] > 0.1, sends
    pauses = [b - a for a, b in spans]
    # no suspension lasts a transmission (they are a memory copy: a few ms)
    assert max(pauses) < 0.5 * sorted(sends)[1], (pauses, sends)
    # and the next suspension came once the epoch had gone out (the reader
    # sees its end up to the two 32 kB socket buffers, ~7 ms, later)
    for n in range(1, len(r.markers)):
        assert spans[n][0] >= r.arrival(r.markers[n - 1]) - 0.03, (n, spans, sends)


def test_a_link_failing_mid_transmission_is_the_usual_write_error(tmp_path):
    probe = run(tmp_path / "probe", capture=True, pages=512, count=3)
    second = probe.markers[1]
    # the reader hangs up 100 kB into epoch 3's transmission
    r = run(tmp_path / "cut", capture=True, pages=512, count=6,
            close_at=second + 100_000)
    assert r.error is not None, r.stderr
    assert r.error["msg"].startswith("xc_domain_save failed: Failed to write"), r.error
    assert r.error["errno"] in (errno.EPIPE, errno.ECONNRESET), r.error
    assert r.state.final_state == "running" and r.state.never_left_suspended()
    assert "Traceback" not in r.stderr


def test_a_link_stalling_mid_transmission_meets_the_write_deadline(tmp_path):
    probe = run(tmp_path / "probe", capture=True, pages=512, count=3)
    second = probe.markers[1]
    t0 = time.monotonic()
    r = run(tmp_path / "stall", capture=True, pages=512, count=6,
            stall_at=second + 100_000, write_timeout=500)
    assert time.monotonic() - t0 < 30
    assert r.error is not None and r.error["errno"] == errno.ETIMEDOUT, r.error
    assert r.error["msg"].startswith("the backup stopped taking the stream"), r.error
    assert r.state.final_state == "running" and r.state.never_left_suspended()
    # the guest did not wait for the stalled link
    assert max(r.pauses()[1:]) < 0.5, r.pauses()
    assert "xc: error" not in r.stderr


def test_an_epoch_larger_than_the_limit_is_written_through_for_its_rest(tmp_path):
    limit = 1 << 20
    r = run(tmp_path, capture=True, pages=1024, count=4, limit=limit)   # 4 MB epochs
    assert r.error is None, r.stderr
    stats = r.res["stats"]
    assert stats["peak"] <= limit and stats["overflows"] >= 3, stats
    assert r.stderr.count("outgrew the capture buffer") == 1, r.stderr
    assert r.libxcs_bytes                               # nothing lost nor reordered
    assert set(r.before_markers) == {CHECKPOINT_RECORD}


def test_capture_limit_is_bounded_below():
    from xen_remus_compat import _checkpoint as C
    cp = C.checkpointer()
    assert cp.capture is False and cp.capture_limit == 1 << 30
    with pytest.raises(ValueError):
        cp.capture_limit = 4096


# --- through the engine ------------------------------------------------------------

HVM_SESSION = r'''
import json, os, sys
from xen_remus_compat import _checkpoint as C
from xen_remus_compat.remus import devicemodel as D, engine
A = json.loads(sys.argv[1])
fd = os.open(A["stream"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
n = [0]
def commit():
    n[0] += 1
    return n[0] < 4
loop = engine.Loop(1, fd, config={"c_info": {"name": "hvmguest", "type": "hvm"}, "b_info": {}},
                   checkpointer=lambda: D.HvmCheckpointer(C.checkpointer()),
                   commit=commit, interval=20, capture=True)
stats = loop.run()
print(json.dumps({"checkpoints": stats.checkpoints, "capture": stats.capture}))
'''


def test_hvm_device_model_records_stay_after_their_epoch(tmp_path):
    from tests.e2e.test_trampoline_hvm import emulator_states
    from xen_remus_compat.sim import devicemodel as simdm
    state, stream = tmp_path / "state", tmp_path / "stream"
    env = simxen.environment(state, SimDomain(pages=256, dirty_rate=10.0))
    env["SIMXEN_TYPE"] = "hvm"
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([PY, "-c", HVM_SESSION, json.dumps({"stream": str(stream)})],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.splitlines()[-1])
    assert res["checkpoints"] == 4 and res["capture"]["captured"] > 0, res
    data = stream.read_bytes()
    rep = verify.verify(data, fmt="xl")
    assert rep.ok and rep.checkpoints == 4 and rep.guest == "hvm", rep.error
    st = simxen.read_state(state)
    states = emulator_states(data)
    assert [s["save"] for s in states] == [1, 2, 3, 4]
    for n, s in enumerate(states, 1):
        assert s["memory"] == simdm.memory_digest(st.versions(n).tobytes())


class Recorder:
    """A TCP relay primary -> backup that keeps a copy of the primary's bytes."""

    def __init__(self, backup_port: int) -> None:
        self.backup_port = backup_port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.sent = bytearray()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _pipe(self, src, dst, keep=None):
        try:
            while (data := src.recv(65536)):
                if keep is not None:
                    keep.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _run(self):
        primary, _ = self.lsock.accept()
        backup = socket.create_connection(("127.0.0.1", self.backup_port))
        threading.Thread(target=self._pipe, args=(backup, primary), daemon=True).start()
        self._pipe(primary, backup, self.sent)


def test_heartbeats_in_the_stream_stay_after_checkpoint_end(tmp_path):
    """A 1.2 s interval: the primary's heartbeats (every second, the
    receiver's default) go into the stream while it waits out the interval,
    after the captured epoch and its CHECKPOINT_END."""
    port, sessions, backup = start_sim_receiver()
    relay = Recorder(port)
    state = tmp_path / "sim"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XEN_REMUS_COMPAT_")}
    env = simxen.environment(state, SimDomain(pages=512, dirty_rate=1e5), base=env)
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.Popen([PY, "-m", "xen_remus_compat.cli.remus", "--sim", "-i", "1200",
                          "--no-net", "-p", str(relay.port), "simguest", "127.0.0.1"],
                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert wait_for(lambda: checkpoints_taken(state) >= 4, 60), p.stderr.read()
    finally:
        p.terminate()
        out, err = p.communicate(timeout=60)
    backup.join(30)
    relay.thread.join(10)
    assert p.returncode == 0 and "Traceback" not in err, (out, err)
    sent = bytes(relay.sent)
    start = sent.index(b"\n") + 1                    # after the greeting line
    # heartbeats only where the primary owns the stream: right after a
    # CHECKPOINT_END (libxl record 4) or another heartbeat; the receiver
    # applied and acknowledged every checkpoint around them
    head = bc.heartbeat_record(0)[:8]
    checkpoint_end = (4).to_bytes(4, "little") + bytes(4)
    stream = sent[start:]
    beats, pos = [], 0
    while (pos := stream.find(head, pos)) >= 0:
        beats.append(pos)
        pos += 1
    assert beats, "no heartbeat went into the stream"
    for b in beats:
        assert stream[b - 8:b] == checkpoint_end or stream[b - 16:b - 8] == head, b
    session = sessions[-1]
    assert session.checkpoints >= 4 and session.summary["acks"] == session.checkpoints
