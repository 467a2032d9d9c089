"""Running external commands, injectable for tests.

A runner is any callable ``run(argv: list[str], *, cwd=None) -> Result``.
The default runs the command for real; tests pass a fake that records calls.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Callable, Optional, Sequence


@dataclass
class Result:
    argv: list
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[..., Result]


def run(argv: Sequence[str], *, cwd: Optional[str] = None,
        timeout: Optional[float] = 60.0) -> Result:
    """Run ``argv``; OSError (command missing) propagates with its errno."""
    proc = subprocess.run(list(argv), cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          close_fds=True, timeout=timeout, text=True,
                          errors="replace")
    return Result(list(argv), proc.returncode, proc.stdout, proc.stderr)
