"""The ``remus`` command driven as a user would (legacy-api.md section 1.5),
protecting the simulated guest; the backup is ``remus-receiver --sim`` or a
stand-in reached with ``-s``."""
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.support.simwait import checkpoints_taken, wait_for
from xen_remus_compat.sim import simxen

PY = sys.executable


def need_sim():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")


def remus(args, *, stdin=subprocess.DEVNULL, env_extra=None, state_dir=None, **kw):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    for k in list(env):
        if k.startswith("SIMXEN_"):
            del env[k]
    if state_dir is not None:
        env["SIMXEN_STATE_DIR"] = str(state_dir)
    env.update(env_extra or {})
    return subprocess.Popen([PY, "-m", "xen_remus_compat.cli.remus"] + args, env=env,
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, **kw)


class Receiver:
    def __init__(self, tmp_path):
        self.ready = tmp_path / "port"
        self.proc = subprocess.Popen(
            [PY, "-m", "xen_remus_compat.cli.receiver", "--sim", "--once", "--json",
             "--listen", "127.0.0.1", "--port", "0", "--ready-file", str(self.ready)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not self.ready.exists():
            assert time.monotonic() < deadline, "receiver did not start"
            assert self.proc.poll() is None, self.proc.stderr.read()
            time.sleep(0.05)
        self.port = int(self.ready.read_text())

    def summary(self):
        out, err = self.proc.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1]), err


def test_help_exits_0():
    p = remus(["-h"])
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0
    assert out.startswith("Usage: remus [options] domain [destination]")
    for opt in ("--interval=MS", "--port=PORT", "--blackhole", "--no-net",
                "--no-compression", "--timer", "--ssh=CMD", "--no-disk", "--sim"):
        assert opt in out


def test_missing_domain_prints_help_and_exits_1():
    p = remus([])
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1
    assert out.startswith("Missing domain\nUsage: remus")


def test_bad_option_exits_1():
    p = remus(["--interval=abc", "dom"])
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1      # usage errors are bad input (1) in every command
    assert "remus: error: option --interval: invalid integer value: 'abc'" in err


def test_unknown_domain_is_a_lookup_error(tmp_path):
    need_sim()
    p = remus(["--sim", "--blackhole", "nosuchguest"], state_dir=tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert out.startswith("error looking up domain nosuchguest")
    assert "Traceback" not in err


def test_protect_then_sigterm(tmp_path):
    need_sim()
    rcv = Receiver(tmp_path)
    state = tmp_path / "sim"
    p = remus(["--sim", "-i", "100", "-p", str(rcv.port), "simguest", "127.0.0.1"],
              state_dir=state)
    assert wait_for(lambda: checkpoints_taken(state) >= 4), p.stderr.read()
    os.kill(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "*** signalled ***" in out
    assert "PROF: suspending at " in err and "PROF: resumed at " in err
    assert "PROF: flushed memory at " in err
    assert simxen.read_state(state).never_left_suspended()
    summary, rerr = rcv.summary()
    assert summary["failover_ok"] is True and summary["checkpoints"] >= 4


def test_ctrl_c_exits_0_quietly_and_guest_runs(tmp_path):
    need_sim()
    state = tmp_path / "sim"
    p = remus(["--sim", "--blackhole", "-i", "50", "simguest"], state_dir=state)
    assert wait_for(lambda: checkpoints_taken(state) >= 3), p.stderr.read()
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "Traceback" not in err and "signalled" not in out
    assert simxen.read_state(state).final_state == "running"


def test_fault_command_destroys_the_domain(tmp_path):
    need_sim()
    state = tmp_path / "sim"
    p = remus(["--sim", "--blackhole", "-i", "50", "simguest"], state_dir=state,
              stdin=subprocess.PIPE)
    assert wait_for(lambda: checkpoints_taken(state) >= 2)
    p.stdin.write("bogus\n")
    p.stdin.flush()
    assert wait_for(lambda: checkpoints_taken(state) >= 4)
    p.stdin.write("c\n")          # fires in commit, one epoch later
    p.stdin.flush()
    out, err = p.communicate(timeout=30)
    assert out.count("unknown command: bogus") == 1
    assert "dying..." in out
    assert p.returncode == 1
    assert simxen.read_state(state).final_state == "destroyed"


def test_stdin_at_eof_is_not_spammed(tmp_path):
    need_sim()
    state = tmp_path / "sim"
    p = remus(["--sim", "--blackhole", "-i", "20", "simguest"], state_dir=state)
    assert wait_for(lambda: checkpoints_taken(state) >= 5)
    os.kill(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert "unknown command" not in out


def test_no_compression_is_accepted(tmp_path):
    need_sim()
    state = tmp_path / "sim"
    p = remus(["--sim", "--blackhole", "--no-compression", "-i", "20", "simguest"],
              state_dir=state)
    assert wait_for(lambda: checkpoints_taken(state) >= 2)
    os.kill(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0


def test_ssh_command_stand_in(tmp_path):
    """-s '' DEST: DEST is the whole backup command (as xl remus -s)."""
    need_sim()
    state = tmp_path / "sim"
    backup = f"{PY} -m xen_remus_compat.cli.main receive --sim"
    p = remus(["--sim", "-i", "50", "-s", "", "simguest", backup], state_dir=state)
    assert wait_for(lambda: checkpoints_taken(state) >= 3), p.stderr.read()
    os.kill(p.pid, signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "*** signalled ***" in out
    # stock xl has no back channel: xl's release after the write, said once
    notes = [line for line in err.splitlines() if "sends no acknowledgements" in line]
    assert notes == [f"remus: the backup ({shlex.quote(backup)}) is stock xl, which sends no "
                     "acknowledgements: each checkpoint's output is released once it "
                     "is written, as xl remus does"], err


@pytest.mark.parametrize("backup,message", [
    ("true", "exited with status 0 before sending its banner"),
    (f"{PY} -c \"import sys; sys.stdout.write('x' * 54); sys.stdout.flush(); "
     f"import time; time.sleep(5)\"", "unexpected banner"),
])
def test_bad_backup_is_a_clear_error_and_guest_runs(tmp_path, backup, message):
    need_sim()
    state = tmp_path / "sim"
    p = remus(["--sim", "-s", "", "simguest", backup], state_dir=state)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert message in err
    assert "Traceback" not in err
    st = simxen.read_state(state)
    assert st.final_state in (None, "running")


def test_connection_refused_is_a_clear_error(tmp_path):
    need_sim()
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = remus(["--sim", "-p", str(port), "simguest", "127.0.0.1"], state_dir=tmp_path)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert f"cannot connect to remus-receiver at 127.0.0.1:{port}" in err


def test_banner_that_never_comes_is_a_clear_error(tmp_path):
    need_sim()
    state = tmp_path / "sim"
    t0 = time.monotonic()
    p = remus(["--sim", "--connect-timeout", "1", "-s", "", "simguest", "sleep 30"],
              state_dir=state)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert "no answer within 1s" in err and "Traceback" not in err
    assert time.monotonic() - t0 < 20
    st = simxen.read_state(state)
    assert st.final_state in (None, "running")


# --- a destination is never an option (issue 12, item 6) ----------------------

def test_a_destination_starting_with_dash_never_reaches_ssh(tmp_path):
    """Before: ``-oProxyCommand=...`` reached ssh as an option and ssh ran
    the command.  Now it is refused (exit 1) before anything runs."""
    need_sim()
    if not os.access("/usr/bin/ssh", os.X_OK):
        pytest.fail("OpenSSH client not installed (apt-get install openssh-client)")
    marker = tmp_path / "pwned"
    state = tmp_path / "sim"
    p = remus(["--sim", "--connect-timeout", "5", "--", "simguest",
               f"-oProxyCommand=touch {marker}"], state_dir=state)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1, (out, err)
    assert (f"remus: refusing destination '-oProxyCommand=touch {marker}': it "
            "starts with '-', so ssh would take it for an option") in err
    assert not marker.exists()
    assert "Traceback" not in err
    assert simxen.read_state(state).final_state in (None, "running")


def test_ssh_gets_keepalives_and_a_double_dash(tmp_path):
    need_sim()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "ssh.argv"
    (bindir / "ssh").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{log}'\n"
                                "exit 255\n")
    (bindir / "ssh").chmod(0o755)
    p = remus(["--sim", "--connect-timeout", "5", "simguest", "backup"],
              state_dir=tmp_path / "sim",
              env_extra={"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert log.read_text().splitlines() == [
        "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3", "--",
        "backup", "xl", "migrate-receive", "-r"]
    assert "backup via ssh backup xl migrate-receive -r exited with status 255" in err
