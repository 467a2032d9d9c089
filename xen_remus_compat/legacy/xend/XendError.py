"""``xen.xend.XendError``: xend's exception classes (legacy-api.md §12.1).

xend's errors were XML-RPC faults, so code written against xend catches
``xmlrpclib.Fault`` (``xmlrpc.client.Fault`` after translation) and reads
``faultCode``/``faultString``; these keep that shape.  Codes are the
``XendClient`` constants: ``XendError`` is ``ERROR_GENERIC`` (2),
``XendInvalidDomain`` is ``ERROR_INVALID_DOMAIN`` (3).
"""
from __future__ import annotations

from xmlrpc.client import Fault

ERROR_INTERNAL = 1
ERROR_GENERIC = 2
ERROR_INVALID_DOMAIN = 3


class XendInvalidDomain(Fault):
    """The domain reference did not resolve (fault code 3)."""

    def __init__(self, value):
        Fault.__init__(self, ERROR_INVALID_DOMAIN, value)


class XendError(Fault):
    """A xend operation failed (fault code 2); ``str()`` is the message."""

    def __init__(self, value):
        Fault.__init__(self, ERROR_GENERIC, value)
        self.value = value

    def __str__(self):
        return str(self.value)


class VmError(XendError):
    """Domain construction error."""


class VMBadState(XendError):
    def __init__(self, value, expected, actual):
        XendError.__init__(self, value)
        self.expected = expected
        self.actual = actual
