"""Exec Debian's real ``xl migrate-receive`` under the no-hypervisor stub,
with this process's stdin/stdout (the Remus channel) inherited.

Why: ``remus -s "" DOM "<this script> --stderr FILE -d -e -r"`` then talks to
the real receiver exactly as ``xl remus`` would over ssh (xl-side.md §2.1,
§3.1, §7), and the test reads what xl logged from FILE.

Usage: ``python xl_receive_exec.py --stderr FILE [XL ARGS...]`` (default
args ``-d -e -r``).  It uses :class:`tests.support.realxl.XlRunner` (same
isolation: private mount namespace, tmpfs state dirs) with a runner that
execs instead of capturing.  The caller's simxen environment
(``LD_LIBRARY_PATH``, ``SIMXEN_*``) is dropped so xl binds Debian's real
libraries, not the simulated ones.
"""
from __future__ import annotations

import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _exec_runner(errfd: int):
    def run(argv, *, env, cwd, **_ignored):
        os.chdir(cwd)
        os.dup2(errfd, 2)
        os.execvpe(argv[0], list(argv), env)
    return run


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "--stderr":
        sys.stderr.write("usage: xl_receive_exec.py --stderr FILE [XL ARGS...]\n")
        return 2
    errpath, xl_args = argv[1], argv[2:] or ["-d", "-e", "-r"]
    for key in list(os.environ):
        if key.startswith("SIMXEN_") or key in ("LD_LIBRARY_PATH", "LD_PRELOAD"):
            del os.environ[key]
    # XlRunner's temporary xl.conf directory outlives the exec: keep it
    # next to the log, not in the host's /tmp
    tempfile.tempdir = os.path.dirname(os.path.abspath(errpath))
    sys.path.insert(0, str(ROOT))
    from tests.support import realxl
    errfd = os.open(errpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    runner = realxl.XlRunner(run=_exec_runner(errfd))
    runner(["migrate-receive", *xl_args])
    return 127      # not reached: the runner execs


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
