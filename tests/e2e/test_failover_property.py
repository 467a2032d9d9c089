"""Failover correctness as a property (xl-side.md §3.6, legacy-api.md §10.7).

For random dirty patterns, dirty rates, checkpoint intervals and kill
points: ``remus --sim -p PORT`` protects a simulated guest, a backup
(``ReceiverService(sim=True)``, i.e. ``remus-receiver --sim``, in this
process) receives, and the primary's whole process group is killed with
SIGKILL at a random moment (often mid-epoch).  The backup must then hold
exactly the primary's memory at the last complete checkpoint, page by page
(simxen records the version of every page at every checkpoint), never any
page of the epoch that was cut off; with no complete checkpoint there is
nothing to fail over to.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT
from xen_remus_compat import demo, errors, simxen
from xen_remus_compat.receiver_service import ReceiverService

PY = sys.executable


def need_sim():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")


class SlowLink:
    """A relay between primary and backup that carries the stream at
    ``rate`` bytes/s with a small receive buffer, so that an epoch spends
    long enough on the wire (the primary blocked inside it) for a random
    kill to land mid-epoch; loopback alone swallows an epoch in a few ms."""

    CHUNK = 16384

    def __init__(self, backup_port: int, rate: float) -> None:
        self.backup_port, self.rate = backup_port, rate
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * self.CHUNK)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _pump(src, dst, rate=None, chunk=CHUNK):
        try:
            while True:
                data = src.recv(chunk)
                if not data:
                    break
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
                try:
                    sock.shutdown(how)
                except OSError:
                    pass

    def _run(self) -> None:
        primary, _ = self.lsock.accept()
        self.lsock.close()
        backup = socket.create_connection(("127.0.0.1", self.backup_port))
        back = threading.Thread(target=self._pump, args=(backup, primary), daemon=True)
        back.start()
        self._pump(primary, backup, self.rate)
        back.join(timeout=10)
        primary.close()
        backup.close()


def protect_and_kill(tmp: Path, dom: simxen.SimDomain, interval: int, delay: float,
                     rate: float = 0.0):
    """Run primary + backup (through a :class:`SlowLink` when ``rate``);
    SIGKILL the primary's process group ``delay`` s after simxen recorded
    its first checkpoint.  Returns (session, simxen state)."""
    svc = ReceiverService(listen="127.0.0.1", port=0, sim=True)
    port = svc.bind()
    sessions = []
    backup = threading.Thread(target=lambda: sessions.extend(svc.serve(once=True)),
                              daemon=True)
    backup.start()
    link = SlowLink(port, rate) if rate else None
    if link is not None:
        port = link.port
    state = tmp / "sim"
    env = simxen.environment(state, dom)
    env["PYTHONPATH"] = str(ROOT)
    with open(tmp / "primary.err", "wb") as err:
        p = subprocess.Popen([PY, "-m", "xen_remus_compat.cli.remus", "--sim",
                              "-i", str(interval), "-p", str(port), dom.name,
                              "127.0.0.1"], env=env, cwd=str(tmp),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            log = state / "checkpoints.log"
            while not (log.exists() and log.stat().st_size):
                assert p.poll() is None, (tmp / "primary.err").read_text()
                assert time.monotonic() < deadline, "no checkpoint within 30 s"
                time.sleep(0.005)
            time.sleep(delay)
            assert p.poll() is None, (tmp / "primary.err").read_text()
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    if link is not None:
        link.thread.join(timeout=30)
    backup.join(timeout=30)
    assert not backup.is_alive() and len(sessions) == 1
    return sessions[0], simxen.read_state(state)


@settings(max_examples=10, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow])
@given(pattern=st.sampled_from(simxen.PATTERNS),
       rate=st.floats(0.2, 40.0),
       interval=st.integers(20, 200),
       delay=st.floats(0.0, 0.5),
       pages=st.sampled_from([512, 2048]),
       seed=st.integers(1, 1 << 30))
def test_backup_is_exactly_the_last_complete_checkpoint(pattern, rate, interval,
                                                        delay, pages, seed):
    need_sim()
    dom = simxen.SimDomain(name="propguest", pages=pages, dirty_rate=rate,
                           dirty_pattern=pattern, seed=seed)
    with tempfile.TemporaryDirectory(prefix="xrc-failover-") as tmp:
        session, st_ = protect_and_kill(Path(tmp), dom, interval, delay)
        check_failover(session, st_, pages)


def check_failover(session, st_, pages):
    result = session.result
    assert result is not None, session.error
    k = result.checkpoints
    started = len(st_.checkpoints)       # logged before each CHECKPOINT record
    assert started >= 1
    # the backup is at the primary's last finished checkpoint, or one behind
    # when the kill came between libxc's CHECKPOINT and libxl's CHECKPOINT_END
    assert started - 1 <= k <= started, (k, started)
    if k == 0:
        assert result.failover_ok is False
        assert "before the first checkpoint" in session.error
        return
    assert result.failover_ok is True, result.error
    expected = st_.versions(k)
    got = result.page_versions()
    assert len(got) == pages and result.bad_sim_pages() == []
    wrong = [pfn for pfn in range(pages) if got[pfn] != expected[pfn]]
    assert not wrong, f"{len(wrong)} pages differ from checkpoint {k}, e.g. {wrong[:5]}"
    # never a partial epoch: nothing of checkpoint k+1 leaked in
    if started > k:
        try:
            nxt = st_.versions(k + 1)
        except errors.EnvironmentProblem:
            nxt = None                   # its versions.log entry was torn by the kill
        if nxt is not None:
            newer = [pfn for pfn in range(pages) if nxt[pfn] != expected[pfn]]
            assert all(got[pfn] == expected[pfn] != nxt[pfn] for pfn in newer)


@pytest.mark.parametrize("pattern", ["sequential", "hotspot"])
def test_demo_takes_a_dirty_pattern(pattern):
    need_sim()
    res = demo.run_demo(seconds=0.5, interval=40, pages=1024, dirty_rate=8.0,
                        seed=5, dirty_pattern=pattern, kill_after=0.9)
    assert res.failover_ok and res.memory_match, res.verdict
    assert res.mismatched_pages == 0 and res.checkpoints >= 2
    assert res.primary_checkpoints - res.checkpoints in (0, 1)
    assert 0.9 <= res.killed_after_s < 2.0
    assert res.verdict.startswith("OK: the backup holds exactly")


def test_demo_rejects_an_unknown_dirty_pattern_before_starting():
    threads = threading.active_count()
    with pytest.raises(errors.InputError, match="dirty_pattern='zigzag'"):
        demo.run_demo(seconds=0.1, dirty_pattern="zigzag")
    assert threading.active_count() == threads       # no receiver left behind
