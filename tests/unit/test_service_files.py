"""The systemd side (issue 14 items 5 and 7), what can be checked without
systemd: the unit files name our commands and man pages, are listed once as
data files, read the documented settings; the receiver's socket
inheritance (remus/sdsocket.py) and the journal detection of cli/base.py.
Running them: tests/e2e/test_units.py and tests/e2e/test_package.py.
"""
from __future__ import annotations

import configparser
import os
import pathlib
import re
import socket

import pytest

from xen_remus_compat.cli import base
from xen_remus_compat.errors import ReceiverError
from xen_remus_compat.remus import sdsocket

ROOT = pathlib.Path(__file__).resolve().parents[2]
UNITS = ("remus@.service", "remus-receiver.service", "remus-receiver.socket")


def _unit(name: str) -> dict:
    """{section: {key: [values]}} (systemd keys repeat)."""
    out: dict = {}
    section = None
    for line in (ROOT / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def _console_scripts() -> set:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {line.split("=")[0].strip()
            for line in cfg["options.entry_points"]["console_scripts"].splitlines()
            if line.strip()}


@pytest.mark.parametrize("name", [u for u in UNITS if u.endswith(".service")])
def test_services_run_our_commands_and_cite_installed_man_pages(name):
    unit = _unit(name)
    command = unit["Service"]["ExecStart"][0].split()[0]
    # no path: systemd finds it in /usr/local/bin (pip as root) or /usr/bin
    assert command in _console_scripts()
    for doc in " ".join(unit["Unit"]["Documentation"]).split():
        page = re.fullmatch(r"man:([\w.-]+)\((\d)\)", doc)
        assert page, doc
        assert (ROOT / "docs" / f"{page[1]}.{page[2]}").is_file(), doc
    assert unit["Service"]["Restart"] == ["on-failure"]
    assert "multi-user.target" in unit["Install"]["WantedBy"]


def test_template_reads_the_shared_then_the_domain_settings():
    service = _unit("remus@.service")["Service"]
    assert service["EnvironmentFile"] == ["-/etc/default/remus",
                                          "-/etc/xen/remus/%i.conf"]
    assert service["ExecStart"] == ["remus $REMUS_OPTS %i ${REMUS_BACKUP}"]
    assert "REMUS_BACKUP is not set" in service["ExecStartPre"][0]
    assert service["KillMode"] == ["mixed"]         # remus stops first, then ssh
    default = (ROOT / "systemd" / "remus.default").read_text()
    assert re.search(r"^REMUS_OPTS=", default, re.M)
    assert re.search(r"^REMUS_RECEIVER_OPTS=", default, re.M)


def test_socket_hands_one_stream_socket_to_the_receiver():
    sock = _unit("remus-receiver.socket")
    assert sock["Socket"]["ListenStream"] == ["8002"]
    assert sock["Socket"]["Accept"] == ["no"]
    assert _unit("remus-receiver.service")["Service"]["ExecStart"] == [
        "remus-receiver $REMUS_RECEIVER_OPTS"]


def test_each_unit_is_in_the_tree_once_and_installed_once():
    found = []
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in ("build", ".venv", ".git", "debian")]
        found += [(pathlib.Path(top) / f).relative_to(ROOT).as_posix()
                  for f in files if f.endswith((".service", ".socket"))]
    found.sort()
    assert found == sorted(f"systemd/{u}" for u in UNITS)
    setup = (ROOT / "setup.py").read_text()
    for unit in UNITS:
        assert setup.count(f'"systemd/{unit}"') == 1


def test_no_inherited_socket_without_systemd():
    env = {"PATH": "/bin"}
    assert sdsocket.inherited(env, pid=123) is None
    assert env == {"PATH": "/bin"}


def test_sockets_for_another_process_are_not_taken_and_not_passed_on():
    env = {"LISTEN_PID": "999", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}
    assert sdsocket.inherited(env, pid=123) is None
    assert env == {}


@pytest.mark.parametrize("fds,message", [("2", "passed 2 sockets"),
                                         ("x", "unreadable LISTEN_PID")])
def test_what_the_receiver_cannot_serve_is_one_line(fds, message):
    with pytest.raises(ReceiverError, match=message):
        sdsocket.inherited({"LISTEN_PID": "123", "LISTEN_FDS": fds}, pid=123)


def test_journal_stream_detected_by_device_and_inode(tmp_path, monkeypatch):
    with open(tmp_path / "stream", "w") as f:
        st = os.fstat(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert base.journal_stream(f)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not base.journal_stream(f)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not base.journal_stream(f)


def test_a_listening_socket_is_adopted_with_the_exposure_rule():
    """ReceiverService.adopt judges the address the socket is bound to."""
    from xen_remus_compat.remus.receiver import ReceiverService
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        svc = ReceiverService(sim=True)
        assert svc.adopt(s) == s.getsockname()[1]
        assert svc.listen == "127.0.0.1"
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        with pytest.raises(ReceiverError, match="socket from systemd"):
            ReceiverService(sim=True).adopt(s)
