#!/usr/bin/env python3
"""Our cost per checkpoint and the stream throughput, as ratios in one run.

1. Per-checkpoint cost: the engine's loop (trampoline bounce, libxl
   CHECKPOINT_END framing, empty device hooks) against the *same*
   libcheckpoint + simxen loop driven from C with no Python
   (``bench/checkpoint_baseline.c``, compiled here).  Both run N and 2N
   checkpoints of a guest that dirties nothing; the cost per checkpoint is
   (T(2N) - T(N)) / N, so the first full pass cancels out.
   Goal: tens of microseconds absolute, within 2x of the C loop.
2. Stream throughput: a checkpointing run with a heavy dirty rate into a
   file, bytes per second, against the C loop writing the same kind of
   stream into the same kind of fd with no Python framing.  Goal: >= 0.9.

Run: ``.venv/bin/python bench/checkpoint.py`` (after ``make native``).
"""
import os
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xen_remus_compat.sim import simxen  # noqa: E402

PY_DRIVER = textwrap.dedent(r"""
    import os, sys, time
    from xen_remus_compat.remus.engine import Loop
    n, out = int(sys.argv[1]), sys.argv[2]
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    count = [0]
    def commit():
        count[0] += 1
        return count[0] < n
    loop = Loop(1, fd, config=None, blackhole=True, postsuspend=lambda: None,
                preresume=lambda: None, commit=commit)
    t0 = time.perf_counter()
    loop.run()
    t = time.perf_counter() - t0
    print(count[0], "%.9f" % t, os.fstat(fd).st_size)
""")


def build_baseline(tmp):
    exe = os.path.join(tmp, "checkpoint_baseline")
    subprocess.run(["gcc", "-O2", "-I", os.path.join(ROOT, "lowlevel", "checkpoint"),
                    os.path.join(ROOT, "bench", "checkpoint_baseline.c"),
                    os.path.join(ROOT, "lowlevel", "checkpoint", "libcheckpoint.c"),
                    os.path.join(ROOT, "lowlevel", "checkpoint", "suspend.c"),
                    os.path.join(ROOT, "lowlevel", "checkpoint", "threads.c"),
                    os.path.join(ROOT, "lowlevel", "checkpoint", "capture.c"),
                    "-o", exe, "-lxenctrl", "-lxenguest", "-lxenstore", "-lxenevtchn",
                    "-lxentoollog", "-lpthread"], check=True)
    return exe


def run(argv, tmp, dom, name):
    env = simxen.environment(os.path.join(tmp, "state-" + name), dom)
    env["PYTHONPATH"] = ROOT
    p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       text=True, check=True)
    n, t, size = p.stdout.split()
    return int(n), float(t), int(size)


def best(fn, repeat=3):
    return min((fn() for _ in range(repeat)), key=lambda r: r[1])


def main():
    ok, why = simxen.available()
    if not ok:
        sys.exit(f"simxen not built: {why} (run 'make native')")
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_baseline(tmp)
        out = os.path.join(tmp, "stream")
        idle = simxen.SimDomain(pages=1024, dirty_rate=0.0)
        N = 2000
        res = {}
        for label, argv in (("C", [exe, "1", None, out]),
                            ("Python", [sys.executable, "-c", PY_DRIVER, None, out])):
            def timed(n):
                a = list(argv)
                a[a.index(None)] = str(n)
                return best(lambda: run(a, tmp, idle, label))
            t1, t2 = timed(N), timed(2 * N)
            res[label] = (t2[1] - t1[1]) / N
        c_us, py_us = res["C"] * 1e6, res["Python"] * 1e6
        print("per-checkpoint cost (idle 4 MiB guest, /dev/null-like file, best of 3)")
        print(f"  C loop (no Python)     {c_us:8.2f} us")
        print(f"  engine (Python hooks)  {py_us:8.2f} us")
        print(f"  our Python cost        {py_us - c_us:8.2f} us per checkpoint")
        print(f"  ratio engine / C       {py_us / c_us:8.2f}   (goal <= 2.0)")

        heavy = simxen.SimDomain(pages=65536, dirty_rate=2000.0)
        M = 8
        c = best(lambda: run([exe, "1", str(M), out], tmp, heavy, "Ch"), 5)
        p = best(lambda: run([sys.executable, "-c", PY_DRIVER, str(M), out], tmp, heavy, "Ph"), 5)
        c_bps, p_bps = c[2] / c[1], p[2] / p[1]
        print("\nstream throughput (256 MiB guest dirtying 2000 pages/ms, into a file, best of 5)")
        print(f"  C loop, no framing     {c_bps / 1e6:8.1f} MB/s ({c[2] / 1e6:.0f} MB)")
        print(f"  engine with framing    {p_bps / 1e6:8.1f} MB/s ({p[2] / 1e6:.0f} MB)")
        print(f"  ratio engine / C       {p_bps / c_bps:8.2f}   (goal >= 0.9)")


if __name__ == "__main__":
    main()
