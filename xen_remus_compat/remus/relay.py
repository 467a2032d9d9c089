"""One connection of ``remus-receiver``: bounded reads and the xl relay.

Every read from a peer is bounded in time (xl-side.md §3.1: in Remus mode
the primary only ever sends):

* before the stream (the ``receive`` line, the xl header) by one deadline
  for the whole handshake, so a peer that says nothing, or dribbles a byte
  at a time, is dropped when it passes (:class:`HandshakeTimeout`);
* after it by the session's silence limit: a primary that sends nothing
  for that long is dead (hung, partitioned, powered off without closing
  TCP), and the stream is treated as ended there, exactly as on EOF, so
  the backup fails over to the last complete checkpoint.

With a back channel (:mod:`.backchannel`, asked for in the greeting) the
primary's heartbeats arrive in the stream (removed here before xl or the
simulated backup reads it) and keep a live primary from looking silent;
this side sends its own heartbeats while it waits for the stream, and one
ack per checkpoint once the checkpoint is in xl's hands.

The socket (plain or TLS) is used by one thread only, with a short timeout,
so a stop request or a deadline is noticed within :data:`POLL` seconds.
"""
from __future__ import annotations

import os
import select
import socket
import ssl
import subprocess
import time
from typing import Callable, Optional, Sequence, Tuple

from ..errors import ReceiverError
from ..log import logger
from ..stream import xl as xlstream
from ..stream.progress import Progress

#: How often a blocked read looks at its deadline and stop flag.
POLL = 0.2
#: Largest read (and so the relay's buffer per connection).
CHUNK = 1 << 20
#: A send to the peer (a one-line reply, xl's few bytes) must finish by then.
SEND_TIMEOUT = 10.0


class HandshakeTimeout(ReceiverError):
    """The peer did not complete the handshake in time."""


class Channel:
    """Reads from one peer for one :class:`~.receiver.Session`."""

    def __init__(self, conn: socket.socket, session, silence: float) -> None:
        self.conn = conn
        self.session = session
        self.silence = silence
        #: a :class:`~.backchannel.BackupEnd` once the primary asked for one
        self.back = None
        conn.settimeout(POLL)

    def strip(self):
        """The record types to remove from the stream (the primary's heartbeats)."""
        from .backchannel import HEARTBEAT_TYPE
        return (HEARTBEAT_TYPE,) if self.back is not None else ()

    def _recv(self, n: int) -> Optional[bytes]:
        """Bytes (``b""`` at EOF or when the connection broke), or None when
        nothing arrived within :data:`POLL`."""
        try:
            data = self.conn.recv(n)
        except (socket.timeout, ssl.SSLWantReadError, BlockingIOError,
                InterruptedError):
            return None
        except (OSError, ssl.SSLError) as e:
            logger.debug("%s: read failed: %s", self.session.peer, e)
            self.session.read_error = str(e)
            return b""
        if data:
            self.session.touch()
        return data

    def recv_before(self, n: int, deadline: float, what: str) -> bytes:
        """Up to ``n`` bytes of the handshake, by ``deadline``."""
        while True:
            if self.session.stop_reason:
                raise ReceiverError(f"{self.session.peer}: "
                                    f"{self.session.stop_reason}")
            if time.monotonic() >= deadline:
                raise HandshakeTimeout(f"no {what} within the handshake "
                                       "timeout")
            data = self._recv(n)
            if data is not None:
                return data

    def recv_stream(self, n: int) -> bytes:
        """Up to ``n`` bytes of the stream; ``b""`` at EOF, when the primary
        has been silent past the session's limit, or when told to stop."""
        s = self.session
        while True:
            if s.stop_reason:
                return b""
            if self.back is not None:
                self.back.beat_if_due()
            # the socket first: time we spent working is not the peer's silence
            data = self._recv(n)
            if data is not None:
                return data
            idle = s.idle()
            if idle >= s.silence_limit(self.silence):
                s.silent = idle
                return b""

    def read_line(self, deadline: float, limit: int = 256) -> bytes:
        line = b""
        while not line.endswith(b"\n") and len(line) <= limit:
            ch = self.recv_before(1, deadline, "'receive' line")
            if not ch:
                break
            line += ch
        return line

    def read_exact(self, n: int, deadline: float, what: str) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.recv_before(min(n - len(buf), CHUNK), deadline, what)
            if not chunk:
                raise ReceiverError(f"stream ended inside the {what} "
                                    f"({len(buf)} of {n} bytes)")
            buf += chunk
        return bytes(buf)

    def send(self, data: bytes) -> None:
        self.conn.settimeout(SEND_TIMEOUT)
        try:
            self.conn.sendall(data)
        finally:
            self.conn.settimeout(POLL)


def read_xl_header(ch: Channel, deadline: float, max_optional: int) -> bytes:
    """The xl header and its optional data (the JSON config), raw, checked
    as far as framing goes; ``max_optional`` bounds what we allocate."""
    head = ch.read_exact(xlstream.HEADER.size, deadline, "xl header")
    magic, _order, _mflags, _oflags, optlen = xlstream.HEADER.unpack(head)
    if magic != xlstream.MAGIC:
        raise ReceiverError("not an xl stream (bad magic)")
    if optlen > max_optional:
        raise ReceiverError(f"xl header optional data too large ({optlen} "
                            f"bytes; this receiver takes at most "
                            f"{max_optional})")
    return head + ch.read_exact(optlen, deadline, "xl header")


class StreamReader:
    """A binary reader for :mod:`..stream.receiver`: ``prefix`` (the xl
    header already read), then the stream, silence-bounded, without the
    primary's heartbeats."""

    def __init__(self, prefix: bytes, ch: Channel) -> None:
        self.prefix = memoryview(prefix)
        self.ch = ch
        self.name = "remus-receiver connection"
        strip = ch.strip()
        self.filter = Progress(strip=strip) if strip else None
        self.rest = b""

    def read(self, n: int = -1) -> bytes:
        if self.prefix:
            take = self.prefix[:n] if n >= 0 else self.prefix
            self.prefix = self.prefix[len(take):]
            return bytes(take)
        want = n if n > 0 else CHUNK
        if self.filter is None:
            return self.ch.recv_stream(want)
        while not self.rest:
            data = self.ch.recv_stream(want)
            if not data:
                return self.filter.flush()
            self.rest = self.filter.feed(data)
        out, self.rest = self.rest[:want], self.rest[want:]
        return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def relay_to_xl(ch: Channel, raw_header: bytes, argv: Sequence[str],
                progress: Progress,
                before_close: Optional[Callable[[Progress], None]] = None
                ) -> Tuple[int, int]:
    """Run ``argv`` (``xl migrate-receive -r``) and relay the stream to it.

    Our own banner went to the primary already; xl's (the first 54 bytes
    it writes) is dropped, anything it writes after that goes to the
    primary (in XL_OUTPUT frames on a back channel).  ``progress`` (made
    with ``strip=ch.strip()``) removes the primary's heartbeats; each
    checkpoint is acknowledged once its last byte was written to xl.  The
    relay stops at EOF, on silence, on a stop request, or when xl goes
    away; then xl's stdin is closed, which is what makes xl fail over
    (xl-side.md §3.6).  ``before_close(progress)``, when given,
    runs once the stream has stopped and before xl's input is closed
    (remus-receiver --failover=cluster holds the domain paused there).
    Returns (xl's exit status, bytes relayed).
    """
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, bufsize=0, close_fds=True)
    stdin, out = proc.stdin.fileno(), proc.stdout.fileno()
    os.set_blocking(out, False)
    banner = b""
    relayed = 0
    xl_out: Optional[int] = out
    try:
        _write_all(stdin, raw_header)
        relayed += len(raw_header)
        while True:
            if xl_out is not None and select.select([xl_out], [], [], 0)[0]:
                try:
                    data = os.read(xl_out, 1 << 16)
                except BlockingIOError:
                    data = None
                if data == b"":
                    xl_out = None
                elif data:
                    if len(banner) < len(xlstream.BANNER):
                        take = len(xlstream.BANNER) - len(banner)
                        banner, data = banner + data[:take], data[take:]
                        if not xlstream.BANNER.startswith(banner):
                            logger.warning("%s: %s wrote %r instead of its "
                                           "banner", ch.session.peer, argv[0],
                                           banner)
                            data, banner = banner + data, xlstream.BANNER
                    if data and ch.back is not None:
                        ch.back.xl_output(data)
                    elif data:
                        ch.send(data)
            if xl_out is None and proc.poll() is not None:
                ch.session.xl_gone = True
                break
            chunk = ch.recv_stream(CHUNK)
            if not chunk:
                _write_all(stdin, progress.flush())
                if before_close is not None:
                    before_close(progress)
                break
            out = progress.feed(chunk)
            _write_all(stdin, out)
            relayed += len(out)
            if ch.back is not None:
                # the checkpoints ended in this chunk are in xl's hands now
                ch.back.ack(progress.checkpoints)
    except (BrokenPipeError, ConnectionResetError) as e:
        logger.debug("%s: relay ended: %s", ch.session.peer, e)
        ch.session.xl_gone = True
    finally:
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        rc = proc.wait()
    return rc, relayed
