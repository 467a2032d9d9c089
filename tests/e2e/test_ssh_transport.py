"""``remus``'s default transport over a real OpenSSH on loopback.

xl-side.md §2.1: the primary runs ``ssh <host> xl migrate-receive -r`` and
talks to its stdin/stdout.  Here the test runs its own ``sshd`` (keys,
config, pid file all in tmp_path) whose ``ForceCommand`` records
``$SSH_ORIGINAL_COMMAND`` and runs the simulated backup
(``xen-remus-compat receive --sim``); ``remus`` uses its default argv,
plain ``ssh``, which resolves to a wrapper on PATH adding ``-F`` with a
throw-away client config for the alias ``backup-test``.
"""
import ctypes
import json
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.support.simwait import checkpoints_taken, wait_for
from xen_remus_compat.sim import simxen

PY = sys.executable
SSHD = "/usr/sbin/sshd"
SSH = "/usr/bin/ssh"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
PRIVSEP_DIR = pathlib.Path("/run/sshd")
ALIAS = "backup-test"
SIM_PAGES = simxen.SimDomain().pages
PR_SET_CHILD_SUBREAPER = 36          # <linux/prctl.h>


def need_tools():
    missing = [p for p in (SSHD, SSH, SSH_KEYGEN) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"OpenSSH not installed ({', '.join(missing)} missing); "
                    "apt-get install openssh-server openssh-client "
                    "(scripts/install-deps.sh)")
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")


def keygen(path: pathlib.Path) -> pathlib.Path:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", path.name,
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_table():
    """pid -> (ppid, comm) of every process."""
    table = {}
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        head, tail = stat.rsplit(")", 1)
        table[int(d.name)] = (int(tail.split()[1]), head.split("(", 1)[1])
    return table


def set_subreaper(on: bool) -> None:
    """Adopt orphans: sshd's monitor may exit before reaping its privsep
    child (refused login), which would otherwise be left to pid 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def reap_adopted_sshd(timeout: float = 5.0):
    """Wait for (then kill) sshd processes adopted by this process."""
    me = os.getpid()
    reaped = []
    deadline = time.monotonic() + timeout
    while True:
        mine = [pid for pid, (ppid, comm) in _proc_table().items()
                if ppid == me and comm == "sshd"]
        if not mine:
            return reaped
        for pid in mine:
            if time.monotonic() > deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                done, _ = os.waitpid(pid, 0 if time.monotonic() > deadline
                                     else os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                reaped.append(pid)
        time.sleep(0.02)


def descendants(pid: int):
    """Pids below ``pid`` (sshd's per-connection children call setsid(), so
    a process group would not catch them; the parent links still do)."""
    children = {}
    for child, (ppid, _) in _proc_table().items():
        children.setdefault(ppid, []).append(child)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class Sshd:
    """A private sshd on 127.0.0.1 whose only command is the sim backup."""

    def __init__(self, tmp: pathlib.Path) -> None:
        self.tmp = tmp
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.host_key = keygen(tmp / "host_ed25519")
        self.client_key = keygen(tmp / "client_ed25519")
        self.other_key = keygen(tmp / "other_ed25519")     # never authorized
        (tmp / "authorized_keys").write_text(
            pathlib.Path(f"{self.client_key}.pub").read_text())
        self.original_command = tmp / "original_command"
        self.summary = tmp / "receiver.err"
        self.receiver_pid = tmp / "receiver.pid"
        wrapper = tmp / "force_command.sh"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"printf '%s' \"$SSH_ORIGINAL_COMMAND\" > '{self.original_command}'\n"
            f"echo $$ > '{self.receiver_pid}'\n"
            f"cd '{ROOT}' || exit 1\n"
            f"PYTHONPATH='{ROOT}' exec '{PY}' -m xen_remus_compat.cli.main "
            f"receive --sim --json 2> '{self.summary}'\n")
        wrapper.chmod(0o755)
        self.force_command = wrapper
        self.log = tmp / "sshd.log"
        self.proc = None
        self.port = 0
        self.made_privsep = False
        self.subreaper = False

    def config(self, port: int) -> pathlib.Path:
        path = self.tmp / "sshd_config"
        path.write_text("\n".join([
            "ListenAddress 127.0.0.1",
            f"Port {port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.tmp / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.tmp / 'authorized_keys'}",
            f"AllowUsers {self.user}",
            "PermitRootLogin prohibit-password",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitTTY no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            "LogLevel VERBOSE",
            f"ForceCommand {self.force_command}",
            ""]))
        return path

    def start(self) -> None:
        set_subreaper(True)
        self.subreaper = True
        if not PRIVSEP_DIR.is_dir():           # sshd refuses to start without it
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
            self.made_privsep = True
        for _ in range(3):                     # the free port may be taken meanwhile
            self.port = free_port()
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(self.config(self.port))],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True)
            if wait_for(self._accepts, 10):
                return
            self.stop()
        pytest.fail(f"sshd did not start:\n{self.log.read_text()}")

    def _accepts(self) -> bool:
        if self.proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(8).startswith(b"SSH-2.0")
        except OSError:
            return False

    def sessions(self):
        return descendants(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def stop(self) -> None:
        if self.proc is None:
            return
        for pid in self.sessions():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self.subreaper:
            reap_adopted_sshd()
            set_subreaper(False)
            self.subreaper = False
        if self.made_privsep:
            try:
                PRIVSEP_DIR.rmdir()
            except OSError:
                pass

    def client_path(self, identity: pathlib.Path) -> str:
        """A directory with an ``ssh`` that uses a client config for ALIAS."""
        conf = self.tmp / f"ssh_config.{identity.name}"
        conf.write_text("\n".join([
            f"Host {ALIAS}",
            "  HostName 127.0.0.1",
            f"  Port {self.port}",
            f"  User {self.user}",
            f"  IdentityFile {identity}",
            "  IdentitiesOnly yes",
            "  IdentityAgent none",
            "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null",
            "  GlobalKnownHostsFile /dev/null",
            "  BatchMode yes",
            "  LogLevel ERROR",
            "  RequestTTY no",
            ""]))
        bindir = self.tmp / f"bin.{identity.name}"
        bindir.mkdir(exist_ok=True)
        ssh = bindir / "ssh"
        ssh.write_text(f"#!/bin/sh\nexec {SSH} -F '{conf}' \"$@\"\n")
        ssh.chmod(0o755)
        return str(bindir)


@pytest.fixture
def sshd(tmp_path):
    need_tools()
    d = Sshd(tmp_path)
    try:
        d.start()
        yield d
    finally:
        d.cleanup()
    assert d.proc is None
    assert not (tmp_path / "sshd.pid").exists() or not _alive(tmp_path / "sshd.pid")
    me = os.getpid()
    assert not [pid for pid, (ppid, comm) in _proc_table().items()
                if ppid == me and comm == "sshd"]


def _alive(pidfile: pathlib.Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (ValueError, OSError):
        return False


def remus(args, *, path_dir: str, state_dir: pathlib.Path):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    for k in list(env):
        if k.startswith("SIMXEN_") or k.startswith("SSH_"):
            del env[k]
    env["SIMXEN_STATE_DIR"] = str(state_dir)
    env["PATH"] = path_dir + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    return subprocess.Popen([PY, "-m", "xen_remus_compat.cli.remus"] + args, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def read_summary(path: pathlib.Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_remus_over_openssh_default_transport(sshd, tmp_path):
    assert shutil.which("ssh", path=sshd.client_path(sshd.client_key)) is not None
    state = tmp_path / "sim"
    p = remus(["--sim", "-i", "50", "simguest", ALIAS],
              path_dir=sshd.client_path(sshd.client_key), state_dir=state)
    try:
        ok = wait_for(lambda: checkpoints_taken(state) >= 3 or p.poll() is not None)
        assert ok and p.poll() is None, (p.poll(), sshd.log.read_text())
        assert checkpoints_taken(state) >= 3
        os.kill(p.pid, signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 0, err
    assert "*** signalled ***" in out
    assert "Traceback" not in err

    # sshd ran our ForceCommand for exactly the command xl remus sends
    assert sshd.original_command.read_text() == "xl migrate-receive -r"
    # once remus closed the stream, the backup and its ssh session ended
    assert wait_for(lambda: not sshd.sessions(), 10), sshd.sessions()
    rpid = int(sshd.receiver_pid.read_text())
    assert not os.path.exists(f"/proc/{rpid}")

    summary = read_summary(sshd.summary)
    assert summary is not None, sshd.summary.read_text()
    st = simxen.read_state(state)
    started = len(st.checkpoints)
    k = summary["checkpoints"]
    assert k >= 3
    # failover to the last complete checkpoint: the primary's last one, or
    # one behind when SIGTERM cut the epoch after libxc's CHECKPOINT record
    assert started - 1 <= k <= started, (k, started)
    assert summary["failover_ok"] is True, summary
    assert summary["domain_name"] == "simguest"
    assert summary["ended"] in ("eof", "truncated", "end"), summary
    assert summary["committed_offset"] is not None
    assert 0 < summary["committed_offset"] <= summary["bytes"]
    assert len(summary["pages_per_checkpoint"]) == k
    assert summary["pages_per_checkpoint"][0] >= SIM_PAGES   # the live migration
    assert summary["memory_pages"] == SIM_PAGES
    assert summary["bad_sim_pages"] == 0
    assert st.never_left_suspended() and st.final_state == "running"


def test_refused_key_is_a_clear_error_and_guest_runs(sshd, tmp_path):
    state = tmp_path / "sim"
    t0 = time.monotonic()
    p = remus(["--sim", "--connect-timeout", "10", "simguest", ALIAS],
              path_dir=sshd.client_path(sshd.other_key), state_dir=state)
    try:
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    elapsed = time.monotonic() - t0
    assert p.returncode == 1, (out, err)
    assert elapsed < 10, elapsed
    assert "Permission denied (publickey)" in err        # ssh's own reason
    assert (f"remus: backup via ssh {ALIAS} xl migrate-receive -r exited with "
            "status 255 before sending its banner") in err
    assert "Traceback" not in err
    # the key was refused: the backup command never ran
    assert not sshd.original_command.exists()
    st = simxen.read_state(state)
    assert st.final_state in (None, "running")
    assert not sshd.sessions()


def test_a_frozen_backup_is_noticed_through_ssh_keepalives(sshd, tmp_path):
    """The backup's sshd session stops answering (SIGSTOP: TCP stays open,
    nothing is closed): ssh's ServerAliveInterval=2/CountMax=3, set by
    remus, end the session in about 6-8 s, the stream write fails and
    protection stops with the guest running (issue 12, item 3)."""
    state = tmp_path / "sim"
    p = remus(["--sim", "-i", "100", "simguest", ALIAS],
              path_dir=sshd.client_path(sshd.client_key), state_dir=state)
    frozen = []
    try:
        assert wait_for(lambda: checkpoints_taken(state) >= 3 or p.poll() is not None)
        assert p.poll() is None, p.communicate()
        frozen = sshd.sessions()
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        out, err = p.communicate(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    print(f"remus noticed the frozen backup after {elapsed:.1f} s")
    assert p.returncode == 1, (out, err)
    assert elapsed < 20, elapsed
    assert "Traceback" not in err
    assert simxen.read_state(state).final_state == "running"
