"""The xen tier's verdicts: reading what a scenario (tests/xen/scenarios.py)
left in ``$SCEN`` and judging it.

:func:`heartbeat_failover` (the backup continues the primary's heartbeat),
:func:`output_commit` (no datagram before its checkpoint is on the backup; the
peer hears the backup after failover), :func:`phase_report` (checkpoints, the
hypervisor's view of each pause, failover times) and :func:`side_by_side`
(ours / stock xl).  The files are described in scenarios.py's docstring.
"""
from __future__ import annotations

import dataclasses
import re
import statistics
from typing import Dict, List, Optional, Sequence, Tuple

from tests.xen import xenvm


# -- reading a scenario's files -------------------------------------------------------
def events(result: xenvm.ScenarioResult) -> Dict[str, Tuple[float, float]]:
    """``{name: (realtime, monotonic)}``, the first of each name."""
    out: Dict[str, Tuple[float, float]] = {}
    for line in result.text("events").splitlines():
        parts = line.split()
        try:
            out.setdefault(parts[0], (float(parts[1]), float(parts[2])))
        except (IndexError, ValueError):
            pass
    return out


def facts(result: xenvm.ScenarioResult) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for line in result.text("facts").splitlines():
        key, *values = line.split()
        out[key] = values
    return out


def fact(result: xenvm.ScenarioResult, key: str, index: int = 0) -> Optional[str]:
    values = facts(result).get(key) or []
    return values[index] if len(values) > index else None


def int_fact(result: xenvm.ScenarioResult, key: str, index: int = 0) -> Optional[int]:
    v = fact(result, key, index)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


@dataclasses.dataclass
class Line:
    real: float                         # when dom0 read it: CLOCK_REALTIME
    mono: float                         # and CLOCK_MONOTONIC
    text: str

    def own_time(self) -> Optional[float]:
        """The CLOCK_REALTIME a ``PROF: ... at T`` line carries, as
        CLOCK_MONOTONIC (shifted by the read's realtime - monotonic)."""
        m = re.search(r" at (\d{9,}\.\d+)\s*$", self.text)
        return float(m.group(1)) - self.real + self.mono if m else None


def stamped(result: xenvm.ScenarioResult, name: str) -> List[Line]:
    """A ``run_bg`` log: ``realtime monotonic text`` lines."""
    out = []
    for line in result.text(name).splitlines():
        parts = line.split(" ", 2)
        try:
            out.append(Line(float(parts[0]), float(parts[1]), parts[2] if len(parts) > 2 else ""))
        except (IndexError, ValueError):
            pass
    return out


# -- the hypervisor's view (domwatch.txt) -----------------------------------------------
@dataclasses.dataclass
class DomWatch:
    transitions: Dict[int, List[Tuple[float, str]]]     # domid -> [(monotonic, state)]
    gap_median_us: Optional[int]
    gap_max_us: Optional[int]

    def stops(self, domid: int, start: float, end: float) -> List[Tuple[float, float]]:
        """The domain's pauses (any state but R: suspended S, paused P) that
        begin within [start, end] between two R states: (begin, end) in
        CLOCK_MONOTONIC."""
        out = []
        trans = self.transitions.get(domid, [])
        for i, (t, st) in enumerate(trans):
            if st == "R" or not (start <= t <= end) or i == 0 or trans[i - 1][1] != "R":
                continue
            back = next(((t2, s2) for t2, s2 in trans[i + 1:] if s2 in ("R", "D", "G")), None)
            if back is not None and back[1] == "R":
                out.append((t, back[0]))
        return out

    def first(self, domid: int, state: str, after: float) -> Optional[float]:
        return next((t for t, st in self.transitions.get(domid, []) if st == state and t >= after),
                    None)

    def resumes(self, domid: int, start: float, end: float) -> List[float]:
        return [b for _a, b in self.stops(domid, start, end)]


def domwatch(result: xenvm.ScenarioResult) -> DomWatch:
    trans: Dict[int, List[Tuple[float, str]]] = {}
    med = mx = None
    for line in result.text("domwatch.txt").splitlines():
        if line.startswith("# samples"):
            m = re.search(r"gap_median_us (\d+) gap_max_us (\d+)", line)
            if m:
                med, mx = int(m.group(1)), int(m.group(2))
            continue
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            try:
                trans.setdefault(int(parts[1]), []).append((float(parts[0]), parts[2]))
            except ValueError:
                pass
    return DomWatch(trans, med, mx)


# -- verdicts ---------------------------------------------------------------------------
BEAT = re.compile(r"HB (\d+) up=([\d.]+)")


@dataclasses.dataclass
class Beat:
    n: int
    uptime: float


def parse_beats(log: str) -> List[Beat]:
    """The heartbeats of a console log (xenconsoled's timestamps ignored)."""
    return [Beat(int(m.group(1)), float(m.group(2))) for m in BEAT.finditer(log)]


@dataclasses.dataclass
class Failover:
    ok: bool
    reasons: List[str]
    primary_last: Optional[int]         # the primary's last beat
    backup_first: Optional[int]         # the backup's first beat
    backup_beats: int                   # beats the backup printed
    replayed: int                       # beats printed by both (after the last checkpoint)

    def __str__(self) -> str:
        head = "failover OK" if self.ok else "failover FAILED"
        return (f"{head}: primary's last beat {self.primary_last}, backup's first "
                f"{self.backup_first}, backup printed {self.backup_beats}"
                + (f", {self.replayed} replayed" if self.replayed else "")
                + ("" if self.ok else " -- " + "; ".join(self.reasons)))


def _consecutive(beats: Sequence[Beat]) -> Optional[Tuple[int, int]]:
    """The first break in the counter, as (before, after), or None."""
    for a, b in zip(beats, beats[1:]):
        if b.n != a.n + 1:
            return a.n, b.n
    return None


def heartbeat_failover(primary_log: str, backup_log: str, *, min_primary: int = 5,
                       min_backup: int = 3, max_replay: int = 3,
                       from_one: bool = True) -> Failover:
    """Did the backup continue the primary's heartbeat?

    The primary's log must count without a gap (at least ``min_primary``
    beats; from 1 when ``from_one``: a guest booted for this, not a copy that
    took over earlier); the backup's must go on counting without a gap (at
    least ``min_backup`` beats) from where the primary was: its first beat is
    the primary's last + 1, or up to ``max_replay`` beats earlier (beats the
    primary printed after the last checkpoint, which the backup prints again:
    the state they were printed from was never checkpointed).  A backup that
    counts from 1 booted afresh; one that starts later than last + 1 lost
    beats.  Its uptime must not go back either.
    """
    primary, backup = parse_beats(primary_log), parse_beats(backup_log)
    reasons = []
    if len(primary) < min_primary:
        reasons.append(f"the primary printed {len(primary)} beats (< {min_primary})")
    elif from_one and primary[0].n != 1:
        reasons.append(f"the primary's log starts at beat {primary[0].n}, not 1")
    gap = _consecutive(primary)
    if gap:
        reasons.append(f"the primary's counter jumps from {gap[0]} to {gap[1]}")
    if len(backup) < min_backup:
        reasons.append(f"the backup printed {len(backup)} beats (< {min_backup})")
    gap = _consecutive(backup)
    if gap:
        reasons.append(f"the backup's counter jumps from {gap[0]} to {gap[1]}")
    last = primary[-1].n if primary else None
    first = backup[0].n if backup else None
    replayed = 0
    if last is not None and first is not None:
        replayed = max(0, last + 1 - first)
        if first == 1:
            reasons.append("the backup counts from 1: a fresh boot, not the primary's state")
        elif first > last + 1:
            reasons.append(f"beats {last + 1}..{first - 1} are lost between primary and backup")
        elif replayed > max_replay:
            reasons.append(f"the backup resumed {replayed} beats before the primary's last "
                           f"(> {max_replay}: checkpoints were not flowing)")
        else:
            same = next((b for b in primary if b.n == first - 1), None)
            if same is not None and backup[0].uptime + 0.5 < same.uptime:
                reasons.append(f"the backup's uptime {backup[0].uptime} went back from "
                               f"{same.uptime}")
    return Failover(not reasons, reasons, last, first, len(backup), replayed)


def last_incarnation(log: str) -> str:
    """A console log from its last ``Logfile Opened`` on: the guest as it
    runs now, after any reboot of its own (xl restarts a guest that rebooted;
    xenconsoled appends the new domain's output to the same file)."""
    parts = re.split(r"^.*Logfile Opened\s*$", log, flags=re.M)
    return parts[-1]


def console_log(result: xenvm.ScenarioResult, filename: str) -> str:
    try:
        return (result.directory / "xenlog" / "console" / filename).read_text(errors="replace")
    except OSError:
        return ""


def _pct(values: Sequence[float], q: float) -> Optional[float]:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


@dataclasses.dataclass
class PhaseReport:
    """One phase of a chain, everything its files say."""

    scenario: str
    label: str
    protector: str
    end: str
    rc: Optional[int]                       # the protecting command's
    verdict: Optional[Failover]             # failover phases
    checkpoints: int                        # lines in the command's output
    checkpoints_protected: int              # from the first to the destroy / SIGTERM
    protected_seconds: Optional[float]      # first checkpoint line -> destroy / SIGTERM
    pauses_ms: List[float]                  # the hypervisor's view (domwatch), same window
    failover_run_s: Optional[float]         # destroy -> the backup runs (domwatch)
    failover_beat_s: Optional[float]        # destroy -> the backup's first beat seen
    failover_message_s: Optional[float]     # destroy -> "Remus Failover" read
    failover_restored_s: Optional[float]    # destroy -> the receiver saw the stream end
    tool_pause_ms: Optional[float]          # as the command logs it (see tool_pause)
    stages: Dict[str, float]
    sample_gap_us: Optional[int]            # domwatch's median sampling interval

    @property
    def rate(self) -> Optional[float]:
        """Checkpoints per second: the hypervisor's pauses in the window."""
        if self.protected_seconds:
            return len(self.pauses_ms) / self.protected_seconds
        return None

    @property
    def pause_median_ms(self) -> Optional[float]:
        return statistics.median(self.pauses_ms) if self.pauses_ms else None

    @property
    def pause_p90_ms(self) -> Optional[float]:
        return _pct(self.pauses_ms, 0.9)

    def summary(self) -> str:
        parts = [f"{self.scenario}/{self.label} ({self.protector})"]
        if self.verdict is not None:
            parts.append(str(self.verdict))
        parts.append(f"{self.checkpoints} checkpoints ({self.checkpoints_protected} in "
                     f"{self.protected_seconds or 0:.1f} s before the "
                     f"{'destroy' if self.end == 'failover' else 'SIGTERM'}; the "
                     f"hypervisor saw {len(self.pauses_ms)} pauses"
                     + (f", {self.rate:.2f}/s" if self.rate else "") + ")")
        if self.pauses_ms:
            parts.append(f"pause median {self.pause_median_ms:.1f} ms, p90 "
                         f"{self.pause_p90_ms:.1f} ms (hypervisor's view)")
        if self.tool_pause_ms is not None:
            parts.append(f"~{self.tool_pause_ms:.0f} ms as the command logs it")
        if self.failover_run_s is not None:
            parts.append(f"backup running {self.failover_run_s:.2f} s after the destroy")
        if self.failover_beat_s is not None:
            parts.append(f"its first beat after {self.failover_beat_s:.1f} s")
        if self.failover_restored_s is not None:
            parts.append(f"the receiver saw the stream end after {self.failover_restored_s:.2f} s")
        if self.failover_message_s is not None:
            parts.append(f"'Failover' message after {self.failover_message_s:.1f} s")
        parts.append(f"command rc {self.rc}")
        if self.stages:
            parts.append("stages " + ", ".join(f"{k} {v:.1f} s" for k, v in self.stages.items()))
        return "; ".join(parts)


def phase_primary_logs(result: xenvm.ScenarioResult) -> Dict[str, str]:
    """``{phase label: its primary's console log file name}``."""
    out = {}
    for line in result.text("phases").splitlines():
        label, _, name = line.partition(" ")
        out[label] = name.strip()
    return out


def protectors(result: xenvm.ScenarioResult) -> Dict[str, Tuple[str, str]]:
    out = {}
    for line in result.text("protectors").splitlines():
        label, end, name = line.split(" ", 2)
        out[label] = (end, name)
    return out


def tool_pause(lines: Sequence[Line]) -> Optional[float]:
    """The median pause as the command logs it: our PROF ``suspending`` ->
    ``resumed`` (their own times: from the suspend request to the resume);
    stock xl's ``Domain now suspended`` -> ``Checkpointed save`` (as dom0
    read them: from the guest's suspension to the end of the copy).  Not the
    same thing for both: the side-by-side uses the hypervisor's view."""
    pauses = []
    start = None
    for ln in lines:
        if "PROF: suspending at" in ln.text:
            start = ln.own_time()
        elif "PROF: resumed at" in ln.text and start is not None:
            end = ln.own_time()
            if end is not None:
                pauses.append((end - start) * 1000)
            start = None
        elif "Domain now suspended" in ln.text:
            start = ln.mono
        elif "Checkpointed save" in ln.text and start is not None:
            pauses.append((ln.mono - start) * 1000)
            start = None
    return statistics.median(pauses) if pauses else None


def phase_report(result: xenvm.ScenarioResult, label: str, **verdict_kw) -> PhaseReport:
    name = result.text("guest.name").strip()
    end, protector = protectors(result).get(label, ("?", "?"))
    ev = events(result)
    mono = lambda key: ev[key][1] if key in ev else None
    lines = stamped(result, f"{label}.log")
    checkpoint_re = result.text(f"{label}.checkpoint.re").strip()
    cps = [ln.mono for ln in lines if checkpoint_re and re.search(checkpoint_re, ln.text)]
    stop = mono(f"{label}-destroy") or mono(f"{label}-sigterm")
    protected = [t for t in cps if stop is None or t <= stop]
    protected_seconds = (stop - protected[0]) if protected and stop else None
    dw = domwatch(result)
    primary = int_fact(result, f"{label}-primary-domid")
    backup = int_fact(result, f"{label}-backup-domid")
    pauses = []
    if primary is not None and protected and stop:
        pauses = [(b - a) * 1000 for a, b in dw.stops(primary, protected[0], stop)]
    destroy = mono(f"{label}-destroy")
    run_s = beat_s = message_s = restored_s = None
    receiver_note = None
    if destroy is not None:
        if backup is not None:
            t = dw.first(backup, "R", destroy)
            run_s = t - destroy if t is not None else None
        if mono(f"{label}-backup-beat") is not None:
            beat_s = mono(f"{label}-backup-beat") - destroy
        logs = lines + stamped(result, f"{label}-receiver.log")
        msg = [ln.mono for ln in logs if "Failover for domain" in ln.text and ln.mono >= destroy]
        message_s = min(msg) - destroy if msg else None
        restored = [ln.mono for ln in logs if "Restore successful" in ln.text and ln.mono >= destroy]
        restored_s = min(restored) - destroy if restored else None
        if restored and not msg:
            receiver_note = (f"the receiver restored the last checkpoint {restored_s:.1f} s after "
                             "the destroy but never said 'Remus Failover' (it was still setting "
                             "the backup up, or was stopped: see the phase's log)")
    verdict = None
    if end == "failover":
        first_phase = next(iter(phase_primary_logs(result)), None) == label
        kw = dict(verdict_kw)
        kw.setdefault("from_one", first_phase)
        primary_log = console_log(result, phase_primary_logs(result).get(label,
                                                                         f"guest-{name}.log"))
        if first_phase:
            primary_log = last_incarnation(primary_log)
        verdict = heartbeat_failover(primary_log, console_log(result, f"guest-{name}--{label}.log"),
                                     **kw)
        if receiver_note and not verdict.ok:
            verdict.reasons.append(receiver_note)
        if primary is not None and stop is not None:
            start_t = mono(f"{label}-start") or 0.0
            odd = [(t, st) for t, st in dw.transitions.get(primary, [])
                   if start_t <= t <= stop and st.startswith("X")]
            if odd:
                t, st = odd[0]
                verdict.ok = False
                verdict.reasons.append(
                    f"the primary shut itself down {t - start_t:.1f} s into the phase (shutdown "
                    f"reason {st[1:]}; a PVH guest's triple fault under nested TCG is 1, reboot)")
    stages = {}
    for stage, a, b in (("initial copy", f"{label}-start", f"{label}-checkpointing"),
                        ("after the destroy", f"{label}-destroy", f"{label}-ended")):
        if mono(a) is not None and mono(b) is not None:
            stages[stage] = mono(b) - mono(a)
    rc = int_fact(result, f"{label}-rc")
    return PhaseReport(result.name, label, protector, end, rc, verdict, len(cps), len(protected),
                       protected_seconds, pauses, run_s, beat_s, message_s, restored_s,
                       tool_pause(lines), stages, dw.gap_median_us)


# -- output commit ---------------------------------------------------------------------
DATAGRAM = re.compile(r"hb(?:\[\d+\])?: (\d+)")


def datagrams(result: xenvm.ScenarioResult) -> List[Tuple[float, int]]:
    """The guest's datagrams as the peer received them: (monotonic, beat)."""
    out = []
    for line in result.text("peer.txt").splitlines():
        if line.startswith("#"):
            continue
        m = DATAGRAM.search(line)
        try:
            if m:
                out.append((float(line.split()[0]), int(m.group(1))))
        except ValueError:
            pass
    return out


def stats_ends(result: xenvm.ScenarioResult, label: str, column: int = 4) -> List[float]:
    """Column 4 of our remus's stats file: CLOCK_MONOTONIC right after each
    checkpoint's CHECKPOINT_END was written (before any output is released);
    column 5: when remus-receiver's acknowledgement of it was read (``-``
    without one: skipped)."""
    out = []
    for line in result.text(f"{label}.stats").splitlines():
        parts = line.split()
        if len(parts) >= column and parts[column - 1] != "-":
            out.append(float(parts[column - 1]))
    return out


@dataclasses.dataclass
class OutputCommit:
    ok: bool
    reasons: List[str]
    checked: int                        # datagrams received while checkpointing
    delays_ms: List[float]              # each: after the last checkpoint end before it
    exempt: int                         # in flight when the first checkpoint began
    before_destroy: List[int]           # beats heard from the primary
    after_failover: List[int]           # beats heard after the destroy
    duplicates: List[int]

    def __str__(self) -> str:
        head = "output commit OK" if self.ok else "output commit FAILED"
        d = sorted(self.delays_ms)
        return (f"{head}: {self.checked} datagrams while checkpointing, each "
                + (f"{d[len(d) // 2]:.1f} ms (median), at most {d[-1]:.1f} ms after the end of "
                   "the checkpoint before it" if d else "-")
                + f"; {len(self.after_failover)} heard after the failover"
                + (f" (beats {self.after_failover[0]}..{self.after_failover[-1]})"
                   if self.after_failover else "")
                + (f", last from the primary {self.before_destroy[-1]}"
                   if self.before_destroy else "")
                + ("" if self.ok else " -- " + "; ".join(self.reasons)))


#: a released datagram reaches the peer within this of the checkpoint's end
#: (the plug's release, the bridge, the peer's wakeup in dom0 under TCG); an
#: unbuffered one arrives anywhere in the ~300-450 ms checkpoint cycle
RELEASE_MS = 50.0


def output_commit(result: xenvm.ScenarioResult, label: str, *, until: Optional[str] = None,
                  release_ms: float = RELEASE_MS, grace_ms: float = 20.0,
                  min_checked: int = 5, min_after: int = 2,
                  acked: bool = False) -> OutputCommit:
    """Phase ``label`` (our remus, network buffered, with a stats file):

    - every datagram the peer received from the first checkpoint's suspension
      (plus ``grace_ms`` for one in flight: before that the legacy netbuf
      passes output through) to the destroy arrived after a checkpoint's end
      (CHECKPOINT_END written: on the backup) and within ``release_ms`` of the
      last such end: released by a commit, not leaked while the guest ran;
    - after the failover the peer hears the backup: at least ``min_after``
      datagrams between the destroy and ``until`` (an event: the next phase's
      start), counting on from the primary's last one (at most one lost at the
      boundary: output of the last epoch dies with the primary), none a
      beat already heard (a repeat would be output the backup never had).

    ``acked``: the backup is remus-receiver, and "on the backup" means its
    acknowledgement was read (stats column 5), not the end written.
    """
    ev = events(result)
    ends = stats_ends(result, label, 5 if acked else 4)
    grams = datagrams(result)
    reasons = []
    lines = stamped(result, f"{label}.log")
    first_suspend = next((ln.own_time() for ln in lines if "PROF: suspending at" in ln.text), None)
    # The PROF line is printed when the suspend is *requested*; through
    # xenstore the guest runs (and sends) for up to a few hundred ms more,
    # before the plug goes in at the actual suspension: take that from the
    # hypervisor's view when there is one.
    primary = int_fact(result, f"{label}-primary-domid")
    start = ev.get(f"{label}-start", (None, None))[1]
    if first_suspend is not None and primary is not None and start is not None:
        seen = domwatch(result).first(primary, "S", start)
        if seen is not None and seen >= first_suspend:
            first_suspend = seen
    destroy = ev.get(f"{label}-destroy", (None, None))[1]
    stop = ev.get(until, (None, None))[1] if until else None
    if first_suspend is None or destroy is None or not ends:
        reasons.append(f"no checkpoint (first suspension {first_suspend}, destroy {destroy}, "
                       f"{len(ends)} stats lines)")
        return OutputCommit(False, reasons, 0, [], 0, [], [], [])
    delays, exempt, late = [], 0, []
    for t, n in grams:
        if not first_suspend <= t <= destroy:
            continue
        if t < first_suspend + grace_ms / 1000:
            exempt += 1
            continue
        before = [e for e in ends if e <= t]
        if not before:
            late.append(f"beat {n} arrived {1000 * (ends[0] - t):.1f} ms before the first "
                        "checkpoint was on the backup")
            continue
        d = (t - before[-1]) * 1000
        delays.append(d)
        if d > release_ms:
            late.append(f"beat {n} arrived {d:.1f} ms after the last checkpoint's end "
                        f"(> {release_ms:.0f} ms: not released by a commit)")
    if late:
        reasons.append(f"{len(late)} datagrams not held for their checkpoint: " + "; ".join(late[:5]))
    if len(delays) < min_checked:
        reasons.append(f"only {len(delays)} datagrams while checkpointing (< {min_checked})")
    pre = [n for t, n in grams if t <= destroy]
    post = [n for t, n in grams if t > destroy and (stop is None or t <= stop)]
    dups = sorted(set(pre) & set(post))
    if dups:
        reasons.append(f"beats heard from the primary and again after the failover: {dups}")
    if len(post) < min_after:
        reasons.append(f"{len(post)} datagrams after the failover (< {min_after})")
    elif pre and post[0] > pre[-1] + 2:
        reasons.append(f"beats {pre[-1] + 1}..{post[0] - 1} never heard at the failover")
    if post and any(b != a + 1 for a, b in zip(post, post[1:])):
        reasons.append(f"the backup's datagrams do not count on: {post}")
    return OutputCommit(not reasons, reasons, len(delays), delays, exempt, pre, post, dups)


def unbuffered_delays(result: xenvm.ScenarioResult, label: str) -> List[float]:
    """For a phase without output buffering (remus --no-net): each datagram's
    delay after the primary's last resume (domwatch), the same measure as
    :func:`output_commit`'s, to show what unbuffered output looks like."""
    ev = events(result)
    primary = int_fact(result, f"{label}-primary-domid")
    start = ev.get(f"{label}-checkpointing", (None, None))[1]
    destroy = (ev.get(f"{label}-destroy") or ev.get(f"{label}-sigterm") or (None, None))[1]
    if primary is None or start is None or destroy is None:
        return []
    resumes = domwatch(result).resumes(primary, start - 30, destroy)
    out = []
    for t, _n in datagrams(result):
        if start <= t <= destroy:
            before = [r for r in resumes if r <= t]
            if before:
                out.append((t - before[-1]) * 1000)
    return out


# -- side by side ------------------------------------------------------------------------
@dataclasses.dataclass
class SideBySide:
    """Stock ``xl remus -n`` and our ``remus --no-net`` on the same guest in
    the same VM, one after the other, each ended by ``xl destroy``."""

    xl: PhaseReport
    ours: PhaseReport

    @staticmethod
    def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return a / b if a is not None and b else None

    @property
    def rate_ratio(self) -> Optional[float]:
        return self._ratio(self.ours.rate, self.xl.rate)

    @property
    def pause_ratio(self) -> Optional[float]:
        return self._ratio(self.ours.pause_median_ms, self.xl.pause_median_ms)

    @property
    def failover_ratio(self) -> Optional[float]:
        return self._ratio(self.ours.failover_run_s, self.xl.failover_run_s)

    @property
    def failover_beat_ratio(self) -> Optional[float]:
        return self._ratio(self.ours.failover_beat_s, self.xl.failover_beat_s)

    def rows(self) -> List[Tuple[str, Optional[float], Optional[float], Optional[float], str]]:
        r = self._ratio
        return [("checkpoints/s at -i 200 (hypervisor)", self.xl.rate, self.ours.rate,
                 self.rate_ratio, ".2f"),
                ("pause median, ms (hypervisor)", self.xl.pause_median_ms,
                 self.ours.pause_median_ms, self.pause_ratio, ".1f"),
                ("pause p90, ms (hypervisor)", self.xl.pause_p90_ms, self.ours.pause_p90_ms,
                 r(self.ours.pause_p90_ms, self.xl.pause_p90_ms), ".1f"),
                ("failover: destroy -> receiver sees the end, s", self.xl.failover_restored_s,
                 self.ours.failover_restored_s,
                 r(self.ours.failover_restored_s, self.xl.failover_restored_s), ".2f"),
                ("failover: destroy -> backup runs, s", self.xl.failover_run_s,
                 self.ours.failover_run_s, self.failover_ratio, ".2f"),
                ("failover: destroy -> backup's first beat, s", self.xl.failover_beat_s,
                 self.ours.failover_beat_s, self.failover_beat_ratio, ".2f")]

    def table(self) -> str:
        f = lambda v, fmt: "-" if v is None else format(v, fmt)
        out = [f"{'':46} {'xl remus':>10} {'ours':>10} {'ours/xl':>8}"]
        for name, a, b, ratio, fmt in self.rows():
            out.append(f"{name:46} {f(a, fmt):>10} {f(b, fmt):>10} {f(ratio, '.2f'):>8}")
        out.append(f"({self.xl.protector} vs {self.ours.protector}: {len(self.xl.pauses_ms)} "
                   f"and {len(self.ours.pauses_ms)} pauses in {self.xl.protected_seconds or 0:.1f}"
                   f" and {self.ours.protected_seconds or 0:.1f} s; domwatch sampled every "
                   f"{(self.xl.sample_gap_us or 0) / 1000:.1f} ms (median))")
        return "\n".join(out)


def side_by_side(result: xenvm.ScenarioResult, *, xl: str = "xl",
                 ours: str = "ours") -> SideBySide:
    return SideBySide(phase_report(result, xl), phase_report(result, ours))
