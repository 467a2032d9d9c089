"""Python 2 ``str`` at fds and sockets: ``os.write``/``os.read`` and the
socket constructors are routed to the runtime's str-tolerant versions.

Only calls through the module name are rewritten (``os.write(...)``,
``socket.socket(...)``): that is how the remus-era scripts spell them, and
the runtime's objects stay ordinary ``bytes`` and sockets to the rest.
"""
from __future__ import annotations

from typing import Dict

from fissix.fixer_util import Name

from .base import Py2Fix


class _Redirect(Py2Fix):
    """``MODULE.NAME(...)`` -> ``_py2.<NEW>(...)`` for the names in TABLE."""

    TABLE: Dict[str, str] = {}

    def transform(self, node, results):
        head, first = node.children[0], node.children[1]
        attr = first.children[1]
        if attr.value not in self.TABLE:
            return None
        head.replace(Name(self.helper, prefix=head.prefix))
        attr.replace(Name(self.TABLE[attr.value]))
        return None


class FixOsIo(_Redirect):
    """``os.write``/``os.read`` -> str-tolerant helpers."""

    PATTERN = "power< 'os' trailer< '.' ('write' | 'read') > trailer< '(' [any] ')' > any* >"
    TABLE = {"write": "os_write", "read": "os_read"}


class FixSocket(_Redirect):
    """``socket.socket`` and friends -> str-tolerant sockets."""

    PATTERN = ("power< 'socket' trailer< '.' ('socket' | 'create_connection' "
               "| 'fromfd' | 'socketpair') > trailer< '(' [any] ')' > any* >")
    TABLE = {"socket": "socket", "create_connection": "create_connection",
             "fromfd": "fromfd", "socketpair": "socketpair"}
