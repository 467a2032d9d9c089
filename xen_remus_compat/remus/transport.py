"""How the primary reaches the backup (xl-side.md sections 2.1, 3.1, 6).

* ``SshTransport`` - what ``xl remus`` does: run ``ssh DEST xl
  migrate-receive -r`` (or ``-s CMD``: ``CMD DEST xl migrate-receive -r``;
  ``-s ""`` makes DEST the whole command), write the stream to its stdin,
  read the receiver's 54-byte banner from its stdout before sending.
* ``TcpTransport`` - the legacy ``-p PORT`` path: connect to
  ``remus-receiver`` on the backup, send ``receive\\n``, read its one-line
  reply; it then runs ``xl migrate-receive -r`` on the connection, whose
  banner follows.
* ``BlackholeTransport`` - ``/dev/null``: no banner, no xl header.

Every failure is a :class:`TransportError` that says what was tried; none
leaves a child process behind.
"""
from __future__ import annotations

import errno
import os
import select
import shlex
import signal
import socket
import subprocess
import time
from typing import List, Optional, Sequence

from .. import errors
from ..log import logger
from ..errors import TransportError
from ..stream.xl import BANNER  # defined once, in stream/xl.py

RECEIVER_ARGV = ["xl", "migrate-receive", "-r"]
LEGACY_HELLO = b"receive\n"
DEFAULT_PORT = 8002


def _read_exact(fd: int, n: int, timeout: float, what: str) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransportError(f"{what}: no answer within {timeout:g}s "
                                 f"(got {len(buf)} of {n} bytes)")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise TransportError(f"{what}: the receiver closed the connection "
                                 f"after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def expect_banner(fd: int, timeout: float, what: str) -> None:
    got = _read_exact(fd, len(BANNER), timeout, what)
    if got != BANNER:
        raise TransportError(f"{what}: unexpected banner {got!r} "
                             "(is the backup running xl migrate-receive -r?)")


def _err_value(line: str) -> str:
    """The ``value`` of an xend-style ``(err (type T) (value V))`` reply."""
    from .. import sxp
    try:
        (reply,) = sxp.loads(line)
        fields = {item[0]: item[1] for item in reply[1:]
                  if isinstance(item, list) and len(item) == 2}
        return fields.get("value", line)
    except (errors.CompatError, ValueError, TypeError, IndexError):
        return line


class Transport:
    """``wfd`` carries the stream; ``rfd`` (if any) the receiver's replies."""

    wfd: int = -1
    rfd: Optional[int] = None
    with_xl_header = True
    description = ""

    def connect(self, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def fileno(self) -> int:
        """The fd the stream is written to (libxc writes into it directly)."""
        return self.wfd

    def close(self) -> None:
        pass

    def check_alive(self, wait: float = 0.0) -> Optional[str]:
        """A reason string if the backup side is known to be gone.

        ``wait``: how long to give a dying backup to show it (asked after a
        write to the stream failed).
        """
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BlackholeTransport(Transport):
    with_xl_header = False
    description = "/dev/null (blackhole)"

    def connect(self, timeout: float = 30.0) -> None:
        self.wfd = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.wfd >= 0:
            os.close(self.wfd)
            self.wfd = -1


class SshTransport(Transport):
    def __init__(self, dest: str, ssh_command: Optional[str] = None,
                 receiver_argv: Sequence[str] = RECEIVER_ARGV) -> None:
        self.dest = dest
        if ssh_command is None:
            ssh_command = "ssh"
        if ssh_command == "":
            self.argv: List[str] = shlex.split(dest)
        else:
            self.argv = shlex.split(ssh_command) + [dest] + list(receiver_argv)
        self.description = " ".join(shlex.quote(a) for a in self.argv)
        self.proc: Optional[subprocess.Popen] = None

    def connect(self, timeout: float = 30.0) -> None:
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, close_fds=True,
                                         start_new_session=True)
        except OSError as e:
            raise TransportError(f"cannot start {self.description}: "
                                 f"{os.strerror(e.errno)}") from e
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        try:
            expect_banner(self.rfd, timeout, f"backup via {self.description}")
        except TransportError:
            try:
                rc = self.proc.wait(timeout=2)   # closed early: it is exiting
            except subprocess.TimeoutExpired:
                rc = None
            self.close()
            if rc is not None:
                raise TransportError(f"backup via {self.description} exited with "
                                     f"status {rc} before sending its banner")
            raise

    def check_alive(self, wait: float = 0.0) -> Optional[str]:
        if self.proc is None:
            return None
        try:
            rc = self.proc.wait(timeout=wait) if wait > 0 else self.proc.poll()
        except subprocess.TimeoutExpired:
            rc = None
        if rc is not None:
            return f"the receiver {self.description} exited with status {rc}"
        return None

    def close(self) -> None:
        if self.proc is None:
            return
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        self.wfd, self.rfd = -1, None


class TcpTransport(Transport):
    def __init__(self, host: str, port: int = DEFAULT_PORT) -> None:
        self.host, self.port = host, port
        self.description = f"remus-receiver at {host}:{port}"
        self.sock: Optional[socket.socket] = None

    def connect(self, timeout: float = 30.0) -> None:
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as e:
            raise TransportError(f"cannot connect to {self.description}: "
                                 f"{e.strerror or e}") from e
        self.sock.settimeout(None)
        fd = self.sock.fileno()
        self.sock.sendall(LEGACY_HELLO)
        reply = b""
        deadline = time.monotonic() + timeout
        while not reply.endswith(b"\n"):
            if len(reply) > 80 or time.monotonic() > deadline:
                self.close()
                raise TransportError(f"{self.description}: bad greeting {reply!r}")
            reply += _read_exact(fd, 1, max(0.1, deadline - time.monotonic()),
                                 self.description)
        if not reply.startswith(b"(ready"):
            self.close()
            raise TransportError(f"{self.description} refused: "
                                 f"{reply.decode('latin-1').strip()}")
        logger.debug("%s: %r", self.description, reply)
        self.wfd = self.rfd = fd
        expect_banner(fd, timeout, self.description)

    def check_alive(self, wait: float = 0.0) -> Optional[str]:
        """Nothing flows back after the banner (xl-side.md §3.1) except
        remus-receiver's ``(err ...)`` line when it refuses the stream."""
        if self.sock is None:
            return None
        try:
            r, _, _ = select.select([self.sock], [], [], wait)
            if not r:
                return None
            data = self.sock.recv(4096, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE):
                return f"{self.description} closed the connection ({e.strerror})"
            return f"{self.description}: {e.strerror or e}"
        if not data:
            return f"{self.description} closed the connection"
        line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
        if line.startswith("(err"):
            return f"{self.description} refused the stream: {_err_value(line)}"
        return f"{self.description} sent unexpected data {data[:60]!r}"

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
            self.wfd, self.rfd = -1, None
