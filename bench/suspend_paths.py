#!/usr/bin/env python3
"""The two suspend paths side by side: the guest's suspend event channel
against xenstore's ``control/shutdown`` (what a Linux guest, which offers no
suspend event channel, always gets), on the simulated Xen.

Each run protects the same simulated guest for N checkpoints through the
engine (blackhole stream), once per path, and reads the pause of every
checkpoint (suspend to resume) from simxen's own run-state record.  Prints
median and p99 per path and the ratio xenstore / evtchn.  On the real
hypervisor only the xenstore path can be measured (the xen tier's guests
are Linux: docs/performance.md).

    .venv/bin/python bench/suspend_paths.py [-n N]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xen_remus_compat.sim import simxen  # noqa: E402

DRIVER = textwrap.dedent(r"""
    import os, sys
    from xen_remus_compat.remus.engine import Loop
    n = int(sys.argv[1])
    fd = os.open(os.devnull, os.O_WRONLY)
    count = [0]
    def commit():
        count[0] += 1
        return count[0] < n
    Loop(1, fd, config=None, blackhole=True, postsuspend=lambda: None,
         preresume=lambda: None, commit=commit).run()
""")


def pauses(path: str, n: int, tmp: str) -> list:
    state = os.path.join(tmp, path)
    dom = simxen.SimDomain(pages=4096, dirty_rate=0.0, suspend=path)
    env = simxen.environment(state, dom)
    env["PYTHONPATH"] = ROOT
    subprocess.run([sys.executable, "-c", DRIVER, str(n)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return [(b - a) * 1000.0 for a, b in simxen.read_state(state).suspended_intervals()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=300, help="checkpoints per path (default 300)")
    args = ap.parse_args()
    ok, why = simxen.available()
    if not ok:
        print(f"bench/suspend_paths.py: cannot run: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        got = {p: pauses(p, args.n, tmp) for p in simxen.SUSPEND_PATHS}
    med = {}
    print(f"{'path':10} {'pauses':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for p, xs in got.items():
        xs.sort()
        med[p] = statistics.median(xs)
        print(f"{p:10} {len(xs):7d} {med[p]:8.3f} {xs[int(0.99 * (len(xs) - 1))]:8.3f}")
    print(f"ratio xenstore/evtchn (p50): {med['xenstore'] / med['evtchn']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
