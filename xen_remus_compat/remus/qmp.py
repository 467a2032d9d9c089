"""A small synchronous QMP client: what the device-model save needs, bounded.

QMP (QEMU Machine Protocol, qemu's docs/interop/qmp-spec): one JSON object
per line in each direction over a unix socket.  The server greets first
(``{"QMP": {"version": ..., "capabilities": [...]}}``); the client must send
``qmp_capabilities`` before any other command; each command
(``{"execute": NAME, "arguments": {...}, "id": ID}``) gets exactly one
``{"return": ...}`` or ``{"error": {"class": ..., "desc": ...}}`` carrying
the same ``id``; asynchronous ``{"event": ...}`` messages may come in
between and are set aside.  A file descriptor for ``add-fd`` travels as
SCM_RIGHTS ancillary data with the command that uses it.

Why not the ``qemu.qmp`` package: docs/decisions.md, "HVM guests: the device
model" (it is asyncio-only; its sync shim has no connect timeout and costs
more per exchange than this whole client, inside the guest's pause).

Every exchange is bounded by ``timeout`` seconds; every failure is a
:class:`errors.DeviceModelError` naming the socket and the command.
"""
from __future__ import annotations

import errno as _errno
import json
import os
import socket
import time
from typing import Any, Dict, List, Optional, Sequence

from ..errors import DeviceModelError

#: sun_path is 108 bytes; longer paths go through /proc/self/fd/DIRFD/NAME
SUN_PATH_MAX = 107
#: at most this many unsolicited events are kept (the rest are dropped)
MAX_EVENTS = 64
#: a single QMP message above this is refused (qemu's are a few KiB)
MAX_MESSAGE = 1 << 20


def bind_or_connect(sock: socket.socket, path: str, *, bind: bool = False) -> None:
    """``sock.connect(path)`` (or bind), also for paths too long for
    ``sun_path``: through a descriptor of the directory."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        (sock.bind if bind else sock.connect)(path)
        return
    head, name = os.path.split(path)
    dirfd = os.open(head or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        (sock.bind if bind else sock.connect)(f"/proc/self/fd/{dirfd}/{name}")
    finally:
        os.close(dirfd)


class QMPClient:
    """One QMP connection (``connect()``, ``execute()``, ``close()``).

    ``what`` names the server in messages (e.g. ``device model of domain
    3``).  Not thread-safe: one caller at a time.
    """

    def __init__(self, path: str, *, timeout: float = 5.0,
                 what: str = "QMP server",
                 clock=time.monotonic) -> None:
        self.path = str(path)
        self.timeout = float(timeout)
        self.what = what
        self.clock = clock
        self.greeting: Optional[dict] = None
        self.events: List[dict] = []
        self._sock: Optional[socket.socket] = None
        self._buf = bytearray()
        self._next_id = 0

    # -- errors -------------------------------------------------------------
    def _error(self, command: str, why: str) -> DeviceModelError:
        return DeviceModelError(f"{self.what}: QMP {command} on {self.path}: {why}",
                                socket=self.path, command=command)

    # -- connection ---------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self, *, negotiate: bool = True) -> dict:
        """Connect, read the greeting and (``negotiate``) leave capabilities
        negotiation mode.  Returns the greeting."""
        if self._sock is not None:
            return self.greeting or {}
        deadline = self.clock() + self.timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        try:
            bind_or_connect(sock, self.path)
        except socket.timeout:
            sock.close()
            raise self._error("connect", f"timed out after {self.timeout:g} s") from None
        except OSError as e:
            sock.close()
            hint = ""
            if e.errno in (_errno.ENOENT, _errno.ECONNREFUSED):
                hint = " (is the device model running?)"
            raise self._error("connect", f"{e.strerror or e}{hint}") from e
        self._sock = sock
        self._buf.clear()
        try:
            msg = self._read_message("greeting", deadline)
            if "QMP" not in msg:
                raise self._error("greeting", f"not a QMP greeting: {_short(msg)}")
            self.greeting = msg["QMP"]
            if negotiate:
                self.execute("qmp_capabilities")
        except BaseException:
            self.close()
            raise
        return self.greeting

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._buf.clear()

    def version(self) -> tuple:
        """qemu's (major, minor, micro) from the greeting, (0, 0, 0) unknown."""
        v = ((self.greeting or {}).get("version") or {}).get("qemu") or {}
        try:
            return (int(v.get("major", 0)), int(v.get("minor", 0)),
                    int(v.get("micro", 0)))
        except (TypeError, ValueError):
            return (0, 0, 0)

    # -- commands -----------------------------------------------------------
    def execute(self, command: str, arguments: Optional[Dict[str, Any]] = None, *,
                fds: Sequence[int] = (), timeout: Optional[float] = None) -> Any:
        """Run one command; its ``return`` value, or DeviceModelError for an
        ``error`` answer, a timeout, a closed connection or garbage."""
        return self.pipeline([(command, arguments)], fds=fds, timeout=timeout)[0]

    def pipeline(self, commands: Sequence[tuple], *, fds: Sequence[int] = (),
                 timeout: Optional[float] = None) -> List[Any]:
        """Send ``[(command, arguments), ...]`` at once and collect their
        answers in order (qemu runs one monitor's commands in the order they
        arrive); one round trip instead of one per command.  The first
        ``error`` answer raises, after every answer has been read.  The
        timeout bounds the whole exchange."""
        first = commands[0][0]
        if self._sock is None:
            raise self._error(first, "not connected")
        idents = []
        data = b""
        for command, arguments in commands:
            self._next_id += 1
            idents.append(self._next_id)
            msg: Dict[str, Any] = {"execute": command, "id": self._next_id}
            if arguments:
                msg["arguments"] = arguments
            data += json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        command = first if len(commands) == 1 else "+".join(c for c, _ in commands)
        limit = self.timeout if timeout is None else float(timeout)
        deadline = self.clock() + limit
        try:
            self._sock.settimeout(limit)
            if fds:
                sent = socket.send_fds(self._sock, [data], list(fds))
            else:
                sent = self._sock.send(data)
            if sent < len(data):
                self._sock.sendall(data[sent:])
        except socket.timeout:
            self.close()
            raise self._error(command, f"timed out after {limit:g} s sending") from None
        except OSError as e:
            self.close()
            raise self._error(command, f"sending failed: {e.strerror or e}") from e
        answers: Dict[int, dict] = {}
        while len(answers) < len(idents):
            pending = commands[len(answers)][0]
            reply = self._read_message(pending, deadline, limit)
            if "event" in reply:
                if len(self.events) < MAX_EVENTS:
                    self.events.append(reply)
                continue
            if reply.get("id") not in idents:
                continue                    # an answer to something we gave up on
            answers[reply["id"]] = reply
        out = []
        for (command, _), ident in zip(commands, idents):
            reply = answers[ident]
            if "return" in reply:
                out.append(reply["return"])
                continue
            err = reply.get("error")
            if isinstance(err, dict):
                raise self._error(command, f"{err.get('class', 'error')}: "
                                           f"{err.get('desc', '')}".rstrip(": "))
            raise self._error(command, f"unexpected answer {_short(reply)}")
        return out

    def _read_message(self, command: str, deadline: float,
                      limit: Optional[float] = None) -> dict:
        limit = self.timeout if limit is None else limit
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl]).strip()
                del self._buf[:nl + 1]
                if not line:
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    self.close()
                    raise self._error(command, f"not JSON: {line[:80]!r}") from None
                if not isinstance(msg, dict):
                    self.close()
                    raise self._error(command, f"not a QMP message: {line[:80]!r}")
                return msg
            if len(self._buf) > MAX_MESSAGE:
                self.close()
                raise self._error(command, f"message longer than {MAX_MESSAGE} bytes")
            left = deadline - self.clock()
            if left <= 0:
                self.close()
                raise self._error(command, f"no answer within {limit:g} s")
            assert self._sock is not None
            try:
                self._sock.settimeout(left)
                chunk = self._sock.recv(65536)
            except socket.timeout:
                self.close()
                raise self._error(command, f"no answer within {limit:g} s") from None
            except OSError as e:
                self.close()
                raise self._error(command, f"receiving failed: {e.strerror or e}") from e
            if not chunk:
                self.close()
                raise self._error(command, "connection closed by the device model")
            self._buf += chunk


def _short(msg: Any) -> str:
    text = json.dumps(msg)
    return text if len(text) <= 120 else text[:117] + "..."
