"""SIGINT and SIGTERM while the checkpoint trampoline runs: deferred to the
loop's safe points (docs/decisions.md, "Hardening the primary").

Split from :mod:`.engine`, which acts on them at its safe points: when the
guest has just been suspended, before anything of the epoch is written, and
after an epoch's commit hooks, never in the middle of a write or a hook.
"""
from __future__ import annotations

import os
import signal
import threading


class DefaultAction(BaseException):
    """A deferred signal whose disposition is the default one (die): stop
    checkpointing, resume the guest, then die by the signal."""

    def __init__(self, signo: int) -> None:
        super().__init__(signo)
        self.signo = signo


class DeferredSignals:
    """SIGINT and SIGTERM while the trampoline runs: recorded by a handler
    of ours, acted on (the previous handler called, e.g. raising
    ``KeyboardInterrupt``) only at :meth:`deliver`, the loop's safe points.

    A raising handler used to run wherever the trampoline let Python in: in
    the middle of a hook's netlink transaction or of the ``CHECKPOINT_END``
    write.  Repeats of a signal already acted on are dropped (a service
    manager signals the whole group, and the ``--sim`` wrapper forwards its
    copy too).  Handlers are only swapped on the main thread; ``SIG_IGN``
    and handlers not set from Python are left alone.
    """

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.saved: dict = {}
        self.pending: Optional[int] = None
        self.delivered = False

    def __enter__(self) -> "DeferredSignals":
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self.SIGNALS:
            signo = getattr(signal, name)
            handler = signal.getsignal(signo)
            if handler is None or handler == signal.SIG_IGN:
                continue
            self.saved[signo] = handler
            signal.signal(signo, self._record)
        return self

    def _record(self, signo, frame) -> None:
        if self.pending is None and not self.delivered:
            self.pending = signo

    def deliver(self) -> None:
        """A safe point: act on a signal that arrived since the last one."""
        signo, self.pending = self.pending, None
        if signo is None:
            return
        handler = self.saved.get(signo, signal.SIG_DFL)
        try:
            if not callable(handler):
                raise DefaultAction(signo)
            handler(signo, None)
        except BaseException:
            self.delivered = True           # stopping: repeats say nothing new
            raise

    def __exit__(self, *exc) -> None:
        for signo, handler in self.saved.items():
            signal.signal(signo, handler)
        self.saved = {}

    def after(self) -> None:
        """The trampoline has returned and the guest runs: a signal that
        came after the last safe point is acted on now.  (When checkpointing
        failed, this is not called: the failure is what the caller reports,
        and it stops anyway.)"""
        signo, self.pending = self.pending, None
        if signo is None:
            return
        self.delivered = True
        handler = signal.getsignal(signo)
        if callable(handler):
            handler(signo, None)
        elif handler != signal.SIG_IGN:
            die_by(signo)


def die_by(signo: int) -> None:
    signal.signal(signo, signal.SIG_DFL)
    os.kill(os.getpid(), signo)


def block_signals():
    """Hold SIGINT/SIGTERM (main thread only): nothing may interrupt a resume."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def unblock_signals(old) -> None:
    if old is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
