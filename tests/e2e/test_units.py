"""What the units ask of the commands (issue 14 item 7), run without a
systemd PID 1: remus-receiver serving the socket systemd's own
systemd-socket-activate passes it (the protocol of remus-receiver.socket),
refusing an unrestricted one, and the check remus@.service runs before
remus.  The unit files themselves: tests/unit/test_service_files.py and
`systemd-analyze verify` in tests/e2e/test_package.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, tier_unavailable
from xen_remus_compat.sim import simxen

ACTIVATE = shutil.which("systemd-socket-activate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _activate(address: str, *receiver_args) -> subprocess.Popen:
    if ACTIVATE is None:
        tier_unavailable("e2e", "systemd-socket-activate (Debian's systemd) not "
                         "installed: remus-receiver's socket activation not tested")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [ACTIVATE, "-l", address, "-E", "PYTHONPATH",
            sys.executable, "-m", "xen_remus_compat.cli.receiver", *receiver_args]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()          # "Listening on ADDR as 3."
    assert "Listening on" in line, line
    return proc


def test_receiver_serves_the_socket_systemd_passes(tmp_path):
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")
    port = _free_port()
    recv = _activate(f"127.0.0.1:{port}", "--sim", "--once", "--json")
    try:
        primary = subprocess.Popen(
            [sys.executable, "-m", "xen_remus_compat.cli.remus", "--sim", "-i", "100",
             "-p", str(port), "simguest", "127.0.0.1"],
            cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(2.0)
        primary.send_signal(signal.SIGTERM)
        primary.communicate(timeout=60)
        out, err = recv.communicate(timeout=60)
    finally:
        for p in (recv,):
            if p.poll() is None:
                p.kill()
    assert recv.returncode == 0, err
    # no --port, no --listen: the address is the inherited socket's
    assert f"listening on 127.0.0.1:{port}" in err
    summary = json.loads(out)
    assert summary["failover_ok"] and summary["checkpoints"] >= 1


def test_receiver_refuses_an_unrestricted_inherited_socket():
    port = _free_port()
    recv = _activate(f"0.0.0.0:{port}", "--sim", "--once")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            _, err = recv.communicate(timeout=60)  # started by the connection
    finally:
        if recv.poll() is None:
            recv.kill()
    lines = [l for l in err.splitlines() if l.startswith("remus-receiver:")]
    assert recv.returncode == 1, err
    assert len(lines) == 1 and "socket from systemd" in lines[0], err
    assert "Traceback" not in err


def _exec_start_pre() -> str:
    text = (ROOT / "systemd" / "remus@.service").read_text()
    line = re.search(r"^ExecStartPre=/bin/sh -c '(.*)'$", text, re.M)[1]
    return line.replace("$$", "$").replace("%i", "web01")   # what systemd passes


@pytest.mark.parametrize("env,status", [({}, 1), ({"REMUS_BACKUP": "backup1"}, 0)])
def test_template_refuses_to_start_without_a_backup_host(env, status):
    proc = subprocess.run(["/bin/sh", "-c", _exec_start_pre()], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == status
    if status:
        assert proc.stderr == ("remus@web01: REMUS_BACKUP is not set: give the "
                               "backup host in /etc/xen/remus/web01.conf or "
                               "/etc/default/remus\n")
