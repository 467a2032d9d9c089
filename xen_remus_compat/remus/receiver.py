"""``remus-receiver``: the legacy relocation-port path on an xl backup.

xend listened on TCP 8002 and took a Remus stream after the client sent
``receive\\n`` (legacy-api.md section 12.3).  xl has no listener: the
primary runs ``ssh backup xl migrate-receive -r``.  For sites that keep the
port-based set-up (and for unchanged legacy scripts using
``save.MigrationSocket``), this service:

1. accepts a TCP connection (on the addresses it is told; all by default,
   as xend's relocation server did);
2. reads the ``receive`` line and answers ``(ready receive)``;
3. starts ``xl migrate-receive -r`` with the connection as its stdout (the
   banner goes straight to the primary) and relays the primary's bytes to
   its stdin, reading the xl header on the way to learn the domain's name:
   a second concurrent stream for the same domain is refused;
4. with ``sim=True`` the stream goes to our own receiver instead
   (``xen_remus_compat.stream.receiver``), which materialises the simulated
   guest and fails over to the last complete checkpoint.
"""
from __future__ import annotations

import json
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from ..log import logger
from ..stream import xl as xlstream
from ..errors import ReceiverError, StreamRefused

HELLO = b"receive"
READY = b"(ready receive)\n"
XL_RECEIVE = ["migrate-receive", "-r"]


def _err_reply(kind: str, value: str) -> bytes:
    from .. import sxp
    return (sxp.to_string(["err", ["type", kind], ["value", value]]) + "\n").encode()


@dataclass
class Session:
    peer: str
    domain: Optional[str] = None
    summary: Dict = field(default_factory=dict)
    error: Optional[str] = None
    result: object = None


def _recv_line(conn: socket.socket, limit: int = 256) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        ch = conn.recv(1)
        if not ch:
            break
        line += ch
        if len(line) > limit:
            break
    return line


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ReceiverError(f"stream ended inside the xl header "
                                f"({len(buf)} of {n} bytes)")
        buf += chunk
    return bytes(buf)


def read_xl_header_raw(conn: socket.socket) -> bytes:
    """The xl header and its optional data, as raw bytes (checked)."""
    head = _recv_exact(conn, xlstream.HEADER.size)
    magic, byteorder, mflags, oflags, optlen = xlstream.HEADER.unpack(head)
    if magic != xlstream.MAGIC:
        raise ReceiverError("not an xl stream (bad magic)")
    if optlen > xlstream.MAX_OPTIONAL_DATA:
        raise ReceiverError(f"xl header optional data too large ({optlen} bytes)")
    return head + _recv_exact(conn, optlen)


def domain_name_of(raw_header: bytes) -> Optional[str]:
    opt = raw_header[xlstream.HEADER.size:]
    if len(opt) < 4:
        return None
    (n,) = xlstream.CONFIG_LEN.unpack(opt[:4])
    text = opt[4:4 + n].rstrip(b"\0")
    try:
        cfg = json.loads(text.decode("utf-8"))
        return cfg.get("c_info", {}).get("name")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None


class ReceiverService:
    def __init__(self, *, listen: str = "", port: int = 8002, sim: bool = False,
                 xl: Optional[str] = None, xl_args: Sequence[str] = (),
                 sim_options: Optional[dict] = None,
                 on_session: Optional[Callable[[Session], None]] = None) -> None:
        self.listen, self.port, self.sim = listen, port, sim
        self.xl = xl
        self.xl_args = list(xl_args)
        self.sim_options = sim_options or {}
        self.on_session = on_session
        self.active: Dict[str, str] = {}
        self.lock = threading.Lock()
        self.sock: Optional[socket.socket] = None
        self.sessions: List[Session] = []

    def bind(self) -> int:
        fam = socket.AF_INET6 if ":" in self.listen else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.listen, self.port))
        except OSError as e:
            sock.close()
            where = f"{self.listen or '*'}:{self.port}"
            raise ReceiverError(f"cannot listen on {where}: {e.strerror}"
                                + (" (is another receiver running?)"
                                   if e.errno == 98 else "")) from e
        sock.listen(8)
        self.sock = sock
        self.port = sock.getsockname()[1]
        return self.port

    def serve(self, once: bool = False) -> List[Session]:
        if self.sock is None:
            self.bind()
        threads = []
        try:
            while True:
                conn, addr = self.sock.accept()
                t = threading.Thread(target=self._handle, args=(conn, addr), daemon=True)
                t.start()
                threads.append(t)
                if once:
                    t.join()
                    break
        finally:
            self.sock.close()
        return self.sessions

    # -- one connection --------------------------------------------------------
    def _handle(self, conn: socket.socket, addr) -> None:
        session = Session(peer=f"{addr[0]}:{addr[1]}")
        self.sessions.append(session)
        try:
            line = _recv_line(conn)
            if line.strip() != HELLO:
                conn.sendall(_err_reply("protocol", "expected 'receive'"))
                raise ReceiverError(f"{session.peer}: expected 'receive', got {line[:40]!r}")
            conn.sendall(READY)
            if self.sim:
                self._run_sim(conn, session)
            else:
                self._run_xl(conn, session)
        except StreamRefused as e:
            session.error = str(e)
            logger.error("remus-receiver: %s", e)
            try:
                conn.sendall(_err_reply("refused", str(e)))
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        except (ReceiverError, OSError) as e:
            session.error = str(e)
            logger.error("remus-receiver: %s", e)
        finally:
            if session.domain:
                with self.lock:
                    self.active.pop(session.domain, None)
            try:
                conn.close()
            except OSError:
                pass
            if self.on_session:
                self.on_session(session)

    def _claim(self, session: Session, name: Optional[str]) -> None:
        key = name or "<unnamed>"
        with self.lock:
            if key in self.active:
                raise StreamRefused(
                    f"refusing a second stream for domain {key!r} from {session.peer}: "
                    f"already receiving it from {self.active[key]}")
            self.active[key] = session.peer
        session.domain = key

    def _run_xl(self, conn: socket.socket, session: Session) -> None:
        from ..sources.xlcli import find_xl
        xl = self.xl or find_xl()
        argv = [xl] + XL_RECEIVE + self.xl_args
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=conn.fileno(),
                                close_fds=True)
        relayed = 0
        try:
            raw = read_xl_header_raw(conn)
            self._claim(session, domain_name_of(raw))
            proc.stdin.write(raw)
            relayed += len(raw)
            while True:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                proc.stdin.write(chunk)
                relayed += len(chunk)
        except (BrokenPipeError, ConnectionResetError) as e:
            logger.info("relay ended: %s", e)
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass
            rc = proc.wait()
            session.summary = {"bytes": relayed, "xl_status": rc, "domain": session.domain}
            if rc != 0:     # a Remus failover exits 0 (xl-side.md §3.6)
                session.error = f"{' '.join(argv)} exited with status {rc}"

    def _run_sim(self, conn: socket.socket, session: Session) -> None:
        """Our own receiver on the connection (simulated guest)."""
        from ..stream import receiver
        conn.sendall(xlstream.BANNER)
        raw = read_xl_header_raw(conn)
        self._claim(session, domain_name_of(raw))
        stream = _Prefixed(raw, conn)
        try:
            result = receiver.receive(stream, sim=True, fmt="xl",
                                      source=f"primary {session.peer}")
        except receiver.ReceiveFailed as e:
            result = e.result
            session.error = str(e)
        session.result = result
        session.summary = result.as_dict()


class _Prefixed:
    """A binary reader: ``prefix`` bytes, then the socket's."""

    def __init__(self, prefix: bytes, conn: socket.socket) -> None:
        self.prefix = memoryview(prefix)
        self.conn = conn
        self.name = "remus-receiver connection"

    def read(self, n: int = -1) -> bytes:
        if self.prefix:
            take = self.prefix[:n] if n >= 0 else self.prefix
            self.prefix = self.prefix[len(take):]
            return bytes(take)
        try:
            return self.conn.recv(n if n > 0 else 1 << 20)
        except ConnectionResetError:
            return b""
