"""The xen tier's scenarios (dom0 bash, built here) and their verdicts.

A **chain** (real-xen.md steps 6-7) creates one heartbeat guest and protects
it in phases, one after the other, each with its own protecting command (stock
``xl remus``, our ``remus``, a legacy script through ``run-legacy``) to a
localhost ``xl migrate-receive -r``: checkpoints flow for a while, then the
phase ends with ``xl destroy`` of the primary (the backup takes over and is the
next phase's primary: the same guest, its heartbeat counting on) or with
SIGTERM to the protecting command (the guest must go on running).  Running the
phases on one guest saves a guest boot each and puts stock xl and ours side by
side on the same guest in the same VM.

What a scenario sees goes into ``$SCEN``: ``events`` (``name realtime
monotonic``), ``facts`` (``key value...``), ``LABEL.log`` (a command's output,
each line prefixed with the CLOCK_REALTIME and CLOCK_MONOTONIC it was read at),
``LABEL.rc``, ``domwatch.txt`` (every domain's state as the hypervisor reports
it, polled every millisecond by tests/xen/domwatch.c), ``peer.txt`` (the
guest's datagrams as dom0's peer received them, CLOCK_MONOTONIC), ``LABEL.stats``
(our remus's ``XEN_REMUS_COMPAT_STATS_FILE``); xenconsoled's guest logs come
back in ``$SCEN/xenlog/console`` (tests/xen/xenvm.py), the backup of phase
LABEL's as ``guest-NAME--LABEL.log``.

Their verdicts are in tests/xen/verdicts.py.
"""
from __future__ import annotations

import dataclasses
import shlex
from typing import Callable, List, Optional, Sequence, Tuple

from tests.xen import xenvm

#: the receiving end, as real-xen.md step 7 (``-s ""``: the whole command,
#: run with ``sh -c`` by xl and by our remus alike)
RECEIVER = "exec xl migrate-receive -r -e"
PROTECT_SECONDS = 10
INTERVAL_MS = 200
VENV_BIN = xenvm.ROOT / ".venv" / "bin"
LEGACY_SCRIPT = xenvm.ROOT / "tests" / "e2e" / "legacy_scripts" / "protect.py"
RELOCATION_PORT = 8002
#: the refusal our remus must give for a PV guest on a hypervisor without
#: shadow paging (lowlevel/checkpoint/suspend.c, cp_probe)
REFUSAL_WORDS = ("CONFIG_SHADOW_PAGING", "PVH")


@dataclasses.dataclass(frozen=True)
class Protector:
    """A protecting command: its argv for (guest name, interval ms), the ERE
    of its output's one line per checkpoint, the environment it runs with,
    and bash run before it (a receiver to start)."""

    label: str
    argv: Callable[[str, int], List[str]]
    checkpoint: str
    env: Tuple[Tuple[str, str], ...] = ()
    before: str = ""


def xl_remus_argv(name: str, interval_ms: int = INTERVAL_MS) -> List[str]:
    """Stock xl: ``-F`` is required with ``-n`` (no network buffering: Debian's
    libxl is built without it) and ``-d`` (no disk replication); ``-e``: stay
    in the foreground."""
    return ["xl", "remus", "-F", "-n", "-d", "-e", "-i", str(interval_ms), "-s", "",
            name, RECEIVER]


def our_remus_argv(name: str, interval_ms: int = INTERVAL_MS, *extra: str) -> List[str]:
    """The project's ``remus`` (docs/remus.1) to the same receiver; it buffers
    every vif of the guest unless ``--no-net``."""
    return [str(VENV_BIN / "remus"), "-i", str(interval_ms), *extra, "-s", "", name, RECEIVER]


def legacy_argv(name: str, interval_ms: int = INTERVAL_MS) -> List[str]:
    """Xen 4.4's ``remus`` script style (tests/e2e/legacy_scripts/protect.py,
    Python 2) through ``run-legacy``, to ``remus-receiver`` on the relocation
    port."""
    return [str(VENV_BIN / "xen-remus-compat"), "run-legacy", str(LEGACY_SCRIPT),
            "-i", str(interval_ms), "-p", str(RELOCATION_PORT), name, "127.0.0.1"]


#: stock xl remus: one libxc "Checkpointed save" progress line per checkpoint
XL_REMUS = Protector("xl remus -n", xl_remus_argv, r"Checkpointed save")
#: our remus (PROF lines, docs/remus.1 OUTPUT), with network buffering
OUR_REMUS = Protector("remus", our_remus_argv, r"PROF: flushed memory at")
OUR_REMUS_NONET = Protector("remus --no-net",
                            lambda name, ms=INTERVAL_MS: our_remus_argv(name, ms, "--no-net"),
                            r"PROF: flushed memory at")
#: the legacy script, with remus-receiver (only on 127.0.0.1: it refuses to
#: listen on every address without an allow-list or TLS) in front of
#: ``xl migrate-receive -r -e``
RECEIVER_FIRST = (f"run_bg $label-receiver {shlex.quote(str(VENV_BIN / 'remus-receiver'))} "
                  f"--listen 127.0.0.1 --port {RELOCATION_PORT} --once -e "
                  f"--ready-file $SCEN/$label.ready\n"
                  "within 60 test -s $SCEN/$label.ready "
                  "|| echo \"$label: remus-receiver not ready\"\n")
LEGACY_REMUS = Protector(
    "protect.py (run-legacy) -> remus-receiver", legacy_argv, r"PROF: flushed memory at",
    before=RECEIVER_FIRST)
#: our remus to remus-receiver (-p): acknowledged output commit, the default
#: there (each epoch's output released after the backup's ack)
OUR_REMUS_ACKED = Protector(
    "remus -p -> remus-receiver",
    lambda name, ms=INTERVAL_MS: [str(VENV_BIN / "remus"), "-i", str(ms), "-p",
                                  str(RELOCATION_PORT), name, "127.0.0.1"],
    r"PROF: flushed memory at", before=RECEIVER_FIRST)


@dataclasses.dataclass(frozen=True)
class Phase:
    """One protection of the chain's guest: ``end`` is ``failover`` (``xl
    destroy`` of the primary after ``protect_seconds`` of checkpoints) or
    ``sigterm`` (SIGTERM to the protecting command instead).  ``stats``:
    our remus writes ``$SCEN/LABEL.stats`` (XEN_REMUS_COMPAT_STATS_FILE).
    ``attach``: the chain's vif is attached before this phase."""

    label: str
    protector: Protector
    end: str = "failover"
    protect_seconds: int = PROTECT_SECONDS
    stats: bool = False
    #: seconds to wait for the backup's first beat after the destroy (stock
    #: xl needs 60 s and more when the destroy lands in a suspend)
    failover_seconds: int = 45
    #: ``xl network-attach`` the guest's vif first (GuestNet; the guest brings
    #: eth0 up and starts sending its datagrams)
    attach: bool = False


def xl_info() -> xenvm.Scenario:
    return xenvm.Scenario("xl-info", "xl info > $SCEN/xl-info.txt\nxl list\n", 60)


GUEST_LIB = r"""
NAME=@NAME@
PLOG=$CON/guest-$NAME.log          # the current primary's console log
# beats since the log was last opened (a guest that rebooted itself, as
# PVH guests under nested TCG now and then do early in their boot, is
# restarted by xl: its log goes on after another "Logfile Opened")
has_beat() { [ "$(awk '/Logfile Opened/ {n = 0} /HB [0-9]/ {n++} END {print n + 0}' $PLOG 2>/dev/null)" -gt 0 ]; }
"""


def pv_refused(artifacts: xenvm.Artifacts, *, guest: str = "pv1",
               xenhost: bool = True) -> xenvm.Scenario:
    """A PV guest on the stock hypervisor (no shadow paging): our ``remus``
    must refuse it at once, before any byte is sent (the receiver is never
    started: its command would touch ``receiver-started``), rc 1, the guest
    still running.  Then (``xenhost``) the xenhost tier (tests/xenhost, the
    live libxl binding) runs in dom0 beside the guest, junit in
    ``$SCEN/junit.xml``."""
    destination = f"touch $SCEN/receiver-started; {RECEIVER}"
    remus = [str(VENV_BIN / "remus"), "-i", str(INTERVAL_MS), "-s", "", guest]
    python = shlex.quote(str(VENV_BIN / "python"))
    script = GUEST_LIB.replace("@NAME@", shlex.quote(guest)) + f"""
ev start
xl create $SCEN/guest.cfg || exit 10
ev created
within 120 has_beat || {{ echo "no heartbeat from $NAME"; xl list; exit 11; }}
ev first-beat
b0=$(beats $PLOG)
ev remus-start
run_bg remus {shlex.join(remus)} "{destination}"
within 120 test -e $SCEN/remus.rc && ev remus-end
fact remus-rc $(cat $SCEN/remus.rc 2>/dev/null)
sleep 3
fact beats $b0 $(beats $PLOG)
fact state "$(state_of $NAME)"
fact receiver-started $([ -e $SCEN/receiver-started ] && echo yes || echo no)
fact incoming $(has_domain $NAME--incoming && echo yes || echo no)
xl list > $SCEN/xl-list-after.txt
cat $SCEN/remus.log
"""
    if xenhost:
        script += f"""ev xenhost-start
{python} -m pytest -p no:cacheprovider -q -rA -o junit_logging=all \\
    --junitxml=$SCEN/junit.xml tests/xenhost > $SCEN/xenhost.log 2>&1
echo $? > $SCEN/xenhost.rc
ev xenhost-end
"""
    return xenvm.Scenario("pv-refused", script, 420 if xenhost else 240,
                          files={"guest.cfg": xenvm.guest_config(guest, "pv", artifacts),
                                 "guest.name": guest + "\n"},
                          guests=(guest,))


#: the chain's phase, in bash (lib.sh's helpers; $NAME, $PLOG)
PHASE_FUNCTION = r"""
incoming_or_end() { has_domain $NAME--incoming || ended $label; }
checkpointing() { grep -Eq "$cre" $SCEN/$label.log 2>/dev/null; }
checkpoint_or_end() { checkpointing || ended $label; }
backup_beat() { [ "$(beats $CON/guest-$NAME--incoming.log)" -gt 0 ]; }
exited() { ! alive $label; }
# phase LABEL END PROTECT_SECONDS CHECKPOINT_ERE CMD...: protect $NAME with
# CMD; END failover (xl destroy of the primary) or sigterm.  Returns 0 when
# the guest $NAME runs afterwards (the next phase's primary).
phase() {
    local label=$1 end=$2 protect=$3 cre=$4; shift 4
    echo "$label $(basename $PLOG)" >> $SCEN/phases
    fact $label-primary-domid $(domid_of $NAME)
    ev $label-start
    run_bg $label "$@"
    if within 90 incoming_or_end && ! ended $label; then
        ev $label-incoming
        fact $label-backup-domid $(domid_of $NAME--incoming)
    fi
    if ! within @COPY@ checkpoint_or_end || ! checkpointing; then
        echo "$label: no checkpoint (rc $(cat $SCEN/$label.rc 2>/dev/null))"
        tail -5 $SCEN/$label.log
        alive $label && kill $(cat $SCEN/$label.pid)
        within 30 ended $label
        has_domain $NAME--incoming && xl destroy $NAME--incoming
        fact $label-rc $(cat $SCEN/$label.rc 2>/dev/null)
        has_domain $NAME
        return
    fi
    ev $label-checkpointing
    sleep $protect
    case $end in
    failover)
        ev $label-destroy
        xl destroy $NAME
        ev $label-destroyed
        within $FAILOVER backup_beat && ev $label-backup-beat \
            || echo "$label: no heartbeat from the backup"
        within 30 no_domain $NAME--incoming && ev $label-renamed \
            || echo "$label: $NAME--incoming still there"
        sleep @RUN_ON@
        within 60 ended $label && ev $label-ended || echo "$label: the command still runs"
        within 10 test -e $SCEN/$label.rc
        fact $label-rc $(cat $SCEN/$label.rc 2>/dev/null)
        xl list > $SCEN/$label-xl-list.txt
        mv $CON/guest-$NAME--incoming.log $CON/guest-$NAME--$label.log 2>/dev/null
        PLOG=$CON/guest-$NAME--$label.log
        ;;
    sigterm)
        ev $label-sigterm
        kill -TERM $(cat $SCEN/$label.pid)
        within 60 exited && ev $label-exited || echo "$label: still running after SIGTERM"
        local b0=$(beats $PLOG) s0=$(state_of $NAME)
        sleep 3
        fact $label-beats $b0 $(beats $PLOG)
        fact $label-state $s0 $(state_of $NAME)
        fact $label-domid $(domid_of $NAME)
        within 30 test -e $SCEN/$label.rc
        fact $label-rc $(cat $SCEN/$label.rc 2>/dev/null)
        xl list > $SCEN/$label-xl-list.txt
        # xl migrate-receive takes the end of the stream for the primary's
        # failure and starts its copy (which cannot take the name): say so
        if has_domain $NAME--incoming; then
            fact $label-backup-copy $(state_of $NAME--incoming)
            xl destroy $NAME--incoming
        else
            fact $label-backup-copy none
        fi
        mv $CON/guest-$NAME--incoming.log $CON/guest-$NAME--$label.log 2>/dev/null
        ;;
    esac
    has_domain $NAME
}
"""

PEER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], int(sys.argv[3])))
with open(sys.argv[1], "a", buffering=1) as out:
    out.write("# listening %.6f\n" % time.monotonic())
    while True:
        data, addr = s.recvfrom(4096)
        t = time.monotonic()
        out.write("%.6f %s %s\n" % (t, addr[0], data.decode("ascii", "replace").replace("\n", " ")))
"""


def chain(scenario: str, artifacts: xenvm.Artifacts, phases: Sequence[Phase], *,
          guest: str, guest_type: str, net: Optional[xenvm.GuestNet] = None,
          wait_for: Optional[str] = None, boot_seconds: int = 120,
          copy_seconds: int = 90, run_on_seconds: int = 3) -> xenvm.Scenario:
    """Create the heartbeat guest ``guest`` (``guest_type`` pv or pvh; a vif
    on ``net``'s bridge, its datagrams to a peer in dom0, if given: from the
    start, or from the first phase that attaches it) and run ``phases`` on it
    one after the other.  ``$SCEN/created`` appears once the
    guest exists; with ``wait_for`` (a file) the first phase waits for it (a
    background scenario that must not see domains come and go)."""
    body = []
    for p in phases:
        if p.end not in ("failover", "sigterm"):
            raise ValueError(f"phase {p.label}: end {p.end!r}")
        env = list(p.protector.env)
        if p.stats:
            env.append(("XEN_REMUS_COMPAT_STATS_FILE", f"$SCEN/{p.label}.stats"))
        argv = " ".join(shlex.quote(a) for a in p.protector.argv(guest, INTERVAL_MS))
        envs = "".join(f"{k}={v} " for k, v in env)
        cmd = f"env {envs}{argv}" if envs else argv
        attach = ""
        if p.attach:
            if net is None:
                raise ValueError(f"phase {p.label} attaches a vif, but the chain has no net")
            attach = (f"ev $label-attach\nxl network-attach $NAME {shlex.join(net.attach_args())} "
                      "|| echo \"$label: xl network-attach failed\"\n"
                      "within 90 grep -q 'NET eth0' $PLOG && ev $label-net "
                      "|| echo \"$label: the guest did not bring eth0 up\"\n")
        body.append(f"label={p.label}\n{attach}{p.protector.before}"
                    f"FAILOVER={p.failover_seconds} phase {p.label} {p.end} {p.protect_seconds} "
                    f"{shlex.quote(p.protector.checkpoint)} {cmd} || "
                    f"{{ echo \"{guest} is gone after phase {p.label}\"; finish 20; }}\n")
    net_setup = peer = ""
    if net:
        net_setup = net.dom0_setup()
        peer = (f"python3 -u -c {shlex.quote(PEER)} $SCEN/peer.txt {net.dom0_ip} {net.port} "
                f"> $SCEN/peer.err 2>&1 &\nPEER_PID=$!\n")
    wait = (f"within 480 test -e {wait_for} && ev waited || echo \"no {wait_for}\"\n"
            if wait_for else "")
    script = (GUEST_LIB.replace("@NAME@", shlex.quote(guest))
              + PHASE_FUNCTION.replace("@COPY@", str(copy_seconds))
              .replace("@RUN_ON@", str(run_on_seconds))
              + f"""
finish() {{
    stop_watch
    [ -n "${{PEER_PID:-}}" ] && kill $PEER_PID
    xl list
    exit $1
}}
start_watch
{net_setup}{peer}ev start
xl create $SCEN/guest.cfg || finish 10
ev created
touch $SCEN/created
within {boot_seconds} has_beat || {{ echo "no heartbeat from $NAME"; finish 11; }}
ev first-beat
{wait}""" + "".join(body) + "finish 0\n")
    timeout = boot_seconds + (480 if wait_for else 0) + 60 + sum(
        90 + copy_seconds + p.protect_seconds + p.failover_seconds + 30 + run_on_seconds + 120
        for p in phases)
    return xenvm.Scenario(
        scenario, script, timeout, guests=(guest,),
        files={"guest.cfg": xenvm.guest_config(guest, guest_type, artifacts, net=net,
                                               vif=not any(p.attach for p in phases)),
               "guest.name": guest + "\n",
               "protectors": "".join(f"{p.label} {p.end} {p.protector.label}\n"
                                     for p in phases),
               **{f"{p.label}.checkpoint.re": p.protector.checkpoint + "\n" for p in phases}})


def stock_scenarios(artifacts: xenvm.Artifacts) -> List[xenvm.Scenario]:
    """Debian's hypervisor, one boot: ``xl info``; a PV guest refused by our
    remus, the xenhost tier beside it; one PVH guest (:data:`STOCK_PHASES`);
    one HVM guest (:data:`HVM_PHASES`)."""
    return [xl_info(), pv_refused(artifacts),
            chain("pvh-chain", artifacts, STOCK_PHASES, guest="pvh", guest_type="pvh",
                  net=xenvm.GuestNet()),
            hvm_chain(artifacts)]


#: the HVM guest's phases on Debian's hypervisor: our remus -v (its device
#: model's cost per checkpoint is in the log), then stock xl remus; ours
#: first, because stock xl's HVM failover is not reliable (real-xen.md: a
#: backup left paused) and would leave no guest for a phase after it
HVM_PHASES = (Phase("ours", Protector(
                  "remus --no-net", lambda name, ms=INTERVAL_MS: our_remus_argv(
                      name, ms, "--no-net", "-v"), r"PROF: flushed memory at"),
                  stats=True),
              Phase("xl", XL_REMUS, failover_seconds=100))


def hvm_chain(artifacts: xenvm.Artifacts) -> xenvm.Scenario:
    """An HVM guest (the Debian kernel booted directly by qemu-xen, its
    heartbeat on hvc0) protected by our remus, then by stock xl remus, each
    ended by xl destroy: firmware and kernel take about a minute under TCG."""
    return chain("hvm-chain", artifacts, HVM_PHASES, guest="hvm", guest_type="hvm",
                 boot_seconds=240, copy_seconds=150)


#: the PVH guest's phases on Debian's hypervisor: stock xl remus and our
#: remus, both without network buffering and with no vif yet (the side by
#: side: rate, pause, failover), each ended by xl destroy; then the vif is
#: attached and our remus --no-net is ended by SIGTERM (its datagrams go out
#: unbuffered: the contrast); then our remus buffers the vif (output commit,
#: released after the write to stock xl) and is ended by xl destroy; last the
#: same to remus-receiver (released after its acknowledgement)
STOCK_PHASES = (Phase("xl", XL_REMUS, failover_seconds=100),
                Phase("ours", OUR_REMUS_NONET),
                Phase("sigterm", OUR_REMUS_NONET, end="sigterm", protect_seconds=5,
                      attach=True),
                Phase("netbuf", OUR_REMUS, stats=True, protect_seconds=12),
                Phase("acked", OUR_REMUS_ACKED, stats=True, protect_seconds=12))
#: the PV guest's phases on the shadow-paging build
SHADOW_PHASES = (Phase("ours", OUR_REMUS_NONET), Phase("legacy", LEGACY_REMUS))


def shadow_scenarios(artifacts: xenvm.Artifacts) -> List[xenvm.Scenario]:
    """The shadow-paging build, one boot: ``xl info``; one PV guest protected
    by our remus (failover), then by the legacy script through run-legacy and
    remus-receiver (failover)."""
    return [xl_info(), chain("pv-chain", artifacts, SHADOW_PHASES, guest="pv",
                             guest_type="pv")]
