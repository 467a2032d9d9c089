"""The checkpoint trampoline (``xen_remus_compat._checkpoint``) on simxen.

Every test runs the compiled extension in a child process whose dynamic
linker finds simxen's libxenctrl/libxenguest/libxenstore/libxenevtchn first
(xen_remus_compat.sim.simxen).  Expected behaviour comes from legacy-api.md
§10.1 (API, TypeErrors), §10.4 (callback contract), §10.5 (suspend,
resume, timer, PROF lines), §10.8 (libxenguest 4.17) and §14.1-14.2
(what a port must keep and fix), and from the task brief (exceptions
re-raised after resume, no signal masks, HVM refused, bounded waits).
"""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from xen_remus_compat.sim import simxen
from xen_remus_compat.sim.simxen import SimDomain

ROOT = Path(__file__).resolve().parents[2]
BUILD_HINT = ("build it with `make -C lowlevel simxen` and "
              "`.venv/bin/python setup.py build_ext --inplace`")
CHECKPOINT_HEADER = "0e00000000000000"          # libxc CHECKPOINT, length 0
PROF = re.compile(r"^PROF: (suspending|resumed) at \d+\.\d{6}$")

PRELUDE = '''
import errno, gc, json, os, signal, sys, threading, time, traceback
from xen_remus_compat import _checkpoint as C
STATE = os.environ["SIMXEN_STATE_DIR"]
ARGS = json.loads(sys.argv[1])
STREAM = ARGS.get("stream")
def guest():
    with open(os.path.join(STATE, "runstate.log")) as f:
        return f.read().splitlines()[-1].split()[2]
def emit(**kw):
    print("RESULT " + json.dumps(kw), flush=True)
def describe(e):
    return {"type": type(e).__name__, "msg": str(e),
            "errno": getattr(e, "errno", "absent")}
'''


@pytest.fixture(scope="session", autouse=True)
def built():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"{why}; {BUILD_HINT}")
    sos = list((ROOT / "xen_remus_compat").glob("_checkpoint*.so"))
    if not sos:
        pytest.fail(f"xen_remus_compat._checkpoint is not built; {BUILD_HINT}")
    newest = max(p.stat().st_mtime for p in (ROOT / "lowlevel" / "checkpoint").iterdir())
    if min(p.stat().st_mtime for p in sos) < newest:
        pytest.fail(f"xen_remus_compat._checkpoint is older than its sources; {BUILD_HINT}")


@dataclass
class Child:
    rc: int
    result: Optional[dict]
    stdout: str
    stderr: str
    state: simxen.SimState

    @property
    def prof(self):
        return [line for line in self.stderr.splitlines() if line.startswith("PROF:")]


def run_child(tmp_path: Path, body: str, domain: SimDomain = SimDomain(pages=256),
              timeout: float = 60, **args) -> Child:
    state = tmp_path / "state"
    args.setdefault("stream", str(tmp_path / "stream"))
    code = PRELUDE + textwrap.dedent(body)
    proc = simxen.run([sys.executable, "-c", code, json.dumps(args)], state, domain,
                      capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines()
               if line.startswith("RESULT ")]
    return Child(proc.returncode, results[-1] if results else None, proc.stdout,
                 proc.stderr, simxen.read_state(state))


def assert_guest_running(child: Child) -> None:
    assert child.state.runstates, "simxen recorded nothing"
    assert child.state.final_state == "running", child.state.runstates[-3:]


# --- callback order and contract (§10.4, §14.1) ----------------------------

ORDER = '''
events = []
def mk(name, ret=None):
    def cb():
        events.append([name, guest(), threading.get_ident(), os.path.getsize(STREAM)])
        return ret
    return cb
n = [0]
def ckpt():
    with open(STREAM, "rb") as f:
        f.seek(-8, 2)
        tail = f.read(8).hex()
    events.append(["checkpoint", guest(), threading.get_ident(), tail])
    n[0] += 1
    return n[0] < 4
cp = C.checkpointer()
cp.open(1)
with open(STREAM, "wb") as f:
    r = cp.start(f, mk("suspend"), mk("postcopy"), ckpt)
cp.close()
emit(ret=r, events=events, main=threading.get_ident())
'''


@pytest.mark.parametrize("path", ["evtchn", "xenstore"])
def test_callback_order_guest_state_and_flush(tmp_path, path):
    child = run_child(tmp_path, ORDER, SimDomain(pages=512, suspend=path, dirty_rate=20))
    assert child.rc == 0, child.stderr
    res = child.result
    assert res["ret"] is None
    names = [e[0] for e in res["events"]]
    assert names == ["suspend", "postcopy", "checkpoint"] * 4
    for name, state, thread, *rest in res["events"]:
        # postsuspend and preresume run paused, commit runs resumed (§14.1)
        assert state == ("running" if name == "checkpoint" else "suspended"), name
        assert thread == res["main"]
        if name == "checkpoint":
            # the whole checkpoint is on the fd before the callback runs
            assert rest[0] == CHECKPOINT_HEADER
    assert_guest_running(child)
    assert [c.number for c in child.state.checkpoints] == [1, 2, 3, 4]
    prof = child.prof
    assert len(prof) == 8 and all(PROF.match(p) for p in prof)
    assert [p.split()[1] for p in prof] == ["suspending", "resumed"] * 4
    if path == "xenstore":
        # the guest's normal path, said once at open(), never per checkpoint
        assert child.stderr.count("domain 1 has no suspend event channel: "
                                  "suspending it through xenstore") == 1
        assert "WARNING" not in child.stderr
    else:
        assert "bound to suspend event channel 1:" in child.stderr
    assert "xc: error" not in child.stderr


def test_callbacks_run_on_the_thread_that_called_start(tmp_path):
    child = run_child(tmp_path, '''
    idents = []
    n = [0]
    def cb():
        idents.append(threading.get_ident())
    def ckpt():
        cb()
        n[0] += 1
        return n[0] < 3
    def worker():
        cp = C.checkpointer()
        cp.open(1)
        with open(STREAM, "wb") as f:
            cp.start(f, cb, cb, ckpt)
        cp.close()
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    emit(idents=idents, worker=t.ident, main=threading.get_ident())
    ''')
    res = child.result
    assert len(res["idents"]) == 9
    assert set(res["idents"]) == {res["worker"]} and res["worker"] != res["main"]


def test_gil_is_released_while_libxc_works(tmp_path):
    # 64 MiB of first pass keep the C side busy for tens of ms before the
    # first callback; a Python thread must get to run in that window.
    child = run_child(tmp_path, '''
    import collections
    stamps = collections.deque(maxlen=1 << 20)
    stop = [False]
    def spin():
        while not stop[0]:
            stamps.append(time.monotonic())
    first = []
    def s():
        if not first:
            first.append(time.monotonic())
    th = threading.Thread(target=spin)
    th.start()
    cp = C.checkpointer()
    cp.open(1)
    with open(STREAM, "wb") as f:
        t0 = time.monotonic()
        cp.start(f, s, None, None)
    stop[0] = True
    th.join()
    cp.close()
    inside = [x for x in stamps if t0 + 0.002 < x < first[0] - 0.002]
    emit(window=first[0] - t0, inside=len(inside))
    ''', SimDomain(pages=16384))
    res = child.result
    assert res["window"] > 0.006, res
    assert res["inside"] > 0, res


# --- exceptions and falsy returns (§10.4 pitfalls, §14.2 fix) -------------

RAISING = '''
class Boom(Exception):
    pass
exc = Boom("from " + ARGS["which"])
seen = []
def cb_for(name, ret):
    def cb():
        seen.append([name, guest()])
        if name == ARGS["which"] and sum(1 for s in seen if s[0] == name) == 2:
            raise exc
        return ret
    return cb
cp = C.checkpointer()
cp.open(1)
try:
    with open(STREAM, "wb") as f:
        cp.start(f, cb_for("suspend", None), cb_for("postcopy", None),
                 cb_for("checkpoint", True))
    emit(raised=None)
except Boom as e:
    emit(raised=describe(e), same=e is exc, guest=guest(), seen=seen,
         frames=[fr.name for fr in traceback.extract_tb(e.__traceback__)])
cp.close()
'''


# 4.17 writes CHECKPOINT before postcopy (xg_sr_save.c), so a postcopy that
# raises in epoch 2 leaves 2 checkpoint records, one never committed.
@pytest.mark.parametrize("which,checkpoints", [("suspend", 1), ("postcopy", 2),
                                               ("checkpoint", 2)])
def test_exception_in_callback_is_reraised_after_resume(tmp_path, which, checkpoints):
    child = run_child(tmp_path, RAISING, which=which)
    assert child.rc == 0, child.stderr
    res = child.result
    assert res["raised"] == {"type": "Boom", "msg": f"from {which}", "errno": "absent"}
    assert res["same"] is True                     # the original object
    assert "cb" in res["frames"]                   # with its traceback
    assert res["guest"] == "running"               # resumed before raising
    assert res["seen"][-1][0] == which             # nothing ran after it
    assert len(child.state.checkpoints) == checkpoints
    assert_guest_running(child)
    assert "Save failed" not in child.stderr       # we stopped, libxc did not fail


FALSY = '''
n = {"suspend": 0, "postcopy": 0, "checkpoint": 0}
def cb_for(name, value, default):
    def cb():
        n[name] += 1
        return value if n[name] == 2 else default
    return cb
cbs = [cb_for("suspend", *ARGS["suspend"]), cb_for("postcopy", *ARGS["postcopy"]),
       cb_for("checkpoint", *ARGS["checkpoint"]) if ARGS["checkpoint"] else None]
cp = C.checkpointer()
cp.open(1)
try:
    with open(STREAM, "wb") as f:
        r = cp.start(f, *cbs)
    emit(ret=repr(r), n=n, guest=guest())
except C.error as e:
    emit(error=describe(e), n=n, guest=guest())
cp.close()
'''


@pytest.mark.parametrize("case,args,expect", [
    # suspend/postcopy: falsy = failure -> error; checkpoint: falsy = stop -> None
    ("suspend-false", dict(suspend=[False, None], postcopy=[None, None],
                           checkpoint=[True, True]),
     ("error", "suspend callback returned a false value", 1)),
    ("postcopy-zero", dict(suspend=[None, None], postcopy=[0, None],
                           checkpoint=[True, True]),
     ("error", "postcopy callback returned a false value", 2)),
    ("checkpoint-empty-str", dict(suspend=[None, None], postcopy=[None, None],
                                  checkpoint=["", "yes"]),
     ("ret", "None", 2)),
    ("truthy-non-bools", dict(suspend=[1, [1]], postcopy=["x", 2.5],
                              checkpoint=[[], 7]),
     ("ret", "None", 2)),
    ("no-checkpoint-callback", dict(suspend=[None, None], postcopy=[None, None],
                                    checkpoint=None),
     ("ret", "None", 1)),
])
def test_falsy_returns(tmp_path, case, args, expect):
    child = run_child(tmp_path, FALSY, **args)
    assert child.rc == 0, child.stderr
    res = child.result
    kind, text, checkpoints = expect
    if kind == "error":
        assert res["error"]["type"] == "error"
        assert text in res["error"]["msg"]
        assert res["error"]["errno"] is None
    else:
        assert res["ret"] == text
    assert len(child.state.checkpoints) == checkpoints
    assert res["guest"] == "running"
    assert_guest_running(child)
    assert "xc: error" not in child.stderr


# --- timer mode (§10.5) and signal masks (§0.2, brief) ---------------------

TIMER = '''
def mask():
    return sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
def tasks():
    return len(os.listdir("/proc/self/task"))
before = (mask(), tasks())
times = []
n = [0]
def s():
    times.append(time.monotonic())
def ckpt():
    n[0] += 1
    return n[0] < ARGS["count"]
cp = C.checkpointer()
cp.open(1)
with open(STREAM, "wb") as f:
    cp.start(f, s, None, ckpt, ARGS["interval"], 0)
for _ in range(100):                # a joined thread leaves /proc shortly after
    if tasks() == 1:
        break
    time.sleep(0.005)
after = (mask(), tasks())
during = []
t = threading.Thread(target=lambda: during.append(mask()))
t.start(); t.join()
cp.close()
gaps = [round((b - a) * 1000, 2) for a, b in zip(times, times[1:])]
emit(before=before, after=after, thread_mask=during[0], gaps=gaps)
'''


def test_timer_mode_suspends_periodically_without_signal_masks(tmp_path):
    child = run_child(tmp_path, TIMER, interval=40, count=7)
    assert child.rc == 0, child.stderr
    res = child.result
    assert res["before"] == [[], 1]
    assert res["after"] == [[], 1]                 # no mask, timer thread gone
    assert res["thread_mask"] == []                # inherited by new threads: none
    gaps = sorted(res["gaps"])
    assert len(gaps) == 6
    # the commit callback returns at once: only the timer spaces suspends
    assert 30 <= gaps[len(gaps) // 2] <= 80, gaps
    assert gaps[0] >= 5, gaps                  # never back to back
    assert_guest_running(child)


def test_untimed_mode_suspends_back_to_back(tmp_path):
    child = run_child(tmp_path, TIMER, interval=0, count=5)
    gaps = sorted(child.result["gaps"])
    assert len(gaps) == 4 and gaps[2] < 10, gaps


# --- signals (§1.5 "intended" behaviour) ------------------------------------

SIGNALLED = '''
class Terminated(Exception):
    pass
def on_term(signo, frame):
    raise Terminated()
signal.signal(signal.SIGTERM, on_term)
n = [0]
def ckpt():
    n[0] += 1
    if n[0] == 3:
        print("STARTED", flush=True)
    time.sleep(0.02)
    return True
cp = C.checkpointer()
cp.open(1)
try:
    with open(STREAM, "wb") as f:
        cp.start(f, None, None, ckpt)
    emit(raised=None)
except (Terminated, KeyboardInterrupt) as e:
    emit(raised=type(e).__name__, guest=guest(), n=n[0])
cp.close()
'''


@pytest.mark.parametrize("signo,name", [(signal.SIGTERM, "Terminated"),
                                        (signal.SIGINT, "KeyboardInterrupt")])
def test_signal_from_outside_during_checkpointing(tmp_path, signo, name):
    state = tmp_path / "state"
    code = PRELUDE + textwrap.dedent(SIGNALLED)
    env = simxen.environment(state, SimDomain(pages=256))
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-c", code,
                             json.dumps({"stream": str(tmp_path / "stream")})],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "STARTED"
        proc.send_signal(signo)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1][7:])
    assert res["raised"] == name and res["guest"] == "running"
    st = simxen.read_state(state)
    assert st.final_state == "running"


def test_ctrl_c_while_blocked_in_c_waiting_for_the_timer(tmp_path):
    # With --timer the trampoline waits (GIL released) for the timer thread;
    # SIGINT must still surface, after the guest is resumed, promptly.
    child = run_child(tmp_path, '''
    main = threading.main_thread().ident
    n = [0]
    sent = []
    def kick():
        sent.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)
    def ckpt():
        n[0] += 1
        if n[0] == 2:
            threading.Timer(0.05, kick).start()
        return True
    cp = C.checkpointer()
    cp.open(1)
    try:
        with open(STREAM, "wb") as f:
            cp.start(f, None, None, ckpt, 400, 0)
        emit(raised=None)
    except KeyboardInterrupt:
        emit(raised="KeyboardInterrupt", guest=guest(), n=n[0],
             latency=time.monotonic() - sent[0])
    cp.close()
    ''')
    res = child.result
    assert res["raised"] == "KeyboardInterrupt" and res["guest"] == "running"
    assert res["n"] == 2                           # no checkpoint ran after it
    assert res["latency"] < 1.5, res               # bounded by the interval
    assert_guest_running(child)


# --- close(), deallocation, resume failures ---------------------------------

@pytest.mark.parametrize("how", ["close", "dealloc"])
def test_close_and_dealloc_resume_a_suspended_guest(tmp_path, how):
    # Three failing resumes: postcopy's and both of start()'s retries.
    child = run_child(tmp_path, '''
    cp = C.checkpointer()
    cp.open(1)
    try:
        with open(STREAM, "wb") as f:
            cp.start(f, None, None, lambda: True)
    except C.error as e:
        err = describe(e)
    left = guest()
    if ARGS["how"] == "close":
        cp.close()
    else:
        del cp
        gc.collect()
    emit(error=err, left=left, now=guest())
    ''', SimDomain(pages=128, fail=("resume@1",) * 3), how=how)
    res = child.result
    assert res["error"]["type"] == "error"
    assert "error resuming domain 1" in res["error"]["msg"]
    assert res["error"]["errno"] == errno.EIO
    assert res["left"] == "suspended"
    assert res["now"] == "running"
    assert child.prof[-1].startswith("PROF: resumed at ")
    assert_guest_running(child)


def test_a_resume_failure_is_retried_and_reported(tmp_path):
    child = run_child(tmp_path, '''
    cp = C.checkpointer()
    cp.open(1)
    try:
        with open(STREAM, "wb") as f:
            cp.start(f, None, None, lambda: True)
        emit(error=None)
    except C.error as e:
        emit(error=describe(e), guest=guest())
    cp.close()
    ''', SimDomain(pages=128, fail=("resume@2",)))
    res = child.result
    assert res["error"]["errno"] == errno.EIO and res["guest"] == "running"
    assert len(child.state.checkpoints) == 2


# --- argument rules (§10.1) ----------------------------------------------------

def test_argument_rules_and_module_surface(tmp_path):
    child = run_child(tmp_path, '''
    out = {}
    def attempt(key, fn):
        try:
            out[key] = ["ok", repr(fn())]
        except Exception as e:
            out[key] = [type(e).__name__, str(e), getattr(e, "errno", "absent")]
    f = open(STREAM, "wb")
    cp = C.checkpointer()
    attempt("ctor-args", lambda: C.checkpointer(1))
    attempt("start-unopened", lambda: cp.start(f))
    attempt("bad-file-unopened", lambda: cp.start(object()))
    attempt("open-str", lambda: cp.open("1"))
    attempt("open-0", lambda: cp.open(0))
    attempt("open-1", lambda: cp.open(1))
    attempt("open-again", lambda: cp.open(1))
    attempt("bad-file", lambda: cp.start(object()))
    attempt("negative-fd", lambda: cp.start(-1))
    attempt("suspend-not-callable", lambda: cp.start(f, 1))
    attempt("postcopy-not-callable", lambda: cp.start(f, None, "x"))
    attempt("checkpoint-not-callable", lambda: cp.start(f, None, None, 3))
    attempt("interval-str", lambda: cp.start(f, None, None, None, "x"))
    calls = []
    attempt("keywords", lambda: cp.start(iofile=f.fileno(),
                                         checkpoint_cb=lambda: calls.append(1) or False))
    out["keyword-calls"] = len(calls)
    out["domid"] = cp.domid
    attempt("close", lambda: cp.close())
    out["domid-closed"] = cp.domid
    attempt("close-again", lambda: cp.close())
    attempt("subclass", lambda: type("X", (C.checkpointer,), {}))
    out["names"] = sorted(n for n in dir(C) if not n.startswith("_"))
    out["error-base"] = issubclass(C.error, Exception)
    out["error-errno"] = repr(C.error("x").errno)
    out["doc"] = C.checkpointer.__doc__
    out["module-doc"] = C.__doc__
    attempt("timeout-zero", lambda: setattr(cp, "suspend_timeout", 0))
    out["timeout"] = cp.suspend_timeout
    emit(**out)
    ''')
    r = child.result
    assert r["ctor-args"][0] == "TypeError"
    assert r["start-unopened"] == ["error", "checkpoint state not opened", None]
    assert r["bad-file-unopened"][:2] == ["TypeError", "invalid file handle"]
    assert r["open-str"][0] == "TypeError"
    assert r["open-0"][0] == "error" and r["open-0"][2] == errno.EINVAL
    assert r["open-1"] == ["ok", "None"]
    assert r["open-again"][0] == "error" and r["open-again"][2] == errno.EBUSY
    assert r["bad-file"][:2] == ["TypeError", "invalid file handle"]
    assert r["negative-fd"][:2] == ["TypeError", "invalid file handle"]
    assert r["suspend-not-callable"][:2] == ["TypeError", "suspend callback not callable"]
    assert r["postcopy-not-callable"][:2] == ["TypeError", "postcopy callback not callable"]
    assert r["checkpoint-not-callable"][:2] == ["TypeError",
                                                "checkpoint callback not callable"]
    assert r["interval-str"][0] == "TypeError"
    assert r["keywords"] == ["ok", "None"] and r["keyword-calls"] == 1
    assert r["domid"] == 1 and r["domid-closed"] is None
    assert r["close"] == ["ok", "None"] and r["close-again"] == ["ok", "None"]
    assert r["subclass"][0] == "TypeError"
    assert r["names"] == ["checkpointer", "error"]
    assert r["error-base"] is True and r["error-errno"] == "None"
    assert r["doc"] == "Checkpoint object" and r["module-doc"] == "checkpoint API"
    assert r["timeout-zero"][0] == "ValueError" and r["timeout"] == 5000
    assert_guest_running(child)


OPEN_ONLY = '''
cp = C.checkpointer()
try:
    cp.open(ARGS.get("domid", 1))
    emit(error=None)
except C.error as e:
    emit(error=describe(e))
'''


def test_open_on_a_missing_domain(tmp_path):
    child = run_child(tmp_path, OPEN_ONLY, domid=99)
    assert child.result["error"] == {"type": "error", "errno": errno.ESRCH,
                                     "msg": "domain 99 does not exist"}


@pytest.mark.parametrize("gtype", ["hvm", "pvhvm"])
def test_open_accepts_hvm(tmp_path, gtype):
    # HVM guests with a device model are checkpointed since issue 11
    # (tests/e2e/test_trampoline_hvm.py); open() no longer refuses them
    child = run_child(tmp_path, OPEN_ONLY, SimDomain(type=gtype))
    assert child.result["error"] is None


def test_open_failure_keeps_errno(tmp_path):
    child = run_child(tmp_path, OPEN_ONLY, SimDomain(fail=("open",)))
    assert child.result["error"] == {
        "type": "error", "errno": errno.EACCES,
        "msg": "could not open control interface (are you root?)"}


# --- failures inside the save ---------------------------------------------------

FAILING = '''
cp = C.checkpointer()
cp.open(1)
cp.suspend_timeout = ARGS.get("suspend_timeout", 5000)
n = [0]
def ckpt():
    n[0] += 1
    if ARGS.get("destroy") and n[0] == 2:
        from xen_remus_compat.sim import simxen
        simxen.destroy(1)
    return n[0] < 6
t0 = time.monotonic()
try:
    with open(STREAM, "wb") as f:
        cp.start(f, None, None, ckpt)
    emit(error=None)
except C.error as e:
    emit(error=describe(e), guest=guest(), elapsed=time.monotonic() - t0)
cp.close()
'''


@pytest.mark.parametrize("path,text", [
    ("evtchn", "domain 1 did not suspend within 200 ms (event channel)"),
    ("xenstore", "domain 1 did not answer the xenstore suspend request within "
                 "200 ms (request withdrawn)"),
])
def test_a_guest_that_does_not_suspend_is_waited_for_boundedly(tmp_path, path, text):
    child = run_child(tmp_path, FAILING, SimDomain(pages=128, suspend=path,
                                                   fail=("suspend@3",)),
                      suspend_timeout=200)
    res = child.result
    assert res["error"] == {"type": "error", "msg": text, "errno": errno.ETIMEDOUT}
    assert res["guest"] == "running" and res["elapsed"] < 3
    assert len(child.state.checkpoints) == 2
    assert_guest_running(child)


def test_a_write_failure_reports_libxc_error_and_errno(tmp_path):
    child = run_child(tmp_path, FAILING, SimDomain(pages=128, dirty_rate=50,
                                                   fail=("write@2",)))
    res = child.result
    assert res["error"]["errno"] == errno.EIO
    assert res["error"]["msg"].startswith("xc_domain_save failed: Failed to write")
    assert res["guest"] == "running"
    assert "xc: error: " in child.stderr           # libxc's own words are shown
    assert_guest_running(child)


def test_a_destroyed_guest_ends_checkpointing(tmp_path):
    child = run_child(tmp_path, FAILING, SimDomain(pages=128), destroy=True)
    res = child.result
    assert res["error"] == {"type": "error", "errno": errno.ESRCH,
                            "msg": "domain 1 no longer exists"}
    assert child.state.final_state == "destroyed"


# --- the stream (xl-side.md §3.4-3.5) -----------------------------------------

def test_stream_with_checkpoint_end_holds_every_checkpoint(tmp_path):
    # The engine's checkpoint callback appends libxl CHECKPOINT_END (8 bytes)
    # to the same fd: it must land right after libxc's CHECKPOINT record.
    child = run_child(tmp_path, '''
    fd = os.open(STREAM, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    n = [0]
    def ckpt():
        os.write(fd, (4).to_bytes(4, "little") + bytes(4))
        n[0] += 1
        time.sleep(0.01)
        return n[0] < 5
    cp = C.checkpointer()
    cp.open(1)
    cp.start(fd, None, None, ckpt)
    cp.close()
    emit(n=n[0])
    ''', SimDomain(pages=2048, dirty_rate=30, dirty_pattern="hotspot"))
    assert child.result["n"] == 5
    rep = simxen.replay(tmp_path / "stream", child.state)
    assert rep.ok, rep.problems
    assert rep.checkpoints == 5 and rep.checkpoint_ends == 5
    assert rep.pages > 2048                        # the first pass plus dirty pages
    assert_guest_running(child)
