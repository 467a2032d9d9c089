"""DRBD protocol-D checks and ackwait logic (legacy-api 5.2) with an injected runner."""
import errno

import pytest

from xen_remus_compat.devices import drbd
from xen_remus_compat.devices.blockremus import DiskCheckpointError
from xen_remus_compat.runner import Result


def fake_runner(show="resource r0 {\n protocol D;\n}", cstate="Connected\n", fail=None):
    calls = []

    def run(argv, **kw):
        calls.append(list(argv))
        if fail and argv[0] == fail:
            return Result(list(argv), 10, "", "no such resource")
        if argv[:2] == ["drbdadm", "sh-dev"]:
            return Result(list(argv), 0, "/dev/drbd0\n", "")
        if argv[0] == "drbdsetup":
            return Result(list(argv), 0, show, "")
        if argv[:2] == ["drbdadm", "cstate"]:
            return Result(list(argv), 0, cstate, "")
        raise AssertionError(argv)
    run.calls = calls
    return run


class FakeIoctl:
    def __init__(self, send_results):
        self.send_results = list(send_results)
        self.calls = []

    def __call__(self, fd, req, arg):
        self.calls.append(req)
        if req == drbd.SEND_CHECKPOINT:
            return self.send_results.pop(0)
        return 0


def make(ioctl, **kw):
    return drbd.DrbdDisk("r0", run=fake_runner(**kw), opener=lambda p, f: 99,
                         ioctl=ioctl)


def test_commands_run_in_legacy_order():
    run = fake_runner()
    drbd.DrbdDisk("r0", run=run, opener=lambda p, f: 99, ioctl=FakeIoctl([]))
    assert run.calls == [["drbdadm", "sh-dev", "--", "r0"],
                         ["drbdsetup", "/dev/drbd0", "show"],
                         ["drbdadm", "cstate", "--", "r0"]]


def test_stock_drbd_without_protocol_d_names_the_resource():
    with pytest.raises(drbd.DrbdError, match="r0.*protocol D"):
        make(FakeIoctl([]), show="resource r0 {\n protocol C;\n}")


def test_not_connected():
    with pytest.raises(drbd.DrbdError, match="not in connected state.*StandAlone"):
        make(FakeIoctl([]), cstate="StandAlone\n")


def test_drbdadm_failure_is_reported():
    with pytest.raises(drbd.DrbdError, match="drbdadm sh-dev -- r0 failed: no such resource"):
        make(FakeIoctl([]), fail="drbdadm")


def test_ackwait_logic():
    # SEND_CHECKPOINT <= 0 means "wait for the ack in preresume" (libxl does the same)
    io = FakeIoctl([0, 1])
    d = make(io)
    d.postsuspend()
    assert d.ackwait
    d.preresume()
    assert io.calls == [20, 30] and not d.ackwait
    d.postsuspend()            # returns 1: no wait
    d.preresume()
    assert io.calls == [20, 30, 20]


def test_unsupported_ioctl_says_stock_drbd():
    def ioctl(fd, req, arg):
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
    d = make(ioctl)
    with pytest.raises(DiskCheckpointError, match="r0.*not supported.*stock"):
        d.postsuspend()
