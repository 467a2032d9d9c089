"""``xen-remus-compat demo --json``: the Remus demo on the simulated Xen."""
import json
import subprocess
import sys

import pytest

from xen_remus_compat.sim import simxen


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
