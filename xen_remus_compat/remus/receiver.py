"""``remus-receiver``: the legacy relocation-port path on an xl backup.

xend listened on TCP 8002 and took a Remus stream after the client sent
``receive\\n`` (legacy-api.md section 12.3).  xl has no listener: the
primary runs ``ssh backup xl migrate-receive -r``.  For sites that keep the
port-based set-up (and for unchanged legacy scripts using
``save.MigrationSocket``), this service:

1. accepts a TCP connection on the address it is told and, like xend's
   relocation server, only from peers its hosts-allow list admits, over
   TLS when it has a certificate (:mod:`.access`); it refuses to listen on
   every address with neither an allow-list nor client certificates
   unless told ``insecure``;
2. reads the ``receive`` line and answers ``(ready receive)`` and the xl
   banner, then reads the xl header to learn the domain's name, all within
   one handshake deadline; a primary that asks for a back channel in that
   line (:mod:`.backchannel`) gets one: an ack per checkpoint once it is
   in xl's hands (or applied, with ``sim``), and heartbeats both ways;
3. with a free session slot and the domain's name not taken by a live
   stream, relays the stream to ``xl migrate-receive -r`` (or, with
   ``sim=True``, receives it itself into the simulated guest,
   :mod:`xen_remus_compat.stream.receiver`), failing over to the last
   complete checkpoint when the stream ends, breaks, or the primary has
   been silent past the silence limit (:mod:`.relay`).

Bounded (docs/decisions.md, "Hardening the receiver"): at most
``max_sessions`` streams and ``max_waiting`` connections before theirs; per
connection one record (``max_record``) and, with ``sim``, an equal share of
``max_memory`` for the guest; nothing of a finished session is kept but its
summary (the whole result only with ``serve(once=True)``).  One INFO line
when a session starts and one when it ends; a bug in a session is logged
as such and recorded (``Session.crashed``), never a thread traceback.
"""
from __future__ import annotations

import collections
import errno
import json
import socket
import ssl
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Deque, Dict, List, Optional, Sequence

from ..errors import CompatError, ReceiverError, StreamRefused
from ..log import logger
from ..stream import xl as xlstream
from ..stream.progress import Progress
from . import access, backchannel, cluster, relay

HELLO = b"receive"
READY = b"(ready receive)\n"
XL_RECEIVE = ["migrate-receive", "-r"]
#: The xl header's optional data (the JSON config: kilobytes) we accept.
MAX_HEADER = 1 << 20
#: The silence limit is never less than this many of the longest recent
#: intervals between checkpoints, nor raised above SILENCE_CEILING by them.
SILENCE_INTERVALS = 3
SILENCE_CEILING = 60.0
#: Finished sessions remembered (summaries only) by a long-running service.
KEEP_SESSIONS = 32
#: remus-receiver --failover (docs/remus-receiver.1; docs/decisions.md,
#: "Remus under Pacemaker")
FAILOVER_MODES = ("auto", "cluster")


@dataclass
class Limits:
    """What one receiver may be made to hold (docs/remus-receiver.1)."""

    max_sessions: int = 4
    handshake_timeout: float = 10.0
    silence_timeout: float = 3.0
    max_memory: int = 512 << 20
    max_record: int = 8 << 20

    @property
    def max_waiting(self) -> int:
        """Connections that may be in their handshake at once."""
        return max(4, 2 * self.max_sessions)

    @property
    def session_memory(self) -> int:
        return self.max_memory // self.max_sessions

    def check(self) -> "Limits":
        if self.max_sessions < 1:
            raise ReceiverError("--max-sessions must be at least 1")
        if not self.handshake_timeout > 0 or not self.silence_timeout > 0:
            raise ReceiverError("timeouts must be positive")
        if self.session_memory < 16 << 20:
            raise ReceiverError(
                f"--max-memory {self.max_memory >> 20} MiB leaves less than "
                f"16 MiB to each of --max-sessions {self.max_sessions}")
        return self


def _err_reply(kind: str, value: str) -> bytes:
    from .. import sxp
    return (sxp.to_string(["err", ["type", kind], ["value", value]]) + "\n").encode()


def _name(name: Optional[str], width: int = 80) -> str:
    """A domain name from a stream, escaped and cut for a log line."""
    text = xlstream.shown(name or "<unnamed>")
    return text if len(text) <= width else text[:width] + "..."


@dataclass
class Session:
    peer: str
    domain: Optional[str] = None
    summary: Dict = field(default_factory=dict)
    error: Optional[str] = None
    result: object = None
    #: "Type: message" when our own code failed in this session (a bug)
    crashed: Optional[str] = None
    #: --failover=cluster with xl: the incoming domain was held paused
    held: bool = False
    # -- live state -----------------------------------------------------------
    last_activity: float = field(default_factory=time.monotonic, repr=False)
    #: seconds of silence that ended the stream (the primary is dead)
    silent: Optional[float] = None
    stop_reason: Optional[str] = None
    read_error: Optional[str] = None
    xl_gone: bool = False
    checkpoints: int = 0
    checkpoint_times: Deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=9), repr=False)
    finished: threading.Event = field(default_factory=threading.Event,
                                      repr=False, compare=False)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def idle(self) -> float:
        return time.monotonic() - self.last_activity

    def checkpoint(self, n: int) -> None:
        self.checkpoints = n
        self.checkpoint_times.append(time.monotonic())

    def silence_limit(self, base: float) -> float:
        """``base``, raised to a few of the recent checkpoint intervals."""
        t = list(self.checkpoint_times)
        gaps = [b - a for a, b in zip(t, t[1:])]
        floor = min(SILENCE_CEILING, SILENCE_INTERVALS * max(gaps)) if gaps else 0.0
        return max(base, floor)

    def stop(self, reason: str) -> None:
        self.stop_reason = reason

    def why_ended(self) -> str:
        if self.silent is not None:
            return f"primary silent for {self.silent:.1f} s"
        if self.stop_reason:
            return self.stop_reason
        if self.read_error:
            return f"connection broke: {self.read_error}"
        return "the primary closed the stream"


class ReceiverService:
    def __init__(self, *, listen: str = "", port: int = 8002, sim: bool = False,
                 xl: Optional[str] = None, xl_args: Sequence[str] = (),
                 sim_options: Optional[dict] = None,
                 on_session: Optional[Callable[[Session], None]] = None,
                 policy: Optional[access.Policy] = None,
                 limits: Optional[Limits] = None, insecure: bool = False,
                 keep_results: Optional[bool] = None,
                 failover: str = "auto",
                 state_dir: Optional[str] = None) -> None:
        self.listen, self.port, self.sim = listen, port, sim
        self.xl = xl
        self.xl_args = list(xl_args)
        self.sim_options = sim_options or {}
        self.on_session = on_session
        self.policy = policy or access.Policy()
        self.limits = (limits or Limits()).check()
        self.insecure = insecure
        self.keep_results = keep_results
        if failover not in FAILOVER_MODES:
            raise ReceiverError(f"--failover must be auto or cluster, not {failover!r}")
        #: "cluster": the backup is held paused when the stream stops (.cluster)
        self.failover = failover
        self.state_dir = state_dir
        self.active: Dict[str, Session] = {}
        self.lock = threading.Lock()
        self.sock: Optional[socket.socket] = None
        self.sessions: Deque[Session] = collections.deque(maxlen=KEEP_SESSIONS)
        self.running = 0          # sessions with a stream
        self.waiting = 0          # connections before their stream
        self.threads: List[threading.Thread] = []

    def where(self) -> str:
        host = self.listen or "*"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def bind(self) -> int:
        why = self.policy.exposure(self.listen)
        if why and not self.insecure:
            raise ReceiverError(
                f"refusing to listen on {self.where()}: {why}.  Give --listen "
                "ADDR, an allow-list (--hosts-allow, or "
                "xend-relocation-hosts-allow in xend-config.sxp), TLS with "
                "client certificates (--tls-cert, --tls-key, --tls-ca), or "
                "--insecure to accept that")
        if why:
            logger.warning("listening on %s with no restriction (--insecure): %s",
                           self.where(), why)
        fam = socket.AF_INET6 if ":" in self.listen else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.listen, self.port))
        except OSError as e:
            sock.close()
            raise ReceiverError(f"cannot listen on {self.where()}: {e.strerror}"
                                + (" (is another receiver running?)"
                                   if e.errno == errno.EADDRINUSE else "")) from e
        except OverflowError as e:      # a port beyond 65535
            sock.close()
            raise ReceiverError(f"cannot listen on {self.where()}: {e}") from e
        sock.listen(16)
        self.sock = sock
        self.port = sock.getsockname()[1]
        return self.port

    def adopt(self, sock: socket.socket) -> int:
        """Serve on a listening socket bound by systemd (remus-receiver.socket,
        see remus/sdsocket.py) instead of :meth:`bind`; the same exposure
        rule, judged on the address that socket is bound to."""
        self.listen, self.port = sock.getsockname()[:2]
        why = self.policy.exposure(self.listen)
        if why and not self.insecure:
            sock.close()
            raise ReceiverError(
                f"refusing to serve {self.where()} (socket from systemd): "
                f"{why}.  Give remus-receiver.socket one address "
                "(ListenStream=ADDR:PORT), an allow-list (--hosts-allow), TLS "
                "with client certificates, or --insecure to accept that")
        if why:
            logger.warning("serving %s with no restriction (--insecure): %s",
                           self.where(), why)
        self.sock = sock
        return self.port

    def serve(self, once: bool = False) -> List[Session]:
        if self.sock is None:
            self.bind()
        if self.keep_results is None:
            self.keep_results = once
        try:
            while True:
                try:
                    conn, addr = self.sock.accept()
                except InterruptedError:
                    continue
                except OSError as e:
                    if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                                   errno.ENOMEM):
                        logger.warning("cannot accept a connection: %s", e.strerror)
                        time.sleep(0.1)
                        continue
                    if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                        continue
                    raise
                self.threads = [t for t in self.threads if t.is_alive()]
                with self.lock:
                    full = self.waiting >= self.limits.max_waiting
                    if not full:
                        self.waiting += 1
                if full:
                    self._refuse_now(conn, addr)
                    continue
                t = threading.Thread(target=self._handle, args=(conn, addr),
                                     daemon=True, name=f"remus-receiver {addr[0]}")
                t.start()
                self.threads.append(t)
                if once:
                    t.join()
                    break
        finally:
            self.sock.close()
        return list(self.sessions)

    def _refuse_now(self, conn: socket.socket, addr) -> None:
        logger.warning("refused connection from %s: %d connections are "
                       "already waiting for their stream", addr[0],
                       self.limits.max_waiting)
        try:
            if self.policy.tls is None:
                conn.setblocking(False)
                conn.send(_err_reply("busy", "too many connections"))
        except OSError:
            pass
        conn.close()

    # -- one connection --------------------------------------------------------
    def _handle(self, conn: socket.socket, addr) -> None:
        session = Session(peer=f"{addr[0]}:{addr[1]}")
        self.sessions.append(session)
        state = {"waiting": True, "slot": False}
        ch: Optional[relay.Channel] = None
        try:
            ok, name = access.peer_allowed(addr[0], self.policy.patterns)
            if not ok:
                shown = f" ({name})" if name and name != addr[0] else ""
                session.error = (f"refused: {addr[0]}{shown} is not allowed by "
                                 f"{self.policy.hosts_allow_source}")
                logger.warning("refused connection from %s%s: not allowed by %s",
                               addr[0], shown, self.policy.hosts_allow_source)
                return
            deadline = time.monotonic() + self.limits.handshake_timeout
            try:    # acks go out at once (the primary waits for them)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            if self.policy.tls is not None:
                conn = self._tls(conn, session, deadline)
                if conn is None:
                    return
            ch = relay.Channel(conn, session, self.limits.silence_timeout)
            self._serve_connection(ch, session, state, deadline)
        except StreamRefused as e:
            session.error = str(e)
            logger.error("%s", e)
            try:
                if ch.back is not None:
                    ch.back.error(str(e))
                else:
                    ch.send(_err_reply("refused", str(e)))
                conn.shutdown(socket.SHUT_WR)
            except (OSError, AttributeError):
                pass
        except relay.HandshakeTimeout as e:
            session.error = str(e)
            logger.warning("closed connection from %s: %s (%g s)", session.peer,
                           e, self.limits.handshake_timeout)
        except (CompatError, OSError) as e:     # incl. no xl on this host
            session.error = str(e)
            logger.error("%s: %s", session.peer, e)
        except Exception as e:  # noqa: BLE001 - a bug of ours: say so, once
            session.crashed = f"{type(e).__name__}: {e}"
            session.error = f"internal error: {session.crashed}"
            logger.error("internal error in the session from %s, this is a bug "
                         "in xen-remus-compat, please report it: %s",
                         session.peer, xlstream.shown(session.crashed))
            logger.debug("%s", "".join(traceback.format_exception(e)))
        finally:
            with self.lock:
                if state["waiting"]:
                    self.waiting -= 1
                if state["slot"]:
                    self.running -= 1
                if session.domain and self.active.get(session.domain) is session:
                    del self.active[session.domain]
            try:
                conn.close()
            except OSError:
                pass
            session.finished.set()
            if self.on_session:
                self.on_session(session)
            if not self.keep_results:
                session.result = None       # the guest's memory, with sim

    def _tls(self, conn: socket.socket, session: Session, deadline: float):
        conn.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            tls = self.policy.tls.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            reason = (getattr(e, "reason", None) or getattr(e, "strerror", None)
                      or str(e) or type(e).__name__)
            session.error = f"refused: TLS handshake failed: {reason}"
            logger.warning("refused connection from %s: TLS handshake failed: %s",
                           session.peer, reason)
            try:
                conn.close()
            except OSError:
                pass
            return None
        if self.policy.client_certs:
            subject = dict(x[0] for x in tls.getpeercert().get("subject", ()))
            logger.debug("%s: client certificate %s", session.peer, subject)
        return tls

    def _serve_connection(self, ch: relay.Channel, session: Session,
                          state: dict, deadline: float) -> None:
        line = ch.read_line(deadline)
        try:
            offered = backchannel.parse_offer(line)
            terms = None if offered is None else backchannel.agree(
                offered, self.limits.silence_timeout / 3)
        except backchannel.ProtocolError as e:
            ch.send(_err_reply("protocol", str(e)))
            raise ReceiverError(f"{e}, got {line[:40]!r}") from None
        if terms is None:
            ch.send(READY + xlstream.BANNER)
        else:
            ch.send(backchannel.ready(terms) + xlstream.BANNER)
            ch.back = backchannel.BackupEnd(ch.send, terms)
        raw = relay.read_xl_header(ch, deadline, MAX_HEADER)
        self._claim(session, domain_name_of(raw))
        with self.lock:
            if self.running >= self.limits.max_sessions:
                raise StreamRefused(
                    f"refusing the stream for domain '{_name(session.domain)}' "
                    f"from {session.peer}: {self.running} sessions are running "
                    f"(--max-sessions {self.limits.max_sessions})")
            self.running += 1
            self.waiting -= 1
            state["slot"], state["waiting"] = True, False
        logger.info("session from %s: receiving domain '%s'%s", session.peer,
                    _name(session.domain),
                    " (simulated backup)" if self.sim else "")
        if self.sim:
            self._run_sim(ch, session, raw)
        else:
            self._run_xl(ch, session, raw)
        self._log_end(session)
        self._record_state(session)

    def _claim(self, session: Session, name: Optional[str]) -> None:
        """Take the domain's name; a live stream for it keeps it (refused),
        a dead one (silent past its limit) is ended and the name taken over."""
        key = name or "<unnamed>"
        seen: Optional[float] = None
        while True:
            with self.lock:
                old = self.active.get(key)
                if old is None or old.finished.is_set():
                    self.active[key] = session
                    session.domain = key
                    return
                idle = old.idle()
                limit = old.silence_limit(self.limits.silence_timeout)
                dead = old.silent is not None or old.stop_reason or idle >= limit
                if dead:
                    silent = old.silent if old.silent is not None else idle
                    old.stop(f"superseded by a new stream from {session.peer} "
                             f"after {silent:.1f} s of silence")
                    self.active[key] = session
                    session.domain = key
                    logger.warning(
                        "domain '%s': the stream from %s has been silent for "
                        "%.1f s, so its primary is dead: ending it (failover) "
                        "and taking the new stream from %s", _name(key),
                        old.peer, silent, session.peer)
                    return
                if seen is not None and old.last_activity > seen:
                    raise StreamRefused(
                        f"refusing a second stream for domain '{_name(key)}' "
                        f"from {session.peer}: already receiving it from "
                        f"{old.peer}")
                seen = old.last_activity if seen is None else seen
            time.sleep(min(0.05, max(0.005, limit - idle)))

    def _run_xl(self, ch: relay.Channel, session: Session, raw: bytes) -> None:
        from ..sources.xlcli import find_xl
        xl = self.xl or find_xl()
        argv = [xl] + XL_RECEIVE + self.xl_args
        progress = Progress(on_checkpoint=session.checkpoint, strip=ch.strip())
        hold = None
        if self.failover == "cluster":
            def hold(prog: Progress) -> None:
                session.held = cluster.hold_paused(xl, session, prog)
        rc, relayed = relay.relay_to_xl(ch, raw, argv, progress,
                                        before_close=hold)
        session.summary = {"bytes": relayed, "xl_status": rc,
                           "domain": session.domain,
                           "checkpoints": progress.checkpoints,
                           "complete": progress.ended,
                           "failover_ok": rc == 0}
        _backchannel_summary(ch, session)
        if rc != 0:     # a Remus failover exits 0 (xl-side.md §3.6)
            session.error = f"{' '.join(argv)} exited with status {rc}"

    def _run_sim(self, ch: relay.Channel, session: Session, raw: bytes) -> None:
        """Our own receiver on the connection (simulated guest)."""
        from ..stream import receiver
        stream = relay.StreamReader(raw, ch)

        def applied(n: int, _result) -> None:
            session.checkpoint(n)
            if ch.back is not None:
                ch.back.ack(n)

        try:
            result = receiver.receive(
                stream, sim=True, fmt="xl", source=f"primary {session.peer}",
                on_checkpoint=applied,
                max_record=self.limits.max_record,
                max_memory=self.limits.session_memory)
        except receiver.ReceiveFailed as e:
            result = e.result
            session.error = str(e) + (f" ({session.why_ended()})"
                                      if session.silent or session.stop_reason
                                      else "")
        session.result = result
        session.summary = result.as_dict()
        if result.memory is not None:
            session.summary["page_versions_digest"] = versions_digest(result)
        _backchannel_summary(ch, session)

    def stop_all(self, reason: str, timeout: float = 20.0) -> None:
        """End every live session as a dead primary would (SIGTERM with
        --failover=cluster: each backup is held before xl's input closes)."""
        with self.lock:
            live = [s for s in self.active.values() if not s.finished.is_set()]
        for s in live:
            s.stop(reason)
        deadline = time.monotonic() + timeout
        for s in live:
            s.finished.wait(max(0.0, deadline - time.monotonic()))

    def _record_state(self, s: Session) -> None:
        if self.state_dir:          # remus-receiver --state-dir
            cluster.record_state(self.state_dir, s, sim=self.sim,
                                  mode=self.failover)

    def _log_end(self, s: Session) -> None:
        name = _name(s.domain)
        k = s.summary.get("checkpoints") or 0
        cause = s.why_ended()
        if not self.sim:
            if s.summary.get("complete") and s.summary.get("xl_status") == 0:
                logger.info("session from %s ended: clean stop, domain '%s' "
                            "arrived complete (libxl END) after %d checkpoints",
                            s.peer, name, k)
            elif s.summary.get("xl_status") == 0:
                logger.info("session from %s ended: %d checkpoints received, "
                            "Remus failover to checkpoint %d of %s (%s)",
                            s.peer, k, k, name, cause)
            else:
                logger.warning("session from %s ended: domain '%s' not taken "
                               "over after %d checkpoints (%s): %s", s.peer,
                               name, k, cause, s.error)
            return
        ended = s.summary.get("ended")
        if s.summary.get("failover_ok") and ended == "end":
            logger.info("session from %s ended: clean stop, domain '%s' arrived "
                        "complete (libxl END) after %d checkpoints", s.peer, name, k)
        elif s.summary.get("failover_ok"):
            if ended == "error" and not (s.silent or s.stop_reason):
                cause = f"stream error: {s.summary.get('error')}"
            logger.info("session from %s ended: %d checkpoints received, Remus "
                        "failover to checkpoint %d of %s (%s)", s.peer, k, k,
                        name, cause)
        else:
            logger.warning("session from %s ended: domain '%s' not taken over: "
                           "%s", s.peer, name, s.error)


def _backchannel_summary(ch: relay.Channel, session: Session) -> None:
    """The summary's ``acks``: checkpoints acknowledged (None: the primary
    asked for no back channel)."""
    session.summary["acks"] = ch.back.acked if ch.back is not None else None


def versions_digest(result) -> str:
    """sha256 over ``pfn:version;`` of the simulated guest's pages."""
    import hashlib
    h = hashlib.sha256()
    for pfn, ver in sorted(result.page_versions().items()):
        h.update(f"{pfn}:{ver};".encode())
    return h.hexdigest()


def domain_name_of(raw_header: bytes) -> Optional[str]:
    """``c_info.name`` from a raw xl header's JSON config, if it has one
    (anything malformed: None; xl itself will say what is wrong)."""
    opt = raw_header[xlstream.HEADER.size:]
    if len(opt) < 4:
        return None
    (n,) = xlstream.CONFIG_LEN.unpack(opt[:4])
    text = opt[4:4 + n].rstrip(b"\0")
    try:
        cfg = json.loads(text.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return xlstream.config_name(cfg) if isinstance(cfg, dict) else None
