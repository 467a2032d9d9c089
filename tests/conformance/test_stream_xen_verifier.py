"""Our streams against Xen's own verifier classes, driven checkpoint-aware
(xl-side.md §5.5), and the stock ``verify-stream-v2`` where it applies."""
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import tier_unavailable
from xen_remus_compat.stream import libxc, records, simstream
from xen_remus_compat.stream.verify import XEN_PYTHON, verify, verify_with_xen

SCRIPT = "/usr/lib/xen-4.17/bin/verify-stream-v2"


@pytest.fixture(autouse=True)
def _xen_tools():
    if not os.path.isfile(os.path.join(XEN_PYTHON, "xen", "migration", "libxl.py")):
        tier_unavailable("conformance", f"Xen's python migration tools missing "
                         f"under {XEN_PYTHON} (install xen-utils-4.17)")


def stock(data, fmt, tmp_path):
    """Run Xen's verify-stream-v2 as documented in xl-side.md §5.1."""
    path = tmp_path / f"s.{fmt}"
    path.write_bytes(data)
    env = dict(os.environ, PYTHONPATH=XEN_PYTHON)
    proc = subprocess.run(["/usr/bin/python3", SCRIPT, "-v", "-f", fmt, "-i",
                           str(path)], capture_output=True, text=True, env=env,
                          timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("fmt", ["xl", "libxl", "libxc"])
def test_plain_streams_pass_stock_verifier_and_ours(fmt, tmp_path):
    s = simstream.build_stream(8, plain=True, fmt=fmt, live_rounds=[{2, 3}])
    if not os.path.isfile(SCRIPT):
        tier_unavailable("conformance", f"{SCRIPT} missing")
    rc, text = stock(s.data, fmt, tmp_path)
    assert rc == 0, text
    rep = verify_with_xen(s.data, fmt=fmt)
    assert rep.ok and rep.complete and rep.checkpoints == 0, rep.error
    assert any("Squashed" in line for line in rep.log)


@pytest.mark.parametrize("fmt", ["xl", "libxl", "libxc"])
def test_two_checkpoint_streams_pass_checkpoint_aware(fmt):
    s = simstream.build_stream(8, [{1, 5}], fmt=fmt)
    rep = verify_with_xen(s.data, fmt=fmt)
    assert rep.ok and rep.checkpoints == 2 and rep.ended == "eof", rep.error
    if fmt == "xl":
        assert rep.config["c_info"]["name"] == "simguest"
        assert rep.log[0] == "Processed xl header"
    if fmt != "libxc":
        assert rep.log.count("Libxl Record: Checkpoint end, length 0") == 2


def test_stock_verifier_cannot_check_remus_streams(tmp_path):
    # xl-side.md §0.7/§5.2: CHECKPOINT_END is parsed as a libxc record.
    if not os.path.isfile(SCRIPT):
        tier_unavailable("conformance", f"{SCRIPT} missing")
    s = simstream.build_stream(4, [{1}])
    rc, text = stock(s.data, "xl", tmp_path)
    assert rc == 1
    assert "X86_PV_VCPU_basic record length must be at least 8 bytes" in text


def test_hvm_xenstore_data_needs_the_python3_fix(tmp_path):
    s = simstream.build_stream(4, plain=True, guest="hvm")
    if os.path.isfile(SCRIPT):
        rc, text = stock(s.data, "xl", tmp_path)
        assert rc == 1 and "Data not NUL terminated" in text
    rep = verify_with_xen(s.data)
    assert rep.ok and rep.complete, rep.error
    assert "  'physmap/1/name' = 'vga.vram'" in rep.log
    remus = simstream.build_stream(4, [{0}, {3}], guest="hvm")
    rep = verify_with_xen(remus.data)
    assert rep.ok and rep.checkpoints == 3, rep.error


def test_bad_xenstore_data_is_still_rejected():
    s = simstream.build_stream(2, plain=True, guest="hvm")
    good = b"physmap/1/name\0vga.vram\0"
    data = s.data.replace(good, b"physmap/1/name\0vga.vramX")
    rep = verify_with_xen(data)
    assert not rep.ok and "not NUL terminated" in rep.error


@pytest.mark.parametrize("mutate,expect", [
    (lambda d: b"Y" + d[1:], "No xl header"),
    (lambda d: d + records.pack_record(libxc.TOOLSTACK, b"x"), "Toolstack"),
])
def test_rejections(mutate, expect):
    s = simstream.build_stream(3, [{1}])
    rep = verify_with_xen(mutate(s.data))
    assert not rep.ok and expect in rep.error and rep.ended == "error"


def test_truncated_before_first_checkpoint_is_not_ok():
    s = simstream.build_stream(3, [{1}])
    rep = verify_with_xen(s.data[:s.checkpoint_ends[0] - 1])
    assert not rep.ok and rep.checkpoints == 0 and rep.ended == "eof"


def test_xen_and_ours_agree_at_every_record_boundary():
    s = simstream.build_stream(5, [{0, 4}, {2}], batch=2)
    for off, _ in s.boundaries + [(len(s.data), "end")]:
        for cut in sorted({off, max(off - 5, 0)}):
            xen = verify_with_xen(s.data[:cut])
            ours = verify(s.data[:cut], fmt="xl")
            k = s.last_complete(cut)
            assert (xen.checkpoints, ours.checkpoints) == (k, k), cut
            assert xen.ok == ours.ok == (k > 0), (cut, xen.error, ours.error)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), nr_pages=st.integers(1, 12),
       nr_dirty=st.integers(0, 3), fmt=st.sampled_from(["xl", "libxl"]))
def test_property_xen_counts_the_same_checkpoints(data, nr_pages, nr_dirty, fmt):
    pfn = st.integers(0, nr_pages - 1)
    dirty = [data.draw(st.sets(pfn, max_size=nr_pages)) for _ in range(nr_dirty)]
    s = simstream.build_stream(nr_pages, dirty, fmt=fmt,
                               batch=data.draw(st.integers(1, 4)))
    cut = data.draw(st.integers(0, len(s.data)))
    rep = verify_with_xen(s.data[:cut], fmt=fmt)
    k = s.last_complete(cut)
    assert rep.checkpoints == k and rep.ok == (k > 0)


def test_loading_does_not_touch_sys_modules_or_path():
    before_mods = {k for k in sys.modules if k == "xen" or k.startswith("xen.")}
    before_path = list(sys.path)
    verify_with_xen(simstream.build_stream(1, plain=True).data)
    after = {k for k in sys.modules if k == "xen" or k.startswith("xen.")}
    assert after == before_mods and sys.path == before_path


# --- the simulated libxenguest (lowlevel/simxen) + our framing ------------------
_DRIVER = r'''
import ctypes, os, sys
lib, out, n_cp, root = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, root)
from xen_remus_compat.stream import writer
ctypes.CDLL(os.path.join(lib, "libsimxen.so.0"), mode=ctypes.RTLD_GLOBAL)
xc = ctypes.CDLL(os.path.join(lib, "libxenctrl.so.4.17"), mode=ctypes.RTLD_GLOBAL)
xg = ctypes.CDLL(os.path.join(lib, "libxenguest.so.4.17"))
xc.xc_interface_open.restype = ctypes.c_void_p
xch = ctypes.c_void_p(xc.xc_interface_open(None, None, 0))
CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
class Callbacks(ctypes.Structure):       # struct save_callbacks, xenguest.h 4.17
    _fields_ = [("suspend", CB), ("precopy_policy", ctypes.c_void_p),
                ("postcopy", CB), ("checkpoint", CB), ("wait_checkpoint", CB),
                ("switch_qemu_logdirty", ctypes.c_void_p), ("data", ctypes.c_void_p)]
domid, count = 1, [0]
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
writer.write_all(fd, writer.preamble({"c_info": {"name": "simguest", "type": "pv"}}))
def checkpoint(_):
    writer.write_all(fd, writer.CHECKPOINT_END_RECORD)
    count[0] += 1
    return 1 if count[0] < n_cp else 0
cbs = Callbacks(CB(lambda _: int(xc.xc_domain_shutdown(xch, domid, 2) == 0)), None,
                CB(lambda _: int(xg.xc_domain_resume(xch, domid, 1) == 0)),
                CB(checkpoint), CB(lambda _: 1), None, None)
rc = xg.xc_domain_save(xch, fd, domid, 1, ctypes.byref(cbs), 1, -1)  # LIVE, REMUS
print(rc, count[0])
'''


def test_simxen_remus_stream_passes_all_verifiers_and_the_receiver(tmp_path):
    from tests.conftest import ROOT
    lib = ROOT / "build" / "simxen"
    if not (lib / "libxenguest.so.4.17").is_file():
        tier_unavailable("conformance", f"simxen not built at {lib} (make native)")
    script, out = tmp_path / "drive.py", tmp_path / "simxen.xl"
    script.write_text(_DRIVER)
    env = dict(os.environ, SIMXEN_ENABLE="1", SIMXEN_PAGES="600",
               SIMXEN_DIRTY_RATE="200", SIMXEN_SEED="7")
    proc = subprocess.run([sys.executable, str(script), str(lib), str(out), "4",
                           str(ROOT)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.split() == ["0", "4"], \
        proc.stdout + proc.stderr
    data = out.read_bytes()
    xen = verify_with_xen(data)
    assert xen.ok and xen.checkpoints == 4, xen.error
    ours = verify(data)
    assert ours.ok and ours.checkpoints == 4 and not ours.warnings, ours.error
    from xen_remus_compat.stream.receiver import receive
    snapshots = []
    res = receive(data, sim=True, on_checkpoint=lambda n, r: snapshots.append(
        (r.committed_offset, r.page_versions())))
    assert res.failover_ok and res.checkpoints == 4
    assert len(res.memory) == 600 and res.bad_sim_pages() == []
    assert [o for o, _ in snapshots] == ours.checkpoint_offsets
    # a cut inside epoch k+1 leaves exactly checkpoint k's pages
    for k, (end, versions) in enumerate(snapshots[:-1], start=1):
        cut = receive(data[:end + 100], sim=True)
        assert cut.checkpoints == k and cut.page_versions() == versions
        assert None not in versions.values()
