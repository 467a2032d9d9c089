"""The real ``remus`` command with a netbuf, on a kernel without sch_plug.

Issue "Output commit", check "The engine with devices", host half: the
simulated guest (``remus --sim``) has one vif, the host end of a veth pair in
a network namespace we create.  This kernel has no plug qdisc, so the NIC
cannot be buffered; legacy-api.md §5.5 (as fixed: the plug is installed when
the NIC is built, so a kernel without sch_plug is reported before the guest
is ever suspended) and §1.5 (clear errors, exit 1, no traceback) say remus
must stop there: exit 1, a message naming sch_plug, the guest still running,
and the namespace exactly as it was (no IFB, qdisc, filter or pool claim).

The IFB pool table lives in ``/var/run/remus`` (``legacy.device.POOLDIR``,
no setting reaches a command).  So that the test neither creates that
directory on this host nor races other users of it, remus runs with a tmpfs
over ``/run`` and the test's own directory bound at ``/run/remus``, in the
private mount namespace ``ip netns exec`` already gives it.

Also here (no namespace needed): the engine's stats file stamps each
CHECKPOINT_END with CLOCK_MONOTONIC (column 4), which the qemu tier's
output-commit test orders datagrams against.
"""
from __future__ import annotations

import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, tier_unavailable
from tests.linux.test_netbuf_netns import linux_tier, one_guest_topo  # noqa: F401 (fixture)
from xen_remus_compat.sim import simxen
from xen_remus_compat.remus.engine import STATS_ENV

#: the installed console script, beside this interpreter (the venv's)
REMUS = pathlib.Path(sys.executable).with_name("remus")


def remus_in_netns(ns: str, pool: str, args, env_extra) -> subprocess.CompletedProcess:
    """``ip netns exec NS remus ARGS`` with ``pool`` as /var/run/remus."""
    if not REMUS.exists():
        pytest.fail(f"the remus command is not installed at {REMUS} (pip install -e .)")
    argv = [str(REMUS)]
    script = ("mount -t tmpfs -o mode=0755 xrc-run /run && mkdir /run/remus && "
              f"mount --bind {shlex.quote(pool)} /run/remus && exec "
              + shlex.join(argv + list(args)))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIMXEN_", "XEN_REMUS_COMPAT_"))}
    env.pop("PYTHONPATH", None)
    env.update(env_extra)
    return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", script], env=env,
                          capture_output=True, text=True, timeout=120, cwd=str(ROOT))


@pytest.fixture
def topo(linux_tier):  # noqa: F811
    if linux_tier["plug"]:
        tier_unavailable("linux", "this kernel has sch_plug, so remus cannot be shown "
                                  "to refuse a kernel without it (the qemu tier "
                                  "covers output commit on the real plug)")
    ok, why = simxen.available()
    if not ok:
        pytest.fail(why)
    with one_guest_topo() as t:
        yield t


def test_remus_without_sch_plug_fails_early_and_leaves_nothing(topo, tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    state = tmp_path / "sim"
    stats = tmp_path / "stats"
    before = topo.snapshot()
    proc = remus_in_netns(topo.host, str(pool), ["--sim", "-i", "100", "--blackhole",
                                                 "simguest"],
                          {"XEN_REMUS_COMPAT_SIM_VIFS": "vh0",
                           "XEN_REMUS_COMPAT_STATS_FILE": str(stats),
                           "SIMXEN_STATE_DIR": str(state)})
    err = proc.stderr
    assert proc.returncode == 1, (proc.stdout, err)
    assert "Traceback" not in err and "internal error" not in err
    lines = [l for l in err.splitlines() if l.startswith("remus: ")]
    assert len(lines) == 1, err
    msg = lines[0]
    assert "sch_plug" in msg and "CONFIG_NET_SCH_PLUG" in msg, msg
    assert "ifb0" in msg, msg                     # names the device it tried
    # early: no checkpoint was taken, the guest was never suspended
    assert "PROF: suspending" not in err
    assert not stats.exists() or stats.read_text() == ""
    st = simxen.read_state(state)
    assert st.checkpoints == []
    assert all(rs.state == "running" for rs in st.runstates)
    assert st.final_state in (None, "running")
    # nothing left behind: links (the created IFB), qdiscs, filters, claims
    assert topo.snapshot() == before
    table = pool / "ifb"
    assert not table.exists() or table.read_text() == ""
    assert set(os.listdir(pool)) <= {"ifb", "ifb.lock"}


def test_stats_file_stamps_each_checkpoint_end_with_the_monotonic_clock(tmp_path):
    """Column 4 of $XEN_REMUS_COMPAT_STATS_FILE is CLOCK_MONOTONIC right after
    CHECKPOINT_END was written: after the guest resumed from that checkpoint
    (postcopy comes first, xl-side.md §3.5) and before it is suspended for the
    next one (simxen's runstate.log records both on the same clock).  Columns
    1-3 keep their meaning (demo.py reads column 2); column 5, the ack time,
    is ``-`` without a back channel (here: blackhole)."""
    ok, why = simxen.available()
    if not ok:
        pytest.fail(why)
    stats, state = tmp_path / "stats", tmp_path / "sim"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XEN_REMUS_COMPAT_")}
    env[STATS_ENV] = str(stats)
    env = simxen.environment(state, base=env)
    proc = subprocess.Popen([str(REMUS), "--sim", "--no-net", "--blackhole", "-i", "20",
                             "simguest"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(stats.read_text().splitlines() if stats.exists() else []) < 5:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    rows = [line.split() for line in stats.read_text().splitlines()]
    assert all(len(r) == 5 and r[4] == "-" for r in rows), rows
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows)
    runs = simxen.read_state(state).runstates
    resumed = {rs.suspensions: rs.monotonic for rs in runs if rs.state == "running"}
    suspended = {rs.suspensions: rs.monotonic for rs in runs if rs.state == "suspended"}
    for r in rows:
        n, end = int(r[0]), float(r[3])
        assert resumed[n] < end, (n, resumed[n], end)
        if n + 1 in suspended:
            assert end < suspended[n + 1], (n, end, suspended[n + 1])
