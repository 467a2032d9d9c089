"""The back channel's framing (``remus/backchannel.py``): the greeting's
negotiation, the backup's frames, the primary's in-band heartbeat and how
the receiver removes it, and both ends' behaviour on a socket pair
(docs/decisions.md, "Acknowledged output commit")."""
import os
import random
import socket
import threading
import time

import pytest

from xen_remus_compat.remus import backchannel as bc
from xen_remus_compat.remus import transport
from xen_remus_compat.remus.receiver import _err_reply
from xen_remus_compat.stream import libxl, progress, simstream, writer
from xen_remus_compat.stream.xl import BANNER


# -- the greeting ---------------------------------------------------------------------
def test_offer_and_answer_round_trip():
    line = bc.offer(1.25)
    assert line == b"receive (backchannel 1) (heartbeat-ms 1250)\n"
    offered = bc.parse_offer(line)
    assert offered == (1, 1.25)
    terms = bc.agree(offered, primary_period=1.0)
    assert (terms.version, terms.primary_period, terms.backup_period) == (1, 1.0, 1.25)
    reply = bc.ready(terms)
    assert reply == b"(ready receive (backchannel 1) (heartbeat-ms 1000))\n"
    back = bc.parse_ready(reply, backup_period=1.25)
    assert back == terms


def test_the_legacy_greeting_gets_no_back_channel():
    assert bc.parse_offer(b"receive\n") is None
    assert bc.parse_offer(b"receive\r\n") is None
    assert bc.parse_ready(b"(ready receive)\n", 1.0) is None


@pytest.mark.parametrize("line", [b"", b"send\n", b"receive please\n",
                                  b"receive (heartbeat-ms 100)\n",
                                  b"receive (backchannel 0)\n",
                                  b"receive (backchannel x)\n",
                                  b"receive (backchannel 1)(heartbeat-ms 9)\n",
                                  b"receive (backchannel 99999999999)\n"])
def test_anything_else_is_a_protocol_error(line):
    with pytest.raises(bc.ProtocolError):
        bc.parse_offer(line)


def test_a_newer_primary_gets_our_version_and_unknown_items_are_ignored():
    offered = bc.parse_offer(b"receive (backchannel 7) (heartbeat-ms 500) (window 4)\n")
    assert offered == (7, 0.5)
    assert bc.agree(offered, 1.0).version == bc.VERSION
    # a receiver choosing a version we do not speak is refused
    with pytest.raises(bc.ProtocolError):
        bc.parse_ready(b"(ready receive (backchannel 2) (heartbeat-ms 10))\n", 1.0)


def test_periods_are_bounded():
    assert bc.parse_offer(b"receive (backchannel 1) (heartbeat-ms 1)\n")[1] == bc.MIN_PERIOD
    assert bc.parse_offer(b"receive (backchannel 1) (heartbeat-ms 999999)\n")[1] \
        == bc.MAX_PERIOD
    assert bc.agree((1, 1.0), 0.0).primary_period == bc.MIN_PERIOD


def test_an_old_receivers_refusal_is_recognised():
    # what a receiver without a back channel answers the offer
    old = _err_reply("protocol", "expected 'receive'")
    assert bc.old_receiver_refusal(old)
    assert not bc.old_receiver_refusal(_err_reply("busy", "too many connections"))
    assert not bc.old_receiver_refusal(b"(ready receive)\n")


# -- frames ------------------------------------------------------------------------------
def test_frames_decode_at_any_split():
    frames = [bc.encode(bc.ACK, 1), bc.encode(bc.HEARTBEAT, 7),
              bc.encode(bc.ACK, 2), bc.encode(bc.ERROR, 0, "refused: busy".encode()),
              bc.encode(bc.XL_OUTPUT, 0, b"x" * bc.MAX_PAYLOAD),
              bc.encode(0x81, 5, b"optional, skipped"), bc.encode(bc.ACK, 3)]
    data = b"".join(frames)
    rng = random.Random(3)
    for _ in range(20):
        dec, got, i = bc.Decoder(), [], 0
        while i < len(data):
            n = rng.choice([1, 2, 15, 16, 17, 100, 5000])
            got += dec.feed(data[i:i + n])
            i += n
            assert len(dec.buf) < bc.FRAME.size + bc.MAX_PAYLOAD
        assert [(m.name, m.value) for m in got] == [
            ("ack", 1), ("heartbeat", 7), ("ack", 2), ("error", 0), ("xl-output", 0),
            ("ack", 3)]
        assert got[3].payload == b"refused: busy"


@pytest.mark.parametrize("raw,why", [
    (b"(err (type protocol))\n" + bytes(16), "not a back channel frame"),
    (bc.FRAME.pack(bc.MAGIC, 2, bc.ACK, 0, 1), "version 2"),
    (bc.FRAME.pack(bc.MAGIC, 1, bc.ACK, bc.MAX_PAYLOAD + 1, 1), "payload"),
    (bc.FRAME.pack(bc.MAGIC, 1, 9, 0, 1), "unknown frame type 9"),
])
def test_bad_frames_end_the_channel_without_buffering(raw, why):
    dec = bc.Decoder()
    with pytest.raises(bc.ProtocolError, match=why):
        dec.feed(raw)


def test_payloads_are_bounded_when_encoding():
    with pytest.raises(ValueError):
        bc.encode(bc.ERROR, 0, b"x" * (bc.MAX_PAYLOAD + 1))


# -- the primary's heartbeat in the stream ------------------------------------------------
def _with_heartbeats(s, per_checkpoint=3):
    hdr = len(writer.xl_header(s.config))
    out, prev = bytearray(), hdr
    for k, end in enumerate(s.checkpoint_ends, 1):
        out += s.data[prev:end] + b"".join(bc.heartbeat_record(k * 10 + i)
                                           for i in range(per_checkpoint))
        prev = end
    return bytes(out + s.data[prev:]), s.data[hdr:]


def test_heartbeat_record_is_libxc_framed_and_unknown_to_both_layers():
    rec = bc.heartbeat_record(5)
    assert len(rec) == 16 and int.from_bytes(rec[:4], "little") == bc.HEARTBEAT_TYPE
    assert int.from_bytes(rec[4:8], "little") == 8
    assert bc.HEARTBEAT_TYPE not in libxl.RECORD_TYPES
    from xen_remus_compat.stream import libxc
    assert bc.HEARTBEAT_TYPE not in libxc.RECORD_TYPES


@pytest.mark.parametrize("guest", ["pv", "hvm"])
def test_the_receiver_strips_heartbeats_at_any_split(guest):
    s = simstream.build_stream(100, [{1, 2}, {3}, {5, 6, 7}], guest=guest, batch=16)
    data, want = _with_heartbeats(s)
    rng = random.Random(11)
    for _ in range(30):
        seen = []
        p = progress.Progress(on_checkpoint=seen.append, strip={bc.HEARTBEAT_TYPE})
        out, i = bytearray(), 0
        while i < len(data):
            n = rng.choice([1, 3, 8, 9, 16, 100, 4096, 70000])
            out += p.feed(data[i:i + n])
            i += n
        out += p.flush()
        assert bytes(out) == want
        assert seen == [1, 2, 3, 4] and p.stripped == 12


def test_checkpoint_end_passes_at_once_when_stripping():
    """The ack may go as soon as CHECKPOINT_END is passed on: it is never
    held back with the libxc header bytes."""
    s = simstream.build_stream(10, [{1}])
    hdr = len(writer.xl_header(s.config))
    p = progress.Progress(strip={bc.HEARTBEAT_TYPE})
    out = p.feed(s.data[hdr:s.checkpoint_ends[0]])
    assert p.checkpoints == 1 and out == s.data[hdr:s.checkpoint_ends[0]]


def test_without_strip_the_bytes_are_returned_unchanged():
    s = simstream.build_stream(10, [{1}])
    data, _ = _with_heartbeats(s, 0)
    p = progress.Progress()
    assert p.feed(data) is data


# -- the two ends on a socket pair ---------------------------------------------------------
class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def pair_terms(primary=0.1, backup=0.1):
    return bc.Terms(1, primary, backup)


@pytest.fixture
def sockets():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_backup_end_acks_each_checkpoint_once_in_order(sockets):
    a, b = sockets
    clock = Clock()
    end = bc.BackupEnd(b.sendall, pair_terms(backup=1.0), clock=clock)
    end.ack(0)
    end.ack(3)
    end.ack(2)
    end.beat_if_due()              # just sent: no beat
    clock.t += 1.0
    end.beat_if_due()
    a.setblocking(False)
    msgs = bc.Decoder().feed(a.recv(4096))
    assert [(m.name, m.value) for m in msgs] == [("ack", 1), ("ack", 2), ("ack", 3),
                                                 ("heartbeat", 1)]


def test_backup_end_survives_a_gone_primary(sockets):
    a, b = sockets
    a.close()
    end = bc.BackupEnd(b.sendall, pair_terms())
    end.ack(1)                      # EPIPE: noted, not raised
    assert end.broken and end.acked == 1
    end.error("x")


def primary(sock, **kw):
    return bc.PrimaryEnd(sock.fileno(), sock.fileno(), pair_terms(**kw), "the backup")


def test_wait_ack_returns_the_time_the_ack_was_read(sockets):
    a, b = sockets
    end = primary(a)
    b.sendall(bc.encode(bc.HEARTBEAT, 1) + bc.encode(bc.ACK, 1))
    t0 = time.monotonic()
    at = end.wait_ack(1, silence=5)
    assert t0 <= at <= time.monotonic() and end.beats_heard == 1

    def later():
        time.sleep(0.2)
        b.sendall(bc.encode(bc.ACK, 2))
    threading.Thread(target=later).start()
    t0 = time.monotonic()
    assert end.wait_ack(2, silence=5) - t0 >= 0.15


def test_acks_out_of_order_break_the_channel(sockets):
    a, b = sockets
    b.sendall(bc.encode(bc.ACK, 2))
    with pytest.raises(bc.BackupLost, match="acknowledgement of checkpoint 2 after 0"):
        primary(a).wait_ack(1, silence=5)


def test_a_closed_connection_before_the_ack(sockets):
    a, b = sockets
    b.sendall(bc.encode(bc.ACK, 1))
    b.close()
    end = primary(a)
    end.wait_ack(1, silence=5)
    with pytest.raises(bc.BackupLost, match="closed the connection before acknowledging "
                                            "checkpoint 2"):
        end.wait_ack(2, silence=5)


def test_an_error_from_the_receiver_is_the_reason(sockets):
    a, b = sockets
    b.sendall(bc.encode(bc.ERROR, 0, b"refusing a second stream for domain 'x'"))
    with pytest.raises(bc.BackupLost, match="refusing a second stream"):
        primary(a).wait_ack(1, silence=5)
    b.sendall(bc.encode(bc.ERROR, 0, b"bye"))
    assert "refused the stream" in primary(a).why_gone(0.5)


def test_silence_is_the_write_deadline(sockets):
    a, b = sockets
    end = primary(a)
    t0 = time.monotonic()
    with pytest.raises(bc.BackupLost, match="stopped taking the stream: checkpoint 1 "
                                            "neither acknowledged nor a heartbeat"):
        end.wait_ack(1, silence=0.3)
    assert 0.25 <= time.monotonic() - t0 < 5


def test_heartbeats_keep_a_slow_ack_waiting(sockets):
    a, b = sockets
    end = primary(a)
    stop = threading.Event()

    def beats():
        for i in range(20):
            if stop.wait(0.1):
                return
            b.sendall(bc.encode(bc.HEARTBEAT, i))
        b.sendall(bc.encode(bc.ACK, 1))
    threading.Thread(target=beats, daemon=True).start()
    t0 = time.monotonic()
    end.wait_ack(1, silence=1.0)       # 2 s for the ack, never 1 s silent
    stop.set()
    assert time.monotonic() - t0 > 1.0 and end.beats_heard >= 10


def test_what_came_while_not_listening_is_read_before_silence_is_judged(sockets):
    """The primary reads the channel only while it waits for an ack; the
    backup's heartbeats that arrived meanwhile (during the commit hooks
    and the next epoch) show it alive."""
    a, b = sockets
    end = primary(a)
    time.sleep(1.2)                    # "not listening", longer than the limit
    b.sendall(bc.encode(bc.HEARTBEAT, 1))

    def ack():
        time.sleep(0.1)
        b.sendall(bc.encode(bc.ACK, 1))
    threading.Thread(target=ack).start()
    end.wait_ack(1, silence=1.0)


def test_primary_heartbeats_go_into_the_stream_only_while_idle(sockets):
    a, b = sockets
    end = primary(a, primary=0.05)
    end.start()
    try:
        time.sleep(0.3)
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(100)                # busy (libxc's turn): nothing
        end.idle()
        time.sleep(0.4)
        end.busy()
        time.sleep(0.1)
        data = b.recv(4096)
        time.sleep(0.2)
        with pytest.raises(BlockingIOError):
            b.recv(100)                # busy again: nothing more
    finally:
        end.stop()
    assert data and len(data) % 16 == 0
    p = progress.Progress(strip={bc.HEARTBEAT_TYPE})
    p._want, p._need = "libxc-rec", 8      # right after a CHECKPOINT_END
    assert p.feed(data) == b"" and p.stripped == len(data) // 16 >= 3


# -- TcpTransport against an older receiver ------------------------------------------------
def test_an_older_receiver_is_reconnected_with_the_plain_greeting():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(2)
    greetings = []

    def old_receiver():
        for _ in range(2):
            conn, _ = srv.accept()
            line = b""
            while not line.endswith(b"\n"):
                line += conn.recv(1)
            greetings.append(line)
            if line.strip() != b"receive":
                conn.sendall(_err_reply("protocol", "expected 'receive'"))
            else:
                conn.sendall(b"(ready receive)\n" + BANNER)
                time.sleep(0.5)
            conn.close()
    t = threading.Thread(target=old_receiver, daemon=True)
    t.start()
    tp = transport.TcpTransport("127.0.0.1", srv.getsockname()[1], acks=True)
    try:
        tp.connect(5)
        assert tp.backchannel is None and tp.old_receiver
        assert greetings == [bc.offer(bc.DEFAULT_PERIOD), b"receive\n"]
    finally:
        tp.close()
        srv.close()
