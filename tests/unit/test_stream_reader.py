"""Malformed and broken streams: clear errors naming the offset, bounded
memory (xl-side.md §3.2-§3.4; libxc REC_LENGTH_MAX 128 MiB)."""
import errno
import io
import struct
import tracemalloc

import pytest

from xen_remus_compat.errors import InputError
from xen_remus_compat.stream import libxc, libxl, records, simstream, writer, xl
from xen_remus_compat.stream.reader import Mark, StreamWalker, detect_format
from xen_remus_compat.stream.records import Record
from xen_remus_compat.stream.source import (StreamError,
                                            StreamReadError, StreamTruncated,
                                            open_source)

CFG = {"c_info": {"name": "t", "type": "pv"}}
XLH = writer.xl_header(CFG)
PRE = writer.preamble(CFG)              # xl hdr + libxl hdr + LIBXC_CONTEXT
IHDR = libxc.pack_image_header()
DHDR = libxc.pack_domain_header()
STATIC = libxc.x86_pv_info(8) + libxc.static_data_end() + \
    libxc.x86_pv_p2m_frames(4)
LIBXC_AT = len(PRE) + len(IHDR) + len(DHDR)


def walk(data, **kw):
    """All events, or (events so far, exception)."""
    events = []
    with open_source(data, source="s.bin") as src:
        w = StreamWalker(src, **kw)
        try:
            for ev in w.events():
                events.append(ev)
        except StreamError as exc:
            return events, exc, w
    return events, None, w


def error_of(data, **kw):
    _events, exc, _w = walk(data, **kw)
    assert exc is not None, "expected a stream error"
    return exc


def stream_with(*libxc_records):
    return PRE + IHDR + DHDR + b"".join(libxc_records)


def epoch(pfns=(0,), version=0):
    from xen_remus_compat.stream.simpage import page_bytes
    return (libxc.page_data([(p, page_bytes(p, version)) for p in pfns])
            + libxc.x86_tsc_info() + libxc.shared_info()
            + libxc.x86_pv_vcpu(libxc.X86_PV_VCPU_BASIC, 0, bytes(5168)))


# --- errors are InputErrors with source and offset ---------------------------
def test_stream_error_is_input_error_and_names_offset():
    exc = StreamError("bad", source="f.bin", offset=300)
    assert isinstance(exc, InputError) and exc.exit_status == 1
    assert str(exc) == "f.bin: offset 300 (0x12c): bad"
    exc = StreamReadError("read failed", source="f", offset=1, errno=errno.EIO)
    assert "EIO" in str(exc) and exc.errno == errno.EIO


# --- xl header ---------------------------------------------------------------
def test_bad_magic():
    data = b"Xen saved domain, xl format\n \0 X" + XLH[32:]
    exc = error_of(data, fmt="xl")
    assert "wrong magic number" in exc.message and exc.offset == 0


def test_wrong_byteorder():
    data = XLH[:32] + struct.pack(">I", 0x01020304) + XLH[36:]
    exc = error_of(data, fmt="xl")
    assert "wrong byte order" in exc.message and exc.offset == 32


def test_unsupported_mandatory_flag():
    data = XLH[:36] + struct.pack("<I", 3 | 8) + XLH[40:]
    exc = error_of(data, fmt="xl")
    assert "mandatory flag(s) 0x8" in exc.message and exc.offset == 36


def test_legacy_stream_without_streamv2_is_refused():
    data = XLH[:36] + struct.pack("<I", 1) + XLH[40:]
    exc = error_of(data + writer.LIBXL_HEADER, fmt="xl")
    assert "STREAMv2" in exc.message


def test_huge_optional_data_length_is_refused_before_reading():
    data = XLH[:44] + struct.pack("<I", 0xFFFFFFF0)
    exc = error_of(data, fmt="xl")
    assert "exceeds the limit" in exc.message and exc.offset == 44


def test_config_length_beyond_optional_data():
    cfg = b"{}\0"
    data = XLH[:32] + struct.pack("<IIIII", 0x01020304, 3, 0, 4 + 3, 99) + cfg
    exc = error_of(data + PRE[len(XLH):], fmt="xl")
    assert "Savefile truncated" in exc.message and exc.offset == 48


def test_json_config_must_parse():
    data = xl.pack_header("{not json") + PRE[len(XLH):]
    exc = error_of(data, fmt="xl")
    assert "not valid JSON" in exc.message and exc.offset == 52


@pytest.mark.parametrize("cut", [0, 1, 31, 47, 48, 51, len(XLH) - 1])
def test_truncated_xl_header(cut):
    exc = error_of(XLH[:cut], fmt="xl")
    assert isinstance(exc, StreamTruncated) and exc.offset in (0, 48)
    assert "xl header" in exc.message


# --- libxl and libxc headers ----------------------------------------------------
def test_bad_libxl_ident_version_and_endianness():
    at = len(XLH)
    bad = XLH + b"LibxlFmX" + PRE[at + 8:]
    exc = error_of(bad, fmt="xl")
    assert "Invalid ident" in exc.message and exc.offset == at
    bad = XLH + struct.pack(">QII", libxl.IDENT, 3, 0)
    exc = error_of(bad, fmt="xl")
    assert "Unexpected Version" in exc.message and exc.offset == at + 8
    bad = XLH + struct.pack(">QII", libxl.IDENT, 2, 1)
    exc = error_of(bad, fmt="xl")
    assert "big endian" in exc.message and exc.offset == at + 12


def test_bad_libxc_marker_version_and_page_shift():
    at = len(PRE)
    exc = error_of(PRE + b"\xff" * 7 + b"\x00" + IHDR[8:], fmt="xl")
    assert "Invalid marker" in exc.message and exc.offset == at
    exc = error_of(PRE + struct.pack(">QIIHHI", 2**64 - 1, libxc.ID, 4, 0, 0, 0))
    assert "Invalid Version" in exc.message and exc.offset == at + 12
    exc = error_of(PRE + struct.pack(">QIIHHI", 2**64 - 1, libxc.ID, 3, 1, 0, 0))
    assert "big endian" in exc.message
    exc = error_of(PRE + IHDR + struct.pack("<IHHII", 1, 16, 0, 4, 17))
    assert "page_shift 16" in exc.message and exc.offset == at + 24 + 4
    exc = error_of(PRE + IHDR + struct.pack("<IHHII", 7, 12, 0, 4, 17))
    assert "Unrecognised domain type" in exc.message


def test_detect_format():
    for fmt, data in (("xl", XLH), ("libxl", writer.LIBXL_HEADER), ("libxc", IHDR)):
        with open_source(data) as src:
            assert detect_format(src) == fmt
            assert src.offset == 0          # peek only
    with open_source(b"GARBAGE!xx") as src, pytest.raises(StreamError, match="not a migration stream"):
        detect_format(src)


# --- records: lengths, memory, types -------------------------------------------
def test_record_length_over_128_mib_is_refused_at_the_length_field():
    data = stream_with(STATIC, struct.pack("<II", libxc.PAGE_DATA, (128 << 20) + 1))
    exc = error_of(data)
    at = LIBXC_AT + len(STATIC)
    assert exc.offset == at + 4 and "exceeds max (0x8000000)" in exc.message
    assert not isinstance(exc, StreamTruncated)


def test_lying_length_costs_only_what_arrives():
    # A 128 MiB PAGE_DATA (allowed) with only 100 bytes behind it.
    data = stream_with(STATIC, struct.pack("<II", libxc.PAGE_DATA, 128 << 20),
                       b"\0" * 100)
    tracemalloc.start()
    try:
        exc = error_of(data)
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(exc, StreamTruncated)
    assert exc.offset == LIBXC_AT + len(STATIC) and exc.got == 100
    assert peak < 4 << 20


def test_libxl_record_length_is_capped_too():
    data = PRE[:-8] + struct.pack("<II", libxl.LIBXC_CONTEXT, 0xFFFFFFFF)
    exc = error_of(data)
    assert exc.offset == len(PRE) - 8 + 4 and "exceeds max" in exc.message


def test_unknown_mandatory_libxc_record():
    data = stream_with(STATIC, records.pack_record(0x13, b"x"))
    exc = error_of(data)
    assert "Mandatory record 0x00000013" in exc.message
    assert exc.offset == LIBXC_AT + len(STATIC)


def test_optional_libxc_record_is_skipped():
    data = stream_with(STATIC, records.pack_record(0x80000042, b"abc"),
                       epoch(), libxc.checkpoint(), writer.CHECKPOINT_END_RECORD)
    events, exc, w = walk(data)
    assert isinstance(exc, StreamTruncated) and exc.got == 0
    opt = [e for e in events if isinstance(e, Record) and e.type == 0x80000042]
    assert opt and opt[0].detail == "optional, ignored"
    assert w.checkpoints == 1


def test_unknown_libxl_record_even_optional_is_refused():
    data = stream_with(STATIC, epoch(), libxc.checkpoint(),
                       records.pack_record(0x80000001))
    exc = error_of(data)
    assert "Unrecognised libxl record 0x80000001" in exc.message


@pytest.mark.parametrize("rtype,name", [
    (libxc.HVM_CONTEXT, "HVM_CONTEXT"), (libxc.TOOLSTACK, "TOOLSTACK"),
    (libxc.CHECKPOINT_DIRTY_PFN_LIST, "CHECKPOINT_DIRTY_PFN_LIST")])
def test_records_a_pv_restorer_does_not_handle(rtype, name):
    exc = error_of(stream_with(STATIC, records.pack_record(rtype, b"12345678")))
    assert f"({name}) not handled" in exc.message


def test_page_data_before_static_data_end():
    data = stream_with(libxc.x86_pv_info(8), epoch())
    exc = error_of(data)
    assert "No STATIC_DATA_END seen" in exc.message


def test_p2m_frames_before_static_data_end():
    # The order the restorer needs: STATIC_DATA_END before X86_PV_P2M_FRAMES.
    data = stream_with(libxc.x86_pv_info(8), libxc.x86_pv_p2m_frames(4),
                       libxc.static_data_end())
    exc = error_of(data)
    assert "No STATIC_DATA_END seen" in exc.message
    assert exc.offset == LIBXC_AT + 16 + 8


def test_p2m_frames_before_pv_info():
    data = stream_with(libxc.static_data_end(), libxc.x86_pv_p2m_frames(4))
    assert "Not yet received X86_PV_INFO" in error_of(data).message


def test_page_outside_p2m():
    from xen_remus_compat.stream.simpage import page_bytes
    data = stream_with(STATIC, libxc.page_data([(4, page_bytes(4, 0))]))
    assert "outside domain maximum 0x3" in error_of(data).message


def test_page_data_wrong_size_points_into_the_body():
    rec = bytearray(libxc.page_data([(1, bytes(4096))]))
    rec[4:8] = struct.pack("<I", 8 + 8 + 4000)
    rec = bytes(rec[:8 + 16 + 4000]) + bytes(-(16 + 4000) % 8)
    exc = error_of(stream_with(STATIC, rec))
    assert "PAGE_DATA record wrong size" in exc.message


def test_bad_pv_info_and_vcpu_sizes():
    bad_info = records.pack_record(libxc.X86_PV_INFO, struct.pack("<BBHI", 8, 3, 0, 0))
    assert "Invalid X86_PV_INFO combination" in error_of(stream_with(bad_info)).message
    bad_vcpu = libxc.x86_pv_vcpu(libxc.X86_PV_VCPU_BASIC, 0, bytes(100))
    assert "bad size" in error_of(stream_with(STATIC, bad_vcpu)).message
    twice = stream_with(libxc.x86_pv_info(8), libxc.x86_pv_info(8))
    assert "Already received X86_PV_INFO" in error_of(twice).message


def test_non_zero_padding_strict_vs_lenient():
    # X86_PV_VCPU_EXTENDED with a 12-byte context: body 20, 4 bytes padding.
    data = stream_with(STATIC)
    raw = struct.pack("<IIII", libxc.X86_PV_VCPU_EXTENDED, 20, 0, 0) + \
        bytes(12) + b"\0\0\0\7"
    exc = error_of(data + raw)
    assert "padding" in exc.message
    assert exc.offset == LIBXC_AT + len(STATIC) + 8 + 20
    events, exc, w = walk(data + raw, strict=False)
    assert isinstance(exc, StreamTruncated) and exc.got == 0
    assert w.rules.warnings == [
        (LIBXC_AT + len(STATIC) + 8 + 20,
         "X86_PV_VCPU_EXTENDED record: padding contains non-zero bytes")]


def test_checkpoint_end_out_of_place():
    data = PRE[:-8] + writer.CHECKPOINT_END_RECORD
    assert "Unexpected CHECKPOINT_END" in error_of(data).message


def test_second_libxc_context_and_end_inside_checkpoint():
    base = stream_with(STATIC, epoch(), libxc.checkpoint())
    assert "second LIBXC_CONTEXT" in error_of(base + writer.LIBXC_CONTEXT_RECORD).message
    assert "END inside a checkpoint" in error_of(base + writer.LIBXL_END_RECORD).message


def test_emulator_record_in_pv_stream():
    base = stream_with(STATIC, epoch(), libxc.checkpoint())
    exc = error_of(base + libxl.emulator_context_record(b"QEVM"))
    assert "in a PV stream" in exc.message


def test_checkpoint_state_is_colo_only():
    base = stream_with(STATIC, epoch(), libxc.checkpoint())
    exc = error_of(base + records.pack_record(libxl.CHECKPOINT_STATE, bytes(8)))
    assert "COLO" in exc.message


# --- walking good streams ----------------------------------------------------------
def test_events_of_a_plain_stream_have_exact_offsets():
    s = simstream.build_stream(3, plain=True)
    events, exc, w = walk(s.data)
    assert exc is None and w.ended
    starts = [(e.offset, e.name if isinstance(e, Record) else e.kind)
              for e in events if not isinstance(e, Mark)]
    assert [o for o, _ in starts] == [o for o, _ in s.boundaries]
    marks = [(m.kind, m.offset) for m in events if isinstance(m, Mark)]
    assert marks[-1] == ("end", len(s.data))
    assert marks[0][0] == "libxc-end"


def test_checkpoint_marks_and_epochs():
    s = simstream.build_stream(5, [{1}, {2, 3}])
    events, exc, w = walk(s.data)
    assert isinstance(exc, StreamTruncated) and exc.got == 0
    assert exc.offset == len(s.data)
    assert [m.offset for m in events if isinstance(m, Mark)] == s.checkpoint_ends
    assert w.checkpoint_offsets == s.checkpoint_ends and w.checkpoints == 3
    pages = [e for e in events if isinstance(e, Record) and e.name == "PAGE_DATA"]
    assert [p.epoch for p in pages] == [0, 1, 2]


def test_bare_libxc_checkpoints_complete_at_checkpoint_record():
    s = simstream.build_stream(4, [{0}], fmt="libxc")
    events, exc, w = walk(s.data, fmt="auto")
    assert w.fmt == "libxc" and w.checkpoints == 2
    assert w.checkpoint_offsets == s.checkpoint_ends


def test_read_error_keeps_errno():
    data = simstream.build_stream(2, [{1}]).data

    class Flaky(io.RawIOBase):
        def __init__(self):
            self.pos = 0

        def readable(self):
            return True

        def read(self, n=-1):
            if self.pos >= 5000:
                raise OSError(errno.ECONNRESET, "Connection reset by peer")
            chunk = data[self.pos:min(self.pos + n, 5000)]
            self.pos += len(chunk)
            return chunk

    events, exc, w = walk(Flaky())
    assert isinstance(exc, StreamReadError) and exc.errno == errno.ECONNRESET
    assert exc.offset == 5000 and "ECONNRESET" in str(exc)


def test_fd_source_reads_a_pipe_in_pieces():
    import os
    import threading
    s = simstream.build_stream(6, [{1}])
    r, wfd = os.pipe()

    def feed():
        for i in range(0, len(s.data), 777):
            os.write(wfd, s.data[i:i + 777])
        os.close(wfd)
    t = threading.Thread(target=feed)
    t.start()
    try:
        events, exc, w = walk(r)
    finally:
        t.join()
        os.close(r)
    assert w.checkpoints == 2 and exc.got == 0 and exc.offset == len(s.data)


def test_missing_file_is_a_read_error_with_errno(tmp_path):
    with pytest.raises(StreamReadError) as ei:
        with open_source(tmp_path / "nope"):
            pass
    assert ei.value.errno == errno.ENOENT
