"""The receiver fails over to the last complete checkpoint, never a partial
epoch (xl-side.md §3.6), and fails clearly before the first one."""
import errno
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xen_remus_compat.stream import libxc, simpage, simstream, writer, xl
from xen_remus_compat.stream.receiver import ReceiveFailed, receive


def cut_points(s):
    """Every record boundary, and points inside headers and bodies."""
    points = {0, len(s.data)}
    for off, _name in s.boundaries:
        for d in (-1, 0, 1, 4, 7, 8, 9, 24, 4096, 5000):
            if 0 <= off + d <= len(s.data):
                points.add(off + d)
    return sorted(points)


def check_cut(s, cut, **kw):
    k = s.last_complete(cut)
    if k == 0:
        with pytest.raises(ReceiveFailed) as ei:
            receive(s.data[:cut], sim=True, **kw)
        assert ei.value.result.checkpoints == 0
        assert "before the first checkpoint" in ei.value.message
        return None
    res = receive(s.data[:cut], sim=True, **kw)
    assert res.failover_ok and res.checkpoints == k, (cut, k)
    assert res.committed_offset == s.checkpoint_ends[k - 1]
    assert res.memory == s.memory(k), cut
    assert res.pages_per_checkpoint == s.pages_per_checkpoint[:k]
    assert res.ended in ("eof", "truncated")
    return res


def test_every_cut_of_a_three_checkpoint_stream():
    s = simstream.build_stream(6, [{1, 2}, {2, 5}], live_rounds=[{0, 3}],
                               batch=2)
    seen = set()
    for cut in cut_points(s):
        res = check_cut(s, cut)
        seen.add(None if res is None else res.checkpoints)
    assert seen == {None, 1, 2, 3}


def test_every_cut_of_the_blackhole_form():
    s = simstream.build_stream(4, [{0}, {3}], fmt="libxl", batch=3)
    for cut in cut_points(s):
        check_cut(s, cut, fmt="libxl")


def test_partial_epoch_pages_are_discarded():
    s = simstream.build_stream(8, [{1, 2, 3}])
    # Cut right before the second epoch's CHECKPOINT_END: the CHECKPOINT has
    # arrived, CHECKPOINT_END has not.
    cut = s.checkpoint_ends[1] - 8
    res = receive(s.data[:cut], sim=True)
    assert res.checkpoints == 1 and res.discarded_pages == 3
    assert res.page_versions() == {p: 0 for p in range(8)}
    assert res.ended == "eof"


def test_remus_stream_ended_by_libxc_end_fails_over_without_that_epoch():
    s = simstream.build_stream(4, [{1}])
    tail = libxc.page_data([(2, simpage.page_bytes(2, 9))]) + libxc.end()
    res = receive(s.data + tail + writer.LIBXL_END_RECORD, sim=True)
    assert res.ended == "libxc-end" and res.checkpoints == 2
    assert res.page_versions()[2] == 0 and res.discarded_pages == 1


def test_plain_stream_is_complete():
    s = simstream.build_stream(5, plain=True, live_rounds=[{4}])
    res = receive(s.data, sim=True)
    assert res.plain and res.failover_ok and res.ended == "end"
    assert res.checkpoints == 0 and res.pages_per_checkpoint == [6]
    assert res.memory == s.memory(1)


def test_plain_stream_missing_libxl_tail_still_has_its_image():
    # xl -r stops reading at libxc END (xl-side §3.6).
    s = simstream.build_stream(3, plain=True)
    res = receive(s.data[:-8], sim=True)
    assert res.plain and res.failover_ok and res.ended == "eof"


def test_failure_before_first_checkpoint_carries_offset_and_result():
    s = simstream.build_stream(3, [{1}])
    cut = s.checkpoint_ends[0] - 3
    with pytest.raises(ReceiveFailed) as ei:
        receive(s.data[:cut])
    exc = ei.value
    assert exc.exit_status == 1 and exc.result.ended == "truncated"
    assert exc.offset == s.checkpoint_ends[0] - 8      # the cut CHECKPOINT_END
    assert exc.result.config["c_info"]["name"] == "simguest"


def test_garbage_after_a_checkpoint_fails_over():
    s = simstream.build_stream(3, [{1}])
    bad = s.data + b"\x13\0\0\0\0\0\0\0"           # unknown mandatory record
    res = receive(bad, sim=True)
    assert res.checkpoints == 2 and res.ended == "error"
    assert res.error_offset == len(s.data)
    assert "Mandatory record" in res.error


def test_read_error_after_checkpoint_fails_over_and_keeps_errno():
    s = simstream.build_stream(3, [{1}])
    limit = s.checkpoint_ends[0] + 100

    class Reset(io.RawIOBase):
        pos = 0

        def readable(self):
            return True

        def read(self, n=-1):
            if self.pos >= limit:
                raise OSError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))
            chunk = s.data[self.pos:min(self.pos + n, limit)]
            self.pos += len(chunk)
            return chunk

    res = receive(Reset(), sim=True)
    assert res.ended == "read-error" and res.errno == errno.ECONNRESET
    assert res.checkpoints == 1 and res.memory == s.memory(1)
    assert res.error_offset == limit


def test_banner_goes_to_the_back_channel_first():
    s = simstream.build_stream(2, [])
    back = io.BytesIO()
    res = receive(s.data, back_channel=back)
    assert back.getvalue() == xl.BANNER
    assert res.checkpoints == 1 and res.memory is None


def test_banner_on_an_fd():
    r, w = os.pipe()
    try:
        receive(simstream.build_stream(1, []).data, back_channel=w)
        assert os.read(r, 100) == xl.BANNER
    finally:
        os.close(r)
        os.close(w)


def test_missing_vcpu0_state_means_no_failover():
    s = simstream.build_stream(2, [], vcpus=1)
    basic = libxc.x86_pv_vcpu(libxc.X86_PV_VCPU_BASIC, 0,
                              bytes([0]) * libxc.VCPU_BASIC_SIZE[8])
    data = s.data.replace(basic, libxc.x86_pv_vcpu(
        libxc.X86_PV_VCPU_BASIC, 1, bytes(libxc.VCPU_BASIC_SIZE[8])))
    with pytest.raises(ReceiveFailed, match="vcpu0's basic state"):
        receive(data)


def test_lenient_receiver_warns_about_reserved_fields():
    s = simstream.build_stream(2, [])
    rec = libxc.x86_tsc_info()
    bad = rec[:-4] + b"\1\0\0\0"               # reserved word of TSC_INFO
    res = receive(s.data.replace(rec, bad))
    assert res.failover_ok and len(res.warnings) == 1
    assert "reserved field of X86_TSC_INFO" in res.warnings[0]
    with pytest.raises(ReceiveFailed):
        receive(s.data.replace(rec, bad), strict=True)


def test_on_checkpoint_callback_and_summary():
    s = simstream.build_stream(3, [{0}, {1}])
    seen = []
    res = receive(s.data, sim=True,
                  on_checkpoint=lambda n, r: seen.append((n, r.committed_offset)))
    assert seen == list(zip((1, 2, 3), s.checkpoint_ends))
    d = res.as_dict()
    assert d["checkpoints"] == 3 and d["memory_pages"] == 3
    assert d["bad_sim_pages"] == 0 and d["domain_name"] == "simguest"
    assert "memory" not in d


def test_sim_mode_flags_foreign_pages():
    data = simstream.build_stream(2, []).data
    page = simpage.page_bytes(1, 0)
    res = receive(data.replace(page, page[:100] + b"X" + page[101:]), sim=True)
    assert res.bad_sim_pages() == [1]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(),
       nr_pages=st.integers(1, 24),
       nr_dirty=st.integers(0, 4),
       batch=st.integers(1, 6),
       fmt=st.sampled_from(["xl", "libxl"]))
def test_property_failover_memory_is_the_last_complete_checkpoint(
        data, nr_pages, nr_dirty, batch, fmt):
    pfn = st.integers(0, nr_pages - 1)
    dirty = [data.draw(st.sets(pfn, max_size=nr_pages)) for _ in range(nr_dirty)]
    live = data.draw(st.lists(st.sets(pfn, min_size=1), max_size=2))
    s = simstream.build_stream(nr_pages, dirty, live_rounds=live, batch=batch,
                               fmt=fmt)
    cut = data.draw(st.one_of(
        st.integers(0, len(s.data)),
        st.sampled_from([o for o, _ in s.boundaries] + [len(s.data)])))
    res = check_cut(s, cut, fmt=fmt)
    if res is not None:
        # never a partial epoch: every page is at its version of checkpoint k
        assert res.page_versions() == s.versions[res.checkpoints - 1]


def test_pages_without_data_do_not_change_memory():
    import struct
    s = simstream.build_stream(3, [])
    body = struct.pack("<IIQQ", 2, 0, (0xF << 60) | 1, 2) + simpage.page_bytes(2, 5)
    epoch = (libxc.pack_record(libxc.PAGE_DATA, body) + libxc.x86_tsc_info()
             + libxc.shared_info() + libxc.x86_pv_vcpu(
                 libxc.X86_PV_VCPU_BASIC, 0, bytes(libxc.VCPU_BASIC_SIZE[8]))
             + libxc.checkpoint() + writer.CHECKPOINT_END_RECORD)
    res = receive(s.data + epoch, sim=True)
    assert res.checkpoints == 2 and res.pages_per_checkpoint == [3, 1]
    assert res.page_versions() == {0: 0, 1: 0, 2: 5}
