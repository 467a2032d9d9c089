"""The DRBD checkpoint ioctl on a real block device (a loop device): the
not-supported error path a stock host takes."""
import os
import shutil
import subprocess

import pytest

from tests.conftest import tier_unavailable
from xen_remus_compat.devices import drbd
from xen_remus_compat.devices.blockremus import DiskCheckpointError
from xen_remus_compat.runner import Result


@pytest.fixture
def loopdev(tmp_path):
    if os.geteuid() != 0:
        tier_unavailable("linux", "needs root to attach a loop device")
    if not shutil.which("losetup"):
        tier_unavailable("linux", "losetup (util-linux) not installed")
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (1 << 20))
    proc = subprocess.run(["losetup", "--find", "--show", str(img)],
                          capture_output=True, text=True)
    if proc.returncode:
        tier_unavailable("linux", f"cannot attach a loop device: {proc.stderr.strip()}")
    dev = proc.stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_ioctl_on_a_stock_block_device_is_not_supported(loopdev):
    def run(argv, **kw):
        if argv[:2] == ["drbdadm", "sh-dev"]:
            return Result(argv, 0, loopdev + "\n", "")
        if argv[0] == "drbdsetup":
            return Result(argv, 0, "protocol D;\n", "")
        return Result(argv, 0, "Connected\n", "")

    disk = drbd.DrbdDisk("r0", run=run)
    try:
        with pytest.raises(DiskCheckpointError, match="not supported"):
            disk.postsuspend()
    finally:
        disk.uninstall()
