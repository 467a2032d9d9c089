"""xen_remus_compat.atomic: temp file beside the target, then rename."""
from __future__ import annotations

import errno
import os

import pytest

from xen_remus_compat import atomic


def test_write_creates_file_with_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        atomic.write_atomic(tmp_path / "a.cfg", "hello\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.cfg").read_text() == "hello\n"
    assert (tmp_path / "a.cfg").stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["a.cfg"]


def test_overwrite_keeps_existing_mode(tmp_path):
    target = tmp_path / "a.cfg"
    target.write_text("old")
    target.chmod(0o600)
    atomic.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600


def test_no_overwrite_refuses_existing(tmp_path):
    target = tmp_path / "a.cfg"
    target.write_text("old")
    with pytest.raises(FileExistsError) as info:
        atomic.write_atomic(target, "new", overwrite=False)
    assert info.value.errno == errno.EEXIST
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.cfg"]


def test_replacement_is_a_new_inode(tmp_path):
    """Readers holding the old file keep reading the old content."""
    target = tmp_path / "a.cfg"
    target.write_text("old")
    with open(target) as reader:
        atomic.write_atomic(target, "new")
        assert reader.read() == "old"
    assert target.read_text() == "new"


def test_batch_failure_in_write_phase_touches_nothing(tmp_path):
    (tmp_path / "keep.cfg").write_text("old")
    files = [(tmp_path / "keep.cfg", "new"),
             (tmp_path / "missing-dir" / "b.cfg", "x")]   # ENOENT while writing
    with pytest.raises(FileNotFoundError):
        atomic.write_all(files)
    assert (tmp_path / "keep.cfg").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["keep.cfg"]


def test_batch_failure_in_commit_phase_rolls_back(tmp_path):
    # all or nothing (issue 12, item 11): a.cfg, renamed before b.cfg failed,
    # is removed again; the error names the target, not a temporary file
    (tmp_path / "b.cfg").write_text("someone else's")
    files = [(tmp_path / "a.cfg", "A"), (tmp_path / "b.cfg", "B"),
             (tmp_path / "c.cfg", "C")]
    with pytest.raises(FileExistsError) as info:
        atomic.write_all(files, overwrite=False)
    assert info.value.committed == []
    assert not info.value.filename.endswith(".tmp")
    assert (tmp_path / "b.cfg").read_text() == "someone else's"
    assert sorted(os.listdir(tmp_path)) == ["b.cfg"]


def test_batch_failure_restores_replaced_files(tmp_path, monkeypatch):
    (tmp_path / "a.cfg").write_text("old A")
    real = atomic.commit
    calls = []

    def failing(item):
        calls.append(item.target)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", item.target)
        real(item)
    monkeypatch.setattr(atomic, "commit", failing)
    with pytest.raises(OSError):
        atomic.write_all([(tmp_path / "a.cfg", "new A"), (tmp_path / "b.cfg", "B")])
    assert (tmp_path / "a.cfg").read_text() == "old A"
    assert sorted(os.listdir(tmp_path)) == ["a.cfg"]        # no .tmp, no .bak left


def test_batch_success(tmp_path):
    done = atomic.write_all([(tmp_path / "a", "1"), (tmp_path / "b", "2")])
    assert done == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert (tmp_path / "a").read_text() == "1" and (tmp_path / "b").read_text() == "2"


def test_link_unsupported_falls_back_to_checked_rename(tmp_path, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_link)
    atomic.write_atomic(tmp_path / "a", "1", overwrite=False)
    assert (tmp_path / "a").read_text() == "1"
    with pytest.raises(FileExistsError):
        atomic.write_atomic(tmp_path / "a", "2", overwrite=False)
    assert (tmp_path / "a").read_text() == "1"
    assert os.listdir(tmp_path) == ["a"]


def test_cleanup_stale_removes_only_ours(tmp_path):
    ours = tmp_path / ".web01.cfg.0123456789ab.tmp"
    ours.write_text("x")
    (tmp_path / ".bashrc.tmp").write_text("x")
    (tmp_path / "web01.cfg").write_text("x")
    assert atomic.cleanup_stale(tmp_path) == [str(ours)]
    assert sorted(os.listdir(tmp_path)) == [".bashrc.tmp", "web01.cfg"]
