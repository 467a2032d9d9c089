"""The blktap2 ``block-remus`` control protocol (legacy-api.md section 13.2).

Python (primary) writes the 5 bytes ``flush`` to the control fifo
``/var/run/tap/remus_<host>_<port>`` when the guest is suspended; tapdisk
answers 4 bytes on ``<fifo>.msg``: ``done`` once the backup acknowledged the
commit, ``fail`` when the flush could not be sent.

Fixed against the legacy code:

* the fifos are opened, never created: a missing fifo (or a regular file in
  its place) is an error naming the path, not a silently created file;
* the wait for the answer is bounded (``timeout`` seconds);
* ``fail`` or a timeout stop the release of this epoch's network output and
  end checkpointing (:class:`DiskCheckpointError`); the legacy "print and
  carry on" comes back with ``fail_fatal=False`` or the quirk switch
  ``blockremus_fail_nonfatal``.
"""
from __future__ import annotations

import errno
import os
import select
import stat
import time
from typing import Callable, Optional

from .. import quirks
from ..log import logger
from ..errors import DiskCheckpointError

FIFODIR = "/var/run/tap"
CMD_FLUSH = b"flush"
MSG_DONE = b"done"
MSG_FAIL = b"fail"
MSG_LEN = 4


def fifo_name(host: str, port) -> str:
    """``remus_<host>_<port>``: tapdisk's name, ``:`` and ``/`` become ``_``."""
    name = f"{host}:{port}"
    return "remus_" + name.replace(":", "_").replace("/", "_")


def _open_fifo(path: str) -> int:
    try:
        st = os.stat(path)
    except OSError as e:
        raise DiskCheckpointError(
            f"block-remus control fifo {path} is missing ({os.strerror(e.errno)}); "
            "is tapdisk running with a remus disk for this peer?") from e
    if not stat.S_ISFIFO(st.st_mode):
        raise DiskCheckpointError(f"{path} exists but is not a fifo; refusing to use it")
    # O_RDWR: never blocks on open, and a dead peer cannot give us SIGPIPE
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


class BlockRemusDisk:
    """One ``tap:remus:HOST:PORT|...`` disk on the primary."""

    #: tapdisk's flush is answered at commit; one may be outstanding
    in_flight_limit = 1
    in_flight_why = "tapdisk's remus protocol has one flush outstanding at a time"

    def __init__(self, host: str, port, *, fifodir: str = FIFODIR,
                 timeout: float = 10.0, fail_fatal: Optional[bool] = None,
                 clock: Callable[[], float] = time.monotonic,
                 label: Optional[str] = None) -> None:
        self.name = fifo_name(host, port)
        self.ctlpath = os.path.join(fifodir, self.name)
        self.msgpath = self.ctlpath + ".msg"
        self.timeout = timeout
        self.clock = clock
        self.label = label or f"remus disk {host}:{port}"
        if fail_fatal is None:
            fail_fatal = not quirks.get().blockremus_fail_nonfatal
        self.fail_fatal = fail_fatal
        self.ctlfd: Optional[int] = None
        self.msgfd: Optional[int] = None
        self.ctlfd = _open_fifo(self.ctlpath)
        try:
            self.msgfd = _open_fifo(self.msgpath)
        except BaseException:
            self.uninstall()
            raise
        self.pending = False

    # -- checkpoint hooks ---------------------------------------------------
    def postsuspend(self) -> None:
        self._drain()
        try:
            n = os.write(self.ctlfd, CMD_FLUSH)
        except OSError as e:
            raise DiskCheckpointError(f"{self.label}: cannot write to {self.ctlpath}: "
                                      f"{os.strerror(e.errno)}") from e
        if n != len(CMD_FLUSH):
            raise DiskCheckpointError(f"{self.label}: short write to {self.ctlpath}")
        self.pending = True

    def preresume(self) -> None:
        pass

    def commit(self) -> bool:
        """Wait for the backup's answer; True when this epoch is on the backup."""
        if not self.pending:
            return True
        self.pending = False
        msg = self._read_msg()
        if msg == MSG_DONE:
            return True
        what = "timed out" if msg is None else f"answered {msg!r}"
        if not self.fail_fatal:
            print("Unknown message: %s" % (msg.decode("latin-1") if msg else ""))
            logger.warning("%s: flush %s; carrying on (legacy behaviour)", self.label, what)
            return False
        raise DiskCheckpointError(
            f"{self.label}: the backup did not acknowledge the checkpoint (tapdisk "
            f"{what} on {self.msgpath}); network output of this epoch stays buffered")

    def uninstall(self) -> None:
        for attr in ("ctlfd", "msgfd"):
            fd = getattr(self, attr, None)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, attr, None)

    # -- internals ----------------------------------------------------------
    def _drain(self) -> None:
        """Throw away stale tokens (e.g. a late answer after a timeout)."""
        while True:
            try:
                if not os.read(self.msgfd, 64):
                    return
            except BlockingIOError:
                return

    def _read_msg(self) -> Optional[bytes]:
        buf = b""
        deadline = self.clock() + self.timeout
        while len(buf) < MSG_LEN:
            left = deadline - self.clock()
            if left <= 0:
                return None
            r, _, _ = select.select([self.msgfd], [], [], left)
            if not r:
                continue
            try:
                chunk = os.read(self.msgfd, MSG_LEN - len(buf))
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise DiskCheckpointError(f"{self.label}: reading {self.msgpath}: "
                                          f"{os.strerror(e.errno)}") from e
            buf += chunk
        return buf
