"""The one exception hierarchy of xen-remus-compat.

Every error that reaches a user names its input and, where it has one, the
position in it.  Command-line entry points map :class:`InputError` (and its
subclasses) to exit status 1 and anything else to 2 ("our bug"), so a
message that starts with a file name and a line is always the user's input,
never a traceback.
"""
from __future__ import annotations

import errno as _errno
import os
from typing import Optional


class CompatError(Exception):
    """Base class; ``str()`` gives ``source:line:col: message``."""

    exit_status = 2

    def __init__(self, message: str, *, source: Optional[str] = None,
                 line: Optional[int] = None, col: Optional[int] = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line
        self.col = col

    def where(self) -> str:
        parts = []
        if self.source is not None:
            parts.append(str(self.source))
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message


class InputError(CompatError):
    """The user's input is wrong (exit status 1)."""

    exit_status = 1


class SxpParseError(InputError):
    """An S-expression could not be read."""


class DiskSpecError(InputError):
    """A legacy uname or an xl disk specification is invalid."""


class VifSpecError(InputError):
    """A vif specification is invalid."""


class ConfigError(InputError):
    """A domain configuration (sxpr, JSON, XML, xl.cfg) is invalid."""


class UntranslatableError(InputError):
    """The input is valid but has no xl equivalent; the message says why."""


class OutputExistsError(InputError):
    """Refusing to overwrite an existing file without ``--force``."""


class DomainLookupError(InputError):
    """A domain reference (name, id, UUID) did not resolve."""


class XenError(CompatError):
    """A call into Xen (libxl, libxc, xl) failed.

    ``code`` is libxl's or libxc's error code; ``errno`` is kept when the
    failure carried one, so callers can wrap without losing it.
    """

    def __init__(self, message: str, *, code: Optional[int] = None,
                 errno: Optional[int] = None, **kw) -> None:
        super().__init__(message, **kw)
        self.code = code
        self.errno = errno

    def __str__(self) -> str:
        text = super().__str__()
        if self.errno:
            name = _errno.errorcode.get(self.errno, str(self.errno))
            text += f" ({name}: {os.strerror(self.errno)})"
        return text


class EnvironmentProblem(CompatError):
    """Something this host lacks (a library, a binary, a kernel feature)."""

    exit_status = 1


# -- migration streams (stream/) ---------------------------------------------

class StreamError(InputError):
    """A malformed or broken migration stream (exit status 1).

    ``str()`` gives ``source: offset N (0xN): message``; ``errno`` is kept
    when a read failed.
    """

    def __init__(self, message: str, *, source: Optional[str] = None,
                 offset: Optional[int] = None, errno: Optional[int] = None
                 ) -> None:
        super().__init__(message, source=source)
        self.offset = offset
        self.errno = errno

    def where(self) -> str:
        parts = []
        if self.source is not None:
            parts.append(str(self.source))
        if self.offset is not None:
            parts.append(f"offset {self.offset} (0x{self.offset:x})")
        return ": ".join(parts)

    def __str__(self) -> str:
        text = f"{self.where()}: {self.message}" if self.where() else self.message
        if self.errno:
            name = _errno.errorcode.get(self.errno, str(self.errno))
            text += f" ({name}: {os.strerror(self.errno)})"
        return text


class StreamTruncated(StreamError):
    """End of stream inside a structure (or where one was required).

    ``offset`` is where the structure starts; ``got`` how many of its
    ``needed`` bytes arrived.
    """

    def __init__(self, message: str, *, needed: int = 0, got: int = 0,
                 **kw) -> None:
        super().__init__(message, **kw)
        self.needed = needed
        self.got = got


class StreamReadError(StreamError):
    """The transport failed (``errno`` set): for Remus, same as EOF."""


# -- transports and the receiver service --------------------------------------

class TransportError(CompatError):
    """The backup cannot be reached, or went away (exit status 1)."""

    exit_status = 1


class ReceiverError(CompatError):
    """remus-receiver could not serve a stream (exit status 1)."""

    exit_status = 1


class StreamRefused(ReceiverError):
    """The stream is refused after the banner: the primary is told why with
    an xend-style ``(err ...)`` line (the only bytes it may read after the
    banner, legacy-api.md section 12.3) before the connection is closed."""


# -- the checkpoint engine (remus/) -------------------------------------------

class CheckpointFailed(CompatError):
    """Checkpointing stopped: the trampoline, the stream or the backup failed.

    The guest has been resumed when this is raised (exit status 1); the
    legacy ``xen.remus.save.CheckpointError`` wraps it."""

    exit_status = 1


class DeviceModelError(CompatError):
    """An HVM guest's device model (qemu-xen, over QMP) could not be paused,
    saved, resumed or switched; the message names the domain, the QMP socket
    and the command (exit status 1)."""

    exit_status = 1

    def __init__(self, message: str, *, socket: Optional[str] = None,
                 command: Optional[str] = None, **kw) -> None:
        super().__init__(message, **kw)
        self.socket = socket
        self.command = command


# -- output-commit devices (devices/) ------------------------------------------

class NetbufError(CompatError):
    """Network buffering failed; names the device and keeps the errno."""

    def __init__(self, message: str, *, errno: Optional[int] = None, **kw) -> None:
        super().__init__(message, **kw)
        self.errno = errno

    def __str__(self) -> str:
        text = super().__str__()
        name = _errno.errorcode.get(self.errno) if self.errno else None
        if name and name not in text:
            text += f" ({name}: {os.strerror(self.errno)})"
        return text


class PoolExhausted(CompatError):
    """No IFB is free and creating one is not allowed."""


class DiskCheckpointError(CompatError):
    """A replicated disk could not checkpoint; output must stay buffered."""

    exit_status = 1


class DrbdError(InputError):
    """A DRBD resource cannot be used for Remus."""


# -- running legacy scripts (py2/) ------------------------------------------

class TranslationError(InputError):
    """The script cannot be translated or compiled; names its line."""
