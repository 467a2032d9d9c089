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
"""
from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import sys

import pytest

from tests.conftest import ROOT, tier_unavailable
from tests.linux.test_netbuf_netns import Topo, linux_tier  # noqa: F401 (fixture)
from xen_remus_compat import simxen

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
    t = Topo()
    try:
        t.add_guest()
        yield t
    finally:
        t.destroy()


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
