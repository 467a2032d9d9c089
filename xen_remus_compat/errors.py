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
