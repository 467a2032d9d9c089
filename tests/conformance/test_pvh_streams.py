"""PVH Remus streams from the real trampoline on simxen pass Xen's own
verifier classes (Debian's xen-utils-4.17, driven checkpoint-aware as
xl-side.md §5.5 describes) and ours, whole and cut at every record
boundary, and have the shape Xen 4.17's saver gives an HVM container
without a device model (tools/libs/guest/xg_sr_save_x86_hvm.c):

    image header, domain header (x86 HVM), X86_CPUID_POLICY X86_MSR_POLICY
    STATIC_DATA_END, then per checkpoint: PAGE_DATA* X86_TSC_INFO
    HVM_CONTEXT HVM_PARAMS CHECKPOINT

and no PV record; in the libxl layer nothing but CHECKPOINT_END after each
CHECKPOINT (no EMULATOR records: PVH has no device model).

Streams: ``libxc``: ``checkpointer.start`` on a file (bare libxc form);
``blackhole``: the engine's ``Loop(blackhole=True)`` into a file (libxl
form, ``xl remus -b``).  The guest is simxen's ``pvh`` type.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from typing import Dict, List, Tuple

import pytest

from tests.conftest import ROOT, tier_unavailable
from xen_remus_compat.sim import simxen
from xen_remus_compat.stream.reader import Header, Mark
from xen_remus_compat.stream.records import Record
from xen_remus_compat.stream.verify import XEN_PYTHON, verify, verify_with_xen

PY = sys.executable
GUEST = simxen.SimDomain(name="pvhguest", pages=384, vcpus=2, dirty_rate=3.0, seed=7)
CHECKPOINTS = 4

# libxc record types (docs/specs/libxc-migration-stream.pandoc)
END, PAGE_DATA, TSC_INFO, HVM_CONTEXT, HVM_PARAMS = 0x00, 0x01, 0x08, 0x09, 0x0A
CHECKPOINT, STATIC_DATA_END, CPUID_POLICY, MSR_POLICY = 0x0E, 0x10, 0x11, 0x12
PV_ONLY = {0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0C}
# libxl record types (docs/specs/libxl-migration-stream.pandoc)
LIBXC_CONTEXT, EMULATOR_XENSTORE_DATA, EMULATOR_CONTEXT, CHECKPOINT_END = 1, 2, 3, 4
# HVM_PARAM_* (xen/hvm/params.h)
STORE_PFN, CONSOLE_PFN, IDENT_PT, IOREQ_SERVER_PFN, NR_IOREQ_SERVER_PAGES = 1, 17, 12, 32, 33
# what xc_domain_save 4.17 saves for an HVM container, when set
SAVED_PARAMS = {1, 5, 6, 27, 28, 29, 37, 17, 19, 9, 12, 34, 32, 33, 36, 38}
HVM_FILE_MAGIC = 0x54381286

# Runs under simxen: "libxc FILE N" or "blackhole FILE N".
_DRIVER = r'''
import os, sys, time
mode, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
count = [0]
def commit():
    count[0] += 1
    time.sleep(0.02)            # let the guest dirty pages between epochs
    return count[0] < n
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
if mode == "blackhole":
    try:
        from xen_remus_compat.remus import engine
    except ImportError:
        from xen_remus_compat import engine
    engine.Loop(1, fd, config=None, blackhole=True, commit=commit).run()
else:
    from xen_remus_compat import _checkpoint as C
    cp = C.checkpointer()
    cp.open(1)
    print(cp.guest_type, cp.suspend_path, file=sys.stderr)
    cp.probe()
    cp.start(fd, None, None, commit)
    cp.close()
os.close(fd)
print(count[0])
'''


def _produce(tmp, mode) -> Tuple[bytes, int, str]:
    script, out, state = tmp / "driver.py", tmp / f"{mode}.bin", tmp / f"sim-{mode}"
    script.write_text(_DRIVER)
    env = simxen.environment(state, GUEST)
    env["SIMXEN_TYPE"] = "pvh"
    env.pop("SIMXEN_SUSPEND", None)          # simxen's PVH default: xenstore
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([PY, str(script), mode, str(out), str(CHECKPOINTS)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=str(tmp))
    assert proc.returncode == 0 and proc.stdout.split() == [str(CHECKPOINTS)], \
        proc.stdout + proc.stderr
    st = simxen.read_state(state)
    assert st.domain["type"] == "pvh" and st.domain["suspend"] == "xenstore"
    data = out.read_bytes()
    # every checkpoint matches the guest's memory (replay reads bare libxc:
    # drop the libxl header and LIBXC_CONTEXT of the blackhole form)
    bare = tmp / f"{mode}.libxc"
    bare.write_bytes(data[24:] if mode == "blackhole" else data)
    rep = simxen.replay(bare, st)
    assert rep.ok and rep.checkpoints == CHECKPOINTS, rep.problems
    assert rep.checkpoint_ends == (CHECKPOINTS if mode == "blackhole" else 0)
    return data, len(st.checkpoints), proc.stderr


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> Dict[str, Tuple[bytes, int, str]]:
    """name -> (bytes, checkpoints simxen recorded, child's stderr)."""
    if not os.path.isfile(os.path.join(XEN_PYTHON, "xen", "migration", "libxl.py")):
        tier_unavailable("conformance", f"Xen's python migration tools missing "
                         f"under {XEN_PYTHON} (install xen-utils-4.17)")
    ok, why = simxen.available()
    if not ok:
        tier_unavailable("conformance", f"simxen not built: {why}")
    tmp = tmp_path_factory.mktemp("pvh-streams")
    return {mode: _produce(tmp, mode) for mode in ("libxc", "blackhole")}


NAMES = ["libxc", "blackhole"]
FMT = {"libxc": "libxc", "blackhole": "libxl"}


# --- an independent walk of the two layers ---------------------------------------

def _records(data: bytes, off: int):
    """(type, body) of 8-byte-aligned records from OFF until the data ends."""
    while off + 8 <= len(data):
        rtype, length = struct.unpack_from("<II", data, off)
        body = data[off + 8:off + 8 + length]
        if len(body) < length:
            return
        off += 8 + length + (-length % 8)
        yield rtype, body, off


def walk(data: bytes, fmt: str) -> Tuple[int, List[Tuple[str, int, bytes]]]:
    """Domain type and ("libxc"|"libxl", type, body) for every record."""
    out: List[Tuple[str, int, bytes]] = []
    off = 0
    if fmt == "libxl":
        assert data[:8] == b"LibxlFmt" and struct.unpack_from(">I", data, 8)[0] == 2
        off = 16
        rtype, body, off = next(_records(data, off))
        assert (rtype, body) == (LIBXC_CONTEXT, b"")
        out.append(("libxl", rtype, body))
    assert data[off:off + 8] == b"\xff" * 8 and data[off + 8:off + 12] == b"XENF"
    assert struct.unpack_from(">I", data, off + 12)[0] == 3
    gtype, page_shift = struct.unpack_from("<IH", data, off + 24)
    assert page_shift == 12
    off += 40
    layer = "libxc"
    while off + 8 <= len(data):
        rtype, length = struct.unpack_from("<II", data, off)
        if off + 8 + length > len(data):
            break
        out.append((layer, rtype, data[off + 8:off + 8 + length]))
        off += 8 + length + (-length % 8)
        if fmt == "libxl" and layer == "libxc" and rtype == CHECKPOINT:
            layer = "libxl"
        elif layer == "libxl" and rtype == CHECKPOINT_END:
            layer = "libxc"
    return gtype, out


# --- the tests ----------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_whole_stream_passes_xen_verifier_and_ours(streams, name):
    data, recorded, _ = streams[name]
    xen = verify_with_xen(data, fmt=FMT[name])
    ours = verify(data)
    assert xen.ok and ours.ok, (xen.error, ours.error)
    assert xen.checkpoints == ours.checkpoints == recorded == CHECKPOINTS
    assert not ours.warnings, ours.warnings            # §3.5 record order (HVM)
    assert xen.ended == "eof" and not xen.complete     # Remus: never terminated
    assert "Domain Header: x86 HVM from Xen 4.17" in xen.log
    assert sum(line.startswith("Libxc Record: HVM params, length ")
               for line in xen.log) == CHECKPOINTS
    assert sum(line.startswith("Libxc Record: HVM context, length ")
               for line in xen.log) == CHECKPOINTS
    if name == "blackhole":
        assert xen.log.count("Libxl Record: Checkpoint end, length 0") == CHECKPOINTS


@pytest.mark.parametrize("name", NAMES)
def test_record_order_is_xen_4_17_hvm_without_device_model(streams, name):
    data, _, stderr = streams[name]
    gtype, recs = walk(data, FMT[name])
    assert gtype == 2                                   # x86 HVM
    libxc = [t for layer, t, _ in recs if layer == "libxc"]
    libxl = [t for layer, t, _ in recs if layer == "libxl"]
    assert not PV_ONLY & set(libxc)
    assert libxc[:3] == [CPUID_POLICY, MSR_POLICY, STATIC_DATA_END]
    epochs, cur = [], []
    for t in libxc[3:]:
        cur.append(t)
        if t == CHECKPOINT:
            epochs.append(cur)
            cur = []
    assert len(epochs) == CHECKPOINTS and cur == []
    for epoch in epochs:
        tail = [t for t in epoch if t != PAGE_DATA]
        assert tail == [TSC_INFO, HVM_CONTEXT, HVM_PARAMS, CHECKPOINT]
        assert epoch[:len(epoch) - 4] == [PAGE_DATA] * (len(epoch) - 4)
    assert PAGE_DATA in epochs[0]
    if name == "blackhole":
        # no EMULATOR_XENSTORE_DATA / EMULATOR_CONTEXT: nothing but the markers
        assert libxl == [LIBXC_CONTEXT] + [CHECKPOINT_END] * CHECKPOINTS
    else:
        assert libxl == []
        assert "pvh xenstore" in stderr


def test_hvm_params_are_those_of_a_pvh_guest(streams):
    data, _, _ = streams["libxc"]
    _, recs = walk(data, "libxc")
    sent_pfns = set()
    params_seen = []
    for _, rtype, body in recs:
        if rtype == PAGE_DATA:
            count = struct.unpack_from("<I", body)[0]
            sent_pfns |= {p & ((1 << 52) - 1)
                          for p in struct.unpack_from(f"<{count}Q", body, 8)}
        elif rtype == HVM_PARAMS:
            count, rsvd = struct.unpack_from("<II", body)
            assert rsvd == 0 and len(body) == 8 + 16 * count
            params_seen.append(dict(struct.iter_unpack("<QQ", body[8:])))
    assert len(params_seen) == CHECKPOINTS
    params = params_seen[0]
    assert all(p == params for p in params_seen)
    assert set(params) <= SAVED_PARAMS and all(params.values())
    assert {STORE_PFN, CONSOLE_PFN, IDENT_PT} <= set(params)
    # no device model: no extra ioreq server pages
    assert IOREQ_SERVER_PFN not in params and NR_IOREQ_SERVER_PAGES not in params
    # the special pages are guest memory the stream carries
    for index, value in params.items():
        pfn = value >> 12 if index == IDENT_PT else value
        assert pfn in sent_pfns, (index, hex(value))


def test_hvm_context_is_a_save_record_list(streams):
    data, _, _ = streams["libxc"]
    _, recs = walk(data, "libxc")
    contexts = [body for _, rtype, body in recs if rtype == HVM_CONTEXT]
    assert len(contexts) == CHECKPOINTS
    for body in contexts:
        off, seen = 0, []
        while off < len(body):
            code, instance, length = struct.unpack_from("<HHI", body, off)
            seen.append((code, instance))
            if code == 1:                               # HEADER
                assert struct.unpack_from("<I", body, off + 8)[0] == HVM_FILE_MAGIC
            off += 8 + length
        assert off == len(body)
        assert seen[0] == (1, 0) and seen[-1] == (0, 0)   # HEADER ... END
        # per vcpu: CPU (2) and the local APIC (5, 6), the only emulated device
        for vcpu in range(GUEST.vcpus):
            assert {(2, vcpu), (5, vcpu), (6, vcpu)} <= set(seen)
        # nothing a PVH guest does not have: PIC 3, IOAPIC 4, PIT 10, RTC 11,
        # HPET 12, PMTIMER 13
        assert not {code for code, _ in seen} & {3, 4, 10, 11, 12, 13}


def _layout(data):
    events = []
    rep = verify(data, on_event=events.append)
    assert rep.ok, rep.error
    heads = [e for e in events if isinstance(e, Header)]
    recs = [e for e in events if isinstance(e, Record)]
    marks = [e.offset for e in events if isinstance(e, Mark) and e.kind == "checkpoint"]
    return heads, recs, marks


@pytest.mark.parametrize("name", NAMES)
def test_cut_at_every_record_boundary(streams, name):
    data, _, _ = streams[name]
    fmt = FMT[name]
    heads, recs, marks = _layout(data)
    assert len(marks) == CHECKPOINTS
    cuts = sorted({0, len(data)} | {h.offset for h in heads} | {r.offset for r in recs}
                  | {r.end for r in recs if r.end <= len(data)}
                  | {m - 1 for m in marks} | {m + 1 for m in marks})
    for cut in cuts:
        if cut > len(data):
            continue
        k = sum(1 for end in marks if end <= cut)
        xen = verify_with_xen(data[:cut], fmt=fmt)
        ours = verify(data[:cut])
        assert xen.checkpoints == ours.checkpoints == k, (cut, xen.error, ours.error)
        assert xen.ok == ours.ok == (k > 0), (cut, xen.error, ours.error)
        if cut < len(data):
            assert xen.ended == "eof", (cut, xen.error)
            assert ours.ended in ("eof", "truncated"), (cut, ours.error)


@pytest.mark.parametrize("name", NAMES)
def test_stream_verify_command_accepts_it(streams, name, tmp_path):
    script = os.path.join(os.path.dirname(PY), "xen-remus-compat")
    if not os.path.isfile(script):
        pytest.fail(f"{script} missing: the package is not installed in this venv")
    path = tmp_path / f"{name}.bin"
    path.write_bytes(streams[name][0])
    proc = subprocess.run([script, "stream", "verify", str(path)], capture_output=True,
                          text=True, timeout=60, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first = proc.stdout.splitlines()[0]
    assert f"{path}: OK: {FMT[name]} stream, HVM guest" in first, first
    assert f"{CHECKPOINTS} complete checkpoints" in first, first
