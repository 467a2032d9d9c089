"""Who may reach ``remus-receiver``, and what it and ``remus`` exec: the
hosts-allow rules of xend's relocation server, the refusal to listen on
every address unguarded, TLS set-up errors, xend-config.sxp's relocation
settings, the session limits, and ssh/TCP transports that never take a
destination for an option (issue 12, items 1, 2, 3, 6, 12)."""

import os
import time

import pytest

from xen_remus_compat import errors
from xen_remus_compat.cli import receiver as receiver_cli
from xen_remus_compat.remus import access, transport
from xen_remus_compat.remus.receiver import Limits, ReceiverService, Session
from xen_remus_compat.sources import xendconfig


# --- hosts-allow, as xend's hostAllowed ---------------------------------------

def never(_addr):
    raise AssertionError("no reverse lookup expected")


def test_empty_list_admits_everyone():
    assert access.parse_hosts_allow("") is None
    assert access.parse_hosts_allow("   ") is None
    assert access.peer_allowed("192.0.2.7", None, resolve=never) == (True, None)


def test_address_or_reverse_name_must_match_from_the_start():
    pats = access.parse_hosts_allow(r"^10\.1\. ^backup\d+\.example\.org$")
    assert access.peer_allowed("10.1.2.3", pats, resolve=never)[0]
    # re.match: anchored at the start only, as xend ("110.1." is not "10.1.")
    assert access.peer_allowed("110.1.2.3", pats,
                               resolve=lambda a: a)[0] is False
    ok, name = access.peer_allowed(
        "192.0.2.9", pats, resolve=lambda a: "backup7.example.org")
    assert ok and name == "backup7.example.org"
    ok, name = access.peer_allowed(
        "192.0.2.9", pats, resolve=lambda a: "evil.example.org")
    assert not ok and name == "evil.example.org"


def test_ipv4_mapped_peers_match_their_ipv4_patterns():
    pats = access.parse_hosts_allow(r"^127\.0\.0\.1$")
    assert access.peer_allowed("::ffff:127.0.0.1", pats, resolve=never)[0]


def test_a_double_space_does_not_admit_everyone():
    """xend split on single spaces, so '^a$  ^b$' held an empty pattern
    that matched every peer; we split on whitespace (decisions.md)."""
    pats = access.parse_hosts_allow(r"^10\.0\.0\.1$  ^10\.0\.0\.2$")
    assert len(pats) == 2
    assert not access.peer_allowed("192.0.2.1", pats, resolve=lambda a: a)[0]


def test_a_bad_pattern_is_bad_input():
    with pytest.raises(errors.InputError, match=r"invalid regular expression "
                       r"'\(oops' in xend-relocation-hosts-allow"):
        access.parse_hosts_allow("^ok$ (oops", source="xend-relocation-hosts-allow")


# --- refusing to listen unguarded ---------------------------------------------

@pytest.mark.parametrize("listen", ["", "0.0.0.0", "::", "*"])
def test_every_address_with_no_restriction_is_exposed(listen):
    why = access.Policy().exposure(listen)
    assert why and "anyone who can connect could start a domain" in why


@pytest.mark.parametrize("listen", ["127.0.0.1", "::1", "192.0.2.4", "backup"])
def test_one_address_is_not_every_address(listen):
    assert access.Policy().exposure(listen) is None


def test_an_allow_list_or_client_certificates_guard_every_address():
    assert access.Policy(patterns=access.parse_hosts_allow("^a")).exposure("") is None
    tls = object()
    assert access.Policy(tls=tls, client_certs=True).exposure("") is None
    why = access.Policy(tls=tls, client_certs=False).exposure("")
    assert "TLS without --tls-ca encrypts but accepts any client" in why


def test_the_service_refuses_before_binding():
    svc = ReceiverService(listen="", port=0, sim=True)
    with pytest.raises(errors.ReceiverError, match=r"refusing to listen on "
                       r"\*:0: every address.*--insecure"):
        svc.bind()
    assert svc.sock is None


def test_tls_files_that_cannot_be_loaded_are_bad_input(tmp_path):
    with pytest.raises(errors.InputError, match="cannot load the TLS "
                       "certificate/key .*no such file"):
        access.server_context(str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(errors.InputError, match="cannot load the TLS"):
        access.server_context(str(junk))
    with pytest.raises(errors.InputError, match="cannot load the TLS CA"):
        access.client_context(ca=str(junk))


# --- xend-config.sxp ----------------------------------------------------------

XEND_CONFIG = r"""
(xend-relocation-server yes)
(xend-relocation-port 8012)
(xend-relocation-address 127.0.0.1)
(xend-relocation-hosts-allow '^localhost$ ^10\.0\.0\.')
(xend-relocation-ssl-server yes)
(xend-relocation-ssl-port 8013)
(xend-relocation-server-ssl-key-file xmlrpc.key)
(xend-relocation-server-ssl-cert-file /etc/xen/xmlrpc.crt)
"""


def test_relocation_settings_as_xend_read_them(tmp_path):
    conf = tmp_path / "xend-config.sxp"
    conf.write_text(XEND_CONFIG)
    s = xendconfig.relocation_settings(str(conf))
    assert (s.port, s.address, s.ssl_server, s.ssl_port) == (8012, "127.0.0.1",
                                                              True, 8013)
    assert s.hosts_allow == r"^localhost$ ^10\.0\.0\."
    assert s.key_file == str(tmp_path / "xmlrpc.key")       # next to the file
    assert s.cert_file == "/etc/xen/xmlrpc.crt"


def test_relocation_defaults_without_a_file(tmp_path):
    s = xendconfig.relocation_settings(str(tmp_path / "none.sxp"))
    assert (s.port, s.address, s.hosts_allow, s.ssl_server, s.ssl_port) == \
        (8002, "", "", False, 8003)


@pytest.mark.parametrize("line, message", [
    ("(xend-relocation-port 99999)", "99999 is not a TCP port"),
    ("(xend-relocation-ssl-server maybe)", "expected bool"),
])
def test_bad_relocation_settings_are_bad_input(tmp_path, line, message):
    conf = tmp_path / "xend-config.sxp"
    conf.write_text(line + "\n")
    with pytest.raises(errors.InputError, match=message):
        xendconfig.relocation_settings(str(conf))


def test_ssl_server_without_its_files_is_refused_as_xend_did(tmp_path, monkeypatch,
                                                             capsys):
    conf = tmp_path / "xend-config.sxp"
    conf.write_text("(xend-relocation-ssl-server yes)\n")
    monkeypatch.setenv("XEND_CONFIG", str(conf))
    rc = receiver_cli.main(["--sim", "--listen", "127.0.0.1", "--port", "0"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "xend-relocation-ssl-server is set but " \
           "xend-relocation-server-ssl-key-file or -cert-file is missing" in err


@pytest.mark.parametrize("argv, message", [
    (["--port", "99999"], "argument --port: 99999 is not a TCP port (0-65535)"),
    (["--port", "8" * 5000], "argument --port: not a port number"),
    (["--max-sessions", "0"], "argument --max-sessions: must be positive"),
    (["--silence-timeout", "nan"], "argument --silence-timeout: must be positive"),
    (["--tls-ca", "/x"], "--tls-key and --tls-ca need --tls-cert"),
    (["--max-memory", "20", "--max-sessions", "4"], "leaves less than 16 MiB"),
])
def test_receiver_options_are_checked(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XEND_CONFIG", str(tmp_path / "none.sxp"))
    rc = receiver_cli.main(["--sim", "--listen", "127.0.0.1"] + argv)
    err = capsys.readouterr().err
    assert rc == 1 and message in err and "internal error" not in err


# --- limits --------------------------------------------------------------------

def test_silence_limit_is_never_below_a_few_checkpoint_intervals():
    s = Session(peer="p")
    assert s.silence_limit(3.0) == 3.0                # nothing seen yet
    t = 1000.0
    for k in range(5):                                # 2 s between checkpoints
        s.checkpoint_times.append(t + 2.0 * k)
    assert s.silence_limit(3.0) == pytest.approx(6.0)
    s.checkpoint_times.append(t + 8.0 + 500.0)        # one huge gap: capped
    assert s.silence_limit(3.0) == 60.0
    assert s.silence_limit(90.0) == 90.0


def test_limits_share_memory_and_bound_waiting_connections():
    lim = Limits(max_sessions=4, max_memory=512 << 20).check()
    assert lim.session_memory == 128 << 20 and lim.max_waiting == 8
    assert Limits(max_sessions=1).max_waiting == 4


# --- what we exec: no destination is an option ---------------------------------

def test_ssh_gets_keepalives_and_a_double_dash_before_the_destination():
    t = transport.SshTransport("backup")
    assert t.argv == ["ssh", "-o", "ServerAliveInterval=2", "-o",
                      "ServerAliveCountMax=3", "--", "backup", "xl",
                      "migrate-receive", "-r"]
    assert t.description == "ssh backup xl migrate-receive -r"
    assert transport.SSH_DEAD_PEER_SECONDS == 6


def test_the_users_own_ssh_options_come_first():
    t = transport.SshTransport("backup", "ssh -p 2222 -o ServerAliveInterval=9")
    assert t.argv[:5] == ["ssh", "-p", "2222", "-o", "ServerAliveInterval=9"]
    assert t.argv[-5:] == ["--", "backup", "xl", "migrate-receive", "-r"]


def test_another_command_gets_no_ssh_options():
    t = transport.SshTransport("backup", "/usr/local/bin/tunnel")
    assert t.argv == ["/usr/local/bin/tunnel", "backup", "xl",
                      "migrate-receive", "-r"]
    # -s "": the destination is the whole command, the user's own
    t = transport.SshTransport("nc -q0 backup 9", "")
    assert "--" not in t.argv and not any("ServerAlive" in a for a in t.argv)
    assert t.description == "'nc -q0 backup 9'"


@pytest.mark.parametrize("dest", ["-oProxyCommand=touch /tmp/x", "-F/tmp/cfg",
                                  "--", "back\nup", ""])
def test_a_destination_ssh_would_read_as_an_option_is_refused(dest):
    with pytest.raises(errors.InputError, match="refusing destination"):
        transport.SshTransport(dest)
    with pytest.raises(errors.InputError, match="refusing destination"):
        transport.SshTransport(dest, "ssh -p 22")


@pytest.mark.parametrize("port", [0, 65536, 99999, -1])
def test_a_tcp_port_out_of_range_is_refused(port):
    with pytest.raises(errors.InputError, match=f"invalid port {port}: a TCP "
                       "port is 1-65535"):
        transport.TcpTransport("127.0.0.1", port)


def test_drbd_resource_names_never_reach_drbdadm_as_options():
    from xen_remus_compat.devices import drbd
    calls = []

    def run(argv, **kw):
        calls.append(argv)
        raise AssertionError("must not run")

    with pytest.raises(errors.DrbdError, match="refusing DRBD resource name "
                       "'--config-to-test=/x'"):
        drbd.DrbdDisk("--config-to-test=/x", run=run)
    assert calls == []


def test_xl_and_modprobe_operands_follow_a_double_dash():
    from xen_remus_compat.devices.netlink import rtnl
    from xen_remus_compat.remus import hostmem
    seen = []
    hm = hostmem.XlHostMemory(xl="xl", run=lambda argv: seen.append(argv) or "")
    hm.set_dom0_target_mib(512)
    assert seen == [["xl", "mem-set", "--", "0", "512m"]]

    class R:
        returncode = 0
    r = rtnl.Rtnl(run=lambda argv: seen.append(argv) or R())
    assert r.modprobe("sch_plug ifb")
    assert seen[1:] == [["modprobe", "-q", "--", "sch_plug"],
                        ["modprobe", "-q", "--", "ifb"]]


def _receiver(tmp_path, after_eof: str) -> "transport.SshTransport":
    """A -s "" receiver: prints xl's banner, reads the stream to its end,
    then runs ``after_eof`` (as xl migrate-receive -r restores the backup
    at the end of the stream)."""
    from xen_remus_compat.stream.xl import BANNER
    script = tmp_path / "recv.sh"
    script.write_bytes(b"#!/bin/sh\nprintf '%s'\ncat > /dev/null\n" % BANNER.replace(b"\n", b"\\n")
                       + after_eof.encode() + b"\n")
    script.chmod(0o755)
    t = transport.SshTransport(str(script), "")
    t.connect(timeout=10)
    return t


def test_after_the_primary_is_gone_the_receiver_is_left_to_finish(tmp_path):
    """Killing xl migrate-receive while it sets the backup up (seconds with
    a vif) would leave the backup paused: the receiver must outlive us."""
    done = tmp_path / "failed-over"
    t = _receiver(tmp_path, f"sleep 6; touch {done}")
    pid = t.proc.pid
    t0 = time.monotonic()
    t.release_receiver()
    t.close()
    assert time.monotonic() - t0 < 2
    os.kill(pid, 0)                          # still running after close
    deadline = time.monotonic() + 20
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert done.exists()


def test_a_stopped_protection_does_not_leave_the_receiver(tmp_path):
    """A clean stop (SIGTERM, the guest alive here) still ends the receiver
    within the close's bound, as before."""
    done = tmp_path / "failed-over"
    t = _receiver(tmp_path, f"sleep 30; touch {done}")
    pid = t.proc.pid
    t.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not done.exists()


def test_domain_gone_is_read_from_the_cause_chain():
    from xen_remus_compat.cli import remus as cli_remus
    from xen_remus_compat.legacy import save

    class TrampolineError(Exception):
        errno = 3                           # ESRCH
    try:
        try:
            raise TrampolineError("domain 4 disappeared while suspending")
        except TrampolineError as e:
            raise save.CheckpointError(str(e)) from e
    except save.CheckpointError as e:
        assert cli_remus._domain_gone(e)
    assert not cli_remus._domain_gone(save.CheckpointError("backup closed"))
