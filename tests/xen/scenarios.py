"""The xen tier's scenarios (dom0 bash, built here) and their verdicts.

A Remus scenario (real-xen.md steps 6-7): create the heartbeat guest, wait
for its first beat, start the protecting command (stock ``xl remus`` or our
``remus``) to a localhost ``xl migrate-receive -r -e``, let checkpoints flow
for a while, ``xl destroy`` the primary, and watch the backup take over.
Everything it sees goes into ``$SCEN``: ``events`` (``name epoch-seconds``
lines), ``remus.log`` (the command's output, each line prefixed with the
epoch time it was read), ``remus.rc``, ``xl-list-*.txt``; xenconsoled's guest
logs come back in ``$SCEN/xenlog/console`` (tests/xen/xenvm.py).

:func:`heartbeat_failover` is the verdict, for any protecting command.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from tests.xen import xenvm

#: the receiving end, as real-xen.md step 7 (``-s ""``: the whole command;
#: xl runs it with ``sh -c``, our remus splits it with shlex and execs it,
#: so ``exec`` is for xl only)
RECEIVER = "exec xl migrate-receive -r -e"
OUR_RECEIVER = RECEIVER        # -s "" runs it with sh -c, as xl does
PROTECT_SECONDS = 20


@dataclasses.dataclass(frozen=True)
class Protector:
    """A protecting command and the lines of its output the report reads
    (EREs): one per checkpoint, and the two that bracket a checkpoint's
    pause (the time the guest is suspended, as the command logs it)."""

    label: str
    argv: Callable[[str, int], List[str]]
    checkpoint: str
    suspended: str
    resumed: str


def xl_remus_argv(name: str, interval_ms: int = 200) -> List[str]:
    """Stock xl: ``-F`` is required with ``-n`` (no network buffering) and
    ``-d`` (no disk replication); ``-e``: stay in the foreground."""
    return ["xl", "remus", "-F", "-n", "-d", "-e", "-i", str(interval_ms), "-s", "",
            name, RECEIVER]


def our_remus_argv(name: str, interval_ms: int = 200) -> List[str]:
    """The project's ``remus`` (docs/remus.1) to the same receiver."""
    return [str(xenvm.ROOT / ".venv" / "bin" / "remus"), "-i", str(interval_ms), "-s", "",
            name, OUR_RECEIVER]


#: stock xl remus: libxc's progress lines (the pause ends when the dirty
#: pages are in the stream: libxl resumes the guest then)
XL_REMUS = Protector("xl remus", xl_remus_argv, r"Checkpointed save",
                     r"Domain now suspended", r"Checkpointed save")
#: our remus: its PROF lines (docs/remus.1, OUTPUT)
OUR_REMUS = Protector("remus", our_remus_argv, r"PROF: flushed memory at",
                      r"PROF: suspending at", r"PROF: resumed at")


def xl_info() -> xenvm.Scenario:
    return xenvm.Scenario("xl-info", "xl info > $SCEN/xl-info.txt\nxl list\n", 60)


def xenhost(artifacts: xenvm.Artifacts, guest: str = "xh1") -> xenvm.Scenario:
    """The xenhost tier (tests/xenhost: the live libxl binding) run in dom0
    with the project's .venv, with one PVH guest running beside dom0."""
    python = shlex.quote(str(xenvm.ROOT / ".venv" / "bin" / "python"))
    script = f"""
ev() {{ echo "$1 $EPOCHREALTIME" >> $SCEN/events; }}
ev start
xl create $SCEN/guest.cfg || exit 10
ev created
xl list -l > $SCEN/xl-list-l.json
xl list > $SCEN/xl-list.txt
{python} -m pytest -p no:cacheprovider -q -rA -o junit_logging=all \\
    --junitxml=$SCEN/junit.xml tests/xenhost
rc=$?
ev end
exit $rc
"""
    return xenvm.Scenario("xenhost", script, 240,
                          files={"guest.cfg": xenvm.guest_config(guest, "pvh", artifacts)})


REMUS_SCRIPT = r"""
NAME=@NAME@
CON=/var/log/xen/console
ev() { echo "$1 $EPOCHREALTIME" >> $SCEN/events; echo "--- $1"; }
stamp() { while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }
within() {   # within SECONDS COMMAND...: poll COMMAND every 0.1 s
    local end=$(( EPOCHSECONDS + $1 )); shift
    until "$@"; do [ "$EPOCHSECONDS" -ge "$end" ] && return 1; sleep 0.1; done
}
beats() { cat "$@" 2>/dev/null | grep -c 'HB [0-9]'; }
has_beat() { [ "$(beats $CON/guest-$NAME.log)" -gt 0 ]; }
has_domain() { xl domid "$1" > /dev/null 2>&1; }
no_domain() { ! has_domain "$1"; }
checkpointing() { grep -Eq @CHECKPOINT@ $SCEN/remus.log 2>/dev/null; }
ended() { [ -e $SCEN/remus.rc ]; }
backup_beat() { [ "$(beats $CON/guest-$NAME--incoming.log)" -gt 0 ] ||
                [ "$(beats $CON/guest-$NAME.log)" -gt "$primary_beats" ]; }

ev start
xl create $SCEN/guest.cfg || exit 10
ev created
within @BOOT@ has_beat || { echo "no heartbeat from $NAME"; xl list; exit 11; }
ev first-beat
( @COMMAND@ 2>&1 | stamp > $SCEN/remus.log; echo "${PIPESTATUS[0]}" > $SCEN/remus.rc ) &
incoming_or_end() { has_domain $NAME--incoming || ended; }
checkpoint_or_end() { checkpointing || ended; }
within 60 incoming_or_end && ! ended && ev incoming
# protection starts with the first checkpoint (after the initial copy)
within @COPY@ checkpoint_or_end && ! ended && ev checkpointing
if ended || ! checkpointing; then
    echo "no checkpoint: the protecting command ended (rc $(cat $SCEN/remus.rc 2>/dev/null))" \
         "or @COPY@ s passed"
    xl list; tail -5 $SCEN/remus.log; exit 12
fi
xl list > $SCEN/xl-list-protected.txt
sleep @PROTECT@
ev destroy
xl destroy $NAME
ev destroyed
primary_beats=$(beats $CON/guest-$NAME.log)
within @FAILOVER@ backup_beat && ev backup-beat || echo "no heartbeat from the backup"
within 30 no_domain $NAME--incoming && ev renamed || echo "$NAME--incoming still there"
sleep @RUN_ON@
xl list > $SCEN/xl-list-after-failover.txt
ev end
within 30 ended && ev command-ended || echo "the protecting command is still running"
echo "protecting command rc $(cat $SCEN/remus.rc 2>/dev/null)"
xl list
"""

def remus_failover(scenario: str, protector: Protector, *, guest: str, guest_type: str,
                   artifacts: xenvm.Artifacts, interval_ms: int = 200,
                   protect_seconds: int = PROTECT_SECONDS, copy_seconds: int = 90,
                   failover_seconds: int = 120, boot_seconds: int = 120,
                   run_on_seconds: int = 5) -> xenvm.Scenario:
    """Protect the heartbeat guest ``guest`` (``guest_type`` pv or pvh) with
    ``protector``, let it checkpoint for ``protect_seconds`` from its first
    checkpoint, destroy the primary, watch the backup for ``run_on_seconds``
    more.  The verdict is :func:`heartbeat_failover`; :func:`remus_report`
    sums it all up."""
    command = protector.argv(guest, interval_ms)
    script = (REMUS_SCRIPT.replace("@NAME@", shlex.quote(guest))
              .replace("@COMMAND@", shlex.join(command))
              .replace("@CHECKPOINT@", shlex.quote(protector.checkpoint))
              .replace("@BOOT@", str(boot_seconds)).replace("@COPY@", str(copy_seconds))
              .replace("@PROTECT@", str(protect_seconds))
              .replace("@FAILOVER@", str(failover_seconds))
              .replace("@RUN_ON@", str(run_on_seconds)))
    timeout = (boot_seconds + 60 + copy_seconds + protect_seconds + failover_seconds
               + run_on_seconds + 90)
    return xenvm.Scenario(scenario, script, timeout,
                          files={"guest.cfg": xenvm.guest_config(guest, guest_type, artifacts),
                                 "guest.name": guest + "\n",
                                 "protector": protector.label + "\n",
                                 "checkpoint.re": protector.checkpoint + "\n",
                                 "suspended.re": protector.suspended + "\n",
                                 "resumed.re": protector.resumed + "\n"})


# -- verdicts ---------------------------------------------------------------------
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
                       min_backup: int = 3, max_replay: int = 3) -> Failover:
    """Did the backup continue the primary's heartbeat?

    The primary's log must count 1, 2, ... without a gap (at least
    ``min_primary`` beats); the backup's must go on counting without a gap
    (at least ``min_backup`` beats) from where the primary was: its first
    beat is the primary's last + 1, or up to ``max_replay`` beats earlier
    (beats the primary printed after the last checkpoint, which the backup
    prints again: the state they were printed from was never checkpointed).
    A backup that counts from 1 booted afresh; one that starts later than
    last + 1 lost beats.  Its uptime must not go back either.
    """
    primary, backup = parse_beats(primary_log), parse_beats(backup_log)
    reasons = []
    if len(primary) < min_primary:
        reasons.append(f"the primary printed {len(primary)} beats (< {min_primary})")
    elif primary[0].n != 1:
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


def events(result: xenvm.ScenarioResult) -> Dict[str, float]:
    out = {}
    for line in result.text("events").splitlines():
        name, _, value = line.partition(" ")
        try:
            out.setdefault(name, float(value))
        except ValueError:
            pass
    return out


def guest_logs(result: xenvm.ScenarioResult, name: str) -> Tuple[str, str]:
    """The primary's and the backup's console logs.  The backup is
    ``NAME--incoming`` when xenconsoled opened its log (it names a log once,
    at connection); were it named ``NAME`` by then, xenconsoled appended to
    the primary's file, after a second ``Logfile Opened`` line."""
    logs = result.console_logs()
    primary, backup = logs.get(name, ""), logs.get(f"{name}--incoming", "")
    if not backup:
        parts = re.split(r"^.*Logfile Opened\s*$", primary, flags=re.M)
        parts = [p for p in parts if p.strip()]
        if len(parts) > 1:
            primary, backup = parts[0], "".join(parts[1:])
    return primary, backup


def _stamped(log: str, pattern: str, *, own_time: bool = False) -> List[float]:
    """When dom0 read each line of ``log`` matching ``pattern`` (the epoch
    prefix the scenario adds); ``own_time``: the epoch time the line itself
    carries after the match, if any (our remus's ``PROF: ... at T``)."""
    out = []
    for line in log.splitlines():
        stamp, _, text = line.partition(" ")
        m = re.search(pattern, text)
        if not m:
            continue
        own = re.search(r"\b(\d{9,}\.\d+)", text[m.end():]) if own_time else None
        try:
            out.append(float(own.group(1) if own else stamp))
        except ValueError:
            pass
    return out


@dataclasses.dataclass
class RemusReport:
    name: str
    protector: str
    rc: Optional[int]                  # the scenario script's
    remus_rc: Optional[int]            # the protecting command's
    verdict: Failover
    checkpoints: int                   # in the protecting command's output, in all
    checkpoints_protected: int         # from the first to the destroy
    protected_seconds: Optional[float]
    failover_seconds: Optional[float]  # destroy -> the backup's first beat seen
    failover_message_seconds: Optional[float]   # destroy -> "Remus Failover"
    pause_median_ms: Optional[float]   # suspended -> resumed lines (their own times if any)
    stages: Dict[str, float]           # seconds per stage
    scenario_seconds: Optional[float]

    @property
    def rate(self) -> Optional[float]:
        if self.protected_seconds:
            return self.checkpoints_protected / self.protected_seconds
        return None

    def summary(self) -> str:
        parts = [f"{self.name} ({self.protector}): {self.verdict}",
                 f"{self.checkpoints} checkpoints ({self.checkpoints_protected} in "
                 f"{self.protected_seconds or 0:.1f} s before the destroy"
                 + (f", {self.rate:.2f}/s)" if self.rate else ")")]
        if self.pause_median_ms is not None:
            parts.append(f"pause median ~{self.pause_median_ms:.0f} ms")
        if self.failover_seconds is not None:
            parts.append(f"backup's first beat {self.failover_seconds:.1f} s after the destroy")
        if self.failover_message_seconds is not None:
            parts.append(f"'Failover' message after {self.failover_message_seconds:.1f} s")
        parts.append(f"protecting command rc {self.remus_rc}")
        if self.scenario_seconds is not None:
            parts.append(f"scenario {self.scenario_seconds:.0f} s ("
                         + ", ".join(f"{k} {v:.1f}" for k, v in self.stages.items()) + ")")
        return "; ".join(parts)


def remus_report(result: xenvm.ScenarioResult, **verdict_kw) -> RemusReport:
    """Everything a Remus scenario's results say (see :func:`remus_failover`)."""
    name = result.text("guest.name").strip()
    checkpoint_re = result.text("checkpoint.re").strip()
    primary, backup = guest_logs(result, name)
    verdict = heartbeat_failover(primary, backup, **verdict_kw)
    ev = events(result)
    log = result.text("remus.log")
    cps = _stamped(log, checkpoint_re)
    destroy = ev.get("destroy")
    protected = [t for t in cps if destroy is None or t <= destroy]
    protected_seconds = (destroy - protected[0]) if protected and destroy else None
    after = lambda key: (ev[key] - destroy) if destroy and key in ev else None
    message = [t for t in _stamped(log, r"Failover for domain") if destroy and t >= destroy]
    resumed = _stamped(log, result.text("resumed.re").strip(), own_time=True)
    pauses = []
    for start in _stamped(log, result.text("suspended.re").strip(), own_time=True):
        end = next((t for t in resumed if t >= start), None)
        if end is not None and end - start < 10:
            pauses.append((end - start) * 1000)
    pauses.sort()
    stages = {}
    for label, a, b in (("create", "start", "created"), ("boot", "created", "first-beat"),
                        ("initial copy", "first-beat", "checkpointing"),
                        ("after destroy", "destroy", "end")):
        if a in ev and b in ev:
            stages[label] = ev[b] - ev[a]
    try:
        remus_rc = int(result.text("remus.rc").strip())
    except ValueError:
        remus_rc = None
    return RemusReport(result.name, result.text("protector").strip(), result.rc, remus_rc, verdict, len(cps), len(protected),
                       protected_seconds, after("backup-beat"),
                       (message[0] - destroy) if message else None,
                       pauses[len(pauses) // 2] if pauses else None, stages, result.seconds)
