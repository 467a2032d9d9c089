"""``remus`` on the guests a stock Debian hypervisor can protect (issue 10),
against the simulated Xen: a PVH guest is protected and fails over to the
last complete checkpoint; a PV guest on a hypervisor built without shadow
paging is refused before the backup hears a byte, and keeps running."""
import json

from tests.e2e.test_remus_cli import Receiver, need_sim, remus
from tests.support.simwait import checkpoints_taken, wait_for
from xen_remus_compat.sim import simxen

import os
import signal


def test_pvh_guest_is_protected_and_the_backup_takes_over(tmp_path):
    need_sim()
    rcv = Receiver(tmp_path)
    state = tmp_path / "sim"
    p = remus(["--sim", "-i", "50", "-p", str(rcv.port), "simguest", "127.0.0.1"],
              state_dir=state, env_extra={"SIMXEN_TYPE": "pvh"})
    assert wait_for(lambda: checkpoints_taken(state) >= 4), p.stderr.read()
    os.kill(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    # one line at start says how the guest is suspended; none per checkpoint
    assert err.count("suspending it through xenstore") <= 1, err
    assert "falling back" not in err
    summary, rerr = rcv.summary()
    assert summary["failover_ok"] is True and summary["checkpoints"] >= 4, (summary, rerr)
    st = simxen.read_state(state)
    assert st.never_left_suspended() and st.final_state == "running"


def test_pv_guest_without_shadow_paging_is_refused_before_sending(tmp_path):
    need_sim()
    rcv = Receiver(tmp_path)
    state = tmp_path / "sim"
    p = remus(["--sim", "-i", "50", "-p", str(rcv.port), "simguest", "127.0.0.1"],
              state_dir=state, env_extra={"SIMXEN_TYPE": "pv", "SIMXEN_NO_SHADOW": "1"})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, (out, err)
    assert "CONFIG_SHADOW_PAGING" in out and "PVH" in out, out
    assert "Traceback" not in err
    st = simxen.read_state(state)
    assert st.final_state == "running" and st.never_left_suspended()
    # the backup was never contacted: stop the receiver waiting for a peer
    rcv.proc.terminate()
    rout, rerr = rcv.proc.communicate(timeout=30)
    assert "simguest" not in rout


def test_hvm_guest_with_its_device_model_fails_over_with_device_state(tmp_path):
    """Issue 11: the remus command on an HVM guest (simulated Xen with its
    stand-in device model): each checkpoint carries the device model's state
    and the backup holds memory and device state of the same checkpoint."""
    need_sim()
    rcv = Receiver(tmp_path)
    state = tmp_path / "sim"
    p = remus(["--sim", "-i", "50", "-p", str(rcv.port), "simguest", "127.0.0.1"],
              state_dir=state, env_extra={"SIMXEN_TYPE": "hvm"})
    assert wait_for(lambda: checkpoints_taken(state) >= 4), p.stderr.read()
    os.kill(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    summary, rerr = rcv.summary()
    assert summary["failover_ok"] is True and summary["checkpoints"] >= 4, (summary, rerr)
    st = simxen.read_state(state)
    assert st.never_left_suspended() and st.final_state == "running"
    assert summary.get("emulator") == "qemu-upstream", summary
    assert (summary.get("device_state_size") or 0) > 0, summary
