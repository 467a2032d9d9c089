"""HVM Remus streams with the device model's records (issue 11, item 3).

* A stream of a simulated HVM guest (trampoline + simxen + the stand-in
  device model, through the engine and the device-model integration) is
  accepted by Xen's own verifier classes (checkpoint-aware, xl-side.md
  §5.5) and by ``xen-remus-compat stream verify``: per checkpoint
  EMULATOR_XENSTORE_DATA and EMULATOR_CONTEXT, then CHECKPOINT_END.
* The simulated receiver fails over to the last complete checkpoint's
  memory *and* device state, wherever the stream breaks, and the two
  belong together (the stand-in's state carries a digest of the memory it
  was saved with).
* Our QMP client against Debian's real qemu binaries (the Xen device model
  ``xen-qemu-system-i386`` and ``qemu-system-x86_64``, no hypervisor
  needed): the same command sequence saves qemu's real device state
  (``QEVM``) into EMULATOR_CONTEXT records, qemu runs again afterwards and
  its fdset is released.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import tier_unavailable
from xen_remus_compat.remus import devicemodel as dmod
from xen_remus_compat.remus.qmp import QMPClient
from xen_remus_compat.sim import devicemodel as simdm
from xen_remus_compat.sim import simxen
from xen_remus_compat.sim.simxen import SimDomain
from xen_remus_compat.stream import receiver
from xen_remus_compat.stream.reader import StreamWalker
from xen_remus_compat.stream.records import Record
from xen_remus_compat.stream.source import StreamError, open_source
from xen_remus_compat.stream.verify import XEN_PYTHON, verify_with_xen

pytestmark = pytest.mark.conformance

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = 4

CHILD = '''
import os, sys
from xen_remus_compat import _checkpoint as C
from xen_remus_compat.remus import devicemodel as D, engine
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
n = [0]
def commit():
    n[0] += 1
    return n[0] < int(sys.argv[2])
engine.Loop(1, fd, config={"c_info": {"name": "hvmguest", "type": "hvm"}, "b_info": {}},
            checkpointer=lambda: D.HvmCheckpointer(C.checkpointer()),
            commit=commit, interval=20).run()
'''


@pytest.fixture(scope="module")
def hvm_stream(tmp_path_factory):
    ok, why = simxen.available()
    if not ok:
        pytest.fail(why)
    tmp = tmp_path_factory.mktemp("hvm")
    state, stream = tmp / "state", tmp / "stream"
    env = simxen.environment(state, SimDomain(type="hvm", pages=512, dirty_rate=20.0))
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(stream), str(CHECKPOINTS)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return stream, simxen.read_state(state)


def checkpoint_ends(data: bytes):
    """Offsets of the libxl records of each checkpoint tail: a list of
    (first emulator record offset, CHECKPOINT_END offset, end)."""
    out, first = [], None
    with open_source(data) as src:
        walker = StreamWalker(src, fmt="xl", strict=True)
        try:
            for ev in walker.events():
                if isinstance(ev, Record) and ev.layer == "libxl":
                    if ev.type in (2, 3) and first is None:
                        first = ev.offset
                    elif ev.type == 4:
                        out.append((first, ev.offset, ev.end))
                        first = None
        except StreamError:
            pass
    return out


def test_xen_verifier_accepts_hvm_remus_stream(hvm_stream):
    if not os.path.isfile(os.path.join(XEN_PYTHON, "xen", "migration", "libxl.py")):
        tier_unavailable("conformance", "Xen's python migration tools missing")
    stream, _ = hvm_stream
    rep = verify_with_xen(stream.read_bytes(), fmt="xl")
    assert rep.ok and rep.checkpoints == CHECKPOINTS, rep.error
    assert rep.log.count("Libxl Record: Checkpoint end, length 0") == CHECKPOINTS
    ctx = [line for line in rep.log if line.startswith("Libxl Record: Emulator context")]
    xs = [line for line in rep.log if line.startswith("Libxl Record: Emulator xenstore")]
    assert len(ctx) == len(xs) == CHECKPOINTS
    assert "Emulator Xenstore Data (Qemu Upstream, idx 0)" in rep.log


def test_stream_verify_command_accepts_it(hvm_stream):
    stream, _ = hvm_stream
    proc = subprocess.run([sys.executable, "-m", "xen_remus_compat.cli.main", "stream",
                           "verify", str(stream)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"HVM guest 'hvmguest'" in proc.stdout
    assert f"{CHECKPOINTS} complete checkpoints" in proc.stdout


def test_every_checkpoint_tail_is_xenstore_context_end(hvm_stream):
    stream, _ = hvm_stream
    data = stream.read_bytes()
    tails = checkpoint_ends(data)
    assert len(tails) == CHECKPOINTS
    for first, end_at, _ in tails:
        rtype, length = struct.unpack_from("<II", data, first)
        assert rtype == 2
        nxt = first + 8 + length + (-length % 8)
        assert struct.unpack_from("<I", data, nxt)[0] == 3
        clen = struct.unpack_from("<I", data, nxt + 4)[0]
        assert struct.unpack_from("<II", data, nxt + 8) == (2, 0)   # qemu upstream, 0
        assert nxt + 8 + clen + (-clen % 8) == end_at


@pytest.mark.parametrize("where", ["pages", "emulator", "before-end", "whole"])
def test_failover_keeps_memory_and_device_state_of_the_last_checkpoint(
        hvm_stream, where):
    stream, state = hvm_stream
    data = stream.read_bytes()
    tails = checkpoint_ends(data)
    k = 2                               # the last complete checkpoint
    first, end_at, _ = tails[k]         # checkpoint k+1's tail
    cut = {"pages": tails[k - 1][2] + 100, "emulator": first + 20,
           "before-end": end_at, "whole": len(data)}[where]
    res = receiver.receive(data[:cut], sim=True)
    expect = CHECKPOINTS if where == "whole" else k
    assert res.checkpoints == expect and res.failover_ok
    assert res.emulator == "qemu-upstream"
    info = simdm.decode_state(res.device_state)
    assert info["save"] == expect and info["vm_state"] == "paused"
    assert res.device_state_size == len(res.device_state)
    pages = state.domain["pages"]
    recorded = simdm.memory_digest(state.versions(expect).tobytes())
    assert simdm.digest_of_memory(res.memory, pages) == recorded == info["memory"]
    assert res.emulator_xenstore == {"physmap/40000000/start_addr": "f0000000",
                                     "physmap/40000000/size": "800000",
                                     "physmap/40000000/name": "vga.vram"}


def test_receive_command_reports_the_device_state(hvm_stream, tmp_path):
    stream, _ = hvm_stream
    data = stream.read_bytes()
    cut = checkpoint_ends(data)[1][1]   # checkpoint 2 lacks its CHECKPOINT_END
    path = tmp_path / "cut"
    path.write_bytes(data[:cut])
    proc = subprocess.run([sys.executable, "-m", "xen_remus_compat.cli.main", "receive",
                           "--sim", "--json", "--no-banner", "-i", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert doc["checkpoints"] == 1 and doc["emulator"] == "qemu-upstream"
    assert doc["device_state_size"] > simdm.FILLER
    assert doc["emulator_xenstore"]["physmap/40000000/name"] == "vga.vram"


# --- real qemu --------------------------------------------------------------------

QEMUS = [("/usr/libexec/xen-qemu-system-i386", "none,accel=qtest"),
         ("/usr/bin/qemu-system-x86_64", "pc,accel=tcg")]


@pytest.fixture(params=QEMUS, ids=["xen-qemu-system-i386", "qemu-system-x86_64"])
def real_qemu(request, tmp_path):
    binary, machine = request.param
    if not os.access(binary, os.X_OK):
        tier_unavailable("conformance", f"{binary} missing (Debian qemu-system-xen / "
                                        f"qemu-system-x86)")
    sock = tmp_path / "qmp-libxl-1"
    proc = subprocess.Popen([binary, "-machine", machine, "-nodefaults", "-display",
                             "none", "-S", "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{binary} did not start: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.05)
    yield sock
    proc.terminate()
    proc.wait(10)


def test_real_qemu_saves_through_our_client(real_qemu, tmp_path):
    save = tmp_path / "qemu-save.1"
    dm = dmod.DeviceModel(1, socket_path=str(real_qemu), save_path=str(save),
                          xenstore=None).open()
    dm.set_dirty_log(True)
    bodies = []
    for _ in range(3):
        dm.suspend()
        dm.resume()
        data = dm.records()
        rtype, length = struct.unpack_from("<II", data)
        assert rtype == 3 and struct.unpack_from("<II", data, 8) == (2, 0)
        assert len(data) == 8 + length + (-length % 8)
        bodies.append(data[16:8 + length])
    dm.set_dirty_log(False)
    assert dm.client.version() >= (2, 11, 0)
    for body in bodies:
        assert body[:8] == b"QEVM\0\0\0\3", body[:16]
        # the whole state: last section's footer (0x7e, section id), QEMU_VM_EOF (0)
        assert body[-6] == 0x7E and body[-1] == 0
    assert {len(b) for b in bodies} == {len(bodies[0])}
    dm.close()
    assert not save.exists()
    again = QMPClient(str(real_qemu), timeout=5)
    again.connect()
    assert again.execute("query-status")["running"] is True
    assert again.execute("query-fdsets") == []
    again.close()
