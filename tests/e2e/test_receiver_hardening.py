"""``remus-receiver`` against hostile peers and failing primaries (issue 12,
items 1-4): who may connect (xend's address and hosts-allow, TLS with
client certificates), bounded sessions, handshakes, memory and silence,
dead sessions superseded, session log lines, and a bug in a session as an
error exit.  Loopback only: every receiver here listens on 127.0.0.1."""
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import ROOT
from tests.support.tlscerts import make_pki
from xen_remus_compat.sim import simxen
from xen_remus_compat.stream import libxc, simstream

PY = sys.executable
BANNER = b"xl migration receiver ready, send binary domain data.\n"
READY = b"(ready receive)\n"


def need_sim():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")


def wait_for(pred, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Receiver:
    """``remus-receiver ARGS --port 0 --ready-file F``, no xend-config.sxp
    unless ``config`` (its text) is given."""

    def __init__(self, tmp_path, *args, config=None, env=None, listen=True):
        self.ready = tmp_path / f"port-{time.monotonic_ns()}"
        env = dict(env or os.environ)
        conf = tmp_path / f"xend-config-{time.monotonic_ns()}.sxp"
        if config is not None:
            conf.write_text(config)
        env["XEND_CONFIG"] = str(conf)
        argv = [PY, "-m", "xen_remus_compat.cli.receiver", *args]
        if listen:
            argv += ["--listen", "127.0.0.1"]
        self.proc = subprocess.Popen(
            argv + ["--port", "0", "--ready-file", str(self.ready)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=str(ROOT), env=env)
        wait_for(lambda: self.ready.exists() or self.proc.poll() is not None,
                 what="the receiver to listen")
        assert self.proc.poll() is None, self.proc.communicate()
        self.port = int(self.ready.read_text())

    def finish(self, timeout=60):
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.finish()

    def rss(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) // 1024
        raise AssertionError(field)


class Primary(subprocess.Popen):
    """``remus --sim`` with its output in files (PROF lines never fill a pipe)."""

    def communicate(self, timeout=None):
        self.wait(timeout)
        return self.out_file.read_text(), self.err_file.read_text()


def primary(tmp_path, name, port, *extra, interval=50, pages=512):
    """``remus --sim -i INTERVAL -p PORT EXTRA NAME 127.0.0.1``."""
    stamp = time.monotonic_ns()
    state = tmp_path / f"sim-{name}-{stamp}"
    env = simxen.environment(state, simxen.SimDomain(name=name, pages=pages,
                                                     dirty_rate=5.0))
    env["PYTHONPATH"] = str(ROOT)
    out, err = tmp_path / f"{name}-{stamp}.out", tmp_path / f"{name}-{stamp}.err"
    with open(out, "w") as o, open(err, "w") as e:
        p = Primary([PY, "-m", "xen_remus_compat.cli.remus", "--sim", "-i",
                     str(interval), "-p", str(port), *extra, name, "127.0.0.1"],
                    env=env, cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                    stdout=o, stderr=e, start_new_session=True)
    p.out_file, p.err_file = out, err
    return p, state


def taken(state):
    log = state / "checkpoints.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def kill(p):
    """SIGKILL the primary's process group (stopped or not)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
            os.killpg(p.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    p.wait()


def digest(versions):
    return hashlib.sha256("".join(f"{pfn}:{v};" for pfn, v in
                                  enumerate(versions)).encode()).hexdigest()


def hello(port, timeout=5.0):
    """Connect, say ``receive``; what came back before the peer closed or
    stopped sending (b"" when refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"receive\n")
        got = b""
        try:
            while len(got) < len(READY) + len(BANNER):
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return got


# --- 1. who may connect ---------------------------------------------------------

def test_refuses_to_listen_on_every_address_unguarded(tmp_path):
    p = subprocess.run([PY, "-m", "xen_remus_compat.cli.receiver", "--sim",
                        "--port", "0"], capture_output=True, text=True, timeout=30,
                       cwd=str(ROOT),
                       env=dict(os.environ, XEND_CONFIG=str(tmp_path / "none")))
    assert p.returncode == 1, p.stderr
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith("remus-receiver: refusing to listen on *:0: every "
                               "address, no hosts-allow list and no client "
                               "certificates: anyone who can connect could "
                               "start a domain on this host")
    assert "--insecure" in p.stderr


def _listeners(port):
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            with open(table) as f:
                next(f)
                for line in f:
                    local, state = line.split()[1], line.split()[3]
                    addr, hexport = local.split(":")
                    if state == "0A" and int(hexport, 16) == port:
                        found.add(addr)
    return found


FAKE_XL = r'''#!/usr/bin/env python3
import json, os, sys, time
with open(os.environ["FAKE_XL_LOG"], "a") as f:
    f.write(json.dumps({"started": time.time(), "argv": sys.argv[1:]}) + "\n")
sys.stdout.buffer.write(b"xl migration receiver ready, send binary domain data.\n")
sys.stdout.flush()
n = 0
while True:
    b = sys.stdin.buffer.read1(1 << 20)
    if not b:
        break
    n += len(b)
with open(os.environ["FAKE_XL_LOG"], "a") as f:
    f.write(json.dumps({"eof": time.time(), "bytes": n}) + "\n")
'''


def fake_xl(tmp_path):
    xl = tmp_path / "xl"
    xl.write_text(FAKE_XL)
    xl.chmod(0o755)
    log = tmp_path / "xl.log"
    return xl, log


def test_address_and_hosts_allow_come_from_xend_config(tmp_path):
    xl, xl_log = fake_xl(tmp_path)
    env = dict(os.environ, FAKE_XL_LOG=str(xl_log))
    config = ("(xend-relocation-server yes)\n"
              "(xend-relocation-address 127.0.0.1)\n"
              "(xend-relocation-hosts-allow '^10\\.9\\.8\\.7$ ^backup\\.')\n")
    rcv = Receiver(tmp_path, "--xl", str(xl), config=config, env=env,
                   listen=False)
    try:
        assert _listeners(rcv.port) == {"0100007F"}     # 127.0.0.1 only
        assert hello(rcv.port) == b""                   # closed, nothing said
    finally:
        rc, out, err = rcv.stop()
    refused = [ln for ln in err.splitlines() if "refused" in ln]
    assert len(refused) == 1, err
    assert re.fullmatch(r"remus-receiver: WARNING: refused connection from "
                        r"127\.0\.0\.1( \([^)]*\))?: not allowed by "
                        r"xend-relocation-hosts-allow", refused[0]), refused
    assert "session from" not in err
    assert not xl_log.exists()                          # nothing started
    assert f"listening on 127.0.0.1:{rcv.port} (peers allowed by " \
           "xend-relocation-hosts-allow)" in err


def test_a_peer_allowed_by_its_reverse_name(tmp_path):
    name = socket.getfqdn("127.0.0.1")
    if name == "127.0.0.1":
        pytest.fail("127.0.0.1 has no reverse name on this host (/etc/hosts)")
    rcv = Receiver(tmp_path, "--sim", "--hosts-allow",
                   "^192\\.0\\.2\\.1$ ^" + re.escape(name) + "$")
    try:
        assert hello(rcv.port) == READY + BANNER
    finally:
        rc, out, err = rcv.stop()
    assert "refused" not in err


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_args(pki):
    return ["--tls-cert", str(pki.server_cert), "--tls-key",
            str(pki.server_key), "--tls-ca", str(pki.ca)]


def test_remus_over_tls_with_client_certificates(tmp_path, pki):
    need_sim()
    rcv = Receiver(tmp_path, "--sim", "--once", "--json", *tls_args(pki))
    p, state = primary(tmp_path, "tlsguest", rcv.port, "--tls-ca", str(pki.ca),
                       "--tls-cert", str(pki.client_cert), "--tls-key",
                       str(pki.client_key))
    try:
        wait_for(lambda: taken(state) >= 4 or p.poll() is not None,
                 what="4 checkpoints over TLS")
        assert p.poll() is None, p.communicate()
    finally:
        kill(p)
    rc, out, err = rcv.finish()
    assert rc == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    st = simxen.read_state(state)
    k = summary["checkpoints"]
    assert summary["failover_ok"] and len(st.checkpoints) - 1 <= k <= len(st.checkpoints)
    assert summary["page_versions_digest"] == digest(st.versions(k))
    assert summary["acks"] == k          # the back channel works through TLS too
    # the session's two INFO lines, without -v
    assert re.search(r"INFO: session from 127\.0\.0\.1:\d+: receiving domain "
                     r"'tlsguest' \(simulated backup\)", err), err
    assert re.search(rf"INFO: session from 127\.0\.0\.1:\d+ ended: {k} "
                     rf"checkpoints received, Remus failover to checkpoint {k} "
                     r"of tlsguest \(", err), err
    assert "(TLS, client certificates required; simulated backup)" in err


def _tls_client(port, ctx):
    """What a TLS client that says ``receive`` gets (b"" when refused: with
    TLS 1.3 the refusal of a client certificate comes after the handshake)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"receive\n")
                return s.recv(100)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return b""


def test_tls_refuses_peers_without_a_good_certificate(tmp_path, pki):
    need_sim()
    rcv = Receiver(tmp_path, "--sim", *tls_args(pki))
    try:
        assert hello(rcv.port) == b""                      # plain TCP
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        assert _tls_client(rcv.port, ctx) == b""           # no certificate
        rogue = ssl.create_default_context(cafile=str(pki.ca))
        rogue.load_cert_chain(str(pki.rogue_cert), str(pki.rogue_key))
        assert _tls_client(rcv.port, rogue) == b""         # another CA's
        good = ssl.create_default_context(cafile=str(pki.ca))
        good.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        assert _tls_client(rcv.port, good).startswith(READY)
        # a primary that does not trust the receiver's certificate
        p, state = primary(tmp_path, "simguest", rcv.port, "--tls-ca",
                           str(pki.other_ca), "--tls-cert", str(pki.client_cert),
                           "--tls-key", str(pki.client_key))
        out, perr = p.communicate(timeout=60)
        assert p.returncode == 1, (out, perr)
        assert (f"remus: remus-receiver at 127.0.0.1:{rcv.port} (TLS): the "
                "receiver's certificate was refused: ") in perr
        assert "Traceback" not in perr
        assert simxen.read_state(state).final_state in (None, "running")
    finally:
        rc, out, err = rcv.stop()
    refused = [ln for ln in err.splitlines() if "refused connection" in ln]
    assert len(refused) == 4, err       # plain, no cert, rogue, the primary
    assert all("TLS handshake failed" in ln for ln in refused)
    assert "receiving domain" not in err


def test_tls_from_xend_config(tmp_path, pki):
    (tmp_path / "keys").mkdir()
    for src, dst in ((pki.server_cert, "relocation.crt"),
                     (pki.server_key, "relocation.key")):
        (tmp_path / "keys" / dst).write_bytes(src.read_bytes())
    config = ("(xend-relocation-ssl-server yes)\n"
              "(xend-relocation-server-ssl-key-file keys/relocation.key)\n"
              "(xend-relocation-server-ssl-cert-file keys/relocation.crt)\n")
    rcv = Receiver(tmp_path, "--sim", config=config)
    try:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        assert _tls_client(rcv.port, ctx).startswith(READY)
    finally:
        rc, out, err = rcv.stop()
    assert f"listening on 127.0.0.1:{rcv.port} (TLS; simulated backup)" in err


# --- 2. bounded resources -----------------------------------------------------------

def test_sessions_are_capped(tmp_path):
    need_sim()
    rcv = Receiver(tmp_path, "--sim", "--max-sessions", "1")
    first = None
    try:
        first, st1 = primary(tmp_path, "simguest", rcv.port)
        wait_for(lambda: taken(st1) >= 2, what="the first stream")
        second, st2 = primary(tmp_path, "otherguest", rcv.port)
        out, perr = second.communicate(timeout=60)
        assert second.returncode == 1, (out, perr)
        assert ("refusing the stream for domain 'otherguest' from 127.0.0.1:"
                in out) and "1 sessions are running (--max-sessions 1)" in out
        assert simxen.read_state(st2).final_state == "running"
        before = taken(st1)
        wait_for(lambda: taken(st1) > before + 2, what="the first to go on")
    finally:
        if first is not None:
            kill(first)
        rc, out, err = rcv.stop()
    assert "1 sessions are running" in err


def test_slow_and_silent_handshakes_are_dropped(tmp_path):
    rcv = Receiver(tmp_path, "--sim", "--handshake-timeout", "1")
    closed = {}

    def silent(key):
        with socket.create_connection(("127.0.0.1", rcv.port), timeout=10) as s:
            t0 = time.monotonic()
            try:
                s.recv(100)
            except ConnectionResetError:
                pass
            closed[key] = time.monotonic() - t0

    def dribble(key, prefix, data):
        with socket.create_connection(("127.0.0.1", rcv.port), timeout=10) as s:
            t0 = time.monotonic()
            try:
                s.sendall(prefix)
                for b in data:
                    s.sendall(bytes([b]))
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass
            closed[key] = time.monotonic() - t0

    header = simstream.build_stream(2, []).data[:200]
    threads = [threading.Thread(target=silent, args=("silent",)),
               threading.Thread(target=dribble, args=("hello", b"",
                                                      b"receive\n" * 3)),
               threading.Thread(target=dribble, args=("header", b"receive\n",
                                                      header))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert closed["silent"] < 3, closed
        assert closed["hello"] < 3 and closed["header"] < 3, closed
        # more connections than may wait at once: the extra ones at once
        socks = [socket.create_connection(("127.0.0.1", rcv.port), timeout=5)
                 for _ in range(12)]
        busy = 0
        for s in socks:
            s.settimeout(0.5)
            try:
                if s.recv(100).startswith(b"(err (type busy)"):
                    busy += 1
            except (socket.timeout, ConnectionResetError):
                pass
        for s in socks:
            s.close()
        assert busy == 4, busy                   # 12 - 8 waiting slots
        time.sleep(1.5)                          # the 8 time out
        assert hello(rcv.port) == READY + BANNER # and a good peer gets in
    finally:
        rc, out, err = rcv.stop()
    assert err.count("no 'receive' line within the handshake timeout") >= 2, err
    assert "no xl header within the handshake timeout" in err
    assert "connections are already waiting for their stream" in err


def test_memory_stays_flat_over_twelve_sessions(tmp_path):
    """Before: 41 -> 228 MB (every session's guest memory was kept)."""
    need_sim()
    rcv = Receiver(tmp_path, "--sim")
    rss = []
    try:
        for i in range(12):
            p, state = primary(tmp_path, f"g{i}", rcv.port, pages=4096)
            try:
                wait_for(lambda: taken(state) >= 3 or p.poll() is not None,
                         what=f"session {i}")
            finally:
                kill(p)
            time.sleep(0.5)                      # its failover
            rss.append(rcv.rss())
        peak = rcv.rss("VmHWM")
    finally:
        rc, out, err = rcv.stop()
    print(f"remus-receiver --sim RSS over 12 sessions (MB): {rss}, peak {peak}")
    assert rss[-1] - rss[1] < 12, rss
    assert peak < 110, peak
    assert err.count("ended: ") == 12, err


def _big_record_client(port, name, length, results):
    cfg = dict(simstream.DEFAULT_CONFIG)
    cfg = {**cfg, "c_info": {**cfg["c_info"], "name": name}}
    st = simstream.build_stream(4, [], config=cfg)
    pre = st.data[:[o for o, n in st.boundaries if n == "X86_PV_INFO"][0]]
    sent = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"receive\n")
            got = b""
            while len(got) < len(READY) + len(BANNER):
                got += s.recv(100)
            s.sendall(pre + struct.pack("<II", 0x80000099, length))
            chunk = bytes(1 << 20)
            while sent < length:
                n = min(len(chunk), length - sent)
                s.sendall(chunk[:n])
                sent += n
    except OSError:
        pass
    results[name] = sent


def test_large_records_cannot_exhaust_memory(tmp_path):
    """Before: 4 connections of 128 MiB records took the --sim backup to
    778-948 MB; now such a record is refused at its header."""
    rcv = Receiver(tmp_path, "--sim")
    results = {}
    try:
        threads = [threading.Thread(target=_big_record_client, args=(
            rcv.port, f"big{i}", libxc.MAX_BODY - 8, results)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        time.sleep(0.5)
        peak = rcv.rss("VmHWM")
    finally:
        rc, out, err = rcv.stop()
    print(f"remus-receiver --sim peak RSS with 4 large-record connections: {peak} MB")
    assert peak < 80, peak
    assert err.count("exceeds this reader's limit of 0x800000 bytes per record") == 4, err


# --- 3. a silent primary is a failed primary ------------------------------------------

def test_silent_primary_fails_over_to_the_last_checkpoint(tmp_path):
    need_sim()
    rcv = Receiver(tmp_path, "--sim", "--once", "--json")    # default: 3 s
    p, state = primary(tmp_path, "simguest", rcv.port, interval=100)
    try:
        wait_for(lambda: taken(state) >= 4 or p.poll() is not None,
                 what="4 checkpoints")
        assert p.poll() is None, p.communicate()
        os.killpg(p.pid, signal.SIGSTOP)       # hung: TCP stays open, silent
        t0 = time.monotonic()
        started = taken(state)
        rc, out, err = rcv.finish(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        kill(p)
    print(f"failover {elapsed:.2f} s after the primary went silent")
    assert rc == 0, err
    assert elapsed < 3 + 1.5, elapsed
    summary = json.loads(out.strip().splitlines()[-1])
    k = summary["checkpoints"]
    assert summary["failover_ok"] and started - 1 <= k <= started
    st = simxen.read_state(state)
    assert summary["page_versions_digest"] == digest(st.versions(k))
    assert re.search(rf"Remus failover to checkpoint {k} of simguest \(primary "
                     r"silent for 3\.\d s\)", err), err


def test_silent_primary_closes_xls_input(tmp_path):
    """The xl path: the relay closes ``xl migrate-receive -r``'s stdin,
    which is what makes xl fail over."""
    need_sim()
    xl, xl_log = fake_xl(tmp_path)
    rcv = Receiver(tmp_path, "--once", "--json", "--xl", str(xl), "-e",
                   "--silence-timeout", "2",
                   env=dict(os.environ, FAKE_XL_LOG=str(xl_log)))
    p, state = primary(tmp_path, "simguest", rcv.port, interval=100)
    try:
        wait_for(lambda: taken(state) >= 4 or p.poll() is not None,
                 what="4 checkpoints")
        assert p.poll() is None, p.communicate()
        os.killpg(p.pid, signal.SIGSTOP)
        stopped = time.time()
        rc, out, err = rcv.finish(timeout=30)
    finally:
        kill(p)
    events = [json.loads(ln) for ln in xl_log.read_text().splitlines()]
    assert events[0]["argv"] == ["migrate-receive", "-r", "-e"]
    eof = events[-1]["eof"] - stopped
    print(f"xl's stdin closed {eof:.2f} s after the primary went silent")
    assert 1.5 < eof < 2 + 1.5, eof
    summary = json.loads(out.strip().splitlines()[-1])
    assert rc == 0 and summary["xl_status"] == 0 and summary["failover_ok"]
    assert summary["checkpoints"] >= 3 and summary["bytes"] == events[-1]["bytes"]
    assert re.search(rf"{summary['checkpoints']} checkpoints received, Remus "
                     r"failover to checkpoint \d+ of simguest \(primary silent "
                     r"for 2\.\d s\)", err), err


def test_a_dead_session_is_superseded_and_says_so(tmp_path):
    need_sim()
    rcv = Receiver(tmp_path, "--sim", "--silence-timeout", "4")
    first = second = None
    try:
        first, st1 = primary(tmp_path, "simguest", rcv.port)
        wait_for(lambda: taken(st1) >= 3, what="the first stream")
        os.killpg(first.pid, signal.SIGSTOP)           # its primary is dead
        stopped = time.monotonic()
        second, st2 = primary(tmp_path, "simguest", rcv.port)
        wait_for(lambda: taken(st2) >= 3 or second.poll() is not None,
                 what="the second stream")
        # its first checkpoints may sit in socket buffers while the
        # receiver waits for the first stream's 4 s of silence: wait past
        # them, then the second stream must go on (it is being read)
        time.sleep(max(0.0, stopped + 4 + 1.5 - time.monotonic()))
        n = taken(st2)
        wait_for(lambda: taken(st2) >= n + 10 or second.poll() is not None,
                 what="the second stream to go on")
        assert second.poll() is None, second.communicate()
    finally:
        for p in (first, second):
            if p is not None:
                kill(p)
        time.sleep(0.5)
        rc, out, err = rcv.stop()
    assert re.search(r"WARNING: domain 'simguest': the stream from "
                     r"127\.0\.0\.1:\d+ has been silent for [\d.]+ s, so its "
                     r"primary is dead: ending it \(failover\) and taking the "
                     r"new stream from 127\.0\.0\.1:\d+", err), err
    assert "refusing a second stream" not in err
    assert err.count("Remus failover to checkpoint") == 2, err
    lines = err.splitlines()
    taken_over = next(i for i, ln in enumerate(lines) if "has been silent" in ln)
    assert any("receiving domain 'simguest'" in ln
               for ln in lines[taken_over + 1:]), lines
    assert re.search(r"ended: \d+ checkpoints received, Remus failover to "
                     r"checkpoint \d+ of simguest \((superseded by a new stream"
                     r"|primary silent for)", err), err


# --- 4. a bug in a session ------------------------------------------------------------

def test_a_crash_in_a_session_is_exit_2_with_one_line(tmp_path, monkeypatch, capfd):
    from xen_remus_compat.cli import receiver as cli
    from xen_remus_compat.remus import receiver as service

    def broken(self, ch, session, raw):
        raise ZeroDivisionError("injected bug")

    monkeypatch.setattr(service.ReceiverService, "_run_sim", broken)
    monkeypatch.setenv("XEND_CONFIG", str(tmp_path / "none"))
    ready = tmp_path / "port"
    stream = simstream.build_stream(4, [{1}]).data

    def client():
        wait_for(ready.exists, what="listening")
        with socket.create_connection(("127.0.0.1", int(ready.read_text())),
                                      timeout=10) as s:
            s.sendall(b"receive\n" + stream)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass

    t = threading.Thread(target=client, daemon=True)
    t.start()
    old = signal.getsignal(signal.SIGTERM)        # main() sets its own
    try:
        rc = cli.main(["--sim", "--once", "--listen", "127.0.0.1", "--port",
                       "0", "--ready-file", str(ready)])
    finally:
        signal.signal(signal.SIGTERM, old)
    t.join(10)
    err = capfd.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and "Exception in thread" not in err
    bug = [ln for ln in err.splitlines() if "internal error" in ln]
    assert len(bug) == 1 and "ZeroDivisionError: injected bug" in bug[0], err
    assert "please report it" in bug[0]


# --- 12. a port out of range is bad input -------------------------------------------------

def test_port_out_of_range_is_bad_input(tmp_path):
    r = subprocess.run([PY, "-m", "xen_remus_compat.cli.receiver", "--sim",
                        "--listen", "127.0.0.1", "--port", "99999"],
                       capture_output=True, text=True, timeout=30, cwd=str(ROOT))
    assert r.returncode == 1 and "99999 is not a TCP port" in r.stderr
    need_sim()
    p, state = primary(tmp_path, "simguest", 99999)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "invalid port 99999: a TCP port is 1-65535" in err
    assert "internal error" not in err
