"""block-remus fifo protocol against a peer process on real fifos (legacy-api 13.2)."""
import os
import subprocess
import sys
import textwrap

import pytest

from xen_remus_compat import quirks
from xen_remus_compat.devices import blockremus
from xen_remus_compat.devices.blockremus import BlockRemusDisk, DiskCheckpointError

PEER = textwrap.dedent(r"""
    # A stand-in for tapdisk's remus driver: reads 'flush' on the control
    # fifo, answers with the scripted token on the message fifo.
    import os, sys, time
    ctl, msg, script = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    cfd = os.open(ctl, os.O_RDWR); mfd = os.open(msg, os.O_RDWR)
    print("ready", flush=True)
    for answer in script:
        data = os.read(cfd, 79)
        if not data.startswith(b"flush"):
            os.write(mfd, b"fail"); continue
        if answer == "die":
            os._exit(3)
        if answer == "silence":
            continue
        os.write(mfd, answer.encode())
    time.sleep(0.2)
""")


@pytest.fixture
def fifodir(tmp_path):
    name = blockremus.fifo_name("backup", 9000)
    os.mkfifo(tmp_path / name)
    os.mkfifo(tmp_path / (name + ".msg"))
    return tmp_path


def start_peer(fifodir, script):
    name = blockremus.fifo_name("backup", 9000)
    proc = subprocess.Popen([sys.executable, "-c", PEER, str(fifodir / name),
                             str(fifodir / (name + ".msg")), script],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_fifo_name_from_peer():
    # tapdisk turns ':' and '/' into '_' (legacy-api 13.2)
    assert blockremus.fifo_name("backup", 9000) == "remus_backup_9000"
    assert blockremus.fifo_name("10.0.0.2", "9000") == "remus_10.0.0.2_9000"


def test_done_acknowledges_each_epoch(fifodir):
    peer = start_peer(fifodir, "done,done,done")
    disk = BlockRemusDisk("backup", 9000, fifodir=str(fifodir), timeout=5)
    try:
        for _ in range(3):
            disk.postsuspend()
            disk.preresume()
            assert disk.commit() is True
    finally:
        disk.uninstall()
        peer.wait(5)


def test_fail_is_fatal_by_default(fifodir):
    peer = start_peer(fifodir, "fail")
    disk = BlockRemusDisk("backup", 9000, fifodir=str(fifodir), timeout=5)
    try:
        disk.postsuspend()
        with pytest.raises(DiskCheckpointError, match="did not acknowledge.*'fail'"):
            disk.commit()
    finally:
        disk.uninstall()
        peer.wait(5)


def test_fail_carries_on_with_legacy_switch(fifodir, capsys):
    quirks.set_quirks(blockremus_fail_nonfatal=True)
    try:
        peer = start_peer(fifodir, "fail,done")
        disk = BlockRemusDisk("backup", 9000, fifodir=str(fifodir), timeout=5)
        disk.postsuspend()
        assert disk.commit() is False
        assert "Unknown message: fail" in capsys.readouterr().out
        disk.postsuspend()
        assert disk.commit() is True
        disk.uninstall()
        peer.wait(5)
    finally:
        quirks.reset()


def test_silence_times_out(fifodir):
    peer = start_peer(fifodir, "silence")
    disk = BlockRemusDisk("backup", 9000, fifodir=str(fifodir), timeout=0.3)
    try:
        disk.postsuspend()
        with pytest.raises(DiskCheckpointError, match="timed out"):
            disk.commit()
    finally:
        disk.uninstall()
        peer.wait(5)


def test_peer_that_dies_is_a_timeout_not_a_hang(fifodir):
    peer = start_peer(fifodir, "done,die")
    disk = BlockRemusDisk("backup", 9000, fifodir=str(fifodir), timeout=0.5)
    try:
        disk.postsuspend()
        assert disk.commit()
        disk.postsuspend()
        with pytest.raises(DiskCheckpointError):
            disk.commit()
        assert peer.wait(5) == 3
    finally:
        disk.uninstall()


def test_missing_fifo_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(DiskCheckpointError, match="missing"):
        BlockRemusDisk("backup", 9000, fifodir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_regular_file_in_place_of_fifo_is_refused(tmp_path):
    (tmp_path / "remus_backup_9000").write_text("")
    with pytest.raises(DiskCheckpointError, match="not a fifo"):
        BlockRemusDisk("backup", 9000, fifodir=str(tmp_path))


def test_stale_answer_is_drained_before_next_flush(fifodir):
    # a late 'done' from an epoch that timed out must not ack the next one
    name = blockremus.fifo_name("backup", 9000)
    disk = BlockRemusDisk("backup", 9000, fifodir=str(fifodir), timeout=0.3)
    try:
        mfd = os.open(fifodir / (name + ".msg"), os.O_RDWR)
        os.write(mfd, b"done")
        disk.postsuspend()   # drains the stale token
        with pytest.raises(DiskCheckpointError):
            disk.commit()
        os.close(mfd)
    finally:
        disk.uninstall()
