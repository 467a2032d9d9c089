"""DRBD "protocol D" disks (legacy-api.md section 5.2; xl-side.md section 2.6).

Remus needs the Remus-patched DRBD 8.3 fork: the resource must use
``protocol D`` and the device must accept the checkpoint ioctls
``SEND_CHECKPOINT`` (20) and ``WAIT_CHECKPOINT_ACK`` (30).  libxl's own
Remus code uses the same ioctls and the same "ackwait" logic kept here: the
ack is awaited in ``preresume``, so the guest stays paused until the backup
has the disk state.  Stock DRBD 8.4/9 has neither; we say so, naming the
resource, instead of failing obscurely.
"""
from __future__ import annotations

import errno
import fcntl
import os
from typing import Callable, Optional

from .. import runner
from .blockremus import DiskCheckpointError
from ..errors import DrbdError

SEND_CHECKPOINT = 20
WAIT_CHECKPOINT_ACK = 30
REMUS_DRBD = "the Remus-patched DRBD 8.3 (protocol D)"


def _run(run, argv, resource):
    try:
        res = run(argv)
    except OSError as e:
        raise DrbdError(f"DRBD resource {resource}: cannot run {argv[0]} "
                        f"({os.strerror(e.errno)}); is drbd-utils installed?") from e
    if res.returncode:
        raise DrbdError(f"DRBD resource {resource}: {' '.join(argv)} failed: "
                        f"{res.stderr.strip() or 'exit %d' % res.returncode}")
    return res.stdout


class DrbdDisk:
    #: the ack is awaited in preresume: nothing is held past the epoch
    in_flight_limit = None
    in_flight_why = ""

    def __init__(self, resource: str, *, run: Callable = runner.run,
                 opener: Callable = os.open, ioctl: Callable = fcntl.ioctl) -> None:
        if not resource or resource.startswith("-") or not resource.isprintable():
            raise DrbdError(f"refusing DRBD resource name {resource!r}: "
                            "drbdadm would take it for an option")
        self.resource = resource
        self.ioctl = ioctl
        # '--': whatever the name, drbdadm reads it as a resource
        self.dev = _run(run, ["drbdadm", "sh-dev", "--", resource], resource).strip()
        if not self.dev.startswith("/"):
            raise DrbdError(f"DRBD resource {resource}: drbdadm sh-dev gave "
                            f"{self.dev!r}, not a device path")
        shown = _run(run, ["drbdsetup", self.dev, "show"], resource)
        if "protocol D;" not in shown:
            raise DrbdError(
                f"DRBD resource {resource} ({self.dev}) does not use protocol D: "
                f"Remus disk replication needs {REMUS_DRBD}; stock DRBD cannot "
                "checkpoint (use --no-disk / --blackhole, or replicate elsewhere)")
        cstate = _run(run, ["drbdadm", "cstate", "--", resource], resource).strip()
        if cstate != "Connected":
            raise DrbdError(f"DRBD resource {resource} is not in connected state "
                            f"(cstate {cstate!r})")
        try:
            self.fd: Optional[int] = opener(self.dev, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise DrbdError(f"DRBD resource {resource}: cannot open {self.dev}: "
                            f"{os.strerror(e.errno)}") from e
        self.ackwait = False

    def _call(self, request: int) -> int:
        try:
            return self.ioctl(self.fd, request, 0)
        except OSError as e:
            if e.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                raise DiskCheckpointError(
                    f"DRBD resource {self.resource} ({self.dev}): checkpoint ioctl "
                    f"{request} not supported ({os.strerror(e.errno)}); this DRBD "
                    f"is stock, Remus needs {REMUS_DRBD}") from e
            raise DiskCheckpointError(
                f"DRBD resource {self.resource}: ioctl {request} failed: "
                f"{os.strerror(e.errno)}") from e

    def postsuspend(self) -> None:
        if not self.ackwait:
            r = self._call(SEND_CHECKPOINT)
            self.ackwait = not (r > 0)

    def preresume(self) -> None:
        if self.ackwait:
            self._call(WAIT_CHECKPOINT_ACK)
            self.ackwait = False

    def commit(self) -> bool:
        return True

    def uninstall(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
