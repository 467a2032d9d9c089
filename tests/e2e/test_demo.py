"""``xen-remus-compat demo --json``: the Remus demo on the simulated Xen."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import ROOT
from xen_remus_compat.sim import simxen

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_json_fails_over_to_the_last_complete_checkpoint(seed):
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")
    p = subprocess.run([sys.executable, "-m", "xen_remus_compat.cli.main", "demo", "--json",
                        "--seconds", "1.2", "--interval", "100", "--seed", str(seed)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    for key in ("checkpoints", "pause_ms_p50", "pause_ms_p99",
                "python_us_per_checkpoint", "failover_ok"):
        assert key in out
    assert out["checkpoints"] >= 3
    assert out["failover_ok"] is True and out["memory_match"] is True
    assert out["mismatched_pages"] == 0
    # the primary never got further than one checkpoint past the backup
    assert out["primary_checkpoints"] - out["checkpoints"] in (0, 1)
    assert 0 < out["pause_ms_p50"] <= out["pause_ms_p99"]
    # one entry per complete checkpoint: pause, pages, throughput, ack latency
    series = out["series"]
    assert [e["checkpoint"] for e in series] == list(range(1, out["checkpoints"] + 1))
    for e in series:
        assert set(e) == {"checkpoint", "pause_ms", "pages", "mb_per_s", "python_us",
                          "ack_ms"}
        assert e["pause_ms"] > 0 and e["pages"] > 0 and e["python_us"] > 0
    assert series[0]["pages"] >= 1024            # the first includes the whole guest
    assert all(e["mb_per_s"] > 0 for e in series[1:])
    # acknowledged (the default with remus-receiver): each checkpoint's ack
    # latency, from the primary's stats file, but for a last one whose ack the
    # killed primary never read (its stats line comes after the ack)
    assert out["mode"] == "acknowledged" and out["ack_ms_p50"] > 0
    acks = [e["ack_ms"] for e in series]
    assert None not in acks[:-1] and all(a is None or a >= 0 for a in acks)


def test_demo_table_and_verdict():
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")
    p = subprocess.run([sys.executable, "-m", "xen_remus_compat.cli.main", "demo",
                        "--seconds", "1", "--seed", "7"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for row in ("checkpoints taken", "pause per checkpoint, p50", "pause per checkpoint, p99",
                "pages per checkpoint", "MB per checkpoint", "stream throughput",
                "our Python time per checkpoint"):
        assert row in p.stdout
    assert "verdict: OK: the backup holds exactly the primary's memory" in p.stdout
    # the command line shown is the one an operator would type
    assert "primary: remus --sim -i 200 -p " in p.stdout
    assert "xen_remus_compat.cli" not in p.stdout


def test_demo_plot_draws_pause_and_throughput(tmp_path):
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simxen is not built ({why}); run 'make native'")
    svg = tmp_path / "demo.svg"
    p = subprocess.run([sys.executable, "-m", "xen_remus_compat.cli.main", "demo",
                        "--json", "--seconds", "1", "--interval", "100", "--seed", "5",
                        "--plot", str(svg)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    bars = root.findall(f"{SVG}rect[@height]")[1:]        # the first is the background
    assert len(bars) == out["checkpoints"]
    assert len(root.findall(f"{SVG}polyline")) >= 1
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "pause per checkpoint" in texts and "throughput" in texts
    run = subprocess.run([sys.executable, "-m", "xen_remus_compat.cli.main", "demo",
                          "--convert", "--plot", str(svg)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1 and "--plot" in run.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_demo_with_stale_stamps_and_no_venv_makes_the_venv(tmp_path):
    """A .stamps left behind with no .venv: make must build the venv again
    (the stamp depends on the venv's pyvenv.cfg), not run a missing one."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("setup.cfg", "setup.py", "pyproject.toml", "scripts/install-deps.sh"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    (tmp_path / "lowlevel").mkdir()
    (tmp_path / "lowlevel" / "Makefile").write_text("all:\n\t@true\n")
    (tmp_path / ".stamps").mkdir()
    for stamp in ("deps", "venv"):
        (tmp_path / ".stamps" / stamp).touch()
    env = {**os.environ, "MAKEFLAGS": ""}
    dry = subprocess.run(["make", "-n", "demo"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    made = [i for i, l in enumerate(lines) if "-m venv .venv" in l]
    install = [i for i, l in enumerate(lines) if "pip install" in l and "-e" in l]
    run = [i for i, l in enumerate(lines) if ".venv/bin/xen-remus-compat demo" in l]
    assert made and install and run and made[0] < install[0] < run[0], dry.stdout
    # with the venv there, the stamp is current again: nothing to redo
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "pyvenv.cfg").touch()
    os.utime(tmp_path / ".venv" / "pyvenv.cfg", (1, 1))
    dry = subprocess.run(["make", "-n", "venv"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert "pip install" not in dry.stdout, dry.stdout
