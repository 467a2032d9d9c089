"""The back channel of a ``remus-receiver`` connection: one acknowledgement
per checkpoint, and heartbeats both ways (docs/decisions.md, "Acknowledged
output commit").

**Negotiation**, in the legacy greeting, so that nothing changes for a peer
that does not ask (an unchanged legacy script, ``xen.remus.save``'s
``MigrationSocket``, ``remus --sync``) or does not know (an older receiver;
a stock ``xl migrate-receive -r`` over ssh has no greeting at all)::

    primary:  receive (backchannel 1) (heartbeat-ms 1250)\\n
    receiver: (ready receive (backchannel 1) (heartbeat-ms 1000))\\n  + xl banner

The primary offers the highest version it speaks and how often it wants the
backup's heartbeats; the receiver answers with the version it will speak
(at most the one offered) and how often it wants the primary's (a third of
its ``--silence-timeout``).  Items a side does not know are ignored.  The
plain ``receive\\n`` still gets ``(ready receive)\\n`` and no back channel;
an older receiver answers the offer with ``(err (type protocol) ...)``
(:func:`old_receiver_refusal`), and the primary reconnects with the plain
greeting.

**Backup -> primary**, after the banner: frames, :data:`FRAME` (16 bytes,
network byte order) then ``length`` bytes of payload::

    magic "XB" | version u8 | type u8 | length u32 | value u64

==========  ==========================================================
ACK         ``value``: a checkpoint number, once the whole checkpoint
            (through libxl's CHECKPOINT_END) has been handed to
            ``xl migrate-receive -r`` or applied by the simulated
            backup; one per checkpoint, in order
HEARTBEAT   ``value``: a counter; sent when nothing was sent for the
            primary's ``heartbeat-ms``
ERROR       payload: UTF-8 text, why the receiver refuses or ends the
            stream
XL_OUTPUT   payload: what xl wrote to its stdout after its banner
==========  ==========================================================

A type with bit 7 set is optional (skipped by a reader that does not know
it); any other unknown type, a bad magic or version, or a payload over
:data:`MAX_PAYLOAD` ends the channel (:class:`ProtocolError`).  Reads are
bounded: a frame is at most ``FRAME.size + MAX_PAYLOAD`` bytes buffered.

**Primary -> backup**: in the stream itself, and only right after a
``CHECKPOINT_END`` (where the primary waits for the ack and runs the commit
hooks, the guest running), :func:`heartbeat_record`: a record in libxc's
framing whose type (:data:`HEARTBEAT_TYPE`) no libxc or libxl record has;
the receiver removes it (:class:`~xen_remus_compat.stream.progress.Progress`
with ``strip``) before xl or the simulated backup reads the stream.
"""
from __future__ import annotations

import errno as errnos
import os
import re
import select
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from .. import errors
from ..log import logger

#: the versions of this protocol we speak (the highest is offered)
VERSIONS = (1,)
VERSION = max(VERSIONS)
MAGIC = b"XB"
FRAME = struct.Struct("!2sBBIQ")
ACK, HEARTBEAT, ERROR, XL_OUTPUT = 1, 2, 3, 4
NAMES = {ACK: "ack", HEARTBEAT: "heartbeat", ERROR: "error", XL_OUTPUT: "xl-output"}
OPTIONAL = 0x80
MAX_PAYLOAD = 4096
#: the primary's in-band heartbeat: a libxc-framed record of this type
#: ("XRHB" read as little-endian bytes: 42 48 52 58), 8 bytes of counter
HEARTBEAT_TYPE = 0x58524842
_RECORD = struct.Struct("<IIQ")
#: heartbeat periods are kept within these bounds, seconds
MIN_PERIOD, MAX_PERIOD = 0.05, 10.0
#: the backup's heartbeat period a primary asks for without a deadline
DEFAULT_PERIOD = 1.0


class ProtocolError(errors.CompatError):
    """The peer broke the back channel's framing."""


@dataclass
class Terms:
    """What both sides agreed on."""

    version: int
    #: seconds between the primary's heartbeats (the receiver's wish)
    primary_period: float
    #: seconds between the backup's heartbeats (the primary's wish)
    backup_period: float


def _period(ms: int) -> float:
    return min(MAX_PERIOD, max(MIN_PERIOD, ms / 1000.0))


def _items(text: str) -> dict:
    return dict(re.findall(r"\(([a-z][a-z0-9-]*) ([0-9]{1,9})\)", text))


# -- the greeting -----------------------------------------------------------------
def offer(backup_period: float, version: int = VERSION) -> bytes:
    """The primary's greeting asking for a back channel."""
    ms = int(round(min(MAX_PERIOD, max(MIN_PERIOD, backup_period)) * 1000))
    return b"receive (backchannel %d) (heartbeat-ms %d)\n" % (version, ms)


def parse_offer(line: bytes) -> Optional[Tuple[int, float]]:
    """``(version, backup period)`` of a greeting, None for the legacy
    ``receive``; raises :class:`ProtocolError` for anything else."""
    text = line.decode("latin-1").strip()
    if text == "receive":
        return None
    m = re.fullmatch(r"receive((?: \([a-z][a-z0-9-]*\ [0-9]{1,9}\))+)", text)
    items = _items(m.group(1)) if m else {}
    if "backchannel" not in items or int(items["backchannel"]) < 1:
        raise ProtocolError("expected 'receive'")
    return int(items["backchannel"]), _period(int(items.get("heartbeat-ms", 1000)))


def agree(offered: Tuple[int, float], primary_period: float) -> Terms:
    """The receiver's side: the highest version both speak."""
    version, backup_period = offered
    mine = max(v for v in VERSIONS if v <= version) if version >= min(VERSIONS) else None
    if mine is None:
        raise ProtocolError(f"back channel version {version} is not spoken here "
                            f"(versions {', '.join(map(str, VERSIONS))})")
    return Terms(mine, min(MAX_PERIOD, max(MIN_PERIOD, primary_period)), backup_period)


def ready(terms: Terms) -> bytes:
    return b"(ready receive (backchannel %d) (heartbeat-ms %d))\n" % (
        terms.version, int(round(terms.primary_period * 1000)))


def parse_ready(reply: bytes, backup_period: float) -> Optional[Terms]:
    """The receiver's answer: the terms, or None for a legacy ``(ready
    receive)`` (no back channel)."""
    text = reply.decode("latin-1").strip()
    items = _items(text)
    if "backchannel" not in items:
        return None
    version = int(items["backchannel"])
    if version not in VERSIONS:
        raise ProtocolError(f"the receiver chose back channel version {version}, "
                            f"which this remus does not speak")
    return Terms(version, _period(int(items.get("heartbeat-ms", 1000))), backup_period)


def old_receiver_refusal(reply: bytes) -> bool:
    """An older receiver's answer to the offer: it only knows ``receive``."""
    return reply.startswith(b"(err") and b"protocol" in reply and b"expected" in reply


# -- frames (backup -> primary) -----------------------------------------------------
def encode(kind: int, value: int = 0, payload: bytes = b"", version: int = VERSION) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes (at most {MAX_PAYLOAD})")
    return FRAME.pack(MAGIC, version, kind, len(payload), value) + payload


@dataclass
class Message:
    kind: int
    value: int
    payload: bytes = b""

    @property
    def name(self) -> str:
        return NAMES.get(self.kind, f"type {self.kind}")


class Decoder:
    """Frames from bytes as they arrive; holds at most one frame."""

    def __init__(self, version: int = VERSION) -> None:
        self.version = version
        self.buf = bytearray()

    def feed(self, data: bytes) -> List[Message]:
        self.buf += data
        out = []
        while len(self.buf) >= FRAME.size:
            magic, version, kind, length, value = FRAME.unpack_from(self.buf)
            if magic != MAGIC:
                raise ProtocolError(f"not a back channel frame: {bytes(self.buf[:8])!r}")
            if version != self.version:
                raise ProtocolError(f"frame of version {version} (agreed {self.version})")
            if length > MAX_PAYLOAD:
                raise ProtocolError(f"frame payload of {length} bytes "
                                    f"(at most {MAX_PAYLOAD})")
            if len(self.buf) < FRAME.size + length:
                break
            payload = bytes(self.buf[FRAME.size:FRAME.size + length])
            del self.buf[:FRAME.size + length]
            if kind not in NAMES:
                if kind & OPTIONAL:
                    continue
                raise ProtocolError(f"unknown frame type {kind}")
            out.append(Message(kind, value, payload))
        return out


# -- the primary's in-band heartbeat ------------------------------------------------------
def heartbeat_record(counter: int) -> bytes:
    return _RECORD.pack(HEARTBEAT_TYPE, 8, counter)


# -- the backup's end -----------------------------------------------------------------------
class BackupEnd:
    """What a receiver session sends back.  ``send`` writes bytes to the
    primary (the session's one thread calls every method).  A send that
    fails ends the back channel (``broken``), never the session: the backup
    must still fail over from what it received."""

    def __init__(self, send: Callable[[bytes], None], terms: Terms,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._send = send
        self.terms = terms
        self.clock = clock
        self.acked = 0
        self.beats = 0
        self.last_sent = clock()
        self.broken: Optional[str] = None

    def _out(self, data: bytes) -> None:
        if self.broken is not None:
            return
        try:
            self._send(data)
        except OSError as e:
            self.broken = str(e) or type(e).__name__
            logger.debug("back channel: sending failed: %s", self.broken)
        self.last_sent = self.clock()

    def ack(self, upto: int) -> None:
        """Acknowledge every checkpoint up to ``upto`` (one frame each)."""
        if upto <= self.acked:
            return
        self._out(b"".join(encode(ACK, n, version=self.terms.version)
                           for n in range(self.acked + 1, upto + 1)))
        self.acked = upto

    def beat_if_due(self) -> None:
        if self.clock() - self.last_sent >= self.terms.backup_period:
            self.beats += 1
            self._out(encode(HEARTBEAT, self.beats, version=self.terms.version))

    def error(self, text: str) -> None:
        self._out(encode(ERROR, 0, text.encode("utf-8", "replace")[:MAX_PAYLOAD],
                         version=self.terms.version))

    def xl_output(self, data: bytes) -> None:
        for at in range(0, len(data), MAX_PAYLOAD):
            self._out(encode(XL_OUTPUT, 0, data[at:at + MAX_PAYLOAD],
                             version=self.terms.version))


# -- the primary's end ----------------------------------------------------------------------
class BackupLost(errors.CheckpointFailed):
    """The backup went away, refused, or fell silent before an ack."""


class PrimaryEnd:
    """Acks and heartbeats on the primary.

    ``rfd`` is read for frames (the connection, or the TLS relay's socket
    pair), ``wfd`` is the stream the in-band heartbeats are written into.
    The engine marks the windows in which it may write them
    (:meth:`idle` ... :meth:`busy`: after a CHECKPOINT_END, while nothing
    else writes the stream); a thread (:meth:`start`) writes one whenever
    the stream was quiet for the receiver's period in such a window.
    """

    def __init__(self, rfd: int, wfd: int, terms: Terms, description: str,
                 pending: bytes = b"",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rfd, self.wfd = rfd, wfd
        self.terms = terms
        self.description = description
        self.clock = clock
        self.decoder = Decoder(terms.version)
        self.acked = 0
        #: CLOCK_MONOTONIC at which each ack was read, by checkpoint
        self.ack_times: dict = {}
        self.heard = clock()
        self.beats_heard = 0
        self.gone: Optional[str] = None
        self.refused: Optional[str] = None
        self.xl_said = b""
        self._pending = pending
        #: a protocol error met by :meth:`has_ack`, raised by wait_ack
        self._broken: Optional[ProtocolError] = None
        # heartbeats
        self._lock = threading.Lock()
        self._idle = False
        self._wrote = clock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.beats_sent = 0
        self.write_failed: Optional[str] = None

    # -- reading ----------------------------------------------------------------------
    def _take(self, data: bytes) -> None:
        now = self.clock()
        self.heard = now
        for msg in self.decoder.feed(data):
            if msg.kind == ACK:
                if msg.value != self.acked + 1:
                    raise ProtocolError(f"acknowledgement of checkpoint {msg.value} "
                                        f"after {self.acked}")
                self.acked = msg.value
                self.ack_times[msg.value] = now
                if len(self.ack_times) > 64:
                    self.ack_times.pop(min(self.ack_times))
            elif msg.kind == HEARTBEAT:
                self.beats_heard += 1
            elif msg.kind == ERROR:
                self.refused = msg.payload.decode("utf-8", "replace")
            elif msg.kind == XL_OUTPUT:
                self.xl_said = (self.xl_said + msg.payload)[-MAX_PAYLOAD:]
                logger.debug("%s: xl wrote %r", self.description, msg.payload[:200])

    def _read(self, wait: float) -> bool:
        """Read what arrived within ``wait`` s; False at EOF (``gone`` set)."""
        if self._pending:
            data, self._pending = self._pending, b""
            self._take(data)
        if self.gone is not None:
            return False
        try:
            r, _, _ = select.select([self.rfd], [], [], max(0.0, wait))
            if not r:
                return True
            data = os.read(self.rfd, 65536)
        except InterruptedError:
            return True
        except OSError as e:
            self.gone = (f"{self.description} closed the connection "
                         f"({os.strerror(e.errno)})" if e.errno in
                         (errnos.ECONNRESET, errnos.EPIPE, errnos.ENOTCONN)
                         else f"{self.description}: {e.strerror or e}")
            return False
        if not data:
            self.gone = f"{self.description} closed the connection"
            return False
        self._take(data)
        return True

    def _readable(self) -> bool:
        if self._pending or self.gone is not None:
            return True
        try:
            return bool(select.select([self.rfd], [], [], 0)[0])
        except (OSError, ValueError):
            return True         # _read says what is wrong

    def _why(self) -> str:
        if self.refused:
            return f"{self.description} refused the stream: {self.refused}"
        return self.gone or f"{self.description} is gone"

    def has_ack(self, n: int) -> bool:
        """Whether checkpoint ``n``'s ack is in, reading what has arrived
        without waiting.  True also when the backup is gone or broke the
        protocol: :meth:`wait_ack` then says so at once."""
        try:
            while self.acked < n and self._readable():
                if not self._read(0):
                    return True
        except ProtocolError as e:
            self._broken = e
            return True
        return self.acked >= n or self.refused is not None

    def wait_ack(self, n: int, silence: Optional[float]) -> float:
        """Block until checkpoint ``n`` is acknowledged; its CLOCK_MONOTONIC
        arrival time.  Raises :class:`BackupLost` when the backup closes the
        connection, sends an error, or sends nothing at all (no ack, no
        heartbeat) for ``silence`` seconds (None or 0: no limit)."""
        try:
            if self._broken is not None:
                raise self._broken
            # what came while we were not listening (the commit hooks, the
            # next epoch) first: silence is judged on what is there now
            while self.acked < n and self._readable():
                if not self._read(0):
                    raise BackupLost(f"{self._why()} before acknowledging "
                                     f"checkpoint {n}")
            while self.acked < n:
                if self.refused is not None:
                    raise BackupLost(f"{self._why()}; checkpoint {n} not acknowledged")
                wait = 0.5
                if silence:
                    left = self.heard + silence - self.clock()
                    if left <= 0:
                        raise BackupLost(
                            f"the backup stopped taking the stream: checkpoint {n} "
                            f"neither acknowledged nor a heartbeat heard for "
                            f"{self.clock() - self.heard:.1f} s (write timeout "
                            f"{max(1, int(silence * 1000))} ms)")
                    wait = min(wait, left)
                if not self._read(wait):
                    raise BackupLost(f"{self._why()} before acknowledging "
                                     f"checkpoint {n}")
        except ProtocolError as e:
            raise BackupLost(f"{self.description}: back channel broken: {e}") from e
        return self.ack_times.get(n, self.clock())

    def why_gone(self, wait: float = 0.0) -> Optional[str]:
        """Why the backup went away, if it did (after a failed write)."""
        deadline = self.clock() + wait
        try:
            while self.refused is None and self._read(max(0.0, deadline - self.clock())):
                if self.clock() >= deadline:
                    break
        except ProtocolError as e:
            return f"{self.description}: back channel broken: {e}"
        if self.refused is not None:
            return f"{self.description} refused the stream: {self.refused}"
        return self.gone

    # -- heartbeats -------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat_loop, daemon=True,
                                        name="remus-backchannel-heartbeat")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def idle(self) -> None:
        """The stream is ours between records: heartbeats may go into it."""
        with self._lock:
            self._wrote = self.clock()
            self._idle = True

    def busy(self) -> None:
        """libxc writes next: no more heartbeats (waits for one being
        written); raises when one could not be written whole."""
        with self._lock:
            self._idle = False
        if self.write_failed is not None:
            raise BackupLost(f"writing a heartbeat to {self.description}: "
                             f"{self.write_failed}")

    def _beat_loop(self) -> None:
        period = self.terms.primary_period
        while not self._stop.wait(min(0.05, period / 4)):
            with self._lock:
                if not self._idle or self.write_failed is not None:
                    continue
                if self.clock() - self._wrote < period:
                    continue
                self._write_beat()

    def _write_beat(self) -> None:
        try:
            _, w, _ = select.select([], [self.wfd], [], 0)
            if not w:               # our own data is queued: not silent
                self._wrote = self.clock()
                return
            self.beats_sent += 1
            view = memoryview(heartbeat_record(self.beats_sent))
            while view:             # never half a record in the stream
                view = view[os.write(self.wfd, view):]
            self._wrote = self.clock()
        except OSError as e:
            self.write_failed = e.strerror or str(e)
            self._idle = False
