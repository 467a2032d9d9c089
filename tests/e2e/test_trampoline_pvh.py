"""The checkpoint trampoline on PVH guests, the quiet xenstore suspend path
and the log-dirty probe (issue 10, items 2 and 3), on simxen.

* A PVH guest (an HVM container emulating only the local APIC, no device
  model) is checkpointed: ``guest_type`` is ``"pvh"``, the libxc stream is
  an x86 HVM one, every checkpoint is in it and matches the guest.
* A guest with no suspend event channel (Debian's 6.1 kernel; simxen's PVH
  default) is suspended through xenstore: ``suspend_path`` says so, one line
  at ``open()`` says so, no checkpoint warns about it.
* ``probe()`` finds, before anything is sent, a hypervisor that cannot
  track a PV guest's dirty memory (Debian's stock 4.17: no shadow paging;
  simxen: ``SIMXEN_NO_SHADOW=1``); ``start()`` refuses the same way
  without writing a byte, and the guest keeps running.
* HVM guests with a device model are told apart from PVH (``guest_type``
  ``hvm``; issue 11 checkpoints them, tests/e2e/test_trampoline_hvm.py).

The simulated domain's type is set through ``SIMXEN_TYPE`` directly, so
these tests do not depend on what :class:`SimDomain` accepts.
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
from typing import Dict, List, Optional

import pytest

from xen_remus_compat.sim import simxen
from xen_remus_compat.sim.simxen import SimDomain

ROOT = Path(__file__).resolve().parents[2]
BUILD_HINT = ("build it with `make -C lowlevel simxen` and "
              "`.venv/bin/python setup.py build_ext --inplace`")
XENSTORE_LINE = ("domain 1 has no suspend event channel: suspending it through "
                 "xenstore (control/shutdown)")
CHECKPOINT_END = (4).to_bytes(4, "little") + bytes(4)      # libxl record 4

PRELUDE = '''
import ctypes, errno, json, os, sys, time
from xen_remus_compat import _checkpoint as C
STATE = os.environ["SIMXEN_STATE_DIR"]
ARGS = json.loads(sys.argv[1])
STREAM = ARGS["stream"]
def guest():
    with open(os.path.join(STATE, "runstate.log")) as f:
        return f.read().splitlines()[-1].split()[2]
def emit(**kw):
    print("RESULT " + json.dumps(kw), flush=True)
def describe(e):
    return {"type": type(e).__name__, "msg": str(e),
            "errno": getattr(e, "errno", "absent")}
def attempt(fn):
    try:
        return ["ok", fn()]
    except C.error as e:
        return ["error", describe(e)]
'''


@pytest.fixture(scope="module", autouse=True)
def built():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"{why}; {BUILD_HINT}")
    sos = list((ROOT / "xen_remus_compat").glob("_checkpoint*.so"))
    if not sos:
        pytest.fail(f"xen_remus_compat._checkpoint is not built; {BUILD_HINT}")
    sources = list((ROOT / "lowlevel" / "checkpoint").iterdir())
    if min(p.stat().st_mtime for p in sos) < max(p.stat().st_mtime for p in sources):
        pytest.fail(f"xen_remus_compat._checkpoint is older than its sources; {BUILD_HINT}")


@dataclass
class Child:
    rc: int
    result: Optional[dict]
    stderr: str
    state: simxen.SimState
    state_dir: Path
    stream: Path

    @property
    def prof(self) -> List[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("PROF:")]

    def logdirty(self) -> List[str]:
        """simxen's logdirty.log, one word per switch (on, off, refused-on...)."""
        path = self.state_dir / "logdirty.log"
        return [line.split()[1] for line in path.read_text().splitlines()] \
            if path.exists() else []


def run_child(tmp_path: Path, body: str, gtype: str = "pvh", *,
              domain: SimDomain = SimDomain(pages=256, dirty_rate=10.0),
              extra: Optional[Dict[str, str]] = None, suspend: Optional[str] = None,
              timeout: float = 60, **args) -> Child:
    """Run BODY in a child process against simxen with a guest of GTYPE.

    ``suspend=None`` leaves simxen's default for the type (PVH: xenstore).
    """
    state = tmp_path / "state"
    stream = tmp_path / "stream"
    args.setdefault("stream", str(stream))
    env = simxen.environment(state, domain)
    env["SIMXEN_TYPE"] = gtype
    if suspend is None:
        env.pop("SIMXEN_SUSPEND", None)
    else:
        env["SIMXEN_SUSPEND"] = suspend
    env.update(extra or {})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines()
               if line.startswith("RESULT ")]
    return Child(proc.returncode, results[-1] if results else None, proc.stderr,
                 simxen.read_state(state), state, stream)


def assert_guest_running(child: Child) -> None:
    assert child.state.runstates, "simxen recorded nothing"
    assert child.state.final_state == "running", child.state.runstates[-3:]


# --- a PVH guest, checkpointed -------------------------------------------------

SESSION = '''
cp = C.checkpointer()
before = [cp.guest_type, cp.suspend_path]
cp.open(1)
opened = [cp.guest_type, cp.suspend_path]
probe = attempt(cp.probe)
fd = os.open(STREAM, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
states = []
n = [0]
def suspend():
    states.append(guest())
def ckpt():
    # what the engine does: libxl CHECKPOINT_END right after libxc's CHECKPOINT
    os.write(fd, (4).to_bytes(4, "little") + bytes(4))
    states.append(guest())
    n[0] += 1
    time.sleep(0.005)
    return n[0] < ARGS["checkpoints"]
cp.start(fd, suspend, None, ckpt, ARGS.get("interval", 0))
os.close(fd)
cp.close()
emit(before=before, opened=opened, closed=[cp.guest_type, cp.suspend_path],
     probe=probe, n=n[0], states=states)
'''


@pytest.mark.parametrize("interval", [0, 20], ids=["back-to-back", "timer"])
def test_pvh_guest_is_checkpointed_through_xenstore_quietly(tmp_path, interval):
    child = run_child(tmp_path, SESSION, checkpoints=6, interval=interval)
    assert child.rc == 0, child.stderr
    res = child.result
    assert res["before"] == [None, None]
    assert res["opened"] == ["pvh", "xenstore"]
    assert res["closed"] == [None, None]
    assert res["probe"] == ["ok", None]
    assert res["n"] == 6
    assert res["states"] == ["suspended", "running"] * 6
    # item 3 of issue 10: the path is said once, at open(), and no checkpoint
    # warns about it
    assert child.stderr.count(XENSTORE_LINE) == 1
    assert child.stderr.splitlines()[0] == XENSTORE_LINE
    assert "WARNING" not in child.stderr and "xenstore" not in \
        "".join(line for line in child.stderr.splitlines() if line != XENSTORE_LINE)
    assert "xc: error" not in child.stderr
    assert [p.split()[1] for p in child.prof] == ["suspending", "resumed"] * 6
    assert_guest_running(child)
    assert child.state.domain["type"] == "pvh"
    assert child.state.domain["suspend"] == "xenstore"
    assert child.state.domain["device_model"] is False
    # probe() switched log-dirty mode on and off; start() did not probe again;
    # the save switched it on for the first pass and off at the end
    assert child.logdirty() == ["on", "off", "on", "off"]
    # the stream holds every checkpoint, and each matches the guest's memory
    rep = simxen.replay(child.stream, child.state)
    assert rep.ok, rep.problems
    assert rep.checkpoints == rep.checkpoint_ends == 6
    assert rep.pages >= 256
    data = child.stream.read_bytes()
    assert int.from_bytes(data[24:28], "little") == 2              # x86 HVM


def test_pvh_guest_with_a_suspend_event_channel_uses_it(tmp_path):
    child = run_child(tmp_path, SESSION, suspend="evtchn", checkpoints=3)
    assert child.rc == 0, child.stderr
    assert child.result["opened"] == ["pvh", "evtchn"]
    assert "bound to suspend event channel 1:7 as " in child.stderr
    assert "xenstore" not in child.stderr
    assert child.result["states"] == ["suspended", "running"] * 3
    assert_guest_running(child)


def test_pv_guest_without_event_channel_is_quiet_too(tmp_path):
    child = run_child(tmp_path, SESSION, "pv", suspend="xenstore", checkpoints=3)
    assert child.rc == 0, child.stderr
    assert child.result["opened"] == ["pv", "xenstore"]
    assert child.stderr.count(XENSTORE_LINE) == 1 and "WARNING" not in child.stderr
    rep = simxen.replay(child.stream, child.state)
    assert rep.ok and rep.checkpoints == 3, rep.problems
    assert int.from_bytes(child.stream.read_bytes()[24:28], "little") == 1  # x86 PV


def test_a_pvh_guest_that_ignores_xenstore_is_waited_for_boundedly(tmp_path):
    child = run_child(tmp_path, '''
    cp = C.checkpointer()
    cp.open(1)
    cp.suspend_timeout = 200
    n = [0]
    def ckpt():
        n[0] += 1
        return n[0] < 6
    t0 = time.monotonic()
    with open(STREAM, "wb") as f:
        err = attempt(lambda: cp.start(f, None, None, ckpt))
    emit(err=err, elapsed=time.monotonic() - t0, guest=guest())
    cp.close()
    ''', extra={"SIMXEN_FAIL": "suspend@3"})
    res = child.result
    assert res["err"] == ["error", {
        "type": "error", "errno": errno.ETIMEDOUT,
        "msg": "domain 1 did not answer the xenstore suspend request within 200 ms "
               "(request withdrawn)"}]
    assert res["elapsed"] < 3 and res["guest"] == "running"
    assert len(child.state.checkpoints) == 2
    assert child.logdirty()[-1] == "off"
    assert_guest_running(child)


# --- the log-dirty probe ----------------------------------------------------------

PROBE_THEN_START = '''
cp = C.checkpointer()
cp.open(1)
probe = attempt(cp.probe)
with open(STREAM, "wb") as f:
    start = attempt(lambda: cp.start(f, None, None, None))
running = guest()
cp.close()
emit(probe=probe, start=start, guest=running, size=os.path.getsize(STREAM))
'''


def test_pv_guest_on_a_hypervisor_without_shadow_paging_fails_before_sending(tmp_path):
    child = run_child(tmp_path, PROBE_THEN_START, "pv", extra={"SIMXEN_NO_SHADOW": "1"})
    res = child.result
    kind, err = res["probe"]
    assert kind == "error" and err["type"] == "error"
    assert err["errno"] == errno.EOPNOTSUPP
    msg = err["msg"]
    # what is missing, and what to do
    assert msg.startswith("cannot checkpoint PV domain 1: ")
    assert "built without shadow paging (CONFIG_SHADOW_PAGING is not set)" in msg
    assert "protect a PVH or HVM guest instead" in msg
    assert "CONFIG_SHADOW_PAGING=y" in msg
    # start() refuses the same way, before libxc writes anything
    assert res["start"] == res["probe"]
    assert res["size"] == 0
    assert res["guest"] == "running"
    assert [r.state for r in child.state.runstates] == ["running"]
    # the hypervisor's build flag said so: log-dirty mode was never touched
    assert child.logdirty() == []
    assert child.state.domain["shadow_paging"] is False
    assert "xc: error" not in child.stderr and "PROF:" not in child.stderr


def test_pvh_guest_needs_no_shadow_paging(tmp_path):
    child = run_child(tmp_path, SESSION, extra={"SIMXEN_NO_SHADOW": "1"}, checkpoints=2)
    assert child.rc == 0, child.stderr
    assert child.result["probe"] == ["ok", None] and child.result["n"] == 2
    assert child.logdirty() == ["on", "off", "on", "off"]
    assert_guest_running(child)


def test_pv_guest_with_shadow_paging_passes_the_probe(tmp_path):
    child = run_child(tmp_path, PROBE_THEN_START, "pv")
    res = child.result
    assert res["probe"] == ["ok", None] and res["start"] == ["ok", None]
    assert res["size"] > 0 and res["guest"] == "running"
    assert child.logdirty() == ["on", "off", "on", "off"]


def test_start_probes_when_probe_was_not_called(tmp_path):
    child = run_child(tmp_path, '''
    cp = C.checkpointer()
    cp.open(1)
    with open(STREAM, "wb") as f:
        start = attempt(lambda: cp.start(f, None, None, None))
    cp.close()
    emit(start=start)
    ''', "pv", extra={"SIMXEN_NO_SHADOW": "1"})
    kind, err = child.result["start"]
    assert kind == "error" and err["errno"] == errno.EOPNOTSUPP
    assert "CONFIG_SHADOW_PAGING" in err["msg"]
    assert child.stream.stat().st_size == 0
    assert_guest_running(child)


ALREADY_LOGDIRTY = '''
# another save of the domain is running: its log-dirty mode is on
lib = ctypes.CDLL("libsimxen.so.0", use_errno=True)
cp = C.checkpointer()
cp.open(1)
lib.simxen_lock()
assert lib.simxen_logdirty(1) == 0
lib.simxen_unlock()
probe = attempt(cp.probe)
emit(probe=probe, still_on=lib.simxen_logdirty_enabled())
cp.close()
'''


@pytest.mark.parametrize("gtype,words", [
    ("pv", "otherwise this hypervisor lacks shadow paging (CONFIG_SHADOW_PAGING)"),
    ("pvh", "or it has passed-through devices"),
])
def test_probe_leaves_a_log_dirty_mode_it_did_not_switch_on(tmp_path, gtype, words):
    child = run_child(tmp_path, ALREADY_LOGDIRTY, gtype)
    kind, err = child.result["probe"]
    assert kind == "error" and err["errno"] == errno.EINVAL, err
    assert err["msg"].startswith(f"cannot checkpoint {gtype.upper()} domain 1: the "
                                 f"hypervisor refused to track its dirty memory")
    assert "a save, migration or Remus of it may be running already" in err["msg"]
    assert words in err["msg"]
    assert child.result["still_on"] == 1
    assert child.logdirty() == ["on", "refused-on"]


def test_probe_needs_an_open_domain(tmp_path):
    child = run_child(tmp_path, '''
    cp = C.checkpointer()
    emit(probe=attempt(cp.probe), doc=C.checkpointer.probe.__doc__,
         names=sorted(n for n in dir(C) if not n.startswith("_")))
    ''')
    assert child.result["probe"] == ["error", {"type": "error", "errno": None,
                                               "msg": "checkpoint state not opened"}]
    assert child.result["doc"].startswith("probe()\n\n")
    assert child.result["names"] == ["checkpointer", "error"]


# --- HVM guests with a device model: accepted, told apart from PVH -------------

@pytest.mark.parametrize("gtype", ["hvm", "pvhvm"])
def test_hvm_guest_with_a_device_model_is_not_pvh(tmp_path, gtype):
    # issue 11: opened as "hvm" (tests/e2e/test_trampoline_hvm.py checkpoints it)
    child = run_child(tmp_path, '''
    cp = C.checkpointer()
    emit(open=attempt(lambda: cp.open(1)), domid=cp.domid, type=cp.guest_type)
    cp.close()
    ''', gtype)
    assert child.result["open"] == ["ok", None]
    assert child.result["domid"] == 1 and child.result["type"] == "hvm"
    assert child.state.domain["device_model"] is True
    assert [r.state for r in child.state.runstates] == ["running"]
    assert child.logdirty() == []


# --- simxen's hypervisor answers, as libxc sees them ------------------------------

STAND_INS = '''
xc = ctypes.CDLL("libxenctrl.so.4.17", use_errno=True)
xc.xc_interface_open.restype = ctypes.c_void_p
xch = ctypes.c_void_p(xc.xc_interface_open(None, None, 0))
phys = ctypes.create_string_buffer(112)             # xc_physinfo_t
assert xc.xc_physinfo(xch, phys) == 0
caps = int.from_bytes(phys.raw[28:32], "little")
def shadow_op(op):                                  # as libxc's enable_logdirty
    rc = xc.xc_shadow_control(xch, 1, op, None, 0)
    return 0 if rc == 0 else ctypes.get_errno()
value = ctypes.c_uint64()
def param(index):
    rc = xc.xc_hvm_param_get(xch, 1, index, ctypes.byref(value))
    return value.value if rc == 0 else -ctypes.get_errno()
# XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY = 2, _OFF = 0
emit(shadow_cap=bool(caps & 16), hvm_cap=bool(caps & 1), hap_cap=bool(caps & 8),
     on=shadow_op(2), off=shadow_op(0), again=shadow_op(2), off2=shadow_op(0),
     callback_irq=param(0), store=param(1), ioreq_server=param(32))
'''


@pytest.mark.parametrize("gtype,no_shadow,expect", [
    # Debian's stock hypervisor and a PV guest: libxc's "95,22,0"
    ("pv", "1", dict(shadow_cap=False, on=errno.EOPNOTSUPP, off=errno.EINVAL,
                     callback_irq=-errno.EINVAL)),
    ("pv", "0", dict(shadow_cap=True, on=0, off=0, callback_irq=-errno.EINVAL)),
    ("pvh", "1", dict(shadow_cap=False, on=0, off=0, store=256 - 8 + 4,
                      ioreq_server=0)),
    ("hvm", "0", dict(shadow_cap=True, on=0, off=0, callback_irq=0,
                      ioreq_server=256 - 16)),
])
def test_simxen_log_dirty_physinfo_and_params(tmp_path, gtype, no_shadow, expect):
    child = run_child(tmp_path, STAND_INS, gtype, extra={"SIMXEN_NO_SHADOW": no_shadow})
    res = child.result
    assert res is not None, child.stderr
    assert res["hvm_cap"] and res["hap_cap"]
    for key, value in expect.items():
        assert res[key] == value, (key, res)
    assert (res["again"], res["off2"]) == (res["on"], res["off"])
    if gtype == "pvh":
        assert res["callback_irq"] >> 56 == 2           # a vector callback
