"""simxen, the simulated Xen, and its Python side (xen_remus_compat.sim.simxen).

What is checked comes from the task brief and the specs: the stand-ins
carry the real SONAMEs and symbol versions of Debian's 4.17 libraries
(so the extension built against libxen-dev loads them unchanged); the
stream is a valid libxc v3 PV Remus stream (libxc-migration-stream.pandoc
rev 3, xl-side.md §3.4-3.5, Xen's own verifier); page contents follow the
simpage contract and rebuild the recorded version vector at every
checkpoint; dirtying follows rate and pattern; simxen never runs on a Xen
host or without being asked to.
"""
from __future__ import annotations

import errno
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xen_remus_compat import errors
from xen_remus_compat.sim import simxen
from xen_remus_compat.sim.simxen import SimDomain
from xen_remus_compat.stream import verify as stream_verify

ROOT = Path(__file__).resolve().parents[2]
LIBDIR = simxen.lib_dir()
#: soname -> the version node Debian's library defines for our symbols
SONAMES = {
    "libxenctrl.so.4.17": "VERS_4.17.0",
    "libxenguest.so.4.17": "VERS_4.17.0",
    "libxenstore.so.4": "VERS_4.0",
    "libxenevtchn.so.1": "VERS_1.0",
}
#: libraries that would reach a hypervisor if they were loaded
REAL_ONLY = ("libxencall", "libxenforeignmemory", "libxengnttab",
             "libxendevicemodel", "libxentoolcore", "libxentoollog")

CHILD = '''
import json, os, sys, time
from xen_remus_compat import _checkpoint as C
ARGS = json.loads(sys.argv[1])
n = [0]
def ckpt():
    n[0] += 1
    if ARGS.get("sleep"):
        time.sleep(ARGS["sleep"])
    return n[0] < ARGS["count"]
cp = C.checkpointer()
try:
    cp.open(1)
    with open(ARGS["stream"], "wb") as f:
        cp.start(f, None, None, ckpt, ARGS.get("interval", 0), 0)
    cp.close()
    print(json.dumps({"ok": n[0]}))
except C.error as e:
    print(json.dumps({"error": str(e), "errno": e.errno}))
'''


@pytest.fixture(scope="module", autouse=True)
def built():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(why)


def checkpoints(tmp_path: Path, domain: SimDomain, count: int = 4, *,
                sleep: float = 0.0, interval: int = 0, stream=None, env=None):
    state = tmp_path / "state"
    stream = stream or tmp_path / "stream"
    args = json.dumps({"count": count, "sleep": sleep, "interval": interval,
                       "stream": str(stream)})
    proc = simxen.run([sys.executable, "-c", CHILD, args], state, domain,
                      capture_output=True, text=True, timeout=120, cwd=ROOT,
                      env=env)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.splitlines()[-1])
    assert res == {"ok": count}, proc.stderr
    return res, simxen.read_state(state), proc


def readelf(*args) -> str:
    return subprocess.run(["readelf", *args], capture_output=True, text=True,
                          check=True).stdout


# --- the stand-ins ----------------------------------------------------------

@pytest.mark.parametrize("soname,version", sorted(SONAMES.items()))
def test_stand_ins_carry_the_real_sonames_and_symbol_versions(soname, version):
    path = LIBDIR / soname
    dyn = readelf("-d", str(path))
    assert f"Library soname: [{soname}]" in dyn
    needed = [line.split("[")[1].rstrip("]") for line in dyn.splitlines()
              if "(NEEDED)" in line]
    assert not any(n.startswith(REAL_ONLY) for n in needed), needed
    assert version in readelf("-V", str(path))
    # Debian's own library defines the same version node
    real = Path("/usr/lib/x86_64-linux-gnu") / soname
    if real.exists():
        assert version in readelf("-V", str(real))


def test_extension_binds_every_xen_library_to_simxen(tmp_path):
    ext = next((ROOT / "xen_remus_compat").glob("_checkpoint*.so"))
    env = simxen.environment(tmp_path)
    out = subprocess.run(["ldd", str(ext)], env=env, capture_output=True,
                         text=True, check=True).stdout
    resolved = {line.split()[0]: line.split("=>")[1].split()[0]
                for line in out.splitlines() if "=>" in line}
    for soname in SONAMES:
        assert Path(resolved[soname]).parent == LIBDIR.resolve(), out
    assert not any(name.startswith(REAL_ONLY) for name in resolved), out
    assert "not found" not in out and "no version information" not in out


# --- the environment (simxen.py) -------------------------------------------

def test_environment_sets_library_path_and_domain(tmp_path):
    dom = SimDomain(domid=7, name="web", pages=100, vcpus=2, dirty_rate=1.5,
                    dirty_pattern="hotspot", seed=9, suspend="xenstore",
                    fail=("write@2", "suspend@3"))
    env = simxen.environment(tmp_path, dom, base={"LD_LIBRARY_PATH": "/opt/x",
                                                  "SIMXEN_TYPE": "hvm", "HOME": "/r"},
                             exists=lambda p: False)
    assert env["LD_LIBRARY_PATH"] == f"{LIBDIR.resolve()}:/opt/x"
    assert env["HOME"] == "/r" and env["SIMXEN_ENABLE"] == "1"
    assert "SIMXEN_FORCE" not in env
    assert env["SIMXEN_TYPE"] == "pv"           # stale settings do not leak in
    assert (env["SIMXEN_DOMID"], env["SIMXEN_NAME"], env["SIMXEN_PAGES"],
            env["SIMXEN_VCPUS"], env["SIMXEN_DIRTY_RATE"],
            env["SIMXEN_DIRTY_PATTERN"], env["SIMXEN_SEED"], env["SIMXEN_SUSPEND"],
            env["SIMXEN_FAIL"]) == (
        "7", "web", "100", "2", "1.5", "hotspot", "9", "xenstore",
        "write@2,suspend@3")
    assert env["SIMXEN_STATE_DIR"] == str(tmp_path.resolve())
    assert SimDomain.from_env(env) == dom


@pytest.mark.parametrize("mark", simxen.XEN_MARKS)
def test_environment_refuses_on_a_xen_host_unless_forced(tmp_path, mark):
    with pytest.raises(errors.EnvironmentProblem, match=f"Xen host \\({mark} exists"):
        simxen.environment(tmp_path, exists=lambda p: p == mark)
    env = simxen.environment(tmp_path, force=True, exists=lambda p: p == mark)
    assert env["SIMXEN_FORCE"] == "1"


@pytest.mark.parametrize("kw", [dict(pages=0), dict(dirty_pattern="zigzag"),
                                dict(suspend="hypercall"), dict(fail=("write@0",)),
                                dict(fail=("explode",)), dict(type="arm")])
def test_invalid_domain_settings_are_refused(kw):
    with pytest.raises(errors.InputError, match="invalid simulated domain setting"):
        SimDomain(**kw)


@pytest.mark.parametrize("change,code,text", [
    ({"SIMXEN_ENABLE": None}, errno.ENODEV, "refusing to run without SIMXEN_ENABLE=1"),
    ({"SIMXEN_PAGES": "0"}, errno.EINVAL, "simxen: bad SIMXEN_PAGES=0: out of range"),
    ({"SIMXEN_FAIL": "write@x"}, errno.EINVAL, "simxen: bad SIMXEN_FAIL=write@x"),
])
def test_library_refuses_without_enable_and_bad_settings(tmp_path, change, code, text):
    # The C side guards itself too, whatever started the process.
    env = simxen.environment(tmp_path / "state")
    env["PYTHONPATH"] = str(ROOT)
    for key, value in change.items():
        if value is None:
            del env[key]
        else:
            env[key] = value
    args = json.dumps({"count": 1, "stream": str(tmp_path / "stream")})
    proc = subprocess.run([sys.executable, "-c", CHILD, args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    res = json.loads(proc.stdout.splitlines()[-1])
    assert res == {"error": "could not open control interface (are you root?)",
                   "errno": code}
    assert text in proc.stderr


def test_destroy_needs_a_simxen_process():
    with pytest.raises(errors.EnvironmentProblem, match="does not run against simxen"):
        simxen.destroy(1)


def test_reexec_runs_the_child_under_simxen(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("SIMXEN_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SIMXEN_PAGES", "77")
    monkeypatch.setenv("SIMXEN_STATE_DIR", str(tmp_path))
    code = textwrap.dedent('''
        import os, sys
        from xen_remus_compat.sim import simxen
        assert simxen.active()
        assert simxen.reexec_if_needed(["-c", "pass"]) is None
        sys.exit(int(os.environ["SIMXEN_PAGES"]) - 70)
    ''')
    assert simxen.reexec_if_needed(["-c", code]) == 7


def test_activate_loads_the_stand_ins_in_process(tmp_path):
    # No LD_LIBRARY_PATH: the stand-ins are preloaded by path before the
    # extension, whose DT_NEEDED sonames then bind to them.
    code = textwrap.dedent(f'''
        from xen_remus_compat.sim import simxen
        simxen.activate({str(tmp_path)!r}, simxen.SimDomain(pages=32))
        from xen_remus_compat import _checkpoint as C
        cp = C.checkpointer(); cp.open(1); cp.close()
        maps = open("/proc/self/maps").read()
        print("real" if "/usr/lib/x86_64-linux-gnu/libxenctrl" in maps else "sim")
    ''')
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SIMXEN_") and k != "LD_LIBRARY_PATH"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "sim"
    assert simxen.read_state(tmp_path).domain["pages"] == 32


# --- the stream ---------------------------------------------------------------

def test_stream_passes_xens_verifier_and_ours(tmp_path):
    res, state, _ = checkpoints(tmp_path, SimDomain(pages=1024, vcpus=2,
                                                    dirty_rate=20), count=3,
                                sleep=0.005)
    assert res == {"ok": 3}
    ours = stream_verify.verify(tmp_path / "stream", fmt="libxc")
    assert ours.ok and ours.checkpoints == 3 and not ours.warnings, ours.as_dict()
    assert ours.guest == "pv"

    sys.path.insert(0, "/usr/lib/xen-4.17/lib/python")
    try:
        from xen.migration import libxc
    finally:
        sys.path.pop(0)
    info, types = [], []
    with open(tmp_path / "stream", "rb") as f:
        def read(n):
            data = f.read(n)
            if len(data) != n:
                raise IOError("eof")
            return data
        v = libxc.VerifyLibxc(info.append, read)
        v.verify_ihdr()
        v.verify_dhdr()
        with pytest.raises(IOError):
            while True:
                types.append(v.verify_record())
    assert "Domain Header: x86 PV from Xen 4.17" in info
    assert "  64bit guest, 4 levels of pagetables" in info
    # 4.17's PV order: PV_INFO, CPUID, MSR, STATIC_DATA_END, P2M_FRAMES, ...
    assert types[:5] == [libxc.REC_TYPE_x86_pv_info, libxc.REC_TYPE_x86_cpuid_policy,
                         libxc.REC_TYPE_x86_msr_policy, libxc.REC_TYPE_static_data_end,
                         libxc.REC_TYPE_x86_pv_p2m_frames]
    assert types.count(libxc.REC_TYPE_checkpoint) == 3
    assert types.count(libxc.REC_TYPE_x86_pv_vcpu_basic) == 3 * 2
    assert types[-1] == libxc.REC_TYPE_checkpoint
    epoch_tail = [libxc.REC_TYPE_tsc_info, libxc.REC_TYPE_shared_info] + [
        libxc.REC_TYPE_x86_pv_vcpu_basic, libxc.REC_TYPE_x86_pv_vcpu_extended,
        libxc.REC_TYPE_x86_pv_vcpu_xsave, libxc.REC_TYPE_x86_pv_vcpu_msrs] * 2
    assert types[-1 - len(epoch_tail):-1] == epoch_tail


def test_page_batches_hold_at_most_1024_pages(tmp_path):
    checkpoints(tmp_path, SimDomain(pages=3000, dirty_rate=0), count=1)
    seen = []
    stream_verify.verify(tmp_path / "stream", fmt="libxc", on_event=lambda ev:
                         seen.append(ev.info.count) if getattr(ev, "type", None) == 1
                         and getattr(ev, "layer", "") == "libxc" else None)
    assert seen and max(seen) <= 1024 and sum(seen) == 3000


@pytest.mark.parametrize("pattern", simxen.PATTERNS)
def test_memory_rebuilds_to_the_recorded_versions(tmp_path, pattern):
    res, state, _ = checkpoints(tmp_path, SimDomain(pages=1536, dirty_rate=40,
                                                    dirty_pattern=pattern, seed=3),
                                count=5, sleep=0.01)
    rep = simxen.replay(tmp_path / "stream", state)
    assert rep.ok, rep.problems
    assert rep.checkpoints == 5
    # the guest really changed between checkpoints
    assert state.versions(5) != state.versions(1)
    assert state.never_left_suspended()


def _increments(state, k):
    a, b = state.versions(k - 1), state.versions(k)
    return {pfn: b[pfn] - a[pfn] for pfn in range(len(a)) if b[pfn] != a[pfn]}


def test_dirty_rate_follows_run_time(tmp_path):
    rate = 20.0
    _, state, _ = checkpoints(tmp_path, SimDomain(pages=1 << 16, dirty_rate=rate,
                                                  dirty_pattern="sequential"),
                              count=4, sleep=0.03)
    runs = [(a.monotonic, b.monotonic) for a, b in
            zip(state.runstates, state.runstates[1:])
            if a.state == "running" and b.state == "suspended"]
    for k in (2, 3, 4):
        ran_ms = (runs[k - 1][1] - runs[k - 1][0]) * 1000
        writes = sum(_increments(state, k).values())
        assert abs(writes - rate * ran_ms) <= 0.02 * rate * ran_ms + 2, (k, writes, ran_ms)


def test_dirty_patterns(tmp_path):
    pages = 4096
    shapes = {}
    for pattern in simxen.PATTERNS:
        _, state, _ = checkpoints(tmp_path / pattern,
                                  SimDomain(pages=pages, dirty_rate=30,
                                            dirty_pattern=pattern),
                                  count=3, sleep=0.03)
        shapes[pattern] = _increments(state, 3)
    seq = sorted(shapes["sequential"])
    # one run of consecutive pfns, possibly wrapping around the end
    breaks = sum(b != a + 1 for a, b in zip(seq, seq[1:]))
    breaks += not (seq[0] == 0 and seq[-1] == pages - 1)
    assert len(seq) == pages or breaks == 1, seq
    hot = shapes["hotspot"]
    in_hot = sum(v for p, v in hot.items() if p < pages // 16)
    assert in_hot >= 0.8 * sum(hot.values())
    rnd = shapes["random"]
    assert min(rnd) < pages // 4 and max(rnd) > 3 * pages // 4


def test_seed_fixes_the_sequence_of_dirtied_pages(tmp_path):
    # Runs differ in length (timing), not in the order of writes: with the
    # same seed one run's cumulative versions dominate the other's page by
    # page; with another seed they do not.
    def vector(name, seed):
        _, state, _ = checkpoints(tmp_path / name,
                                  SimDomain(pages=4096, dirty_rate=20, seed=seed),
                                  count=2, sleep=0.02)
        return list(state.versions(2))

    a, b, c = vector("a", 42), vector("b", 42), vector("c", 43)
    short, long_ = sorted((a, b), key=sum)
    assert sum(short) > 200
    assert all(x <= y for x, y in zip(short, long_))
    small, big = sorted((a, c), key=sum)
    assert not all(x <= y for x, y in zip(small, big))


def test_versions_log_records_only_changed_pages(tmp_path):
    # Recording happens while the guest is suspended: it must cost what the
    # dirty pages cost, not a whole vector (a 64 MiB guest, nothing dirty).
    _, state, _ = checkpoints(tmp_path, SimDomain(pages=16384, dirty_rate=0), count=4)
    size = (state.state_dir / "versions.log").stat().st_size
    assert size == 8 * (3 + 2 * 16384) + 3 * 8 * 3
    assert list(state.versions(4)) == [0] * 16384
    with pytest.raises(errors.EnvironmentProblem, match="no recorded versions"):
        state.versions(5)


def test_runstate_log_records_every_transition(tmp_path):
    _, state, _ = checkpoints(tmp_path, SimDomain(pages=64), count=3)
    assert [r.state for r in state.runstates] == \
        ["running"] + ["suspended", "running"] * 3
    assert [r.suspensions for r in state.runstates] == [0, 1, 1, 2, 2, 3, 3]
    times = [r.monotonic for r in state.runstates]
    assert times == sorted(times)
    assert len(state.suspended_intervals()) == 3
    dom = state.domain
    assert (dom["domid"], dom["pages"], dom["page_size"], dom["contract"]) == \
        (1, 64, 4096, "simpage-v1")


# --- performance: 64 MiB at a 200 ms interval (task brief) ---------------------

def test_64mib_guest_at_200ms_interval(tmp_path):
    # Untimed legacy style: commit sleeps out the rest of the 200 ms epoch.
    # 10 pages/ms dirtied -> ~2000 pages (8 MiB) per checkpoint.
    code = CHILD.replace("time.sleep(ARGS[\"sleep\"])",
                         "time.sleep(max(0, 0.2 - (time.monotonic() - T[0])))")
    code = code.replace("n = [0]", "n = [0]\nT = [0.0]\ndef s():\n    T[0] = time.monotonic()")
    code = code.replace("cp.start(f, None, None, ckpt,", "cp.start(f, s, None, ckpt,")
    state = tmp_path / "state"
    args = json.dumps({"count": 6, "sleep": 1, "stream": os.devnull})
    proc = simxen.run([sys.executable, "-c", code, args], state,
                      SimDomain(pages=16384, dirty_rate=10), capture_output=True,
                      text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    st = simxen.read_state(state)
    down = [(b - a) * 1000 for a, b in st.suspended_intervals()]
    sent = [c.pages_sent for c in st.checkpoints]
    assert len(down) == 6 and sent[0] >= 16384
    assert all(1000 <= s <= 3000 for s in sent[1:]), sent
    median = statistics.median(down[1:])
    print(f"\n64 MiB guest, 200 ms epochs: pages/checkpoint {sent[1:]}, "
          f"suspended ms {[round(d, 2) for d in down]}, median {median:.2f} ms")
    assert median < 50, down
