"""The checkpoint loop: what ``xl remus`` sends, with the legacy Python hooks.

``run_saver`` is ``xen.remus.save.Saver.start``.  It frames the stream
exactly as xl does (xl-side.md section 3.5) around the libxc stream that the
C trampoline (``xen.lowlevel.checkpoint``) has libxenguest write into the
same fd:

1. wait for the receiver's banner (when the fd comes from a transport that
   has one and has not consumed it yet);
2. the xl header with the domain's libxl JSON (``c_info.domid`` dropped, as
   ``xl remus`` sends it), unless blackhole;
3. the libxl v2 header and ``LIBXC_CONTEXT``;
4. ``checkpointer.start``: libxc writes its records; after each libxc
   ``CHECKPOINT`` our checkpoint callback writes libxl's ``CHECKPOINT_END``
   *before* the user's commit hooks run, so the backup can apply the epoch
   while the hooks (disk acks, network release) proceed.

Page data is never copied through Python: only these few framing bytes are.

Callbacks follow legacy-api.md section 10.4: no arguments; ``None`` or
truthy means continue.  An exception in a callback stops checkpointing and
is re-raised from ``start()`` after the guest has been resumed.  Statistics
(pause time, our Python time per checkpoint) are kept in :class:`Stats`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

from .. import errors
from ..log import logger
from ..stream import writer as sw


@dataclass
class Stats:
    checkpoints: int = 0
    suspended_at: float = 0.0
    pauses: List[float] = field(default_factory=list)      # seconds, suspend -> resume
    python_time: List[float] = field(default_factory=list)  # seconds of our Python per epoch
    _epoch_python: float = 0.0
    _resumed_at: float = 0.0

    def add_python(self, seconds: float) -> None:
        self._epoch_python += seconds


#: a file to append one line per checkpoint to: ``<checkpoint> <python_us>
#: <pause_us> <end_monotonic_s>`` (the last: CLOCK_MONOTONIC right after
#: CHECKPOINT_END was written, before the commit hooks release any output)
STATS_ENV = "XEN_REMUS_COMPAT_STATS_FILE"


def _block_signals():
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _unblock_signals(old) -> None:
    import signal
    if old is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def libxl_config_for(vm) -> dict:
    """The libxl_domain_config xl would send for ``vm`` (a legacy VM)."""
    record = getattr(vm, "record", None)
    if record is not None and record.libxl_config is not None:
        cfg = dict(record.libxl_config)
    else:
        from ..config.formats import libxl_json
        if record is not None:
            dom = record.domain
        else:
            from ..config.formats import sxpr as sxprmod
            dom = sxprmod.domain_from_sxpr(vm.dominfo, source=f"domain {vm.domid}")
        cfg = libxl_json.domain_to_libxl(dom)
    c_info = dict(cfg.get("c_info", {}))
    c_info.pop("domid", None)           # xl remus sends domid 0 (omitted)
    cfg["c_info"] = c_info
    return cfg


def _fileno(fd: Any) -> int:
    if isinstance(fd, int):
        return fd
    return fd.fileno()


def _stream_mode(fd: Any) -> str:
    """``blackhole`` | ``banner`` (banner still to read) | ``ready``."""
    from ..legacy import save as legacy_save
    from .transport import BlackholeTransport, Transport
    if isinstance(fd, legacy_save.NullSocket) or isinstance(fd, BlackholeTransport):
        return "blackhole"
    if isinstance(fd, legacy_save.MigrationSocket):
        return "banner"
    if isinstance(fd, Transport):
        return "ready"
    try:
        if os.path.samefile(f"/proc/self/fd/{_fileno(fd)}", "/dev/null"):
            return "blackhole"
    except OSError:
        pass
    return "ready"


def checkpointer_module():
    """The trampoline (``xen.lowlevel.checkpoint``)."""
    from ..legacy import checkpoint
    return checkpoint


class Loop:
    """One protection run: frames the stream and bounces the callbacks."""

    def __init__(self, domid: int, fd: int, *, config: Optional[dict],
                 blackhole: bool = False,
                 postsuspend: Optional[Callable] = None,
                 preresume: Optional[Callable] = None,
                 commit: Optional[Callable] = None,
                 interval: int = 0, flags: int = 0,
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
        self.stats = Stats()
        path = os.environ.get(STATS_ENV)
        self.stats_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                                0o644) if path else None

    # the three trampolines' Python side ------------------------------------
    def _suspend(self):
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
        if self.stats_fd is not None:
            # columns 1-3 are read by demo.py; the 4th (CLOCK_MONOTONIC, s)
            # lets tests order the checkpoint against network output
            os.write(self.stats_fd, b"%d %.3f %.3f %.6f\n" % (
                self.stats.checkpoints, self.stats._epoch_python * 1e6,
                self.stats.pauses[-1] * 1e6 if self.stats.pauses else 0.0, written))
        cb = self.hooks[2]
        return cb() if cb else None

    def run(self) -> Stats:
        """Write the preamble, run the trampoline; always leaves the guest running."""
        sw.write_all(self.fd, sw.preamble(self.config, blackhole=self.blackhole))
        ckpt = checkpointer_module()
        cp = ckpt.checkpointer()
        try:
            cp.open(self.domid)
            cp.start(self.fd, self._suspend, self._postcopy, self._checkpoint,
                     self.interval, self.flags)
        finally:
            # nothing may interrupt the resume: hold SIGINT/SIGTERM until the
            # guest runs again (they are delivered right after)
            masked = _block_signals()
            try:
                cp.close()
            except Exception as e:   # resume failures are reported, not raised
                logger.error("closing the checkpointer: %s", e)
            finally:
                _unblock_signals(masked)
                if self.stats_fd is not None:
                    os.close(self.stats_fd)
                    self.stats_fd = None
        return self.stats


#: How long a failed write waits for the backup's side to show why.
BACKUP_GONE_WAIT = 2.0


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


def run_saver(saver) -> Stats:
    """``Saver.start``: legacy-api.md section 2, on the xl stream."""
    from ..legacy import save as legacy_save
    from ..legacy import vm as legacy_vm
    vm = saver.vm
    if getattr(vm, "record", None) is None or vm.record.source != "sim":
        legacy_vm.getshadowmem(vm)
    mode = _stream_mode(saver.fd)
    fd = _fileno(saver.fd)
    if mode == "banner":
        try:
            sw.read_banner(fd)
        except errors.CompatError as e:
            raise legacy_save.CheckpointError(f"backup did not answer: {e}") from e
    config = None if mode == "blackhole" else libxl_config_for(vm)
    loop = Loop(int(vm.domid), fd, config=config, blackhole=(mode == "blackhole"),
                postsuspend=saver.suspendcb, preresume=saver.resumecb,
                commit=saver.checkpointcb, interval=saver.interval,
                flags=saver.flags)
    saver.checkpointer = loop
    ckpt = checkpointer_module()
    try:
        stats = loop.run()
    except ckpt.error as e:
        raise legacy_save.CheckpointError(_with_backup_state(str(e), saver.fd)) from e
    except OSError as e:
        raise legacy_save.CheckpointError(
            _with_backup_state(f"writing the stream: {e}", saver.fd)) from e
    saver.stats = stats
    return stats


def resume_domain(domid: int) -> None:
    """Resume a domain left suspended (``Saver._resume``)."""
    ckpt = checkpointer_module()
    cp = ckpt.checkpointer()
    cp.open(int(domid))
    cp.close()
