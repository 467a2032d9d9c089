"""``xen.remus.util`` (legacy-api.md section 9.1): helpers, same names.

``runcmd`` goes through the injectable runner of :mod:`xen_remus_compat.runner`.
"""
from __future__ import annotations

import fcntl
import os
from typing import Optional, Sequence, Union

from .. import runner as _runner


class PipeException(Exception):
    """A command failed; ``errno`` is its exit code or the OS errno."""

    def __init__(self, message: str, errno: int) -> None:
        self.errno = errno
        message = "%s: %d, %s" % (message, errno, os.strerror(errno))
        Exception.__init__(self, message)


class Lock(object):
    """An exclusive lock on ``filename + '.lock'``, taken at construction."""

    def __init__(self, filename: str) -> None:
        self.filename = filename + ".lock"
        self.fd = None
        self.lock()

    def __del__(self) -> None:
        try:
            self.unlock()
        except Exception:
            pass

    def lock(self) -> None:
        if self.fd:
            return
        self.fd = open(self.filename, "w")
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def unlock(self) -> None:
        if not self.fd:
            return
        fcntl.lockf(self.fd, fcntl.LOCK_UN)
        self.fd.close()
        self.fd = None
        try:
            os.remove(self.filename)
        except OSError:
            pass


def canonifymac(mac: str) -> str:
    """``0:16:3E:1:2:3`` -> ``00:16:3e:01:02:03`` (legacy rule, colons only).

    Each field is read as Python 2's ``int(field, 16)`` did: Python 3 also
    accepts ``_`` between digits, which Python 2 refused (ValueError)."""
    return ":".join("%02x" % _py2_hex(field) for field in mac.split(":"))


def _py2_hex(field: str) -> int:
    if "_" in field:
        raise ValueError("invalid literal for int() with base 16: %r" % field)
    return int(field, 16)


def checkpid(pid: int) -> bool:
    """True if ``pid`` can be signalled (EPERM counts as dead, as before)."""
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


#: the command runner (injectable: tests replace it)
RUNNER = None


def runcmd(args: Union[str, Sequence[str]], cwd: Optional[str] = None) -> str:
    """Run a command and return its stdout; failures raise PipeException."""
    if isinstance(args, str):
        args = args.split(" ")
    args = list(args)
    run = RUNNER or _runner.run
    try:
        res = run(args, cwd=cwd)
    except OSError as e:
        raise PipeException("could not run %s" % args[0], e.errno or 0) from e
    if res.returncode:
        print(" ".join(args))
        errmsg = res.stderr.strip()
        print(errmsg)
        raise PipeException("%s failed (errmsg: %s)" % (args[0], errmsg),
                            res.returncode)
    return res.stdout


def modprobe(modname: str) -> bool:
    try:
        runcmd(["modprobe", "-q", "--", modname])
        return True
    except PipeException:
        return False
