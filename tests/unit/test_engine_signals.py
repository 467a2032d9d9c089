"""SIGINT/SIGTERM while the checkpoint loop runs (issue 12, item 7).

A raising handler (``remus``'s SIGTERM handler, Python's SIGINT one) used to
run wherever the trampoline let Python in: in the middle of a commit hook's
netlink transaction or of the ``CHECKPOINT_END`` write.  The engine now
defers both signals to its safe points (the guest just suspended, before the
epoch is written; an epoch's commit hooks done).  Driven here through
:class:`engine.Loop` with a stand-in checkpointer that calls the callbacks
as the C trampoline does and sends the signal from inside a hook.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import ROOT
from xen_remus_compat.remus import engine


class Stop(Exception):
    pass


class FakeCheckpointer:
    """The trampoline's shape: suspend, postcopy, checkpoint until stopped;
    the guest is "resumed" by close()."""

    def __init__(self, log, epochs=20):
        self.log, self.epochs = log, epochs

    def open(self, domid):
        self.log.append("open")

    def start(self, fd, suspend, postcopy, checkpoint, interval, flags):
        for n in range(self.epochs):
            self.log.append(("suspended", n))
            suspend()
            postcopy()
            self.log.append(("resumed", n))
            if checkpoint() is False:
                return

    def close(self):
        self.log.append("close")


def run_loop(log, commit, postsuspend=None):
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        loop = engine.Loop(1, fd, config=None, blackhole=True,
                           checkpointer=lambda: FakeCheckpointer(log),
                           postsuspend=postsuspend, commit=commit)
        return loop.run()
    finally:
        os.close(fd)


@pytest.fixture
def term_raises():
    def handler(signo, frame):
        raise Stop(signo)
    old = signal.signal(signal.SIGTERM, handler)
    yield
    signal.signal(signal.SIGTERM, old)


def test_a_signal_inside_a_commit_hook_waits_for_the_hook_to_finish(term_raises):
    log = []

    def commit():
        n = len([x for x in log if isinstance(x, tuple) and x[0] == "resumed"])
        if n == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)            # the handler would raise here, before
            log.append("hook finished")
        return True

    with pytest.raises(Stop):
        run_loop(log, commit)
    # the hook ran to its end, no further epoch began, the guest was resumed
    i = log.index("hook finished")
    assert log[i + 1:] == ["close"], log
    assert signal.getsignal(signal.SIGTERM).__name__ == "handler"     # restored


def test_a_signal_in_postsuspend_stops_at_the_next_safe_point(term_raises):
    log = []

    def postsuspend():
        if ("suspended", 2) in log and "sent" not in log:
            log.append("sent")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            log.append("postsuspend finished")

    with pytest.raises(Stop):
        run_loop(log, lambda: True, postsuspend)
    # the epoch went on to its commit, and stopped there
    assert log[log.index("postsuspend finished") + 1:] == [("resumed", 2), "close"], log


def test_repeats_of_a_signal_already_acted_on_are_dropped(term_raises):
    log, calls = [], []

    def handler(signo, frame):
        calls.append(signo)
        raise Stop(signo)
    signal.signal(signal.SIGTERM, handler)

    def commit():
        if ("resumed", 1) in log and not calls:
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)
        return True

    with pytest.raises(Stop):
        run_loop(log, commit)
    assert calls == [signal.SIGTERM]


def test_a_handler_that_does_not_raise_lets_checkpointing_go_on():
    log, calls = [], []
    old = signal.signal(signal.SIGTERM, lambda s, f: calls.append(s))
    try:
        def commit():
            if ("resumed", 1) in log and len(calls) < 2:
                os.kill(os.getpid(), signal.SIGTERM)
            return True
        stats = run_loop(log, commit)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert stats.checkpoints == 20 and calls == [signal.SIGTERM, signal.SIGTERM]


def test_sigint_default_handler_raises_keyboardinterrupt_at_a_safe_point():
    log = []

    def commit():
        if ("resumed", 4) in log and "done" not in log:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            log.append("done")
        return True

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        run_loop(log, commit)
    assert log[log.index("done") + 1:] == ["close"]


CHILD = textwrap.dedent("""
    import os, signal, sys
    from tests.unit.test_engine_signals import FakeCheckpointer, run_loop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log = []
    def commit():
        if ("resumed", 2) in log and "sent" not in log:
            log.append("sent")
            os.kill(os.getpid(), signal.SIGTERM)
            print("still here", flush=True)
        return True
    class Logged(list):
        def append(self, x):
            super().append(x)
            print(x, flush=True)
    log = Logged()
    run_loop(log, commit)
    print("not reached", flush=True)
""")


def test_default_action_comes_after_the_guest_is_resumed():
    """SIGTERM with no handler (a legacy script that set none) still kills
    the process, but only once the guest runs again."""
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT),
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2:] == ["still here", "close"], lines
