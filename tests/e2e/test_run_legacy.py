"""``xen-remus-compat run-legacy --sim``: unchanged Python 2 scripts on simxen.

The scripts in ``legacy_scripts/`` are written in Python 2 the way
remus-era site scripts were (legacy-api.md §1 is the model: optparse,
``vm.VM``, ``ReplicatedDisk``/``BufferedNIC``, ``Saver`` with three
callbacks, stdin fault commands, print statements, ``except X, e``).
Each test runs one through ``python -m xen_remus_compat.cli.run_legacy
--sim`` (which re-executes itself under simxen) against ``remus-receiver
--sim --once --json`` on a free port of 127.0.0.1, and checks what the
spec says must happen: checkpoints flow (§1.3), SIGTERM prints ``***
signalled ***`` and exits 0 (§1.5, intended behaviour), a fault command
destroys the guest as the legacy ``die()`` did (§1.4), and the backup holds
exactly the last complete checkpoint (design.md, simxen).

These tests need the simulated engine: simxen built, the trampoline built
and the ``sim`` domain source.  When one is missing they FAIL saying which.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xen_remus_compat.sim import simxen

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "legacy_scripts"
PY = sys.executable
GUEST = "legacyguest"
TIMEOUT = 60


def _sim_source_missing() -> str:
    from xen_remus_compat import errors, sources
    try:
        sources.get_source("sim")
    except errors.InputError as e:
        if "unknown domain source" in str(e):
            return str(e)
    except Exception:               # exists, but wants the simulated process
        pass
    return ""


@pytest.fixture(scope="module")
def sim_engine():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simulated engine missing: {why}")
    if not list((ROOT / "xen_remus_compat").glob("_checkpoint*.so")):
        pytest.fail("simulated engine missing: xen_remus_compat._checkpoint is not "
                    "built (.venv/bin/python setup.py build_ext --inplace)")
    missing = _sim_source_missing()
    if missing:
        pytest.fail("simulated engine missing: the 'sim' domain source "
                    f"(xen_remus_compat.sources, selected by vm.SOURCE = 'sim') "
                    f"does not exist yet: {missing}")


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMXEN_")}
    env.update(SIMXEN_STATE_DIR=str(tmp_path / "state"), SIMXEN_PAGES="256",
               SIMXEN_NAME=GUEST, SIMXEN_DOMID="3", PYTHONUNBUFFERED="1",
               XEND_CONFIG=str(tmp_path / "no-xend-config.sxp"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


class Receiver:
    """``remus-receiver --sim --once --json`` on a free port of 127.0.0.1."""

    def __init__(self, tmp_path: Path, port: int = 0) -> None:
        ready = tmp_path / "receiver.port"
        self.proc = subprocess.Popen(
            [PY, "-m", "xen_remus_compat.cli.receiver", "--sim", "--once", "--json",
             "--listen", "127.0.0.1", "--port", str(port), "--ready-file", str(ready)],
            env=_env(tmp_path), cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out, err = self.proc.communicate(timeout=5)
                self.rc, self.out, self.err = self.proc.returncode, out, err
                self.port = None
                return
            time.sleep(0.02)
        self.port = int(ready.read_text())

    def summary(self) -> dict:
        out, err = self.proc.communicate(timeout=TIMEOUT)
        self.rc, self.out, self.err = self.proc.returncode, out, err
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert lines, f"receiver printed no summary: rc={self.rc} {err}"
        return json.loads(lines[-1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


class Script:
    """``run-legacy --sim SCRIPT ARGS`` with its stdout read line by line."""

    def __init__(self, tmp_path: Path, script: str, *args: str, sim: bool = True) -> None:
        argv = [PY, "-m", "xen_remus_compat.cli.run_legacy"] + (["--sim"] if sim else []) \
            + [str(SCRIPTS / script)] + list(args)
        self.proc = subprocess.Popen(argv, env=_env(tmp_path), cwd=tmp_path,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen: list = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.err = ""

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.finish()
                pytest.fail(f"no line matching {pattern!r}; stdout {self.seen!r}; "
                            f"stderr {self.err[-2000:]}")
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def send(self, text: str) -> None:
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def finish(self, timeout: float = TIMEOUT) -> int:
        try:
            self.err = self.proc.stderr.read() if self.proc.stderr else ""
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(5)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        self.rc = rc
        return rc

    @property
    def out(self) -> str:
        return "\n".join(self.seen) + "\n"


def _digest(state_dir: Path, checkpoint: int) -> str:
    """The receiver's page_versions_digest, computed from what simxen
    recorded for the guest at that checkpoint."""
    vec = simxen.read_state(state_dir).versions(checkpoint)
    h = hashlib.sha256()
    for pfn, version in enumerate(vec):
        h.update(f"{pfn}:{version};".encode())
    return h.hexdigest()


def _printed(out: str) -> int:
    counts = [int(n) for n in re.findall(r"^checkpoint (\d+)$", out, re.M)]
    assert counts == list(range(1, len(counts) + 1)), out
    return len(counts)


def _failover_exact(summary: dict, tmp_path: Path) -> int:
    n = summary["checkpoints"]
    assert summary["failover_ok"] is True, summary
    assert n >= 1 and summary["domain_name"] == GUEST
    assert summary["page_versions_digest"] == _digest(tmp_path / "state", n)
    return n


@pytest.fixture
def receiver(tmp_path):
    r = Receiver(tmp_path)
    assert r.port, f"remus-receiver did not start: {r.err}"
    yield r
    r.stop()


# -- the happy path ---------------------------------------------------------------------

def test_checkpoints_flow(sim_engine, receiver, tmp_path):
    s = Script(tmp_path, "protect.py", "-i", "50", "-n", "5", "-p", str(receiver.port),
               GUEST, "127.0.0.1")
    rc = s.finish()
    assert rc == 0, s.err
    assert s.out.startswith(f"protecting {GUEST} (domain 3) -> 127.0.0.1:{receiver.port} "
                            "every 50 ms\n")
    assert _printed(s.out) == 5
    assert "stopped after 5 checkpoints" in s.out
    for kind in ("suspending", "resumed", "flushed memory"):
        assert len(re.findall(rf"^PROF: {kind} at \d+\.\d{{6}}$", s.err, re.M)) == 5, s.err
    assert "Traceback" not in s.err
    summary = receiver.summary()
    assert _failover_exact(summary, tmp_path) == 5
    assert simxen.read_state(tmp_path / "state").final_state == "running"


def test_sigterm_prints_signalled_and_exits_0(sim_engine, receiver, tmp_path):
    s = Script(tmp_path, "protect.py", "-i", "50", "-p", str(receiver.port),
               GUEST, "127.0.0.1")
    s.wait_for(r"^checkpoint 3$")
    s.proc.send_signal(signal.SIGTERM)              # to run-legacy; forwarded to the child
    rc = s.finish()
    assert rc == 0, s.err
    lines = s.out.splitlines()
    assert "*** signalled ***" in lines
    assert lines[-1] == f"stopped after {_printed(s.out)} checkpoints"
    n = _failover_exact(receiver.summary(), tmp_path)
    assert _printed(s.out) <= n <= _printed(s.out) + 1
    st = simxen.read_state(tmp_path / "state")
    assert st.final_state == "running" and st.never_left_suspended()


def test_fault_command_destroys_the_guest_as_die_did(sim_engine, receiver, tmp_path):
    s = Script(tmp_path, "protect.py", "-i", "50", "-p", str(receiver.port),
               GUEST, "127.0.0.1")
    s.wait_for(r"^checkpoint 2$")
    s.send("bogus\n")
    s.wait_for(r"^unknown command: bogus$")
    s.send("c\n")
    s.wait_for(r"^dying\.\.\.$")
    rc = s.finish()
    assert rc == 1, s.err                           # CheckpointError after the destroy
    assert "Traceback" not in s.err
    assert s.seen[-1] == f"stopped after {_printed(s.out)} checkpoints"
    assert "*** signalled ***" not in s.seen
    st = simxen.read_state(tmp_path / "state")
    assert st.final_state == "destroyed"
    assert _failover_exact(receiver.summary(), tmp_path) == _printed(s.out)


def test_xend_style_queries(sim_engine, tmp_path):
    s = Script(tmp_path, "query.py", GUEST)
    rc = s.finish()
    assert rc == 0, s.err
    assert s.seen[:3] == [f"name {GUEST}", "domid 3", s.seen[2]]
    mem = int(re.match(r"memory (\d+) MiB \((\d+) GiB\)$", s.seen[2]).group(1))
    assert s.seen[2] == f"memory {mem} MiB ({mem // 1024} GiB)"     # Python 2 '/'
    assert s.seen[3] == "relocation port 8002"
    assert s.seen[4] == f"domains {GUEST}"
    assert s.seen[5].startswith(f"vm {GUEST} 3 ")
    assert s.seen[6].startswith("pause: xend XML-RPC call xend.domain.pause()")
    assert "'xl pause DOMAIN'" in s.seen[6]


def test_unknown_domain(sim_engine, tmp_path):
    s = Script(tmp_path, "query.py", "nosuchguest")
    assert s.finish() == 3
    assert s.seen[0].startswith("fault 3: ") and "nosuchguest" in s.seen[0]


def test_backup_not_listening(sim_engine, tmp_path):
    with socket.socket() as probe:                   # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = Script(tmp_path, "protect.py", "-p", str(port), GUEST, "127.0.0.1")
    assert s.finish() == 1                           # §1.5: socket errors, traceback, 1
    assert s.err.startswith("Traceback (most recent call last):\n")
    assert f'{SCRIPTS / "protect.py"}", line' in s.err
    assert s.err.rstrip().splitlines()[-1].startswith("ConnectionRefusedError")
    assert "xen_remus_compat/py2/" not in s.err
    assert simxen.read_state(tmp_path / "state").final_state in (None, "running")


# -- bad input ------------------------------------------------------------------------------

def test_missing_domain_prints_usage(sim_engine, tmp_path):
    s = Script(tmp_path, "protect.py")
    assert s.finish() == 1
    assert s.seen[0] == "Missing domain"
    assert s.seen[1] == "Usage: protect.py [options] domain [backup]"


def test_syntax_error_names_the_line(tmp_path):
    s = Script(tmp_path, "broken.py", "x", sim=False)
    assert s.finish() == 1
    path = SCRIPTS / "broken.py"
    assert s.err.startswith(f"xen-remus-compat: {path}:11:5: not valid Python 2: "
                            "invalid syntax"), s.err
    assert '    print "done"' in s.err and "Traceback" not in s.err
    assert s.out == "\n"


def test_syntax_error_with_sim_is_reported_before_reexec(tmp_path):
    s = Script(tmp_path, "broken.py", sim=True)
    assert s.finish() == 1
    assert f"{SCRIPTS / 'broken.py'}:11:5:" in s.err and "Traceback" not in s.err


def test_absent_xend_module_names_module_and_replacement(tmp_path):
    s = Script(tmp_path, "xend_domain.py", sim=False)
    assert s.finish() == 1
    last = s.err.rstrip().splitlines()[-1]
    assert last.startswith("xen.xend.XendModuleMissing: xen.xend.XendDomain is not "
                           "provided by xen-remus-compat")
    assert "'xl list'" in last
    assert f'{SCRIPTS / "xend_domain.py"}", line 5, in <module>' in s.err
    assert "xen_remus_compat" not in s.err.replace("xen-remus-compat", "")   # no plumbing frames


def test_receiver_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = Receiver(tmp_path, port=port)
        assert r.port is None and r.rc == 1
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in r.err
        assert "is another receiver running?" in r.err


def test_show_prints_runnable_python3(tmp_path):
    proc = subprocess.run([PY, "-m", "xen_remus_compat.cli.run_legacy", "--show",
                           str(SCRIPTS / "protect.py")], env=_env(tmp_path), cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    compile(proc.stdout, "protect3.py", "exec", dont_inherit=True)
    assert "import xen_remus_compat.py2.runtime as _py2" in proc.stdout
    assert "time.sleep(_py2.div(settings.interval - elapsed, 1000))" in proc.stdout
    assert "except save.CheckpointError as e:" in proc.stdout
    assert proc.stderr.startswith(f"# {SCRIPTS / 'protect.py'}: Python 2")
    assert not list(SCRIPTS.glob("*.bak")) and not (SCRIPTS / "__pycache__").exists()


def test_in_process_caller_with_its_own_streams(sim_engine, tmp_path, monkeypatch):
    """run(args, out, err, stdin) with StringIO streams: the simxen re-exec
    is relayed through pipes (the cli/main.py convention)."""
    import io
    from xen_remus_compat.cli import run_legacy
    for key, value in _env(tmp_path).items():
        monkeypatch.setenv(key, value)
    args = run_legacy.build_parser().parse_args(["--sim", str(SCRIPTS / "query.py"), GUEST])
    out, err = io.StringIO(), io.StringIO()
    assert run_legacy.run(args, out, err, io.StringIO("")) == 0, err.getvalue()
    assert out.getvalue().splitlines()[:2] == [f"name {GUEST}", "domid 3"]
