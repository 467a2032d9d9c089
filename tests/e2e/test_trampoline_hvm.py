"""HVM guests with a device model (issue 11, items 1 and 2), on simxen with
the stand-in device model (sim/devicemodel.py).

* suspend as libxl does, decided per suspend: the suspend event channel when
  held; an HVM guest without PV drivers (no HVM_PARAM_CALLBACK_IRQ) with
  ``xc_domain_shutdown(SHUTDOWN_suspend)`` (it ignores xenstore); one with
  PV drivers through xenstore ``control/shutdown``;
* the device model is paused and saved while the guest is suspended,
  continued before the guest is resumed; libxc's ``switch_qemu_logdirty``
  reaches it (on at the start, off at the end);
* every checkpoint in the stream carries the device state of that very
  checkpoint (its memory digest is the one simxen recorded);
* what cannot work is refused clearly: ``start()`` without ``logdirty_cb``,
  a device model in a stub domain.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

from xen_remus_compat.sim import devicemodel as simdm
from xen_remus_compat.sim import simxen
from xen_remus_compat.sim.simxen import SimDomain
from xen_remus_compat.stream import libxl as sl
from xen_remus_compat.stream import verify
from xen_remus_compat.stream.reader import StreamWalker
from xen_remus_compat.stream.records import Record
from xen_remus_compat.stream.source import StreamError, open_source

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = '''
import json, os, sys
from xen_remus_compat import _checkpoint as C
from xen_remus_compat.remus import devicemodel as D, engine
ARGS = json.loads(sys.argv[1])
def emit(**kw):
    print("RESULT " + json.dumps(kw), flush=True)
def describe(e):
    return {"type": type(e).__name__, "msg": str(e), "errno": getattr(e, "errno", None)}
'''

#: the engine with the device-model integration (HvmCheckpointer), N checkpoints
SESSION = '''
fd = os.open(ARGS["stream"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
n = [0]
def commit():
    n[0] += 1
    return n[0] < ARGS.get("checkpoints", 4)
seen = {}
def factory():
    cp = D.HvmCheckpointer(C.checkpointer())
    seen["cp"] = cp
    return cp
loop = engine.Loop(1, fd, config={"c_info": {"name": "hvmguest", "type": "hvm"},
                                  "b_info": {}},
                   checkpointer=factory, commit=commit, interval=ARGS.get("interval", 20))
try:
    stats = loop.run()
    emit(checkpoints=stats.checkpoints, error=None)
except Exception as e:
    emit(checkpoints=None, error=describe(e))
'''


@dataclass
class Child:
    rc: int
    result: Optional[dict]
    stderr: str
    state: simxen.SimState
    state_dir: Path
    stream: Path

    def qmp(self) -> List[tuple]:
        path = self.state_dir / "qmp.log"
        out = []
        for line in path.read_text().splitlines() if path.exists() else ():
            when, cmd, args = line.split(" ", 2)
            out.append((float(when), cmd, json.loads(args)))
        return out


def run_child(tmp_path: Path, body: str, gtype: str = "hvm", *,
              suspend: Optional[str] = None, fail=(), timeout: float = 90,
              **args) -> Child:
    state = tmp_path / "state"
    stream = tmp_path / "stream"
    args.setdefault("stream", str(stream))
    env = simxen.environment(state, SimDomain(pages=256, dirty_rate=10.0, fail=tuple(fail)))
    env["SIMXEN_TYPE"] = gtype
    env.pop("SIMXEN_SUSPEND", None)
    if suspend:
        env["SIMXEN_SUSPEND"] = suspend
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body),
                           json.dumps(args)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines()
               if line.startswith("RESULT ")]
    return Child(proc.returncode, results[-1] if results else None, proc.stderr,
                 simxen.read_state(state), state, stream)


def emulator_states(stream: bytes) -> List[dict]:
    """The stand-in state of every EMULATOR_CONTEXT record, in order."""
    out = []
    with open_source(stream) as src:
        walker = StreamWalker(src, fmt="xl", strict=False)
        try:
            for ev in walker.events():
                if isinstance(ev, Record) and ev.layer == "libxl" and \
                        ev.type == sl.EMULATOR_CONTEXT:
                    out.append(simdm.decode_state(ev.body[8:]))
        except StreamError:
            pass                    # a Remus stream just stops
    return out


@pytest.fixture(scope="module", autouse=True)
def built():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(why)


# --- an HVM guest without PV drivers ------------------------------------------------

def test_hvm_guest_is_checkpointed_with_its_device_model(tmp_path):
    child = run_child(tmp_path, '''
    cp = C.checkpointer()
    cp.open(1)
    emit(type=cp.guest_type, path=cp.suspend_path)
    cp.close()
    ''' + SESSION, checkpoints=4)
    assert child.result == {"checkpoints": 4, "error": None}, child.stderr
    assert ("domain 1 is an HVM guest without PV drivers: suspending it with "
            "xc_domain_shutdown(SHUTDOWN_suspend)") in child.stderr
    assert child.state.final_state == "running"
    # the stream: every checkpoint complete, framing accepted by our verifier
    data = child.stream.read_bytes()
    rep = verify.verify(data, fmt="xl")
    assert rep.ok and rep.checkpoints == 4 and rep.guest == "hvm", rep.error
    # QMP, as libxl: on, then per checkpoint stop / save / cont, off at the end
    cmds = [c for _, c, _ in child.qmp()]
    assert cmds[:3] == ["qmp_capabilities", "add-fd", "xen-set-global-dirty-log"]
    assert cmds[3:15] == ["stop", "xen-save-devices-state", "cont"] * 4
    assert cmds[15:] == ["xen-set-global-dirty-log", "remove-fd"]
    on, off = child.qmp()[2][2], child.qmp()[15][2]
    assert on == {"enable": True} and off == {"enable": False}
    saves = [a for _, c, a in child.qmp() if c == "xen-save-devices-state"]
    assert saves == [{"filename": "/dev/fdset/0", "live": True}] * 4
    # each checkpoint's device state is that checkpoint's: paused device model,
    # suspended guest, the memory simxen recorded for it
    states = emulator_states(data)
    assert [s["save"] for s in states] == [1, 2, 3, 4]
    for n, s in enumerate(states, 1):
        assert s["vm_state"] == "paused" and s["guest"] == "suspended", s
        assert s["dirty_log"] is True and s["live"] is True
        assert s["memory"] == simdm.memory_digest(child.state.versions(n).tobytes())


def test_device_model_is_saved_while_suspended_and_continued_before_resume(tmp_path):
    child = run_child(tmp_path, SESSION, checkpoints=3)
    assert child.result["checkpoints"] == 3, child.stderr
    runs = child.state.runstates
    windows = [(a.time, b.time) for a, b in zip(runs, runs[1:])
               if a.state == "suspended" and b.state == "running"]
    assert len(windows) == 3
    per = [(c, t) for t, c, _ in child.qmp() if c in ("stop", "xen-save-devices-state",
                                                      "cont")]
    for (s0, s1), i in zip(windows, range(0, 9, 3)):
        stop, save, cont = per[i][1], per[i + 1][1], per[i + 2][1]
        # runstate.log has microseconds; qmp.log too
        assert s0 <= stop <= save <= cont <= s1 + 1e-6, (s0, stop, save, cont, s1)


def test_hvm_guest_is_suspended_by_the_hypercall(tmp_path):
    # a suspend that does not happen is seen on the hypercall path (simxen's
    # fault names the way it was asked); the trampoline reports it, the
    # device model was never stopped and the guest keeps running
    child = run_child(tmp_path, '''
    cp = D.HvmCheckpointer(C.checkpointer())
    cp.open(1)
    cp.suspend_timeout = 300
    fd = os.open(ARGS["stream"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        cp.start(fd, None, None, lambda: False)
        emit(error=None)
    except C.error as e:
        emit(error=describe(e))
    cp.close()
    ''', fail=("suspend@1",))
    assert child.result["error"] == {
        "type": "error", "errno": errno.ETIMEDOUT,
        "msg": "domain 1 did not suspend within 300 ms (xc_domain_shutdown)"}
    assert "guest ignores suspend request 1 (shutdown hypercall)" in child.stderr
    assert child.state.final_state == "running"
    cmds = [c for _, c, _ in child.qmp()]
    assert "stop" not in cmds and cmds[-2:] == ["xen-set-global-dirty-log", "remove-fd"]


# --- with PV drivers ------------------------------------------------------------------

@pytest.mark.parametrize("suspend,path", [(None, "xenstore"), ("evtchn", "evtchn")])
def test_pv_on_hvm_guest_uses_its_pv_drivers(tmp_path, suspend, path):
    child = run_child(tmp_path, '''
    cp = C.checkpointer()
    cp.open(1)
    emit(type=cp.guest_type, path=cp.suspend_path)
    cp.close()
    ''', "pvhvm", suspend=suspend)
    assert child.result == {"type": "hvm", "path": path}
    child = run_child(tmp_path / "s", SESSION, "pvhvm", suspend=suspend, checkpoints=2)
    assert child.result == {"checkpoints": 2, "error": None}, child.stderr
    assert "xc_domain_shutdown" not in child.stderr
    assert [s["save"] for s in emulator_states(child.stream.read_bytes())] == [1, 2]


# --- refused clearly ----------------------------------------------------------------

def test_start_without_logdirty_cb_is_refused_before_any_byte(tmp_path):
    child = run_child(tmp_path, '''
    cp = C.checkpointer()
    cp.open(1)
    fd = os.open(ARGS["stream"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    out = {}
    for name, kw in (("none", {}), ("not_callable", {"logdirty_cb": 42})):
        try:
            cp.start(fd, None, None, None, **kw)
            out[name] = None
        except (C.error, TypeError) as e:
            out[name] = describe(e)
    emit(**out)
    ''')
    assert child.result["none"] == {
        "type": "error", "errno": errno.EOPNOTSUPP,
        "msg": "domain 1 is an HVM guest: its device model must be saved with every "
               "checkpoint, which needs start(..., logdirty_cb=...) and the emulator "
               "records (xen_remus_compat.remus.devicemodel does both)"}
    assert child.result["not_callable"] == {"type": "TypeError", "errno": None,
                                            "msg": "logdirty callback not callable"}
    assert child.stream.read_bytes() == b""
    assert [r.state for r in child.state.runstates] == ["running"]
    log = child.state_dir / "logdirty.log"
    assert not log.exists() or log.read_text() == ""      # not even probed


@pytest.mark.parametrize("verdict,expect", [
    ("False", {"type": "error", "errno": None,
               "msg": "qemu log-dirty callback returned a false value (switching it "
                      "on); checkpointing stopped"}),
    ("raise", {"type": "RuntimeError", "errno": None, "msg": "qemu gone"}),
])
def test_logdirty_failure_stops_before_the_first_suspend(tmp_path, verdict, expect):
    child = run_child(tmp_path, '''
    calls = []
    def logdirty(enable):
        calls.append(enable)
        if ARGS["verdict"] == "raise":
            raise RuntimeError("qemu gone")
        return False
    cp = C.checkpointer()
    cp.open(1)
    fd = os.open(ARGS["stream"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        cp.start(fd, None, None, None, logdirty_cb=logdirty)
        emit(error=None, calls=calls)
    except Exception as e:
        emit(error=describe(e), calls=calls)
    ''', verdict=verdict)
    assert child.result["error"] == expect
    assert child.result["calls"] == [True]      # never enabled: never disabled
    assert [r.state for r in child.state.runstates] == ["running"]


def test_device_model_in_a_stub_domain_is_refused(tmp_path):
    child = run_child(tmp_path, '''
    import ctypes
    xs = ctypes.CDLL("libxenstore.so.4")
    xs.xs_open.restype = ctypes.c_void_p
    h = ctypes.c_void_p(xs.xs_open(0))
    assert xs.xs_write(h, 0, b"/local/domain/1/image/device-model-domid", b"5", 1)
    cp = C.checkpointer()
    try:
        cp.open(1)
        emit(error=None)
    except C.error as e:
        emit(error=describe(e), domid=cp.domid)
    ''')
    assert child.result["error"] == {
        "type": "error", "errno": errno.EOPNOTSUPP,
        "msg": "domain 1 is an HVM guest whose device model runs in stub domain 5: "
               "saving a stub domain's device model is not supported; run its device "
               "model in dom0 (device_model_stubdomain_override=0)"}
    assert child.result["domid"] is None
