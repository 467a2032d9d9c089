"""What translated scripts call as ``_py2.<name>`` (``--show`` imports this
module under that name).

Python 2's ``str`` was bytes and its ``/`` floored ints; the translation
routes those places here (docs/decisions.md, "Running legacy Python 2
scripts unchanged").  Strings meet bytes as Latin-1, the byte-for-byte
image of a Python 2 byte string.  Standard library only, so a script saved
with ``--show`` does not load the translator to run.
"""
from __future__ import annotations

import os
import socket as _socket
from typing import Any, Callable, Tuple


def to_bytes(data: Any) -> Any:
    """Python 2 ``str`` at a byte boundary: ``str`` -> Latin-1 bytes (UTF-8
    when it holds characters above U+00FF, which only ``u''`` text can)."""
    if isinstance(data, str):
        try:
            return data.encode("latin-1")
        except UnicodeEncodeError:
            return data.encode("utf-8")
    return data


def _wrap(value: Any) -> Any:
    if isinstance(value, bytes) and not isinstance(value, Py2Bytes):
        return Py2Bytes(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


class Py2Bytes(bytes):
    """Bytes read from an fd or socket by a translated script: they behave
    like Python 2's ``str`` next to text.  Equal to the same text
    (``Py2Bytes(b'done') == 'done'``, same hash), printable as text
    (``str()``, ``%s``), concatenable with ``str``, and their methods accept
    ``str`` arguments.  Still ``bytes``: ``struct.unpack`` and binary files
    take them as they are."""

    __slots__ = ()

    def __eq__(self, other):
        if isinstance(other, str):
            other = to_bytes(other)
        return bytes.__eq__(self, other)

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = bytes.__hash__

    def __str__(self) -> str:
        return self.decode("latin-1")

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return bytes.__repr__(self)[1:]      # Python 2 repr: no b prefix

    def __add__(self, other):
        return Py2Bytes(bytes.__add__(self, to_bytes(other)))

    def __radd__(self, other):
        if isinstance(other, (str, bytes, bytearray)):
            return Py2Bytes(bytes(to_bytes(other)) + bytes(self))
        return NotImplemented

    def __contains__(self, item) -> bool:
        return bytes.__contains__(self, to_bytes(item))

    def __getitem__(self, index):
        value = bytes.__getitem__(self, index)
        if isinstance(value, int):
            return Py2Bytes(bytes((value,)))   # Python 2: a 1-character str
        return Py2Bytes(value)

    def __iter__(self):
        for b in bytes.__iter__(self):
            yield Py2Bytes(bytes((b,)))


def _bytes_method(name: str) -> Callable:
    base = getattr(bytes, name)

    def method(self, *args, **kw):
        args = tuple(to_bytes(a) if isinstance(a, str) else
                     tuple(to_bytes(x) for x in a) if isinstance(a, tuple) else a
                     for a in args)
        return _wrap(base(self, *args, **kw))
    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


#: bytes methods that take text arguments in Python 2 code
_STR_METHODS = ("startswith", "endswith", "split", "rsplit", "strip", "lstrip",
                "rstrip", "find", "rfind", "index", "rindex", "count", "replace",
                "partition", "rpartition", "splitlines", "lower", "upper",
                "join", "ljust", "rjust", "center", "zfill", "expandtabs")
for _name in _STR_METHODS:
    setattr(Py2Bytes, _name, _bytes_method(_name))
del _name


_NUMBERS = (int, float, complex)


def div(a: Any, b: Any) -> Any:
    """Python 2's ``a / b``: floor division of two ints, else ``__div__``
    where a class still defines it, else true division."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    if isinstance(a, _NUMBERS) and isinstance(b, _NUMBERS):
        return a / b
    for obj, other, name in ((a, b, "__div__"), (b, a, "__rdiv__")):
        meth = getattr(type(obj), name, None)
        if meth is not None:
            result = meth(obj, other)
            if result is not NotImplemented:
                return result
    return a / b


def os_write(fd: int, data: Any) -> int:
    """``os.write`` that takes Python 2 ``str`` (e.g. ``'flush'`` to a fifo)."""
    return os.write(fd, to_bytes(data))


def os_read(fd: int, n: int) -> Py2Bytes:
    """``os.read`` whose result compares equal to text (``== 'done'``)."""
    return Py2Bytes(os.read(fd, n))


class socket(_socket.socket):
    """``socket.socket`` for translated scripts: sends ``str``, receives
    :class:`Py2Bytes`; ``accept`` and ``dup`` keep the class."""

    __slots__ = ()

    def send(self, data, *args):
        return super().send(to_bytes(data), *args)

    def sendall(self, data, *args):
        return super().sendall(to_bytes(data), *args)

    def sendto(self, data, *args):
        return super().sendto(to_bytes(data), *args)

    def recv(self, *args):
        return Py2Bytes(super().recv(*args))

    def recvfrom(self, *args):
        data, addr = super().recvfrom(*args)
        return Py2Bytes(data), addr

    def accept(self):
        fd, addr = self._accept()
        sock = socket(self.family, self.type, self.proto, fileno=fd)
        if _socket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        return sock, addr

    def dup(self):
        sock = socket(self.family, self.type, self.proto, fileno=os.dup(self.fileno()))
        sock.settimeout(self.gettimeout())
        return sock


def _adopt(sock: _socket.socket) -> socket:
    timeout = sock.gettimeout()
    ours = socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    ours.settimeout(timeout)
    return ours


def create_connection(*args, **kw) -> socket:
    return _adopt(_socket.create_connection(*args, **kw))


def fromfd(fd, family, type, proto=0) -> socket:
    return socket(family, type, proto, fileno=os.dup(fd))


def socketpair(*args) -> Tuple[socket, socket]:
    a, b = _socket.socketpair(*args)
    return _adopt(a), _adopt(b)
