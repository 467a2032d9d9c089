"""Byte layouts of the xl header, libxl and libxc framing, and the pieces the
engine writes (expected bytes from xl-side.md §3.1-§3.4, §5.3 and Appendix A)."""
import json
import struct

import pytest

from xen_remus_compat.stream import libxc, libxl, records, writer, xl
from xen_remus_compat.stream.records import RecordBodyError, Rules


def test_handshake_strings_have_their_wire_lengths():
    # §3.1: banner 54 bytes without NUL; the others with their NUL.
    assert len(xl.BANNER) == 54 and not xl.BANNER.endswith(b"\0")
    assert xl.BANNER == b"xl migration receiver ready, send binary domain data.\n"
    assert (len(xl.READY), len(xl.GO), len(xl.REPORT)) == (34, 44, 39)
    assert all(m.endswith(b"\0") for m in (xl.READY, xl.GO, xl.REPORT))


def test_xl_magic_and_header_layout():
    assert len(xl.MAGIC) == 32
    assert xl.MAGIC.endswith(bytes.fromhex("740a2000200d"))
    cfg = {"c_info": {"name": "web01", "domid": 0}}
    data = writer.xl_header(cfg)
    text = json.dumps(cfg, indent=4).encode() + b"\0"
    # §5.3 byte recipe
    expected = (xl.MAGIC + struct.pack("<IIII", 0x01020304, 3, 0, 4 + len(text))
                + struct.pack("<I", len(text)) + text)
    assert data == expected
    assert data[32:36] == bytes.fromhex("04030201")


def test_xl_header_text_config_has_only_streamv2():
    data = xl.pack_header("name = 'x'\n", json_config=False)
    assert struct.unpack_from("<I", data, 36)[0] == 2


def test_xl_header_without_config_still_has_the_length_word():
    # save_domain_core_writeconfig always adds the 4-byte config length.
    data = xl.pack_header(None)
    assert data[32:] == struct.pack("<IIII", 0x01020304, 2, 0, 4) + bytes(4)


def test_config_with_nul_is_refused():
    with pytest.raises(ValueError):
        xl.config_bytes(b"{}\0{}")


def test_libxl_header_bytes():
    assert writer.LIBXL_HEADER == bytes.fromhex(
        "4c6962786c466d74" "00000002" "00000000")
    assert struct.pack(">QII", 0x4c6962786c466d74, 2, 0) == writer.LIBXL_HEADER


@pytest.mark.parametrize("const,rtype", [
    (writer.LIBXC_CONTEXT_RECORD, 1), (writer.CHECKPOINT_END_RECORD, 4),
    (writer.LIBXL_END_RECORD, 0)])
def test_engine_records_are_8_byte_headers(const, rtype):
    assert const == struct.pack("<II", rtype, 0)


def test_preamble_and_blackhole_form():
    cfg = {"c_info": {"name": "a"}}
    full = writer.preamble(cfg)
    assert full == writer.xl_header(cfg) + writer.LIBXL_HEADER + \
        writer.LIBXC_CONTEXT_RECORD
    assert writer.preamble(cfg, blackhole=True) == bytes.fromhex(
        "4c6962786c466d740000000200000000" "0100000000000000")


def test_checkpoint_tail_puts_checkpoint_end_last():
    emu = libxl.emulator_context_record(b"QEVM")
    assert writer.checkpoint_tail([emu]) == emu + bytes.fromhex("0400000000000000")


@pytest.mark.parametrize("n", range(0, 17))
def test_record_padding_to_8(n):
    rec = records.pack_record(0x12345, b"x" * n)
    assert len(rec) % 8 == 0
    assert rec[:8] == struct.pack("<II", 0x12345, n)
    assert rec[8 + n:] == b"\0" * (-n % 8)


def test_libxc_headers_bytes():
    # §5.3 byte recipe.
    assert libxc.pack_image_header() == struct.pack(
        ">QIIHHI", 2 ** 64 - 1, 0x58454E46, 3, 0, 0, 0)
    assert libxc.pack_domain_header() == struct.pack("<IHHII", 1, 12, 0, 4, 17)


def test_page_data_layout():
    rec = libxc.page_data([(5, b"\1" * 4096), (9, b"\2" * 4096)])
    rtype, length = struct.unpack_from("<II", rec)
    assert (rtype, length) == (1, 8 + 16 + 8192)
    assert struct.unpack_from("<IIQQ", rec, 8) == (2, 0, 5, 9)
    pd = libxc.parse_page_data(rec[8:], libxc.State(seen_static_data_end=True),
                               Rules())
    assert pd.pfns == [5, 9] and pd.types == [0, 0]
    pages = list(pd.pages(rec[8:]))
    assert [(p, t, bytes(v)[:1]) for p, t, v in pages] == [(5, 0, b"\1"), (9, 0, b"\2")]


def test_page_data_types_without_data():
    # XTAB (0xF) carries no page; the length must account for that.
    body = struct.pack("<IIQQ", 2, 0, (0xF << 60) | 3, 4) + b"\7" * 4096
    pd = libxc.parse_page_data(body, libxc.State(seen_static_data_end=True), Rules())
    assert pd.pages_with_data == 1
    assert [(p, t, v is None) for p, t, v in pd.pages(body)] == \
        [(3, 0xF, True), (4, 0, False)]


@pytest.mark.parametrize("word,msg", [
    ((5 << 60) | 1, "Unknown type 0x5"),
    ((8 << 60) | 1, "Unknown type 0x8"),
])
def test_page_data_unknown_types(word, msg):
    body = struct.pack("<IIQ", 1, 0, word)
    with pytest.raises(RecordBodyError, match=msg):
        libxc.parse_page_data(body, libxc.State(seen_static_data_end=True), Rules())


def test_page_data_reserved_bits_strict_vs_lenient():
    body = struct.pack("<IIQ", 1, 0, (1 << 55) | 2) + bytes(4096)
    with pytest.raises(RecordBodyError, match="reserved bits"):
        libxc.parse_page_data(body, libxc.State(seen_static_data_end=True),
                              Rules(strict=True))
    rules = Rules(strict=False)
    pd = libxc.parse_page_data(body, libxc.State(seen_static_data_end=True), rules)
    assert pd.pfns == [2] and len(rules.warnings) == 1


def test_p2m_frames_length_formula():
    # 64-bit guest: 512 pfns per frame; 1025 pfns (0..1024) need 3 frames.
    rec = libxc.x86_pv_p2m_frames(1025)
    assert struct.unpack_from("<IIII", rec) == (3, 8 + 24, 0, 1024)


def test_vcpu_basic_sizes_are_xen_public_header_sizes():
    # sizeof(vcpu_guest_context_x86_64_t) / _x86_32_t in Xen 4.17's headers.
    assert libxc.VCPU_BASIC_SIZE == {8: 5168, 4: 2800}


def test_xenstore_pairs_bytes():
    assert libxl.xenstore_pairs(b"a\0b\0c\0d\0") == [(b"a", b"b"), (b"c", b"d")]
    with pytest.raises(RecordBodyError, match="not NUL terminated"):
        libxl.xenstore_pairs(b"a\0b")
    with pytest.raises(RecordBodyError, match="even number"):
        libxl.xenstore_pairs(b"a\0b\0c\0")


def test_record_type_tables_match_appendix_a():
    assert {r.name: c for c, r in libxl.RECORD_TYPES.items()} == {
        "END": 0, "LIBXC_CONTEXT": 1, "EMULATOR_XENSTORE_DATA": 2,
        "EMULATOR_CONTEXT": 3, "CHECKPOINT_END": 4, "CHECKPOINT_STATE": 5}
    assert {r.name: c for c, r in libxc.RECORD_TYPES.items()} == {
        "END": 0, "PAGE_DATA": 1, "X86_PV_INFO": 2, "X86_PV_P2M_FRAMES": 3,
        "X86_PV_VCPU_BASIC": 4, "X86_PV_VCPU_EXTENDED": 5,
        "X86_PV_VCPU_XSAVE": 6, "SHARED_INFO": 7, "X86_TSC_INFO": 8,
        "HVM_CONTEXT": 9, "HVM_PARAMS": 0xA, "TOOLSTACK": 0xB,
        "X86_PV_VCPU_MSRS": 0xC, "VERIFY": 0xD, "CHECKPOINT": 0xE,
        "CHECKPOINT_DIRTY_PFN_LIST": 0xF, "STATIC_DATA_END": 0x10,
        "X86_CPUID_POLICY": 0x11, "X86_MSR_POLICY": 0x12}
    assert libxc.MAX_BODY == 128 << 20 and libxc.MAX_BATCH == 1024


def test_read_banner_accepts_the_banner_in_pieces():
    import os
    r, w = os.pipe()
    try:
        os.write(w, xl.BANNER[:10])
        os.write(w, xl.BANNER[10:])
        writer.read_banner(r)
    finally:
        os.close(r)
        os.close(w)


def test_read_banner_quotes_what_arrived_instead():
    import os
    from xen_remus_compat.stream.source import StreamError
    r, w = os.pipe()
    try:
        os.write(w, b"bash: xl: command not found\n")
        os.close(w)
        w = None
        with pytest.raises(StreamError, match="banner contained unexpected "
                           "data .*command not found"):
            writer.read_banner(r)
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


def test_write_all_loops_over_short_writes(monkeypatch):
    import os
    calls = []

    def short_write(fd, data):
        calls.append(bytes(data[:3]))
        return min(3, len(data))
    monkeypatch.setattr(os, "write", short_write)
    writer.write_all(99, b"abcdefgh")
    assert b"".join(calls) == b"abcdefgh" and len(calls) == 3
