"""Polling helpers shared by the end-to-end tests that drive ``remus --sim``."""
import time

from xen_remus_compat.sim import simxen


def wait_for(pred, timeout=20.0):
    """Poll ``pred`` every 50 ms; True once it holds, False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def checkpoints_taken(state_dir) -> int:
    """Checkpoints simxen recorded under ``state_dir`` (0 before it starts)."""
    try:
        return len(simxen.read_state(state_dir).checkpoints)
    except Exception:
        return 0
