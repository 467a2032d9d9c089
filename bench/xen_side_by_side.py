"""Our ``remus`` side by side with stock ``xl remus`` on a real Xen 4.17
(Debian's own hypervisor, nested under QEMU/TCG: the xen tier's harness,
tests/xen/xenvm.py, with its cached artifacts under build/xen).

One VM boot, one PVH heartbeat guest, protected in turn by stock ``xl remus
-F -n -d -e -i 200`` and by our ``remus --no-net -i 200``, both to a localhost
``xl migrate-receive -r -e``, each for the same time and each ended by ``xl
destroy`` of the primary (the backup takes over and is the next round's
primary: the same guest throughout).  ``--rounds N`` alternates them N times.

Measured the same way for both (docs/performance.md, "Side by side with stock
xl remus"):

- checkpoints per second and the pause per checkpoint from the hypervisor's
  view: tests/xen/domwatch.c polls every domain's state in dom0 (about every
  2 ms) and times each stop of the primary (suspended or paused between two
  running states), CLOCK_MONOTONIC;
- failover: ``xl destroy`` to the backup running (domwatch), to the
  receiver's "Restore successful" (it saw the end of the stream), and to the
  backup's first heartbeat on its console.

Prints one table per round and the pooled ratios (ours / xl).  ``--netbuf``
adds a round of our remus with network buffering (a vif attached first).

    .venv/bin/python bench/xen_side_by_side.py [--rounds N] [--seconds S] [--netbuf]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import List, Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.qemu.vm import Unavailable  # noqa: E402
from tests.xen import scenarios as sc, verdicts as vd, xenvm  # noqa: E402


def _pooled(reports: List[vd.PhaseReport]) -> dict:
    pauses = [p for r in reports for p in r.pauses_ms]
    seconds = sum(r.protected_seconds or 0 for r in reports)
    med = lambda xs: statistics.median(xs) if xs else None
    return {"rate": len(pauses) / seconds if seconds else None,
            "pause": med(pauses), "p90": vd._pct(pauses, 0.9),
            "restored": med([r.failover_restored_s for r in reports
                             if r.failover_restored_s is not None]),
            "run": med([r.failover_run_s for r in reports if r.failover_run_s is not None]),
            "beat": med([r.failover_beat_s for r in reports if r.failover_beat_s is not None]),
            "pauses": len(pauses), "seconds": seconds}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1, help="xl then ours, N times (default 1)")
    ap.add_argument("--seconds", type=int, default=20,
                    help="seconds of checkpoints per protection (default 20)")
    ap.add_argument("--interval", type=int, default=sc.INTERVAL_MS)
    ap.add_argument("--netbuf", action="store_true",
                    help="a last round of our remus with network buffering")
    args = ap.parse_args(argv)
    sc.INTERVAL_MS = args.interval
    try:
        arts = xenvm.prepare("stock", log=lambda s: print(f"bench: {s}", file=sys.stderr))
    except Unavailable as e:
        print(f"cannot run: {e}", file=sys.stderr)
        return 2
    phases = []
    for i in range(1, args.rounds + 1):
        phases += [sc.Phase(f"xl{i}", sc.XL_REMUS, protect_seconds=args.seconds,
                            failover_seconds=100),
                   sc.Phase(f"ours{i}", sc.OUR_REMUS_NONET, protect_seconds=args.seconds)]
    if args.netbuf:
        phases.append(sc.Phase("netbuf", sc.OUR_REMUS, protect_seconds=args.seconds,
                               stats=True, attach=True))
    scen = sc.chain("side-by-side", arts, phases, guest="pvh", guest_type="pvh",
                    net=xenvm.GuestNet() if args.netbuf else None)
    rundir = xenvm.new_rundir("bench-side-by-side")
    print(f"bench: {arts.hypervisor.describe()}; {args.rounds} round(s) of {args.seconds} s "
          f"at -i {args.interval}; files in {rundir}", file=sys.stderr)
    start = time.monotonic()
    run = xenvm.run_scenarios([scen], artifacts=arts, rundir=rundir)
    why = run.failure()
    res = run.results[scen.name]
    if why or res.rc is None:
        print(f"the VM run failed: {why or 'the scenario did not finish'}\n{run.report()}")
        return 1
    xl, ours = [], []
    for i in range(1, args.rounds + 1):
        sbs = vd.side_by_side(res, xl=f"xl{i}", ours=f"ours{i}")
        xl.append(sbs.xl)
        ours.append(sbs.ours)
        print(f"round {i}:\n{sbs.table()}")
        for r in (sbs.xl, sbs.ours):
            if r.verdict is None or not r.verdict.ok:
                print(f"  WARNING {r.label}: {r.verdict}")
        print()
    a, b = _pooled(xl), _pooled(ours)
    ratio = lambda k: (b[k] / a[k]) if a[k] and b[k] is not None else None
    f = lambda v, fmt: "-" if v is None else format(v, fmt)
    print(f"pooled over {args.rounds} round(s): xl {a['pauses']} pauses in {a['seconds']:.0f} s, "
          f"ours {b['pauses']} in {b['seconds']:.0f} s")
    print(f"{'':46} {'xl remus':>10} {'ours':>10} {'ours/xl':>8}")
    for key, name, fmt in (("rate", "checkpoints/s (hypervisor)", ".2f"),
                           ("pause", "pause median, ms (hypervisor)", ".1f"),
                           ("p90", "pause p90, ms (hypervisor)", ".1f"),
                           ("restored", "failover: destroy -> receiver sees the end, s", ".2f"),
                           ("run", "failover: destroy -> backup runs, s", ".2f"),
                           ("beat", "failover: destroy -> backup's first beat, s", ".2f")):
        print(f"{name:46} {f(a[key], fmt):>10} {f(b[key], fmt):>10} {f(ratio(key), '.2f'):>8}")
    if args.netbuf:
        nb = vd.phase_report(res, "netbuf")
        print(f"\nours with network buffering: {nb.summary()}")
        print(vd.output_commit(res, "netbuf"))
    print(f"\nVM run {run.vmrun.seconds:.0f} s (wall {time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
