"""The main job on the embedded default: protect a simulated guest, kill
the primary, check the backup.

1. a backup: ``remus-receiver --sim`` (in this process, on 127.0.0.1);
2. a primary: the ``remus`` command with ``--sim -p PORT`` (a child process
   running the real trampoline against ``lowlevel/simxen``), protecting the
   simulated guest at the default interval;
3. after a few seconds, at a random moment (often mid-epoch), the primary's
   whole process group is killed with SIGKILL;
4. the receiver fails over to the last complete checkpoint, and the verdict
   compares its memory, page by page, with what simxen recorded of the
   primary's memory at that checkpoint.

Besides the summary, :attr:`DemoResult.series` holds one entry per
checkpoint the backup completed: the pause (simxen's record of the guest's
suspension), the pages sent, the stream throughput since the previous
checkpoint, our Python time, and the latency from the primary writing the
checkpoint's end to its acknowledgement by the backup (``ack_ms``: column 5
of the engine's stats file; in the ``--sync`` mode, which has none, the
receiver's arrival time, known for the last checkpoints the receiver
session keeps; null for the others).  ``mode`` says which release mode the
primary used (``acknowledged`` is the default with remus-receiver).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from .. import errors
from . import simxen
from ..remus.engine import STATS_ENV


@dataclass
class DemoResult:
    checkpoints: int = 0
    primary_checkpoints: int = 0
    pause_ms_p50: float = 0.0
    pause_ms_p99: float = 0.0
    pages_per_checkpoint: float = 0.0
    mb_per_checkpoint: float = 0.0
    mb_per_s: float = 0.0
    python_us_per_checkpoint: float = 0.0
    killed_after_s: float = 0.0
    failover_ok: bool = False
    memory_match: bool = False
    mismatched_pages: int = 0
    guest_pages: int = 0
    interval_ms: int = 200
    verdict: str = ""
    #: "acknowledged" (output released after the backup's ack) or "after write"
    mode: str = ""
    ack_ms_p50: Optional[float] = None
    notes: List[str] = field(default_factory=list)
    #: per checkpoint: checkpoint, pause_ms, pages, mb_per_s, python_us, ack_ms
    series: List[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _percentile(values, q):
    if not values:
        return 0.0
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))
    return s[k]


def run_demo(*, seconds: float = 4.0, interval: int = 200, pages: int = 16384,
             dirty_rate: float = 5.0, seed: Optional[int] = None,
             workdir: Optional[str] = None, keep: bool = False,
             log=None, dirty_pattern: str = "random",
             kill_after: Optional[float] = None) -> DemoResult:
    """Run the demo; raises EnvironmentProblem when simxen is not built.

    ``dirty_pattern``: how the guest dirties pages (``simxen.PATTERNS``);
    ``kill_after``: seconds after the primary starts to kill it (default:
    ``seconds`` plus a random fraction of an interval).
    """
    from ..remus.receiver import ReceiverService
    ok, why = simxen.available()
    if not ok:
        raise errors.EnvironmentProblem(why)
    rng = random.Random(seed)
    # checked before anything is started (bad settings raise InputError)
    dom = simxen.SimDomain(name="demo-guest", pages=pages, dirty_rate=dirty_rate,
                           dirty_pattern=dirty_pattern,
                           seed=rng.randrange(1, 1 << 30))
    tmp = workdir or tempfile.mkdtemp(prefix="xrc-demo-")
    state_dir = os.path.join(tmp, "simxen")
    stats_file = os.path.join(tmp, "engine-stats")
    res = DemoResult(interval_ms=interval, guest_pages=pages)
    say = log or (lambda msg: None)

    svc = ReceiverService(listen="127.0.0.1", port=0, sim=True)
    port = svc.bind()
    sessions: list = []
    rthread = threading.Thread(target=lambda: sessions.extend(svc.serve(once=True)),
                               daemon=True)
    rthread.start()
    say(f"backup: simulated receiver on 127.0.0.1:{port}")

    env = simxen.environment(state_dir, dom)
    env[STATS_ENV] = stats_file
    env.pop("PYTHONPATH", None)
    argv = [sys.executable, "-m", "xen_remus_compat.cli.remus", "--sim",
            "-i", str(interval), "-p", str(port), dom.name, "127.0.0.1"]
    say(f"primary: remus {' '.join(argv[3:])}  ({pages * 4096 >> 20} MiB guest, "
        f"{dirty_rate:g} pages/ms dirtied, {dirty_pattern})")
    out = open(os.path.join(tmp, "primary.out"), "wb")
    err = open(os.path.join(tmp, "primary.err"), "wb")
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=err, start_new_session=True)
    # kill at a random moment: a whole number of epochs plus a random fraction
    kill_at = seconds + rng.random() * interval / 1000.0
    if kill_after is not None:
        kill_at = kill_after
    try:
        while time.monotonic() - started < kill_at:
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            res.killed_after_s = round(time.monotonic() - started, 3)
            say(f"primary killed with SIGKILL after {res.killed_after_s:.3f} s")
        else:
            res.notes.append(f"primary exited by itself with status {proc.returncode}")
        proc.wait()
    finally:
        out.close()
        err.close()
    rthread.join(timeout=30)
    if not sessions or sessions[-1].result is None:
        with open(os.path.join(tmp, "primary.err"), "rb") as f:
            tail = f.read()[-2000:].decode("utf-8", "replace")
        raise errors.CompatError("the backup received nothing usable from the "
                                 f"primary; primary stderr:\n{tail}")
    session = sessions[-1]
    result = session.result
    res.checkpoints = result.checkpoints
    res.failover_ok = bool(result.failover_ok)
    elapsed = max(1e-6, res.killed_after_s or (time.monotonic() - started))

    st = simxen.read_state(state_dir)
    res.primary_checkpoints = len(st.checkpoints)
    pauses = [(b - a) * 1000.0 for a, b in st.suspended_intervals()]
    res.pause_ms_p50 = round(_percentile(pauses, 50), 3)
    res.pause_ms_p99 = round(_percentile(pauses, 99), 3)
    epochs = result.pages_per_checkpoint[1:] or result.pages_per_checkpoint
    if epochs:
        res.pages_per_checkpoint = round(statistics.mean(epochs), 1)
        res.mb_per_checkpoint = round(res.pages_per_checkpoint * 4096 / 1e6, 3)
    res.mb_per_s = round(result.bytes / 1e6 / elapsed, 2)
    stats: dict = {}
    acks: dict = {}         # checkpoint -> seconds from its end to its ack
    try:
        with open(stats_file) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 4:
                    stats[int(fields[0])] = (float(fields[1]), float(fields[3]))
                if len(fields) >= 5 and fields[4] != "-":
                    acks[int(fields[0])] = float(fields[4]) - float(fields[3])
        py = [v[0] for v in stats.values()]
        res.python_us_per_checkpoint = round(statistics.median(py), 1) if py else 0.0
    except FileNotFoundError:
        res.notes.append("no engine statistics were written")
    res.mode = "acknowledged" if acks else "after write"
    if acks:
        res.ack_ms_p50 = round(_percentile(list(acks.values()), 50) * 1000.0, 3)
    res.series = _series(res.checkpoints, pauses, result.pages_per_checkpoint,
                         stats, session, acks)

    # the verdict: backup memory == primary memory at the last complete checkpoint
    if res.checkpoints:
        expected = st.versions(res.checkpoints)
        got = result.page_versions()
        bad = [pfn for pfn in range(len(expected)) if got.get(pfn) != expected[pfn]]
        bad_content = result.bad_sim_pages()
        res.mismatched_pages = len(set(bad) | set(bad_content))
        res.memory_match = res.mismatched_pages == 0 and len(got) == len(expected)
    if res.failover_ok and res.memory_match:
        res.verdict = (f"OK: the backup holds exactly the primary's memory at checkpoint "
                       f"{res.checkpoints} (the last complete one; the primary had "
                       f"started {res.primary_checkpoints})")
    else:
        res.verdict = (f"FAILED: failover_ok={res.failover_ok}, "
                       f"{res.mismatched_pages} pages differ from checkpoint "
                       f"{res.checkpoints}")
    if not keep and workdir is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def _series(checkpoints: int, pauses: List[float], pages: List[int], stats: dict,
            session, acks: Optional[dict] = None) -> List[dict]:
    """One entry per complete checkpoint (see the module docstring)."""
    arrived: dict = {}
    times = list(getattr(session, "checkpoint_times", []))
    last = getattr(session, "checkpoints", 0)
    for back, at in enumerate(reversed(times)):
        arrived[last - back] = at
    out = []
    previous_end = None
    for n in range(1, checkpoints + 1):
        python_us, end = stats.get(n, (None, None))
        count = pages[n - 1] if n - 1 < len(pages) else None
        rate = None
        if count is not None and end is not None and previous_end is not None \
                and end > previous_end:
            rate = round(count * 4096 / 1e6 / (end - previous_end), 2)
        ack = arrived.get(n)
        out.append({
            "checkpoint": n,
            "pause_ms": round(pauses[n - 1], 3) if n - 1 < len(pauses) else None,
            "pages": count,
            "mb_per_s": rate,
            "python_us": python_us,
            "ack_ms": (round(acks[n] * 1000.0, 3) if acks and n in acks else
                       round((ack - end) * 1000.0, 3)
                       if ack is not None and end is not None and ack >= end else None),
        })
        previous_end = end
    return out


def format_table(res: DemoResult) -> str:
    rows = [
        ("checkpoints taken (complete on the backup)", f"{res.checkpoints}"),
        ("checkpoint interval", f"{res.interval_ms} ms"),
        ("output released", "after the backup's ack" if res.mode == "acknowledged"
         else "after the write (no ack)"),
        ("ack latency, p50", "-" if res.ack_ms_p50 is None else f"{res.ack_ms_p50:.3f} ms"),
        ("pause per checkpoint, p50", f"{res.pause_ms_p50:.3f} ms"),
        ("pause per checkpoint, p99", f"{res.pause_ms_p99:.3f} ms"),
        ("pages per checkpoint (after the first)", f"{res.pages_per_checkpoint:.1f}"),
        ("MB per checkpoint", f"{res.mb_per_checkpoint:.3f}"),
        ("stream throughput", f"{res.mb_per_s:.2f} MB/s"),
        ("our Python time per checkpoint", f"{res.python_us_per_checkpoint:.1f} us"),
        ("primary killed after", f"{res.killed_after_s:.3f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines + ["", f"verdict: {res.verdict}"] +
                     [f"note: {n}" for n in res.notes])
