"""Crash-safe file writes: write a temporary file beside the target, then
rename it into place.

Why: a converter that dies half-way (or a full disk) must never leave a
truncated ``.cfg`` that ``xl create`` would later read.  The temporary file
lives in the target's directory (``rename(2)`` is only atomic within one file
system), is created ``O_EXCL`` with the process umask applied, is fsync'ed
before the rename, and the directory is fsync'ed after it.

Two entry points:

* :func:`write_atomic` - one file;
* :func:`write_all` - several files as one batch: every temporary file is
  written first, and only when all of them are on disk are they renamed into
  place, so a failure while writing (ENOSPC, EACCES ...) leaves none of the
  targets touched.

``overwrite=False`` is enforced atomically with ``link(2)`` (which fails with
EEXIST instead of replacing), so a file that appears between our check and
our write is not clobbered either.  OS errors propagate unchanged (errno
kept); callers turn them into user-facing errors.
"""
from __future__ import annotations

import errno
import os
import secrets
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Union

Data = Union[str, bytes]

__all__ = ["write_atomic", "write_all", "prepare", "commit", "abort",
           "cleanup_stale", "PendingFile"]

# link(2) is refused by some file systems (vfat, some FUSE/NFS setups); fall
# back to a checked rename there.
_NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP,
                             errno.EXDEV, errno.EMLINK, errno.ENOSYS})


@dataclass
class PendingFile:
    """A temporary file written and synced, waiting to be renamed."""

    target: str
    temp: str
    overwrite: bool


def _as_bytes(data: Data, encoding: str) -> bytes:
    return data.encode(encoding) if isinstance(data, str) else bytes(data)


def _fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prepare(target: Union[str, os.PathLike], data: Data, *,
            overwrite: bool = True, mode: int = 0o666,
            encoding: str = "utf-8", fsync: bool = True,
            token: Callable[[], str] = lambda: secrets.token_hex(6)) -> PendingFile:
    """Write ``data`` to a fresh temporary file next to ``target``.

    The temporary name starts with a dot and ends with ``.tmp`` so that a
    leftover (after a power cut) is visibly ours.  ``mode`` is filtered by
    the umask, like ``open()``; when replacing an existing file its
    permission bits are kept instead.
    """
    target = os.fspath(target)
    directory, base = os.path.split(target)
    payload = _as_bytes(data, encoding)
    kept_mode = None
    if overwrite:
        try:
            kept_mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            pass
    for _ in range(100):
        temp = os.path.join(directory, f".{base}.{token()}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_CLOEXEC", 0),
                         mode if kept_mode is None else 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise FileExistsError(errno.EEXIST, "no free temporary name", target)
    try:
        if kept_mode is not None:
            os.fchmod(fd, kept_mode)   # the umask must not change a kept mode
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(temp)
        raise
    os.close(fd)
    return PendingFile(target=target, temp=temp, overwrite=overwrite)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def commit(pending: PendingFile) -> None:
    """Move a prepared file into place (atomic; no-clobber if asked)."""
    if pending.overwrite:
        os.replace(pending.temp, pending.target)
        return
    try:
        os.link(pending.temp, pending.target)
    except OSError as exc:
        if exc.errno not in _NO_LINK_ERRNOS:
            _unlink_quietly(pending.temp)
            raise
        # No hard links here: a checked rename (tiny race window).
        if os.path.lexists(pending.target):
            _unlink_quietly(pending.temp)
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST),
                                  pending.target) from None
        os.rename(pending.temp, pending.target)
        return
    os.unlink(pending.temp)


def abort(pending: PendingFile) -> None:
    """Remove a prepared file that will not be committed."""
    _unlink_quietly(pending.temp)


def write_atomic(target: Union[str, os.PathLike], data: Data, *,
                 overwrite: bool = True, mode: int = 0o666,
                 encoding: str = "utf-8", fsync: bool = True) -> None:
    """Atomically create or replace ``target`` with ``data``."""
    pending = prepare(target, data, overwrite=overwrite, mode=mode,
                      encoding=encoding, fsync=fsync)
    try:
        commit(pending)
    except BaseException:
        abort(pending)
        raise
    if fsync:
        _fsync_dir(os.path.dirname(pending.target))


def write_all(files: Iterable[tuple], *, overwrite: bool = True,
              mode: int = 0o666, encoding: str = "utf-8",
              fsync: bool = True) -> List[str]:
    """Write several ``(target, data)`` pairs as one batch, all or nothing.

    Phase 1 writes every temporary file; if any write fails, all temporary
    files are removed and no target has changed.  Phase 2 keeps a hard-link
    backup of each target it will replace, then renames the temporary files
    in order.  If a rename fails (EEXIST with ``overwrite=False`` because a
    file appeared, a directory removed under us), the targets renamed so far
    are rolled back: new ones removed, replaced ones restored from their
    backup, so the directory is as it was.  The error names the target, not
    a temporary file.  Returns the committed targets.
    """
    pending: List[PendingFile] = []
    try:
        for target, data in files:
            pending.append(prepare(target, data, overwrite=overwrite, mode=mode,
                                   encoding=encoding, fsync=fsync))
    except BaseException:
        for item in pending:
            abort(item)
        raise
    backups: dict = {}
    done: List[PendingFile] = []
    try:
        for item in pending:
            if item.overwrite and os.path.lexists(item.target):
                backups[item.target] = _backup(item.target)
        for item in pending:
            commit(item)
            done.append(item)
    except BaseException as exc:
        for item in pending[len(done):]:
            abort(item)
        _roll_back(done, backups)
        for backup in backups.values():
            _unlink_quietly(backup)
        if isinstance(exc, OSError) and exc.filename and \
                os.path.basename(exc.filename).endswith(".tmp"):
            exc.filename = exc.filename2 or exc.filename
        try:
            exc.committed = []          # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exotic exception types
            pass
        raise
    for backup in backups.values():
        _unlink_quietly(backup)
    targets = [item.target for item in done]
    if fsync:
        for directory in sorted({os.path.dirname(t) for t in targets}):
            _fsync_dir(directory)
    return targets


def _backup(target: str) -> str:
    """A hard link to ``target`` beside it (same file system, no copy)."""
    directory, base = os.path.split(target)
    for _ in range(100):
        name = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.bak")
        try:
            os.link(target, name)
            return name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free backup name", target)  # pragma: no cover


def _roll_back(done: List[PendingFile], backups: dict) -> None:
    """Undo committed renames, newest first (best effort: the original error
    is the one the caller reports)."""
    for item in reversed(done):
        try:
            backup = backups.get(item.target)
            if backup is not None:
                os.replace(backup, item.target)
                backups.pop(item.target)
            else:
                _unlink_quietly(item.target)
        except OSError:  # pragma: no cover - the directory vanished under us
            pass


def cleanup_stale(directory: Union[str, os.PathLike],
                  base: Optional[str] = None) -> List[str]:
    """Remove leftover ``.<base>.<hex>.tmp`` files of ours (after a crash)."""
    removed = []
    for name in os.listdir(directory):
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        stem = name[1:-4]
        head, _, tail = stem.rpartition(".")
        if not head or len(tail) != 12 or any(c not in "0123456789abcdef" for c in tail):
            continue
        if base is not None and head != base:
            continue
        path = os.path.join(os.fspath(directory), name)
        _unlink_quietly(path)
        removed.append(path)
    return removed
