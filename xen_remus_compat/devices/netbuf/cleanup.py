"""Cleanup on every exit path: what is still installed is uninstalled at
interpreter exit (``atexit``) and, once :func:`install_signal_handlers` is
called, on SIGTERM and SIGHUP (docs/netbuf.md, "What is changed on the host,
and how it is undone").

:data:`default_registry` is the registry a :class:`~.nic.BufferedNIC` joins
unless it is given one; ``netbuf.default_registry`` reads and rebinds it.
"""
from __future__ import annotations

import atexit
import os
import signal
import threading
from typing import Dict, Iterable, List, Optional

from ...log import logger


class CleanupRegistry:
    """Things to uninstall at exit or on a fatal signal (LIFO).

    ``atexit`` is registered on first use; signal handlers only when
    :meth:`install_signal_handlers` is called (the engine / CLI decides).
    A forked child never cleans up its parent's devices.
    """

    def __init__(self) -> None:
        self._items: List[object] = []
        self._lock = threading.RLock()
        self._pid: Optional[int] = None
        self._atexit = False
        self._running = False
        self._previous: Dict[int, object] = {}

    def register(self, obj) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._items = []
                self._pid = os.getpid()
            if obj not in self._items:
                self._items.append(obj)
            if not self._atexit:
                atexit.register(self.cleanup_all)
                self._atexit = True

    def unregister(self, obj) -> None:
        with self._lock:
            if obj in self._items:
                self._items.remove(obj)

    def __len__(self) -> int:
        return len(self._items)

    def cleanup_all(self) -> List[BaseException]:
        """Uninstall everything registered; errors are logged and returned."""
        if self._running or self._pid != os.getpid():
            return []
        self._running = True
        failures: List[BaseException] = []
        try:
            while True:
                with self._lock:
                    if not self._items:
                        break
                    obj = self._items.pop()
                try:
                    obj.uninstall()
                except Exception as e:
                    logger.error("cleanup of %r: %s", obj, e)
                    failures.append(e)
        finally:
            self._running = False
        return failures

    def install_signal_handlers(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGHUP)) -> None:
        """Clean up on these signals, then do what was there before (the
        previous handler, or the default action: die by the signal)."""
        for sig in signals:
            if sig in self._previous:
                continue
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)
        self._previous.clear()

    def _on_signal(self, signo, frame) -> None:
        self.cleanup_all()
        prev = self._previous.get(signo, signal.SIG_DFL)
        if callable(prev):
            prev(signo, frame)
        elif prev == signal.SIG_IGN:
            return
        else:
            signal.signal(signo, signal.SIG_DFL)
            os.kill(os.getpid(), signo)


default_registry = CleanupRegistry()


def current_registry() -> CleanupRegistry:
    """:data:`default_registry` as it is now (it may be rebound)."""
    return default_registry


def cleanup_all() -> List[BaseException]:
    """Uninstall every buffer this process still has (for the engine)."""
    return default_registry.cleanup_all()


def install_signal_handlers(signals: Iterable[int] = (signal.SIGTERM, signal.SIGHUP)) -> None:
    default_registry.install_signal_handlers(signals)
