"""Epochs in flight (issue 13, item 1's bound; ``remus --epochs-in-flight``).

:class:`engine.Loop` driven by a stand-in trampoline and a stand-in back
channel whose acks come in when the test says: with N in flight the
checkpoint callback waits only when N checkpoints are unsettled, commits in
order, each after its own ack, settles what is left at a clean stop or
before acting on a signal, and after a lost backup commits nothing more.
``remus`` refuses N > 1 with devices that hold one epoch (sch_plug, tapdisk)
and with ``--sync``.
"""
import os
import signal
import types

import pytest

from xen_remus_compat import errors
from xen_remus_compat.cli import remus
from xen_remus_compat.legacy import device
from xen_remus_compat.remus import engine
from xen_remus_compat.remus.backchannel import BackupLost


class Trampoline:
    """suspend, postcopy, checkpoint, ``epochs`` times (the C loop's shape)."""

    def __init__(self, log, epochs, on_epoch=None):
        self.log, self.epochs, self.on_epoch = log, epochs, on_epoch

    def open(self, domid):
        pass

    def start(self, fd, suspend, postcopy, checkpoint, interval, flags):
        for n in range(1, self.epochs + 1):
            suspend()
            postcopy()
            if self.on_epoch:
                self.on_epoch(n)
            self.log.append(("written", n))
            if checkpoint() is False:
                return

    def close(self):
        self.log.append("close")


class Back:
    """Acks arrive ``lag`` checkpoints late (0: at once); none from
    ``lose_at`` on (the backup is gone then)."""

    def __init__(self, log, lag=0, lose_at=None):
        self.log, self.lag, self.lose_at = log, lag, lose_at
        self.acked = 0
        self.waits = []

    def _arrived(self):
        written = max([n for w, n in self.log if w == "written"] or [0])
        top = written - self.lag
        if self.lose_at is not None:
            top = min(top, self.lose_at - 1)
        self.acked = max(self.acked, top)

    def has_ack(self, n):
        self._arrived()
        return self.acked >= n

    def wait_ack(self, n, silence):
        self._arrived()
        self.waits.append(n)
        if self.acked < n:
            if self.lose_at is not None and n >= self.lose_at:
                raise BackupLost(f"the backup closed the connection before "
                                 f"acknowledging checkpoint {n}")
            self.acked = n          # waiting brings it
        return float(n)

    def idle(self):
        pass

    def busy(self):
        pass

    def start(self):
        pass

    def stop(self):
        pass


def events(log):
    return [e for e in log if isinstance(e, tuple)]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_at_most_n_unsettled_and_commits_in_order(tmp_path, n):
    log = []
    back = Back(log, lag=5)             # acks come only when waited for
    stats = tmp_path / "stats"
    os.environ[engine.STATS_ENV] = str(stats)
    try:
        lp = engine.Loop(1, os.open(os.devnull, os.O_WRONLY), config=None, blackhole=True,
                         backchannel=back, in_flight=n,
                         checkpointer=lambda: Trampoline(log, 10),
                         commit=lambda: log.append(("commit", None)))
        lp.run()
    finally:
        os.environ.pop(engine.STATS_ENV, None)
    ev = events(log)
    written = [i for i, e in enumerate(ev) if e[0] == "written"]
    commits = [i for i, e in enumerate(ev) if e[0] == "commit"]
    assert len(written) == len(commits) == 10
    for k in range(10):
        # checkpoint k+1 is committed before checkpoint k+1+n is written ...
        if k + n < 10:
            assert commits[k] < written[k + n], (n, ev)
        # ... and, with n > 1, not before checkpoint k+1+(n-1) was written
        if k + n - 1 < 10:
            assert commits[k] > written[k + n - 1], (n, ev)
    # each waited for in turn, and every line has its ack (a clean stop
    # settles the last ones)
    assert back.waits == list(range(1, 11))
    lines = stats.read_text().splitlines()
    assert [int(line.split()[0]) for line in lines] == list(range(1, 11))
    assert all(line.split()[4] != "-" for line in lines)


def test_acks_already_in_are_committed_without_waiting_for_the_bound():
    log = []
    back = Back(log, lag=0)             # every ack in as soon as it is written
    engine_loop = engine.Loop(1, os.open(os.devnull, os.O_WRONLY), config=None,
                              blackhole=True, backchannel=back, in_flight=3,
                              checkpointer=lambda: Trampoline(log, 6),
                              commit=lambda: log.append(("commit", None)))
    engine_loop.run()
    ev = events(log)
    # written, commit, written, commit ...: the output is not held longer
    assert [e[0] for e in ev] == ["written", "commit"] * 6


def test_a_lost_backup_commits_nothing_from_the_first_unacknowledged(tmp_path):
    log = []
    back = Back(log, lag=5, lose_at=4)
    stats = tmp_path / "stats"
    os.environ[engine.STATS_ENV] = str(stats)
    try:
        lp = engine.Loop(1, os.open(os.devnull, os.O_WRONLY), config=None, blackhole=True,
                         backchannel=back, in_flight=3,
                         checkpointer=lambda: Trampoline(log, 10),
                         commit=lambda: log.append(("commit", None)))
        with pytest.raises(errors.CheckpointFailed, match="before acknowledging "
                           "checkpoint 4; guest running, protection stopped"):
            lp.run()
    finally:
        os.environ.pop(engine.STATS_ENV, None)
    ev = events(log)
    assert sum(1 for e in ev if e[0] == "commit") == 3
    assert log[-1] == "close"
    cols = [line.split() for line in stats.read_text().splitlines()]
    # 1-3 acknowledged; 4 and what was in flight with it: a line each, "-"
    assert [c[0] for c in cols] == [str(i) for i in range(1, len(cols) + 1)]
    assert [c[4] != "-" for c in cols] == [True] * 3 + [False] * (len(cols) - 3)
    assert len(cols) == 6               # 4, 5, 6 were in flight (bound 3)


def test_a_signal_settles_what_is_in_flight_before_it_acts():
    log = []
    back = Back(log, lag=5)

    class Stop(Exception):
        pass

    def handler(signo, frame):
        raise Stop()

    def on_epoch(n):
        if n == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        lp = engine.Loop(1, os.open(os.devnull, os.O_WRONLY), config=None, blackhole=True,
                         backchannel=back, in_flight=3,
                         checkpointer=lambda: Trampoline(log, 10, on_epoch),
                         commit=lambda: log.append(("commit", None)))
        with pytest.raises(Stop):
            lp.run()
    finally:
        signal.signal(signal.SIGTERM, old)
    ev = events(log)
    # stopped at checkpoint 4's safe point, with 1-4 all committed
    assert [e[1] for e in ev if e[0] == "written"] == [1, 2, 3, 4]
    assert sum(1 for e in ev if e[0] == "commit") == 4
    assert log[-1] == "close"


def test_protect_bounds_in_flight():
    for bad in (0, engine.MAX_IN_FLIGHT + 1):
        with pytest.raises(ValueError, match="in_flight must be 1"):
            engine.protect(1, os.devnull, config=None, in_flight=bad)


# -- remus --epochs-in-flight ---------------------------------------------------------
def cfg(*argv):
    c = remus.Cfg()
    c.getargs(list(argv) + ["--sim", "guest", "backup"])
    return c


def test_the_option_is_parsed_and_bounded():
    assert cfg().in_flight == 1
    assert cfg("--epochs-in-flight", "2").in_flight == 2
    for bad in ("0", "9"):
        with pytest.raises(remus.CfgException, match="--epochs-in-flight must be 1..8"):
            cfg("--epochs-in-flight", bad)


def nic(dev):
    buf = object.__new__(device.BufferedNIC)
    buf.vif = types.SimpleNamespace(dev=dev)
    return buf


def test_buffered_output_and_tapdisk_refuse_more_than_one():
    c = cfg("--epochs-in-flight", "2")
    with pytest.raises(errors.ConfigError, match=r"--epochs-in-flight 2: vif vif3.0 "
                       r"cannot take part: the kernel's plug qdisc \(sch_plug\) holds "
                       r"the output of one closed epoch only"):
        remus._check_in_flight(c, [nic("vif3.0")])
    tap = object.__new__(device.ReplicatedDisk)
    tap._impl = types.SimpleNamespace(in_flight_limit=1, label="remus disk tap:remus:b:9|aio:/x",
                                      in_flight_why="tapdisk's remus protocol has one "
                                                    "flush outstanding at a time")
    with pytest.raises(errors.ConfigError, match="remus disk tap:remus:b:9"):
        remus._check_in_flight(c, [tap])
    # DRBD's ack is awaited in the pause: it can take part
    drbd_disk = object.__new__(device.ReplicatedDisk)
    drbd_disk._impl = types.SimpleNamespace(in_flight_limit=None)
    remus._check_in_flight(c, [drbd_disk])
    remus._check_in_flight(cfg(), [nic("vif3.0"), tap])     # 1: always


def test_sync_refuses_more_than_one():
    with pytest.raises(errors.ConfigError, match="needs acknowledgements"):
        remus._check_in_flight(cfg("--epochs-in-flight", "2", "--sync"), [])
