"""The engine's preamble against Debian's REAL ``xl migrate-receive -d -e -r``.

``remus --sim -s "" simguest "<wrapper>"`` runs the real receiver (under the
no-hypervisor stub of xl-side.md §7) as its backup, exactly where ``xl
remus`` would run ``ssh HOST xl migrate-receive -r`` (§2.1).  The real xl
must print the banner, accept the xl header (§3.2), parse our JSON config
(§4.6) into ``<name>--incoming`` and only then fail, at domain creation (no
Xen here).  The primary must then say the receiver exited and leave the
guest running (legacy-api.md §1.5: a checkpoint error exits 1).
"""
import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, tier_unavailable
from xen_remus_compat.sim import simxen

realxl = pytest.importorskip("tests.support.realxl")

PY = sys.executable
WRAPPER = ROOT / "tests" / "support" / "xl_receive_exec.py"
BANNER = b"xl migration receiver ready, send binary domain data.\n"   # §3.1
XL_MAGIC = b"Xen saved domain, xl format\n \0 \r"                     # §3.2
GUEST = simxen.SimDomain(name="simguest", pages=512, dirty_rate=20.0, seed=5)


@pytest.fixture(autouse=True)
def _needs():
    ok, why = realxl.available()
    if not ok:
        tier_unavailable("conformance", f"real xl unavailable: {why}")
    ok, why = simxen.available()
    if not ok:
        tier_unavailable("conformance", f"simxen not built: {why}")


def remus(args, state_dir, **kw):
    env = simxen.environment(state_dir, GUEST)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([PY, "-m", "xen_remus_compat.cli.remus", "--sim", *args],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=str(state_dir.parent), **kw)


def wrapper_command(errfile, *xl_args):
    return " ".join(shlex.quote(str(a)) for a in
                    (PY, WRAPPER, "--stderr", errfile, *xl_args))


def xl_printed_config(log):
    """The JSON xl -d prints after 'Parsing config from <saved>' (§3.2)."""
    start = log.index("Parsing config from <saved>\n") + len("Parsing config from <saved>\n")
    end = log.index("\n}\n", start) + 2
    return json.loads(log[start:end])


def sent_config(tmp_path):
    """What the engine sends, captured by a stand-in that answers the banner
    and stores the stream (same simulated guest, so the same config)."""
    out = tmp_path / "captured.xl"
    stand_in = "sh -c " + shlex.quote(
        f"printf 'xl migration receiver ready, send binary domain data.\\n'; "
        f"exec cat > {shlex.quote(str(out))}")
    state = tmp_path / "capture-sim"
    p = remus(["-i", "50", "-s", "", GUEST.name, stand_in], state)
    deadline = time.monotonic() + 30
    while not out.exists() or out.stat().st_size < 4096:
        assert time.monotonic() < deadline and p.poll() is None, p.communicate()
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGTERM)
    p.communicate(timeout=30)
    data = out.read_bytes()
    assert data[:32] == XL_MAGIC
    byteorder, mandatory, optional, optlen = struct.unpack_from("<IIII", data, 32)
    assert (byteorder, mandatory, optional) == (0x01020304, 3, 0)
    (cfglen,) = struct.unpack_from("<I", data, 48)
    assert optlen == 4 + cfglen and data[52 + cfglen - 1] == 0    # NUL-terminated
    return optlen, json.loads(data[52:52 + cfglen - 1])


def test_real_xl_accepts_the_engines_banner_exchange_header_and_config(tmp_path):
    errfile = tmp_path / "xl.stderr"
    state = tmp_path / "sim"
    p = remus(["-i", "50", "-s", "", GUEST.name, wrapper_command(errfile, "-d", "-e", "-r")],
              state)
    out, err = p.communicate(timeout=90)
    log = errfile.read_text()

    # xl wrote its banner and the engine took it (else: "before sending its
    # banner" / "unexpected banner" from the transport)
    assert "migration target: Ready to receive domain." in log
    assert "banner" not in out + err
    # the header was accepted (§3.2: JSON + STREAMv2 = 0x3, no optional flags)
    optlen, config = sent_config(tmp_path)
    assert (f"Loading new save file <incoming migration stream> "
            f"(new xl fmt info 0x3/0x0/{optlen})") in log
    assert " Savefile contains xl domain config in JSON format" in log
    for rejection in ("wrong magic", "wrong byte order", "mandatory flag",
                      "Savefile truncated"):
        assert rejection not in log
    # ... and the config parsed by libxl is ours, renamed to <name>--incoming
    parsed = xl_printed_config(log)
    assert parsed["c_info"]["name"] == f"{GUEST.name}--incoming"
    assert config["c_info"]["name"] == GUEST.name
    assert "domid" not in config["c_info"]          # xl remus sends domid 0 (§4.6)
    assert parsed["c_info"]["uuid"] == config["c_info"]["uuid"]
    assert parsed["c_info"]["type"] == config["c_info"]["type"] == "pv"
    for key in ("max_vcpus", "max_memkb", "target_memkb", "kernel", "cmdline"):
        assert parsed["b_info"][key] == config["b_info"][key], key
    assert config["b_info"]["max_memkb"] == GUEST.pages * 4     # KiB
    # then it failed where it must, at domain creation (no hypervisor)
    assert "migration target: Domain creation failed" in log

    # the primary: a checkpoint error naming the dead receiver, exit 1
    assert p.returncode == 1, (out, err)
    assert "Traceback" not in out + err
    assert "xc_domain_save failed" in out
    assert "exited with status 1" in out and str(WRAPPER) in out
    # the guest was never left suspended
    st = simxen.read_state(state)
    assert st.final_state == "running" and st.never_left_suspended()


def test_real_xl_behind_remus_receiver(tmp_path):
    """remus -p PORT -> remus-receiver (not --sim) -> real xl migrate-receive
    -r -e: the receiver relays the same preamble; xl parses it and fails at
    domain creation; the primary reports the receiver's exit."""
    errfile = tmp_path / "xl.stderr"
    fake_xl = tmp_path / "xl"
    # remus-receiver runs "<xl> migrate-receive -r -e"; the wrapper adds the
    # subcommand itself, so drop it and add -d
    fake_xl.write_text("#!/bin/sh\nshift\nexec " + wrapper_command(errfile, "-d")
                       + ' "$@"\n')
    fake_xl.chmod(0o755)
    ready = tmp_path / "port"
    rcv = subprocess.Popen(
        [PY, "-m", "xen_remus_compat.cli.receiver", "--once", "--json", "-e",
         "--xl", str(fake_xl), "--listen", "127.0.0.1", "--port", "0",
         "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline and rcv.poll() is None, rcv.communicate()
        time.sleep(0.05)
    port = int(ready.read_text())
    state = tmp_path / "sim"
    p = remus(["-i", "50", "-p", str(port), GUEST.name, "127.0.0.1"], state)
    out, err = p.communicate(timeout=90)
    rout, rerr = rcv.communicate(timeout=30)
    log = errfile.read_text()
    assert "migration target: Ready to receive domain." in log
    assert f'"name": "{GUEST.name}--incoming"' in log
    assert "migration target: Domain creation failed" in log
    summary = json.loads(rout.strip().splitlines()[-1])
    assert summary["domain"] == GUEST.name and summary["xl_status"] == 1
    assert rcv.returncode == 1 and summary["failover_ok"] is False
    assert f"{fake_xl} migrate-receive -r -e exited with status 1" in \
        summary["receiver_error"]
    # the first checkpoint fits the socket buffers: remus learns it while it
    # waits for that checkpoint's ack (acknowledged mode), or while writing
    assert p.returncode == 1 and ("xc_domain_save failed" in out or
                                  "before acknowledging checkpoint 1" in out), (out, err)
    assert f"remus-receiver at 127.0.0.1:{port} closed the connection" in out
    assert "Traceback" not in out + err + rerr
    assert simxen.read_state(state).final_state == "running"
