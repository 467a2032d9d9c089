"""The checkpoint loop: what ``xl remus`` sends, with plain Python hooks.

:func:`protect` starts a checkpointing session on a domain.  It frames the
stream exactly as xl does (xl-side.md section 3.5) around the libxc stream
that the C trampoline has libxenguest write into the same fd:

1. wait for the receiver's banner (``mode="banner"``: the fd comes from a
   transport that has one and has not consumed it yet);
2. the xl header with the domain's libxl JSON (``c_info.domid`` dropped, as
   ``xl remus`` sends it), unless blackhole;
3. the libxl v2 header and ``LIBXC_CONTEXT``;
4. ``checkpointer.start``: libxc writes its records; after each libxc
   ``CHECKPOINT`` our checkpoint callback writes libxl's ``CHECKPOINT_END``
   *before* the commit hook runs, so the backup can apply the epoch while
   the hooks (disk acks, network release) proceed.

Page data is never copied through Python: only these few framing bytes are.

Acknowledged output commit (docs/decisions.md): with a back channel to
``remus-receiver`` (:mod:`.backchannel`), the checkpoint callback waits,
the guest running, for the backup's ack of the checkpoint just written
before the commit hook runs, so output is released only for checkpoints
the backup holds; an ack that never comes stops checkpointing with that
epoch uncommitted.  Without one (stock xl, ``remus --sync``), the commit
hook runs right after the write, as ``xl remus`` releases.

Hooks take no arguments; ``None`` or truthy means continue.  An exception in
a hook stops checkpointing and is re-raised from :func:`protect` after the
guest has been resumed; a failure of the trampoline or of the stream is
:class:`errors.CheckpointFailed`.  Statistics (pause time, our Python time
per checkpoint) are kept in :class:`Stats`.

Local capture during the pause (``capture``, docs/decisions.md): the
trampoline hands libxc a socket pair whose other end a C thread drains;
from each suspension on, libxc's bytes go into memory, and the epoch is
sent once the guest runs again, before the checkpoint callback writes
anything, so the pause no longer includes the link and the bytes on the
stream are libxc's, in libxc's order.  On by default, off with
``remus --sync`` (libxc writes to the link, as xl does) and for blackhole.

Two guards while the trampoline runs (docs/decisions.md, "Hardening the
primary"):

* a write deadline (``write_timeout``, seconds): a backup that stops taking
  the stream fails the checkpoint with the guest resumed, instead of holding
  it suspended (the trampoline's watchdog, on the stream socket);
* SIGINT and SIGTERM are deferred (:class:`DeferredSignals`): their handlers
  run at the loop's safe points (when the guest has just been suspended,
  before anything of the epoch is written, and after an epoch's commit
  hooks), never in the middle of a write or a hook.

This module knows nothing of the legacy facade: ``xen.remus.save.Saver``
adapts its shapes onto :func:`protect`.
"""
from __future__ import annotations

import errno as errnos
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, List, Optional, Tuple

from .. import errors
from ..log import logger
from ..stream import writer as sw
from .signals import DefaultAction, DeferredSignals, block_signals, die_by, unblock_signals


@dataclass
class Stats:
    checkpoints: int = 0
    suspended_at: float = 0.0
    pauses: List[float] = field(default_factory=list)      # seconds, suspend -> resume
    python_time: List[float] = field(default_factory=list)  # seconds of our Python per epoch
    #: acknowledged mode: seconds from CHECKPOINT_END written to its ack read
    ack_latency: List[float] = field(default_factory=list)
    #: the trampoline's capture_stats after the run (None: no capture)
    capture: Optional[dict] = None
    _epoch_python: float = 0.0
    _resumed_at: float = 0.0

    def add_python(self, seconds: float) -> None:
        self._epoch_python += seconds


#: a file to append one line per checkpoint to: ``<checkpoint> <python_us>
#: <pause_us> <end_monotonic_s> <ack_monotonic_s>`` (the 4th: CLOCK_MONOTONIC
#: right after CHECKPOINT_END was written; the 5th: when the backup's ack of
#: it was read, ``-`` when there is none: release after write, or the ack
#: never came; the commit hooks release output only after the line)
STATS_ENV = "XEN_REMUS_COMPAT_STATS_FILE"


#: the default write deadline of :func:`protect`, seconds
DEFAULT_WRITE_TIMEOUT = 5.0

#: the most epochs :func:`protect` lets be in flight (sent, not yet
#: acknowledged and committed); each costs the backup's receive buffers,
#: not ours (the capture buffer holds one epoch at a time)
MAX_IN_FLIGHT = 8


@dataclass
class _Epoch:
    """A checkpoint written and not yet settled (acknowledged, committed)."""
    n: int
    python: float       # seconds of our Python in its epoch
    pause: float        # seconds, suspend to resume
    written: float      # CLOCK_MONOTONIC right after its CHECKPOINT_END


def libxl_config_for(record=None, *, domain=None) -> dict:
    """The libxl_domain_config xl would send: from a source's
    :class:`~xen_remus_compat.sources.base.DomainRecord` (its raw libxl JSON
    when the source has one) or from a model :class:`Domain`."""
    if record is not None and record.libxl_config is not None:
        cfg = dict(record.libxl_config)
    else:
        from ..config.formats import libxl_json
        dom = record.domain if record is not None else domain
        if dom is None:
            raise ValueError("libxl_config_for needs a record or a domain")
        cfg = libxl_json.domain_to_libxl(dom)
    c_info = dict(cfg.get("c_info", {}))
    c_info.pop("domid", None)           # xl remus sends domid 0 (omitted)
    cfg["c_info"] = c_info
    return cfg


def _fileno(fd: Any) -> int:
    if isinstance(fd, int):
        return fd
    return fd.fileno()


def stream_mode(fd: Any) -> str:
    """``blackhole`` | ``ready`` for a transport or a plain fd.

    (``banner``, a stream whose receiver banner is still to be read, is only
    known to the caller that opened it.)"""
    from .transport import BlackholeTransport
    if isinstance(fd, BlackholeTransport):
        return "blackhole"
    try:
        if os.path.samefile(f"/proc/self/fd/{_fileno(fd)}", "/dev/null"):
            return "blackhole"
    except OSError:
        pass
    return "ready"


def _default_checkpointer():
    """The trampoline, wrapped so that an HVM guest's device model is saved
    at the points libxl saves it (PV and PVH guests pass straight through)."""
    from .devicemodel import HvmCheckpointer
    return HvmCheckpointer(checkpointer_module().checkpointer())


def checkpointer_module():
    """The C trampoline (also importable as ``xen.lowlevel.checkpoint``)."""
    try:
        from .. import _checkpoint
    except ImportError as e:  # pragma: no cover - depends on the build
        raise errors.EnvironmentProblem(
            "the checkpoint trampoline (xen_remus_compat._checkpoint) is not "
            f"built ({e}); reinstall the package with libxen-dev present") from e
    return _checkpoint


class Loop:
    """One protection run: frames the stream and bounces the callbacks."""

    def __init__(self, domid: int, fd: int, *, config: Optional[dict],
                 blackhole: bool = False,
                 checkpointer: Optional[Callable[[], Any]] = None,
                 postsuspend: Optional[Callable] = None,
                 preresume: Optional[Callable] = None,
                 commit: Optional[Callable] = None,
                 interval: int = 0, flags: int = 0,
                 write_timeout: Optional[float] = None,
                 backchannel: Any = None,
                 capture: bool = False, capture_limit: Optional[int] = None,
                 in_flight: int = 1,
                 clock: Callable[[], float] = time.perf_counter,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.domid = domid
        self.fd = fd
        self.config = config
        self.blackhole = blackhole
        self.hooks = (postsuspend, preresume, commit)
        self.interval = interval
        self.flags = flags
        self.clock = clock
        self.monotonic = monotonic
        self.checkpointer = checkpointer
        #: seconds; None or 0: no deadline
        self.write_timeout = write_timeout
        #: a backchannel.PrimaryEnd: commit hooks wait for each ack (None:
        #: release after write, as xl does)
        self.back = backchannel
        #: libxc writes each epoch into memory, sent once the guest runs
        self.capture = capture
        self.capture_limit = capture_limit
        #: acknowledged mode: checkpoints sent and not yet committed, at
        #: most (the callback waits for the oldest's ack when it is reached)
        self.in_flight = int(in_flight)
        self._unacked: Deque[_Epoch] = deque()
        self.signals = DeferredSignals()
        self.stats = Stats()
        path = os.environ.get(STATS_ENV)
        self.stats_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                                0o644) if path else None

    # the three trampolines' Python side ------------------------------------
    def _suspend(self):
        # a safe point: the guest is suspended, nothing of the epoch written
        # (with checkpoints in flight the next one is: it settles them first)
        if not self._unacked:
            self.signals.deliver()
        now = self.clock()
        self.stats.suspended_at = now
        self.stats._epoch_python = 0.0
        cb = self.hooks[0]
        res = cb() if cb else None
        self.stats.add_python(self.clock() - now)
        return res

    def _postcopy(self):
        t0 = self.clock()
        cb = self.hooks[1]
        res = cb() if cb else None
        end = self.clock()
        self.stats.add_python(end - t0)
        # the trampoline resumes the guest right after this returns
        self.stats.pauses.append(end - self.stats.suspended_at)
        return res

    def _checkpoint(self):
        t0 = self.clock()
        sw.write_all(self.fd, sw.CHECKPOINT_END_RECORD)
        written = self.monotonic()
        self.stats.checkpoints += 1
        # our own cost of the epoch (framing + bounce), before user hooks
        self.stats.add_python(self.clock() - t0)
        self.stats.python_time.append(self.stats._epoch_python)
        epoch = _Epoch(self.stats.checkpoints, self.stats._epoch_python,
                       self.stats.pauses[-1] if self.stats.pauses else 0.0, written)
        if self.back is None:
            self._stats_line(epoch, None)
            res = self._commit()
            self._safe_point()
            return res
        # acknowledged: the guest runs while we wait; heartbeats may go
        # into the stream until we hand it back to libxc
        self._unacked.append(epoch)
        self.back.idle()
        try:
            # commit, in order, what the backup holds; wait only while the
            # bound of epochs in flight is reached (with 1: this epoch)
            while self._unacked:
                oldest = self._unacked[0]
                if len(self._unacked) < self.in_flight and not self.back.has_ack(oldest.n):
                    break
                res = self._settle(oldest)
                if not (res is None or res):
                    return res
        finally:
            self.back.busy()
        self._safe_point()
        return True

    def _settle(self, epoch: "_Epoch"):
        """Wait for ``epoch``'s ack, then run the commit hooks for it."""
        try:
            acked = self.back.wait_ack(epoch.n, self.write_timeout)
        except errors.CheckpointFailed as e:
            for lost in self._unacked:
                self._stats_line(lost, None)
            self._unacked.clear()
            raise errors.CheckpointFailed(
                f"{e}; guest running, protection stopped") from e
        self._unacked.popleft()
        self.stats.ack_latency.append(acked - epoch.written)
        self._stats_line(epoch, acked)
        return self._commit()

    def _drain(self) -> None:
        """Checkpointing stopped cleanly with epochs still in flight: wait
        (bounded by the write deadline) for their acks and commit them;
        one that does not come is left uncommitted, as after a failure."""
        if self.back is None or not self._unacked:
            return
        self.back.idle()
        try:
            while self._unacked:
                self._settle(self._unacked[0])
        except errors.CheckpointFailed as e:
            logger.warning("stopping: %s", e)
        finally:
            self.back.busy()

    def _stats_line(self, epoch: "_Epoch", acked: Optional[float]) -> None:
        if self.stats_fd is None:
            return
        # columns 1-3 are read by demo.py; the 4th and 5th (CLOCK_MONOTONIC,
        # s) let tests order the checkpoint and its ack against network output
        os.write(self.stats_fd, b"%d %.3f %.3f %.6f %s\n" % (
            epoch.n, epoch.python * 1e6, epoch.pause * 1e6, epoch.written,
            b"-" if acked is None else b"%.6f" % acked))

    def _commit(self):
        cb = self.hooks[2]
        return cb() if cb else None

    def _safe_point(self) -> None:
        """After a checkpoint's commits: act on a signal, once every
        checkpoint in flight is acknowledged and committed (a stop by
        signal settles them as a clean stop does)."""
        if self.signals.pending is None:
            return
        self._drain()
        self.signals.deliver()

    def run(self) -> Stats:
        """Open and probe the domain, write the preamble, run the trampoline;
        always leaves the guest running.

        The probe (can the hypervisor track this guest's dirty memory?) comes
        before the first byte of the stream, so a guest that cannot be
        protected (a PV guest on a hypervisor without shadow paging) fails
        without the backup ever creating a domain."""
        factory = self.checkpointer or _default_checkpointer
        cp = factory()
        default_action = None
        try:
            cp.open(self.domid)
            probe = getattr(cp, "probe", None)
            if probe is not None:
                probe()
                logger.info("domain %d: %s guest, suspended through %s", self.domid,
                            getattr(cp, "guest_type", "?"), getattr(cp, "suspend_path", "?"))
            sw.write_all(self.fd, sw.preamble(self.config, blackhole=self.blackhole))
            if self.write_timeout and hasattr(cp, "write_timeout"):
                cp.write_timeout = max(1, int(self.write_timeout * 1000))
            captured = self.capture and hasattr(cp, "capture")
            if captured:
                cp.capture = True
                if self.capture_limit:
                    cp.capture_limit = int(self.capture_limit)
            if self.back is not None:
                self.back.start()       # heartbeats, while the stream is ours
            try:
                with self.signals:
                    cp.start(self.fd, self._suspend, self._postcopy, self._checkpoint,
                             self.interval, self.flags)
                    self._drain()
            except DefaultAction as e:
                default_action = e.signo
            finally:
                # stopped by a failure: what was in flight is never committed
                for lost in self._unacked:
                    self._stats_line(lost, None)
                self._unacked.clear()
                if self.back is not None:
                    self.back.stop()
                if captured:
                    self.stats.capture = dict(cp.capture_stats)
        finally:
            # nothing may interrupt the resume: hold SIGINT/SIGTERM until the
            # guest runs again (they are delivered right after)
            masked = block_signals()
            try:
                cp.close()
            except Exception as e:   # resume failures are reported, not raised
                logger.error("closing the checkpointer: %s", e)
            finally:
                unblock_signals(masked)
                if self.stats_fd is not None:
                    os.close(self.stats_fd)
                    self.stats_fd = None
        if default_action is not None:
            die_by(default_action)         # the guest runs: now the default
        self.signals.after()
        return self.stats


#: How long a failed write waits for the backup's side to show why.
BACKUP_GONE_WAIT = 2.0


def _timed_out(e: BaseException, loop: "Loop") -> Optional[str]:
    """The one line for a backup that stopped taking the stream, if that
    is why checkpointing failed (the trampoline's deadline, or a write of
    ours refused by the socket's send timeout)."""
    code = getattr(e, "errno", None)
    if not loop.write_timeout or code not in (errnos.ETIMEDOUT, errnos.EAGAIN):
        return None
    if code == errnos.ETIMEDOUT:
        detail = str(e)
    else:
        detail = (f"the backup stopped taking the stream: a write blocked for "
                  f"the write timeout ({max(1, int(loop.write_timeout * 1000))} ms)")
    return f"{detail}; guest running, protection stopped"


def _with_backup_state(message: str, fd: Any) -> str:
    """Add why the backup went away, when the transport knows: libxc only
    says the write failed (xl-side.md §3.1: a refusing or dead receiver is
    seen as EPIPE/ECONNRESET on the stream)."""
    check = getattr(fd, "check_alive", None)
    if check is None:
        return message
    try:
        why = check(wait=0.0)
        if why is None and "write" in message.lower():
            why = check(wait=BACKUP_GONE_WAIT)    # it may still be exiting
    except Exception as e:           # a diagnostic must not hide the error
        logger.debug("checking the backup after a failed write: %s", e)
        return message
    return f"{message} ({why})" if why else message


def protect(domid: int, fd: Any, *, config: Optional[dict], mode: Optional[str] = None,
            postsuspend: Optional[Callable] = None,
            preresume: Optional[Callable] = None,
            commit: Optional[Callable] = None,
            interval: int = 0, flags: int = 0,
            on_start: Optional[Callable[[Loop], None]] = None,
            write_timeout: Optional[float] = DEFAULT_WRITE_TIMEOUT,
            acks: Optional[bool] = None, capture: Optional[bool] = None,
            capture_limit: Optional[int] = None, in_flight: int = 1) -> Stats:
    """Protect ``domid`` until a hook stops it, a signal arrives or the stream fails.

    ``fd`` is an int, a file-like object or a transport; ``mode`` is
    ``blackhole``, ``banner`` (read the receiver's banner first) or
    ``ready``, guessed from ``fd`` when None.  ``config`` is the
    libxl_domain_config for the xl header (ignored for blackhole).
    ``on_start`` sees the :class:`Loop` before the first checkpoint.
    ``write_timeout`` (seconds, None or 0: none) bounds every write of the
    stream and each epoch's writes while the guest is suspended (on a
    socket: every transport's fd is one).  Raises
    :class:`errors.CheckpointFailed` when the trampoline or the stream
    fails, or the backup stops taking the stream; the guest is left running
    either way.  SIGINT/SIGTERM handlers run at the loop's safe points
    (:class:`DeferredSignals`).

    ``acks``: None (default) waits for the backup's ack of each checkpoint
    before the commit hook when ``fd`` is a transport with a back channel
    (``TcpTransport(acks=True)`` to remus-receiver), and commits right
    after the write otherwise (stock xl); True requires a back channel;
    False never waits (``remus --sync``).  A checkpoint whose ack does not
    come (the connection closed, an error from the receiver, or neither an
    ack nor a heartbeat for ``write_timeout``) is never committed:
    :class:`errors.CheckpointFailed`.

    ``capture``: None (default) captures each epoch in memory while the
    guest is paused unless ``acks`` is False (``--sync``) or the stream is a
    blackhole; True/False force it.  ``capture_limit`` (bytes, None: the
    trampoline's 1 GiB) bounds one epoch in memory; a larger epoch is
    written through for its rest (said once), never dropped.

    ``in_flight`` (acknowledged mode, 1..:data:`MAX_IN_FLIGHT`): how many
    checkpoints may be sent and not yet committed.  With 1 (the default)
    each checkpoint callback waits for its own ack; with N the guest goes
    on to the next epoch while up to N-1 earlier ones await theirs, and
    their commit hooks run in order, as their acks come in, at the next
    checkpoints (and at a clean stop).  A hook that holds an epoch's state
    in the kernel's plug qdisc needs 1: ``sch_plug`` keeps the count of one
    closed epoch only (:class:`~xen_remus_compat.devices.netbuf.nic.BufferedNIC`).
    Without acknowledgements it has no effect."""
    if not 1 <= int(in_flight) <= MAX_IN_FLIGHT:
        raise ValueError(f"in_flight must be 1..{MAX_IN_FLIGHT}, not {in_flight!r}")
    if mode is None:
        mode = stream_mode(fd)
    raw = _fileno(fd)
    if mode == "banner":
        try:
            sw.read_banner(raw)
        except errors.CompatError as e:
            raise errors.CheckpointFailed(f"backup did not answer: {e}") from e
    back = None if acks is False else getattr(fd, "backchannel", None)
    if acks and back is None:
        raise errors.CheckpointFailed("acknowledged checkpoints need a back channel "
                                      "(remus-receiver, TcpTransport(acks=True))")
    loop = Loop(int(domid), raw, config=None if mode == "blackhole" else config,
                blackhole=(mode == "blackhole"), postsuspend=postsuspend,
                preresume=preresume, commit=commit, interval=interval, flags=flags,
                write_timeout=write_timeout, backchannel=back,
                capture=(acks is not False and mode != "blackhole") if capture is None
                else bool(capture), capture_limit=capture_limit, in_flight=in_flight)
    if on_start is not None:
        on_start(loop)
    ckpt = checkpointer_module()
    try:
        return loop.run()
    except (ckpt.error, OSError) as e:
        why = _timed_out(e, loop)
        if why is not None:
            raise errors.CheckpointFailed(why) from e
        if isinstance(e, ckpt.error):
            raise errors.CheckpointFailed(_with_backup_state(str(e), fd)) from e
        raise errors.CheckpointFailed(
            _with_backup_state(f"writing the stream: {e}", fd)) from e


def preflight(domid: int, *, checkpointer: Optional[Callable[[], Any]] = None
              ) -> Tuple[Optional[str], Optional[str]]:
    """Can ``domid`` be protected here?  ``(guest_type, suspend_path)``.

    Opens the domain, runs the trampoline's probe and closes it again, before
    any backup is contacted; raises :class:`errors.CheckpointFailed` with the
    trampoline's explanation (what is missing, what to do).  The guest is
    never suspended."""
    module = checkpointer_module()
    cp = (checkpointer or module.checkpointer)()
    try:
        cp.open(int(domid))
        try:
            cp.probe()
            return getattr(cp, "guest_type", None), getattr(cp, "suspend_path", None)
        finally:
            cp.close()
    except module.error as e:
        raise errors.CheckpointFailed(str(e)) from e


def resume_domain(domid: int) -> None:
    """Resume a domain left suspended (``Saver._resume``)."""
    ckpt = checkpointer_module()
    cp = ckpt.checkpointer()
    cp.open(int(domid))
    cp.close()
