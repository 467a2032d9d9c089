"""``remus-receiver`` (cli/receiver.py over receiver_service.py) driven as an
operator would: the legacy relocation-port path (legacy-api.md §12.3) in
front of ``xl migrate-receive -r`` or, with ``--sim``, the simulated backup
(xl-side.md §3.6 failover rules).  Also: both man pages name every option
their parsers know."""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from xen_remus_compat.sim import simxen
from xen_remus_compat import sxp
from xen_remus_compat.remus.receiver import ReceiverService
from xen_remus_compat.stream import simstream

PY = sys.executable
BANNER = b"xl migration receiver ready, send binary domain data.\n"   # xl-side §3.1


def need_sim():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")


def wait_for(pred, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Receiver:
    """``remus-receiver ARGS --port 0 --ready-file F`` as a child process."""

    def __init__(self, tmp_path, *args, env=None, port="0"):
        self.ready = tmp_path / f"port-{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            [PY, "-m", "xen_remus_compat.cli.receiver", *args, "--port", port,
             "--ready-file", str(self.ready)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT),
            env=env)
        wait_for(lambda: self.ready.exists() or self.proc.poll() is not None,
                 what="the receiver to listen")
        assert self.proc.poll() is None, self.proc.communicate()
        self.port = int(self.ready.read_text())

    def finish(self, timeout=30):
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.finish()


def primary(tmp_path, name, port, interval=50):
    """``remus --sim -p PORT NAME 127.0.0.1`` protecting simulated guest NAME."""
    state = tmp_path / f"sim-{name}-{time.monotonic_ns()}"
    env = simxen.environment(state, simxen.SimDomain(name=name, pages=512,
                                                     dirty_rate=5.0))
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.Popen([PY, "-m", "xen_remus_compat.cli.remus", "--sim", "-i",
                          str(interval), "-p", str(port), name, "127.0.0.1"],
                         env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    return p, state


def taken(state):
    log = state / "checkpoints.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_once_json_summary(tmp_path):
    need_sim()
    rcv = Receiver(tmp_path, "--sim", "--once", "--json", "--listen", "127.0.0.1")
    p, state = primary(tmp_path, "simguest", rcv.port)
    wait_for(lambda: taken(state) >= 3 or p.poll() is not None, what="3 checkpoints")
    assert p.poll() is None, p.communicate()
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    rc, out, err = rcv.finish()
    assert rc == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    st = simxen.read_state(state)
    k = summary["checkpoints"]
    assert summary["failover_ok"] is True and k >= 2
    assert len(st.checkpoints) - 1 <= k <= len(st.checkpoints)
    assert summary["domain_name"] == "simguest"
    assert summary["peer"].startswith("127.0.0.1:")
    assert summary["memory_pages"] == 512 and summary["bad_sim_pages"] == 0
    # the backup's memory is the primary's at checkpoint k, page by page
    versions = st.versions(k)
    expected = hashlib.sha256("".join(f"{pfn}:{v};" for pfn, v in
                                      enumerate(versions)).encode()).hexdigest()
    assert summary["page_versions_digest"] == expected


def _listeners(port):
    """Local addresses (hex, as in /proc/net/tcp*) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                addr, hexport = local.split(":")
                if state == "0A" and int(hexport, 16) == port:
                    found.add(addr)
    return found


def test_listen_binds_only_the_given_address(tmp_path):
    rcv = Receiver(tmp_path, "--sim", "--listen", "127.0.0.1")
    try:
        assert _listeners(rcv.port) == {"0100007F"}       # 127.0.0.1, little endian
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", rcv.port), timeout=5).close()
        with socket.create_connection(("127.0.0.1", rcv.port), timeout=5) as s:
            s.sendall(b"receive\n")
            s.settimeout(5)
            got = b""
            while len(got) < len(b"(ready receive)\n") + len(BANNER):
                chunk = s.recv(4096)
                assert chunk, got
                got += chunk
            assert got == b"(ready receive)\n" + BANNER
    finally:
        rc, out, err = rcv.stop()
    assert rc == 0, err              # SIGTERM is a normal stop (remus-receiver(1))
    assert f"listening on 127.0.0.1:{rcv.port}" in err


def test_default_listen_is_every_address():
    svc = ReceiverService(port=0, sim=True, insecure=True)
    try:
        svc.bind()
        assert svc.sock.getsockname()[0] == "0.0.0.0"     # as xend's relocation server
    finally:
        svc.sock.close()


def test_second_stream_for_the_same_domain_is_refused(tmp_path):
    need_sim()
    rcv = Receiver(tmp_path, "--sim", "-v", "--listen", "127.0.0.1")
    first = other = None
    try:
        first, first_state = primary(tmp_path, "simguest", rcv.port)
        wait_for(lambda: taken(first_state) >= 2, what="the first stream")
        second, second_state = primary(tmp_path, "simguest", rcv.port)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 1, (out, err)
        assert (f"remus-receiver at 127.0.0.1:{rcv.port} refused the stream: "
                "refusing a second stream for domain 'simguest'") in out
        assert "Traceback" not in out + err
        assert simxen.read_state(second_state).final_state == "running"
        # a different domain at the same time is accepted
        other, other_state = primary(tmp_path, "otherguest", rcv.port)
        before = taken(first_state)
        wait_for(lambda: taken(other_state) >= 3, what="the other domain's stream")
        # ... and the first stream went on undisturbed
        wait_for(lambda: taken(first_state) > before, what="the first stream to go on")
        for p in (first, other):
            assert p.poll() is None, p.communicate()
            os.killpg(p.pid, signal.SIGTERM)
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0 and "*** signalled ***" in out, (out, err)
        time.sleep(0.5)                   # let both sessions fail over
    finally:
        for p in (first, other):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        rc, rout, rerr = rcv.stop()
    assert re.search(r"refusing a second stream for domain 'simguest' from "
                     r"127\.0\.0\.1:\d+: already receiving it from 127\.0\.0\.1:\d+",
                     rerr), rerr
    assert "refusing a second stream for domain 'otherguest'" not in rerr
    assert re.search(r"Remus failover to checkpoint \d+ of otherguest", rerr), rerr
    assert re.search(r"Remus failover to checkpoint \d+ of simguest", rerr), rerr


def test_port_in_use_is_a_clear_error(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        p = subprocess.run([PY, "-m", "xen_remus_compat.cli.receiver", "--sim",
                            "--listen", "127.0.0.1", "--port", str(port)],
                           capture_output=True, text=True, timeout=30, cwd=str(ROOT))
    finally:
        busy.close()
    assert p.returncode == 1
    assert p.stderr.strip() == (f"remus-receiver: cannot listen on 127.0.0.1:{port}: "
                                "Address already in use (is another receiver running?)")


def test_json_needs_once():
    p = subprocess.run([PY, "-m", "xen_remus_compat.cli.receiver", "--json"],
                       capture_output=True, text=True, timeout=30, cwd=str(ROOT))
    assert p.returncode == 1 and "--json needs --once" in p.stderr


def test_port_defaults_to_xend_relocation_port(tmp_path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    free = probe.getsockname()[1]
    probe.close()
    conf = tmp_path / "xend-config.sxp"
    conf.write_text(f"(xend-relocation-server yes)\n(xend-relocation-port {free})\n")
    ready = tmp_path / "port"
    p = subprocess.Popen([PY, "-m", "xen_remus_compat.cli.receiver", "--sim",
                          "--listen", "127.0.0.1", "--ready-file", str(ready)],
                         env=dict(os.environ, XEND_CONFIG=str(conf)), cwd=str(ROOT),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: ready.exists() or p.poll() is not None, what="listening")
        assert ready.read_text() == f"{free}\n"
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)


def test_a_client_that_does_not_say_receive_gets_an_err_reply(tmp_path):
    rcv = Receiver(tmp_path, "--sim", "--once", "--json", "--listen", "127.0.0.1")
    with socket.create_connection(("127.0.0.1", rcv.port), timeout=5) as s:
        s.sendall(b"(help)\n")                  # another xend relocation op
        reply = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break                           # and then the connection is closed
            reply += chunk
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    (value,) = sxp.loads(reply.decode())
    assert value[0] == "err" and ["type", "protocol"] in value
    assert ["value", "expected 'receive'"] in value
    rc, out, err = rcv.finish()
    assert rc == 1
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["failover_ok"] is False
    assert "expected 'receive', got b'(help)\\n'" in summary["receiver_error"]


_DYING_PRIMARY = r'''
import socket, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"receive\n")
want = len(b"(ready receive)\n") + 54
got = b""
while len(got) < want:
    got += s.recv(want - len(got))
s.sendall(open(path, "rb").read())
print("sent", flush=True)
time.sleep(60)
'''


def test_primary_dying_before_the_first_checkpoint(tmp_path):
    """The stream breaks inside the first epoch: nothing to fail over to
    (xl: "Domain creation failed"); the summary says so and why."""
    rcv = Receiver(tmp_path, "--sim", "--once", "--json", "--listen", "127.0.0.1")
    stream = simstream.build_stream(64, [{1, 2}])
    cut = stream.checkpoint_ends[0] - 20           # inside epoch 1's tail
    (tmp_path / "partial.xl").write_bytes(stream.data[:cut])
    (tmp_path / "dying.py").write_text(_DYING_PRIMARY)
    p = subprocess.Popen([PY, str(tmp_path / "dying.py"), str(rcv.port),
                          str(tmp_path / "partial.xl")], stdout=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        assert p.stdout.readline() == "sent\n"
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    rc, out, err = rcv.finish()
    assert rc == 1
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["failover_ok"] is False and summary["checkpoints"] == 0
    assert summary["domain_name"] == "simguest"
    assert ("migration stream broke before the first checkpoint was complete"
            in summary["receiver_error"])
    assert summary["bytes"] == cut


# --- man pages ---------------------------------------------------------------

def _named(page, option):
    return re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", page) is not None


def _page(name):
    return (ROOT / "docs" / name).read_text().replace("\\-", "-")


def test_man_pages_document_every_option():
    """docs/remus.1 and docs/remus-receiver.1 name every option their
    parsers know (written by hand; this keeps them honest)."""
    from xen_remus_compat.cli import receiver
    from xen_remus_compat.cli.remus import Cfg
    remus_opts = [o for opt in Cfg().parser.option_list
                  for o in opt._short_opts + opt._long_opts]
    receiver_opts = [o for action in receiver.build_parser()._actions
                     for o in action.option_strings]
    assert "--ready-file" in receiver_opts and "--interval" in remus_opts
    missing = [("remus.1", o) for o in remus_opts
               if o not in ("-h", "--help") and not _named(_page("remus.1"), o)]
    missing += [("remus-receiver.1", o) for o in receiver_opts
                if not _named(_page("remus-receiver.1"), o)]
    assert not missing, missing


def test_receiver_man_page_renders_cleanly():
    groff = "/usr/bin/groff"
    if not os.path.exists(groff):
        pytest.fail("groff missing (apt-get install groff-base)")
    p = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z",
                        str(ROOT / "docs" / "remus-receiver.1")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stderr == "", p.stderr
