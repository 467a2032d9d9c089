"""Our checkpoint-aware verifier (xl-side.md §3.5, §5.5 acceptance rule)."""
import pytest

from xen_remus_compat.stream import libxc, records, simstream
from xen_remus_compat.stream.verify import verify


def test_plain_stream_is_ok_and_complete():
    s = simstream.build_stream(4, plain=True)
    rep = verify(s.data)
    assert rep.ok and rep.complete and rep.ended == "end"
    assert rep.fmt == "xl" and rep.guest == "pv" and not rep.warnings
    assert rep.bytes == len(s.data) and rep.checkpoints == 0


@pytest.mark.parametrize("fmt", ["xl", "libxl", "libxc"])
def test_remus_stream_ok_after_checkpoints_in_every_form(fmt):
    s = simstream.build_stream(4, [{1}, {2}], fmt=fmt)
    rep = verify(s.data)
    assert rep.fmt == fmt and rep.ok and not rep.complete
    assert rep.checkpoints == 3 and rep.checkpoint_offsets == s.checkpoint_ends
    assert rep.ended == "eof" and not rep.warnings


def test_hvm_stream_with_emulator_records():
    s = simstream.build_stream(3, [{0}], guest="hvm")
    rep = verify(s.data)
    assert rep.ok and rep.guest == "hvm" and rep.checkpoints == 2
    assert not rep.warnings


def test_every_cut_reports_the_last_complete_checkpoint():
    s = simstream.build_stream(5, [{0, 4}, {2}], batch=2)
    for off, _ in s.boundaries + [(len(s.data), "end")]:
        for cut in {off, max(off - 3, 0)}:
            rep = verify(s.data[:cut])
            k = s.last_complete(cut)
            assert rep.checkpoints == k, cut
            assert rep.ok == (k > 0), cut
            assert rep.last_complete_offset == (s.checkpoint_ends[k - 1]
                                                if k else None)
            assert rep.ended in ("eof", "truncated")


def test_malformed_record_after_checkpoints_is_invalid():
    s = simstream.build_stream(3, [{1}])
    rep = verify(s.data + records.pack_record(libxc.TOOLSTACK, b"x"))
    assert not rep.ok and rep.ended == "error" and rep.checkpoints == 2
    assert rep.error_offset == len(s.data) and "TOOLSTACK" in rep.error


def test_grammar_deviation_is_a_warning_or_an_error():
    # VCPU_BASIC before SHARED_INFO: the restorer copes, the 4.17 saver never
    # writes it (§3.5).
    s = simstream.build_stream(2, [])
    shared = libxc.shared_info(bytes(libxc.PAGE_SIZE))
    basic = libxc.x86_pv_vcpu(libxc.X86_PV_VCPU_BASIC, 0,
                              bytes(libxc.VCPU_BASIC_SIZE[8]))
    assert s.data.count(shared + basic) == 1
    data = s.data.replace(shared + basic, basic + shared)
    rep = verify(data)
    assert rep.ok and len(rep.warnings) == 1
    # tokens: X86_PV_INFO CPUID STATIC_DATA_END P2M PAGE TSC BASIC SHARED EXT
    assert "epoch 0" in rep.warnings[0]
    assert "record order ICDFPTBSE is not what libxl writes" in rep.warnings[0]
    rep = verify(data, grammar="error")
    assert not rep.ok and "is not what libxl writes" in rep.error
    assert verify(data, grammar="off").warnings == []


def test_grammar_epoch_without_vcpu_state_is_flagged():
    s = simstream.build_stream(3, [{1}])
    basic = libxc.x86_pv_vcpu(libxc.X86_PV_VCPU_BASIC, 0,
                              bytes([1]) * libxc.VCPU_BASIC_SIZE[8])
    ext = libxc.x86_pv_vcpu(libxc.X86_PV_VCPU_EXTENDED, 0, bytes(16))
    assert s.data.count(basic + ext) == 1          # epoch 1's vcpu records
    rep = verify(s.data.replace(basic + ext, b""))
    assert rep.ok and len(rep.warnings) == 1
    assert rep.warnings[0].startswith("epoch 1 ") and "order PTS " in rep.warnings[0]


def test_lenient_mode_accepts_reserved_bits_with_warning():
    s = simstream.build_stream(2, [])
    rec = libxc.x86_tsc_info()
    data = s.data.replace(rec, rec[:-4] + b"\1\0\0\0")
    assert not verify(data).ok
    rep = verify(data, strict=False)
    assert rep.ok and any("reserved" in w for w in rep.warnings)


def test_on_event_sees_every_record_in_order():
    s = simstream.build_stream(3, plain=True)
    seen = []
    verify(s.data, on_event=lambda ev: seen.append(ev))
    offsets = [getattr(e, "offset") for e in seen
               if type(e).__name__ in ("Record", "Header")]
    assert offsets == [o for o, _ in s.boundaries]
