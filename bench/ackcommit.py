"""Acknowledged output commit against release-after-write (``--sync``), over
a shaped link (issue 13, item 5).

Primary and backup run in two network namespaces this script creates, joined
by a veth pair shaped with ``tc`` in both directions: tbf at 100 Mbit/s,
1 Gbit/s and 10 Gbit/s, plus netem delay (``--delay-ms``, default 2 ms each
way) when the kernel has ``sch_netem`` (the output says when it has not:
then the link has no added delay).  The backup is ``remus-receiver --sim``;
the primary ``remus --sim -i 100 -p PORT`` protecting a simulated guest of
N pages (1,000 and 10,000) that dirties every one of its pages in each epoch
(sequential pattern, 100 N pages per ms of run time), so each checkpoint
moves N pages.  Each cell runs ``--sync``, the default (acknowledged) mode
and the default mode with ``--epochs-in-flight 2`` in the same run, one after
the other, and prints the guest's pause p50/p99 (the engine's stats file,
column 3: suspend to resume; the first checkpoint, after the live pass, is
left out), the same as simxen saw it (its suspended intervals: a check that
the guest is not held outside column 3's window), checkpoints per second,
the ack latency (column 5 - column 4: CHECKPOINT_END written to its ack read)
and the ratios to ``--sync``.

The default mode also captures each epoch locally (item 1: libxc writes it
into memory while the guest is suspended, the trampoline sends it once the
guest runs), ``--sync`` does not (libxc writes to the link with the guest
suspended, as xl): the pause ratio default/sync is the gain of capture, and
the default mode's pause should not depend on the link's rate.  The
acknowledgement costs no pause; it and the transmission add to each
checkpoint's cycle (inside the interval when they fit).

    sudo .venv/bin/python bench/ackcommit.py [--quick] [--delay-ms MS]

Bounded: each run stops after ``--checkpoints`` checkpoints or ``--seconds``
seconds, raised for slow cells to ten epochs' transfer time (a 10,000-page
epoch takes 3.3 s at 100 Mbit/s, and libxc's live pass sends the guest up to
six times before the first checkpoint: that cell gets 36 s a mode and only
a few checkpoints); the whole script stays under three minutes; the
namespaces are deleted at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from xen_remus_compat.remus.engine import STATS_ENV  # noqa: E402
from xen_remus_compat.sim import simxen  # noqa: E402

BIN = Path(sys.executable).parent
RATES = (("100 Mbit/s", "100mbit", 100e6), ("1 Gbit/s", "1gbit", 1e9),
         ("10 Gbit/s", "10gbit", 10e9))
PAGES = (1000, 10000)
INTERVAL_MS = 100
PRIMARY, BACKUP = "10.213.77.1", "10.213.77.2"


def sh(*argv, check=True):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True)


class Link:
    """Two namespaces and a veth pair between them, shaped both ways."""

    def __init__(self, delay_ms: float) -> None:
        tag = uuid.uuid4().hex[:6]
        self.a, self.b = f"xrc-ack-p-{tag}", f"xrc-ack-b-{tag}"
        self.delay_ms = delay_ms
        self.netem = False

    def __enter__(self) -> "Link":
        sh("ip", "netns", "add", self.a)
        sh("ip", "netns", "add", self.b)
        try:
            sh("ip", "link", "add", "vp", "netns", self.a, "type", "veth",
               "peer", "name", "vb", "netns", self.b)
            for ns, dev, addr in ((self.a, "vp", PRIMARY), (self.b, "vb", BACKUP)):
                sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                sh("ip", "-n", ns, "link", "set", dev, "up")
                sh("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def shape(self, rate_word: str, rate: float) -> None:
        burst = max(64 << 10, int(rate / 8 / 100))          # 10 ms at the rate
        for ns, dev in ((self.a, "vp"), (self.b, "vb")):
            sh("tc", "-n", ns, "qdisc", "del", "dev", dev, "root", check=False)
            if self.delay_ms:
                ok = sh("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "handle", "1:",
                        "netem", "delay", f"{self.delay_ms}ms", "limit", "100000",
                        check=False).returncode == 0
                self.netem = ok
                parent = ["parent", "1:1"] if ok else ["root"]
            else:
                parent = ["root"]
            # a NIC-sized queue (10 ms at the rate), not a bufferbloated one
            sh("tc", "-n", ns, "qdisc", "add", "dev", dev, *parent, "tbf", "rate", rate_word,
               "burst", str(burst), "latency", "10ms")

    def __exit__(self, *exc) -> None:
        for ns in (self.a, self.b):
            sh("ip", "netns", "del", ns, check=False)


def percentile(values, q):
    s = sorted(values)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))]


def start_backup(link: Link, tmp: Path) -> tuple:
    ready = tmp / "backup.port"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", link.b, str(BIN / "remus-receiver"), "--sim",
         "--listen", BACKUP, "--port", "0", "--ready-file", str(ready),
         "--max-memory", "1024", "--max-sessions", "2"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "backup.err", "wb"),
        start_new_session=True)
    deadline = time.monotonic() + 30
    while not (ready.exists() and ready.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("remus-receiver did not start: "
                             + (tmp / "backup.err").read_text()[-500:])
        time.sleep(0.05)
    return proc, int(ready.read_text())


#: the modes of each cell: name -> remus options
MODES = (("sync", ["--sync"]), ("acked", []), ("inflight2", ["--epochs-in-flight", "2"]))
LABELS = {"sync": "--sync", "acked": "default (acked)",
          "inflight2": "default, --epochs-in-flight 2"}


def run_one(link: Link, port: int, pages: int, mode: str, tmp: Path, checkpoints: int,
            seconds: float) -> dict:
    sync = mode == "sync"
    run = tmp / f"{pages}-{mode}-{time.monotonic_ns()}"
    run.mkdir()
    stats = run / "stats"
    # every page dirtied within 10 us of run time: N pages each epoch, however
    # short the guest ran (in --sync at 100 Mbit/s it runs well under 1 ms)
    dom = simxen.SimDomain(name="benchguest", pages=pages, dirty_rate=pages * 100.0,
                           dirty_pattern="sequential")
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SIMXEN_", "XEN_REMUS_COMPAT_"))}
    base.pop("PYTHONPATH", None)
    base[STATS_ENV] = str(stats)
    env = simxen.environment(run / "sim", dom, base=base)
    argv = ["ip", "netns", "exec", link.a, str(BIN / "remus"), "--sim",
            "-i", str(INTERVAL_MS)] + dict(MODES)[mode] + \
        ["-p", str(port), dom.name, BACKUP]
    err = open(run / "primary.err", "wb")
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    t0 = time.monotonic()
    rows = []
    try:
        while time.monotonic() - t0 < seconds and proc.poll() is None:
            text = stats.read_text() if stats.exists() else ""
            if text.count("\n") > checkpoints:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        err.close()
    if stats.exists():
        for line in stats.read_text().splitlines():
            cols = line.split()
            if len(cols) == 5:
                rows.append((int(cols[0]), float(cols[2]) / 1e3, float(cols[3]),
                             None if cols[4] == "-" else float(cols[4])))
    steady = rows[1:]                 # the first: the stop-and-copy after the live pass
    out = {"checkpoints": len(rows), "rc": proc.returncode}
    state = simxen.read_state(run / "sim")
    sent = [c.pages_sent for c in state.checkpoints[1:len(rows)]]
    # the guest's own view: how long simxen had it suspended (a check on
    # column 3, which starts when our suspend callback runs)
    held = [(b - a) * 1e3 for a, b in state.suspended_intervals()[1:len(rows)]]
    out["held_p50"] = percentile(held, 50) if held else None
    out["pages"] = statistics.median(sent) if sent else None
    if len(steady) < 2:
        out["error"] = ("too few checkpoints: "
                        + (run / "primary.err").read_text()[-300:].replace("\n", " | "))
        return out
    pauses = [p for _, p, _, _ in steady]
    out["pause_p50"] = percentile(pauses, 50)
    out["pause_p99"] = percentile(pauses, 99)
    out["rate"] = (steady[-1][0] - steady[0][0]) / max(1e-9, steady[-1][2] - steady[0][2])
    acks = [(a - e) * 1e3 for _, _, e, a in steady if a is not None]
    out["ack_p50"] = percentile(acks, 50) if acks else None
    out["ack_p99"] = percentile(acks, 99) if acks else None
    out["acked"] = len(acks)
    return out


def fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay-ms", type=float, default=2.0)
    ap.add_argument("--checkpoints", type=int, default=6,
                    help="steady-state checkpoints per run (default 6)")
    ap.add_argument("--seconds", type=float, default=11.0,
                    help="longest run, seconds (default 11)")
    ap.add_argument("--quick", action="store_true", help="1 Gbit/s and 1,000 pages only")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/ackcommit.py: needs root (network namespaces, tc)", file=sys.stderr)
        return 1
    ok, why = simxen.available()
    if not ok:
        print(f"bench/ackcommit.py: {why}", file=sys.stderr)
        return 1
    rates = [r for r in RATES if not args.quick or r[1] == "1gbit"]
    sizes = [p for p in PAGES if not args.quick or p == 1000]
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="xrc-ackbench-"))
    results = []
    try:
        with Link(args.delay_ms) as link:
            backup, port = start_backup(link, tmp)
            try:
                for label, word, rate in rates:
                    link.shape(word, rate)
                    for pages in sizes:
                        cell = {}
                        # an epoch's transfer time at the rate: slow cells get longer
                        # (libxc's live pass sends the guest up to 6 times first)
                        epoch = pages * 4096 * 8 / rate
                        limit = min(40.0, max(args.seconds, 10 * epoch + 3))
                        for mode, _ in MODES:
                            cell[mode] = run_one(
                                link, port, pages, mode, tmp, args.checkpoints, limit)
                        results.append((label, pages, cell))
                        print_cell(label, pages, cell, flush=True)
            finally:
                os.killpg(backup.pid, signal.SIGTERM)
                backup.wait(timeout=30)
            delay = (f"netem delay {args.delay_ms:g} ms each way" if link.netem else
                     "no added delay (this kernel has no sch_netem)") \
                if args.delay_ms else "no added delay"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"link: veth between two namespaces, tbf both ways, {delay}; guest: N pages, "
          f"all dirtied each epoch; -i {INTERVAL_MS}; {time.monotonic() - started:.0f} s")
    print()
    print("| link | pages/epoch | mode | pause p50 (ms) | pause p99 (ms) | suspended p50, "
          "simxen (ms) | checkpoints/s | ack latency p50 / p99 (ms) | pause ratio "
          "/ sync | ckpt/s ratio / sync |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, pages, cell in results:
        s = cell["sync"]
        for mode, _ in MODES:
            r = cell[mode]
            if "error" in r:
                print(f"| {label} | {pages:,} | {LABELS[mode]} | {r['error'][:60]} "
                      "| | | | | | |")
                continue
            ratio = rr = ""
            if r is not s and "error" not in s:
                ratio = fmt(r["pause_p50"] / s["pause_p50"], ".3f")
                rr = fmt(r["rate"] / s["rate"], ".2f")
            print(f"| {label} | {pages:,} | {LABELS[mode]} | {fmt(r['pause_p50'])} | "
                  f"{fmt(r['pause_p99'])} | {fmt(r['held_p50'])} | {fmt(r['rate'])} | "
                  f"{fmt(r['ack_p50'])} / {fmt(r['ack_p99'])} | {ratio} | {rr} |")
    print_goals(results)
    return 0


def print_goals(results) -> None:
    """Item 5's goals, from the cells this run measured."""
    cells = {(label, pages): cell for label, pages, cell in results}
    print()
    one = cells.get(("1 Gbit/s", 10000))
    if one and "error" not in one["sync"] and "error" not in one["acked"]:
        r = one["acked"]["pause_p50"] / one["sync"]["pause_p50"]
        print(f"goal: pause ratio default/sync <= 0.2 at 1 Gbit/s, 10,000 pages: "
              f"{r:.3f} ({'met' if r <= 0.2 else 'NOT met'})")
    for pages in PAGES:
        slow, fast = cells.get(("100 Mbit/s", pages)), cells.get(("10 Gbit/s", pages))
        if not slow or not fast or "error" in slow["acked"] or "error" in fast["acked"]:
            continue
        a, b = slow["acked"]["pause_p50"], fast["acked"]["pause_p50"]
        spread = max(a, b) / min(a, b)
        every = [c["acked"]["pause_p50"] for (_, p), c in cells.items()
                 if p == pages and "error" not in c["acked"]]
        print(f"goal: default pause within 1.5x from 100 Mbit/s to 10 Gbit/s, {pages:,} "
              f"pages: {a:.1f} / {b:.1f} ms = {spread:.2f}x "
              f"({'met' if spread <= 1.5 else 'NOT met'}; over every rate measured "
              f"{max(every) / min(every):.2f}x)")


def print_cell(label, pages, cell, flush=False):
    parts = []
    for mode, _ in MODES:
        r = cell[mode]
        if "error" in r:
            parts.append(f"{mode}: {r['error'][:120]}")
        else:
            parts.append(f"{mode}: {r['pages']:.0f} pages/epoch, pause p50 "
                         f"{r['pause_p50']:.1f} ms p99 "
                         f"{r['pause_p99']:.1f} ms, {r['rate']:.2f} ckpt/s"
                         + (f", ack p50 {r['ack_p50']:.1f} ms" if r["ack_p50"] is not None
                            else ""))
    print(f"{label}, {pages} pages: " + "; ".join(parts), flush=flush)


if __name__ == "__main__":
    sys.exit(main())
