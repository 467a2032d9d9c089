"""How the primary reaches the backup (xl-side.md sections 2.1, 3.1, 6).

* ``SshTransport`` - what ``xl remus`` does: run ``ssh DEST xl
  migrate-receive -r`` (or ``-s CMD``: ``CMD DEST xl migrate-receive -r``;
  ``-s ""`` makes DEST the whole command), write the stream to its stdin,
  read the receiver's 54-byte banner from its stdout before sending.
* ``TcpTransport`` - the legacy ``-p PORT`` path: connect to
  ``remus-receiver`` on the backup, send ``receive\\n``, read its one-line
  reply; it then runs ``xl migrate-receive -r`` on the connection, whose
  banner follows.  With ``acks=True`` the greeting asks for a back channel
  (:mod:`.backchannel`: an ack per checkpoint, heartbeats both ways);
  ``backchannel`` is then the primary's end of it, or None when the
  receiver is older (it refuses the request: we reconnect with the plain
  greeting, ``old_receiver`` says so).  With a TLS context the connection is TLS (the receiver's
  certificate checked, ours presented): libxc still writes into a plain fd,
  one end of a socket pair, and a relay thread owns the TLS socket.
* ``BlackholeTransport`` - ``/dev/null``: no banner, no xl header.

Every failure is a :class:`TransportError` that says what was tried; none
leaves a child process behind.  A destination is never taken for an
option: one starting with ``-`` is refused, and ``ssh`` gets ``--`` before
it, plus ``ServerAliveInterval``/``ServerAliveCountMax`` so that a backup
that vanishes without closing TCP is noticed within
:data:`SSH_DEAD_PEER_SECONDS` (the backup's sshd needs
``ClientAliveInterval`` for the other direction: docs/remus.1).
"""
from __future__ import annotations

import errno
import os
import select
import shlex
import signal
import socket
import ssl
import subprocess
import threading
import time
from typing import List, Optional, Sequence

from .. import errors
from ..log import logger
from ..errors import TransportError
from ..stream.xl import BANNER  # defined once, in stream/xl.py
from . import backchannel as bc

RECEIVER_ARGV = ["xl", "migrate-receive", "-r"]
LEGACY_HELLO = b"receive\n"
DEFAULT_PORT = 8002
#: ssh's keepalive probes (through the encrypted channel, so a proxy or NAT
#: cannot answer them): ssh gives up after COUNT unanswered ones, about
#: INTERVAL * COUNT seconds after the backup went silent (xl-side.md §3.1:
#: nothing flows back in Remus mode, so every interval is probed).
SSH_ALIVE_INTERVAL = 2
SSH_ALIVE_COUNT = 3
SSH_DEAD_PEER_SECONDS = SSH_ALIVE_INTERVAL * SSH_ALIVE_COUNT
SSH_OPTIONS = ["-o", f"ServerAliveInterval={SSH_ALIVE_INTERVAL}",
               "-o", f"ServerAliveCountMax={SSH_ALIVE_COUNT}"]


def check_destination(dest: str, what: str = "destination") -> str:
    """Refuse a host name that a command would read as an option."""
    if dest.startswith("-"):
        raise errors.InputError(f"refusing {what} {dest!r}: it starts with "
                                "'-', so ssh would take it for an option")
    if not dest or any(c in dest for c in "\0\n\r"):
        raise errors.InputError(f"refusing {what} {dest!r}: not a host name")
    return dest


def check_port(port: int, what: str = "port") -> int:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise errors.InputError(f"invalid {what} {port!r}: a TCP port is "
                                "1-65535")
    return port


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
        self.direct = False
        if ssh_command is None:
            ssh_command = "ssh"
        if ssh_command == "":
            # as xl remus -s "": the destination is the whole command, run by
            # the shell (so "exec xl migrate-receive -r -e" works unchanged)
            self.argv: List[str] = ["/bin/sh", "-c", dest]
            #: the command is the receiver itself, run here: stopping it
            #: before the end of the stream keeps it from failing over
            self.direct = True
            shown = [dest]
        else:
            cmd = shlex.split(ssh_command)
            check_destination(dest)
            shown = cmd + [dest] + list(receiver_argv)
            if cmd and os.path.basename(cmd[0]) == "ssh":
                # the user's own -o options come first, and ssh keeps the
                # first value it is given for each keyword
                cmd = cmd + SSH_OPTIONS + ["--"]
            self.argv = cmd + [dest] + list(receiver_argv)
        #: what the user asked for (messages); ``argv`` is what runs
        self.description = " ".join(shlex.quote(a) for a in shown)
        self.proc: Optional[subprocess.Popen] = None
        self.stdin: Optional[socket.socket] = None

    def connect(self, timeout: float = 30.0) -> None:
        logger.debug("running %s", " ".join(shlex.quote(a) for a in self.argv))
        # the command's stdin is a socket, not a pipe: the engine's write
        # deadline shuts a socket down to wake a write blocked on a hung
        # backup, which a pipe cannot be (docs/decisions.md, "Hardening
        # the primary")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(self.argv, stdin=theirs.fileno(),
                                         stdout=subprocess.PIPE, close_fds=True,
                                         start_new_session=True)
        except OSError as e:
            ours.close()
            raise TransportError(f"cannot start {self.description}: "
                                 f"{os.strerror(e.errno)}") from e
        finally:
            theirs.close()
        self.stdin = ours
        self.wfd = ours.fileno()
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

    def release_receiver(self) -> None:
        """The primary's guest is gone: the receiver, which took the end of
        the stream for its failure, is restoring the backup's copy (with a
        vif, libxl's device set-up takes seconds).  Close our ends and leave
        it running: killing it there would leave the backup paused, half
        made.  ``close`` afterwards does nothing."""
        if self.proc is None:
            return
        logger.info("the receiver %s (process %d) is left to finish the failover",
                    self.description, self.proc.pid)
        self._close_ends()
        self.proc = None
        self.wfd, self.rfd = -1, None

    def _close_ends(self) -> None:
        """Our end of the receiver's standard input and output."""
        assert self.proc is not None
        for f in (self.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.stdin = None

    def _stop_group(self) -> bool:
        """SIGTERM to the receiver's process group (SIGCONT: a stopped one
        too); False when it is already gone."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            os.killpg(self.proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        """Protection stopped with the primary's guest alive (a signal, a
        callback, an error).  A receiver run here (``-s ""``) is stopped
        *before* it sees the end of the stream, which xl migrate-receive -r
        takes for the primary's failure and answers by starting its copy (a
        second running guest); Ctrl-C does the same to xl remus's receiver.
        Through ssh the remote receiver sees the end of the connection
        whatever we do: it is closed cleanly.  See release_receiver for the
        primary's failure."""
        if self.proc is None:
            return
        if self.direct and self.proc.poll() is None and self._stop_group():
            logger.warning("stopped the receiver %s; the backup's paused copy of the "
                           "guest, if it made one, stays there until destroyed "
                           "(xl destroy NAME--incoming on the backup host)",
                           self.description)
        self._close_ends()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._stop_group()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        self.wfd, self.rfd = -1, None


class _OldReceiver(TransportError):
    """The receiver refused the back channel greeting (it predates it)."""


class TcpTransport(Transport):
    def __init__(self, host: str, port: int = DEFAULT_PORT,
                 tls: Optional[ssl.SSLContext] = None, *, acks: bool = False,
                 heartbeat: float = bc.DEFAULT_PERIOD) -> None:
        self.host, self.port = host, check_port(port)
        self.tls = tls
        self.description = (f"remus-receiver at {host}:{port}"
                            + (" (TLS)" if tls is not None else ""))
        self.sock: Optional[socket.socket] = None
        self.relay: Optional[_TlsRelay] = None
        #: ask for a back channel; how often the backup's heartbeats should come
        self.acks, self.heartbeat = acks, heartbeat
        self.backchannel: Optional[bc.PrimaryEnd] = None
        #: we asked, and the receiver is too old to have one
        self.old_receiver = False
        self._terms: Optional[bc.Terms] = None

    def connect(self, timeout: float = 30.0) -> None:
        hello = bc.offer(self.heartbeat) if self.acks else LEGACY_HELLO
        try:
            self._connect(hello, timeout)
        except _OldReceiver:
            self.close()
            self.old_receiver = True
            logger.debug("%s has no back channel: reconnecting with 'receive'",
                         self.description)
            self._connect(LEGACY_HELLO, timeout)

    def _connect(self, hello: bytes, timeout: float) -> None:
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as e:
            raise TransportError(f"cannot connect to {self.description}: "
                                 f"{e.strerror or e}") from e
        # a checkpoint ends with libxl's 8-byte CHECKPOINT_END: with Nagle it
        # waits for the backup's delayed ACK of the epoch (~40 ms), and so
        # would the ack that answers it
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            self._connect_tls(timeout, hello)
            return
        self.sock.settimeout(None)
        fd = self.sock.fileno()
        self.sock.sendall(hello)
        reply = b""
        deadline = time.monotonic() + timeout
        while not reply.endswith(b"\n"):
            if len(reply) > 80 or time.monotonic() > deadline:
                self.close()
                raise TransportError(f"{self.description}: bad greeting {reply!r}")
            reply += _read_exact(fd, 1, max(0.1, deadline - time.monotonic()),
                                 self.description)
        self._check_reply(reply, hello)
        self.wfd = self.rfd = fd
        expect_banner(fd, timeout, self.description)
        if self._terms is not None:
            self.backchannel = bc.PrimaryEnd(fd, fd, self._terms, self.description)

    def _check_reply(self, reply: bytes, hello: bytes) -> None:
        if hello != LEGACY_HELLO and bc.old_receiver_refusal(reply):
            raise _OldReceiver(reply.decode("latin-1").strip())
        if not reply.startswith(b"(ready"):
            self.close()
            raise TransportError(f"{self.description} refused: "
                                 f"{reply.decode('latin-1').strip()}")
        logger.debug("%s: %r", self.description, reply)
        self._terms = None
        if hello != LEGACY_HELLO:
            try:
                self._terms = bc.parse_ready(reply, self.heartbeat)
            except bc.ProtocolError as e:
                self.close()
                raise TransportError(f"{self.description}: {e}") from None
            self.old_receiver = self._terms is None

    def _connect_tls(self, timeout: float, hello: bytes) -> None:
        """Handshake, greeting and banner over TLS (blocking, with the
        timeout), then hand libxc a socket pair relayed to the TLS socket."""
        try:
            tls = self.tls.wrap_socket(self.sock, server_hostname=self.host)
            self.sock = tls
            tls.sendall(hello)
            want = len(BANNER)
            data = b""
            deadline = time.monotonic() + timeout
            while b"\n" not in data or len(data) - data.index(b"\n") - 1 < want:
                if time.monotonic() > deadline:
                    raise socket.timeout("timed out")
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
                if b"\n" not in data and len(data) > 80:
                    break
                if data.startswith(b"(err") and b"\n" in data:
                    break
        except ssl.SSLCertVerificationError as e:
            self.close()
            raise TransportError(f"{self.description}: the receiver's "
                                 f"certificate was refused: "
                                 f"{e.verify_message or e.reason}") from e
        except (ssl.SSLError, OSError) as e:
            reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
            self.close()
            raise TransportError(f"{self.description}: TLS failed: {reason}") from e
        if b"\n" not in data:
            self.close()
            raise TransportError(f"{self.description}: bad greeting {data!r}")
        reply, rest = data.split(b"\n", 1)
        self._check_reply(reply + b"\n", hello)
        if rest[:len(BANNER)] != BANNER:
            self.close()
            raise TransportError(f"{self.description}: unexpected banner "
                                 f"{rest[:len(BANNER)]!r} (is the backup "
                                 "running xl migrate-receive -r?)")
        back = self._terms is not None
        self.relay = _TlsRelay(tls, self.description, back=back)
        self.wfd = self.relay.fd
        self.rfd = None
        if back:
            # frames come back on the same socket pair (the relay passes them on)
            self.backchannel = bc.PrimaryEnd(self.relay.fd, self.relay.fd, self._terms,
                                             self.description,
                                             pending=rest[len(BANNER):])

    def check_alive(self, wait: float = 0.0) -> Optional[str]:
        """Nothing flows back after the banner (xl-side.md §3.1) except
        remus-receiver's ``(err ...)`` line when it refuses the stream, or,
        with a back channel, its frames (an ERROR one says why)."""
        if self.backchannel is not None:
            return self.backchannel.why_gone(wait)
        if self.relay is not None:
            return self.relay.check(wait)
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
        return _judge(self.description, data)

    def close(self) -> None:
        if self.backchannel is not None:
            self.backchannel.stop()
            self.backchannel = None
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
            self.wfd, self.rfd = -1, None


def _judge(description: str, data: bytes) -> str:
    if not data:
        return f"{description} closed the connection"
    line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    if line.startswith("(err"):
        return f"{description} refused the stream: {_err_value(line)}"
    return f"{description} sent unexpected data {data[:60]!r}"


class _TlsRelay:
    """Plain bytes written to ``fd`` go out on the TLS socket, from one
    thread that owns it (an SSL object must not be used from two threads);
    what the receiver sends back (an ``(err ...)`` line) is kept for
    :meth:`check`.  When TLS fails the pair is shut, so the writer (libxc)
    gets EPIPE as it would from a broken TCP connection.  The pair's send
    buffer is kept small: what the engine has "sent" is at most that much
    ahead of the TLS socket."""

    BUFFER = 64 << 10

    def __init__(self, tls: ssl.SSLSocket, description: str, back: bool = False) -> None:
        self.tls = tls
        self.description = description
        #: pass what the receiver sends on to our end of the pair (a back channel)
        self.pass_back = back
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for sk in (ours, theirs):
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.BUFFER)
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.BUFFER)
        self.writer, self.reader = theirs, ours
        self.fd = theirs.fileno()
        self.back = b""
        self.failed: Optional[str] = None
        self.done = threading.Event()
        self.stopping = False
        tls.setblocking(True)
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name="remus-tls-relay")
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping:
                want = [self.reader, self.tls]
                if self.tls.pending():
                    r = [self.tls]
                else:
                    r, _, _ = select.select(want, [], [], 0.5)
                if self.tls in r:
                    try:
                        self.tls.settimeout(0.0)
                        got = self.tls.recv(4096)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        got = None
                    finally:
                        self.tls.settimeout(None)
                    if got == b"":
                        self.failed = self.failed or _judge(self.description, self.back)
                        break
                    if got and self.pass_back:
                        self.reader.sendall(got)
                    elif got:
                        self.back = (self.back + got)[:4096]
                if self.reader in r:
                    data = self.reader.recv(1 << 16)
                    if not data:            # the engine closed its end
                        break
                    self.tls.sendall(data)
        except (ssl.SSLError, OSError) as e:
            self.failed = self.failed or (f"{self.description}: "
                                          f"{getattr(e, 'strerror', None) or e}")
        finally:
            try:
                self.reader.shutdown(socket.SHUT_RDWR)   # the writer sees EPIPE
            except OSError:
                pass
            self.done.set()

    def check(self, wait: float = 0.0) -> Optional[str]:
        if self.back.startswith(b"(err"):
            return _judge(self.description, self.back)
        if self.done.wait(wait):
            return self.failed or _judge(self.description, self.back)
        return _judge(self.description, self.back) if self.back else None

    def close(self) -> None:
        try:
            self.writer.close()          # EOF for the thread: flush, stop
        except OSError:
            pass
        if not self.done.wait(2):       # stuck sending to a hung receiver
            self.stopping = True
            try:    # wake it (the plain shutdown: the SSL object stays valid)
                socket.socket.shutdown(self.tls, socket.SHUT_RDWR)
            except OSError:
                pass
            self.done.wait(1)
        try:
            self.reader.close()
        except OSError:
            pass
