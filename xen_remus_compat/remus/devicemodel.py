"""HVM guests: the device model's part of every checkpoint, as libxl does it.

An HVM guest's PC platform is completed by a device model (qemu-xen, one
process in dom0 per guest) whose state is not in libxc's stream.  ``xl
remus`` adds it to every checkpoint; the stock backup keeps the last one
and starts qemu from it at failover (xl-side.md §3.3, §3.6).  Facts from
Xen 4.17 (``libxl_dom_suspend.c``, ``libxl_qmp.c``, ``libxl_dom_save.c``,
``libxl_stream_write.c``, ``libxl_sr_stream_format.h``, ``xg_sr_save.c``):

* **when**: libxc's ``suspend`` callback (``libxl__domain_suspend``): once
  the guest is suspended, the device model is paused (QMP ``stop``) and
  saved (``xen-save-devices-state``) *while the guest is still suspended*,
  so device state and memory belong to the same instant.  Then libxc sends
  the last dirty pages and its ``CHECKPOINT``; its ``postcopy`` callback
  resumes: device model first (``cont``), then the guest
  (``xc_domain_resume(fast)``); only then its ``checkpoint`` callback runs,
  in which libxl writes the emulator records and ``CHECKPOINT_END``.  So
  the save cannot happen in the checkpoint callback (the guest runs again
  by then): :meth:`DeviceModel.suspend` runs in the suspend callback,
  :meth:`DeviceModel.resume` in postcopy, :meth:`DeviceModel.records` in
  the checkpoint callback;
* **how**: ``stop``; the save file (``/var/lib/xen/qemu-save.<domid>``,
  mode 0600) handed to qemu by ``add-fd`` (SCM_RIGHTS) and named
  ``/dev/fdset/N``; ``xen-save-devices-state`` with ``live`` (qemu >= 2.11;
  Remus saves are live: ``libxl_domain_remus_start`` sets ``dss->live =
  1``); ``cont``.  The QMP socket is ``<run dir>/qmp-libxl-<domid>``,
  ``/var/run/xen`` on Debian;
* **log-dirty**: libxc's ``switch_qemu_logdirty`` callback is
  ``xen-set-global-dirty-log {"enable": bool}`` (qemu's DMA into guest
  memory then lands in the dirty bitmap): :meth:`DeviceModel.set_dirty_log`
  is the trampoline's ``logdirty_cb``;
* **records** (libxl-migration-stream v2): ``EMULATOR_XENSTORE_DATA`` (type
  2, only when qemu published physmap entries under
  ``/local/domain/0/device-model/<domid>/physmap``: ``key\\0value\\0`` for
  ``physmap/<id>/{start_addr,size,name}``), then ``EMULATOR_CONTEXT`` (type
  3): u32 type, u32 length (8 + state), emulator sub-header u32 id
  (2 = qemu upstream) u32 index (0), the state, zero padding to 8.

Differences on purpose: one QMP connection for the whole protection instead
of one per checkpoint (libxl reconnects, greets and negotiates every time),
and so one fdset added once (the save file is truncated before each save
and qemu dups the fd each time); the record holds exactly qemu's output
(libxl opens the file without O_TRUNC and would send a longer, stale tail
after a shorter save).  docs/decisions.md, "HVM guests: the device model".
"""
from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..errors import DeviceModelError
from ..log import logger
from ..stream import libxl as sl
from .qmp import QMPClient

#: libxl__run_dir_path() and XEN_LIB_DIR of Debian's libxenlight 4.17
RUN_DIR = "/var/run/xen"
LIB_DIR = "/var/lib/xen"
#: seconds each QMP exchange may take (a stuck qemu keeps the guest paused)
QMP_TIMEOUT = 5.0
#: qemu from which xen-save-devices-state takes "live" (libxl_qmp.c)
LIVE_SINCE = (2, 11, 0)
AUTO = "auto"


def qmp_socket(domid: int, run_dir: str = RUN_DIR) -> str:
    """libxl__qemu_qmp_path()."""
    return f"{run_dir}/qmp-libxl-{int(domid)}"


def save_file(domid: int, lib_dir: str = LIB_DIR) -> str:
    """libxl__device_model_savefile()."""
    return f"{lib_dir}/qemu-save.{int(domid)}"


def physmap_dir(domid: int, dm_domid: int = 0) -> str:
    """DEVICE_MODEL_XS_PATH(dm_domid, domid, "/physmap")."""
    return f"/local/domain/{int(dm_domid)}/device-model/{int(domid)}/physmap"


class Xenstore:
    """The two xenstore reads libxl makes for EMULATOR_XENSTORE_DATA, through
    libxenstore (the process's own: Debian's, or simxen's stand-in)."""

    def __init__(self, library: str = "libxenstore.so.4") -> None:
        try:
            lib = ctypes.CDLL(library, use_errno=True)
        except OSError as e:
            raise DeviceModelError(f"cannot load {library}: {e}") from e
        lib.xs_open.restype = ctypes.c_void_p
        lib.xs_open.argtypes = [ctypes.c_ulong]
        lib.xs_close.argtypes = [ctypes.c_void_p]
        lib.xs_directory.restype = ctypes.POINTER(ctypes.c_char_p)
        lib.xs_directory.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                     ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint)]
        lib.xs_read.restype = ctypes.c_void_p
        lib.xs_read.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_char_p,
                                ctypes.POINTER(ctypes.c_uint)]
        self._free = ctypes.CDLL(None).free
        self._free.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.handle = lib.xs_open(0)
        if not self.handle:
            err = ctypes.get_errno()
            raise DeviceModelError(f"cannot open xenstore: {os.strerror(err)}")

    def directory(self, path: str) -> Optional[List[str]]:
        n = ctypes.c_uint(0)
        arr = self.lib.xs_directory(self.handle, 0, path.encode(), ctypes.byref(n))
        if not arr:
            return None
        try:
            return [arr[i].decode() for i in range(n.value)]
        finally:
            self._free(ctypes.cast(arr, ctypes.c_void_p))

    def read(self, path: str) -> Optional[str]:
        n = ctypes.c_uint(0)
        ptr = self.lib.xs_read(self.handle, 0, path.encode(), ctypes.byref(n))
        if not ptr:
            return None
        try:
            return ctypes.string_at(ptr, n.value).decode()
        finally:
            self._free(ptr)

    def close(self) -> None:
        if self.handle:
            self.lib.xs_close(self.handle)
            self.handle = None

    def physmap(self, domid: int, dm_domid: int = 0) -> List[Tuple[str, str]]:
        """libxl__save_emulator_xenstore_data: ``physmap/<id>/<key>`` pairs,
        [] when qemu published none; an entry missing a key is an error."""
        root = physmap_dir(domid, dm_domid)
        out: List[Tuple[str, str]] = []
        for entry in self.directory(root) or ():
            for key in ("start_addr", "size", "name"):
                value = self.read(f"{root}/{entry}/{key}")
                if value is None:
                    raise DeviceModelError(f"device model of domain {domid}: "
                                           f"{root}/{entry}/{key} missing in xenstore")
                out.append((f"physmap/{entry}/{key}", value))
        return out


@dataclass
class DeviceModelStats:
    """Seconds per checkpoint of each part (guest paused for suspend and
    resume; running for records)."""

    suspend: List[float] = field(default_factory=list)
    resume: List[float] = field(default_factory=list)
    records: List[float] = field(default_factory=list)
    state_bytes: List[int] = field(default_factory=list)

    def summary(self) -> str:
        """One line of medians (the guest's pause includes suspend and
        resume), or "" before the first save."""
        if not self.suspend:
            return ""
        med = lambda xs: sorted(xs)[len(xs) // 2] * 1000.0 if xs else 0.0  # noqa: E731
        return (f"{len(self.suspend)} saves, median stop+save {med(self.suspend):.1f} ms, "
                f"cont {med(self.resume):.1f} ms (guest paused), records "
                f"{med(self.records):.1f} ms (guest running), state "
                f"{sorted(self.state_bytes)[len(self.state_bytes) // 2] if self.state_bytes else 0}"
                " bytes")


class DeviceModel:
    """One HVM guest's qemu-xen, driven over QMP for checkpointing.

    Call order per checkpoint: :meth:`suspend` (guest suspended),
    :meth:`resume` (before the guest is resumed), :meth:`records` (bytes to
    write before ``CHECKPOINT_END``); :meth:`set_dirty_log` when libxc asks;
    :meth:`close` at the end (continues qemu if it is still stopped)."""

    emulator_id = sl.EMULATOR_QEMU_UPSTREAM

    def __init__(self, domid: int, *, socket_path: str, save_path: str,
                 timeout: float = QMP_TIMEOUT, live: bool = True,
                 xenstore: Optional[Callable[[int], Sequence[Tuple[str, str]]]] = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.domid = int(domid)
        self.socket_path = str(socket_path)
        self.save_path = str(save_path)
        self.live = live
        self.xenstore = xenstore
        self.clock = clock
        self.client = QMPClient(self.socket_path, timeout=timeout,
                                what=f"device model of domain {self.domid}")
        self.stats = DeviceModelStats()
        self.fdset: Optional[int] = None
        self._wfd = self._rfd = -1
        self._stopped = False           # by us, not continued yet
        self._saved = False             # a state waits for records()
        self._dirty_log = False

    # -- set-up ---------------------------------------------------------------
    def open(self) -> "DeviceModel":
        """Connect, negotiate, create the save file and hand it to qemu."""
        self.client.connect()
        try:
            self._wfd = os.open(self.save_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                | os.O_CLOEXEC, 0o600)
            self._rfd = os.open(self.save_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self.close()
            raise DeviceModelError(f"device model of domain {self.domid}: cannot "
                                   f"create the save file {self.save_path}: "
                                   f"{e.strerror}") from e
        try:
            ret = self.client.execute("add-fd", fds=[self._wfd])
            self.fdset = int(ret["fdset-id"])
        except (KeyError, TypeError, ValueError):
            self.close()
            raise DeviceModelError(f"device model of domain {self.domid}: QMP add-fd "
                                   f"on {self.socket_path}: no fdset-id in the answer",
                                   socket=self.socket_path, command="add-fd") from None
        except DeviceModelError:
            self.close()
            raise
        logger.debug("domain %d: device model on %s (qemu %s), state via fdset %d",
                     self.domid, self.socket_path,
                     ".".join(map(str, self.client.version())), self.fdset)
        return self

    # -- libxc's callbacks ----------------------------------------------------
    def set_dirty_log(self, enable: bool) -> bool:
        """libxc's switch_qemu_logdirty (the trampoline's ``logdirty_cb``).
        Switching it off at the end of a protection whose guest was destroyed
        finds qemu gone with it: nothing is left to switch, not an error."""
        try:
            self.client.execute("xen-set-global-dirty-log", {"enable": bool(enable)})
        except DeviceModelError as e:
            if enable:
                raise
            logger.debug("%s (switching log-dirty off)", e)
        self._dirty_log = bool(enable)
        return True

    def suspend(self) -> None:
        """With the guest suspended: pause qemu and save its state."""
        t0 = self.clock()
        self._saved = False
        os.lseek(self._wfd, 0, os.SEEK_SET)
        os.ftruncate(self._wfd, 0)
        args: dict = {"filename": f"/dev/fdset/{self.fdset}"}
        if self.client.version() >= LIVE_SINCE:
            args["live"] = self.live
        # one round trip for both (qemu runs them in order): the pause is
        # one QMP round trip shorter than libxl's stop-then-save
        self._stopped = True
        self.client.pipeline([("stop", None), ("xen-save-devices-state", args)])
        self._saved = True
        self.stats.suspend.append(self.clock() - t0)

    def resume(self) -> None:
        """Before the guest is resumed: let qemu run again."""
        t0 = self.clock()
        if self._stopped:
            self.client.execute("cont")
            self._stopped = False
        self.stats.resume.append(self.clock() - t0)

    def records(self) -> bytes:
        """The libxl records of the state saved by the last :meth:`suspend`:
        [EMULATOR_XENSTORE_DATA] EMULATOR_CONTEXT, ready to write before
        CHECKPOINT_END.  Each saved state is sent once."""
        t0 = self.clock()
        if not self._saved:
            raise DeviceModelError(f"device model of domain {self.domid}: no state "
                                   f"saved for this checkpoint (suspend() must run "
                                   f"while the guest is suspended)",
                                   socket=self.socket_path,
                                   command="xen-save-devices-state")
        size = os.fstat(self._rfd).st_size
        state = os.pread(self._rfd, size, 0)
        if len(state) != size:
            raise DeviceModelError(f"device model of domain {self.domid}: short read "
                                   f"of {self.save_path} ({len(state)} of {size})")
        self._saved = False
        out = b""
        if self.xenstore is not None:
            pairs = self.xenstore(self.domid)
            if pairs:
                out = sl.emulator_xenstore_record(list(pairs), emulator_id=self.emulator_id)
        out += sl.emulator_context_record(state, emulator_id=self.emulator_id)
        self.stats.state_bytes.append(size)
        self.stats.records.append(self.clock() - t0)
        return out

    save_record = records

    # -- the end ----------------------------------------------------------------
    def close(self) -> None:
        """Continue qemu if we left it stopped, release the fdset, disconnect,
        remove the save file.  Errors are logged: the guest must run."""
        summary = self.stats.summary()
        if summary:
            logger.info("device model of domain %d: %s", self.domid, summary)
        if self.client.connected:
            try:
                if self._stopped:
                    self.client.execute("cont")
                    self._stopped = False
                if self.fdset is not None:
                    self.client.execute("remove-fd", {"fdset-id": self.fdset})
            except DeviceModelError as e:
                logger.error("%s", e)
        self.client.close()
        self.fdset = None
        for fd in (self._wfd, self._rfd):
            if fd >= 0:
                os.close(fd)
        if self._wfd >= 0:
            try:
                os.unlink(self.save_path)
            except OSError:
                pass
        self._wfd = self._rfd = -1

    def __enter__(self) -> "DeviceModel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _sim_dir(sim_state_dir: Any) -> Optional[str]:
    if sim_state_dir != AUTO:
        return None if sim_state_dir is None else str(sim_state_dir)
    from ..sim import simxen
    if not simxen.active():
        return None
    state = os.environ.get("SIMXEN_STATE_DIR")
    if not state:                   # simxen records nothing; qemu needs a home
        import tempfile
        state = os.environ["SIMXEN_STATE_DIR"] = tempfile.mkdtemp(prefix="simxen-dm-")
    return state


def for_domain(domid: int, guest_type: Optional[str], *,
               sim_state_dir: Any = AUTO, timeout: float = QMP_TIMEOUT,
               live: bool = True, run_dir: str = RUN_DIR, lib_dir: str = LIB_DIR,
               xenstore: Any = AUTO) -> Optional[DeviceModel]:
    """The device model to save with each checkpoint, connected; None for
    guests that have none (``guest_type`` "pv", "pvh").

    ``sim_state_dir``: the simulation's state dir (its stand-in device model
    is started there on first use); ``"auto"``: the ``SIMXEN_STATE_DIR`` of a
    process running against simxen, else the real paths.  ``xenstore``: a
    callable ``domid -> [(key, value)]`` for EMULATOR_XENSTORE_DATA,
    ``"auto"`` reads qemu's physmap through libxenstore, None sends none.
    Raises :class:`DeviceModelError` before anything is sent when qemu
    cannot be reached."""
    if guest_type != "hvm":
        return None
    sim = _sim_dir(sim_state_dir)
    if sim is not None:
        from ..sim import devicemodel as simdm
        simdm.ensure(sim, domid)
        sock, save = str(simdm.socket_path(sim, domid)), str(simdm.save_path(sim, domid))
    else:
        sock, save = qmp_socket(domid, run_dir), save_file(domid, lib_dir)
    reader = None
    if xenstore == AUTO:
        try:
            reader = Xenstore().physmap
        except DeviceModelError as e:
            logger.warning("domain %d: no EMULATOR_XENSTORE_DATA (%s)", int(domid), e)
    elif xenstore is not None:
        reader = xenstore
    dm = DeviceModel(domid, socket_path=sock, save_path=save, timeout=timeout,
                     live=live, xenstore=reader)
    return dm.open()


class HvmCheckpointer:
    """A checkpointer (the trampoline's API) that also drives the device
    model of an HVM guest, at the points libxl does; PV and PVH guests pass
    straight through.  ``factory`` makes the real checkpointer.

    This is the device-model integration in one place, usable as
    ``engine.Loop(..., checkpointer=lambda: HvmCheckpointer(real))``: the
    emulator records are written to the stream right before the engine's
    checkpoint callback writes CHECKPOINT_END."""

    def __init__(self, real: Any, *, sim_state_dir: Any = AUTO,
                 timeout: float = QMP_TIMEOUT) -> None:
        self.real = real
        self.sim_state_dir = sim_state_dir
        self.timeout = timeout
        self.dm: Optional[DeviceModel] = None

    _OWN = ("real", "sim_state_dir", "timeout", "dm")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:                       # suspend_timeout and the like
            setattr(self.real, name, value)

    def open(self, domid: int) -> None:
        self.real.open(domid)
        try:
            self.dm = for_domain(domid, getattr(self.real, "guest_type", None),
                                 sim_state_dir=self.sim_state_dir, timeout=self.timeout)
        except BaseException:
            self.real.close()
            raise

    def start(self, fd: Any, suspend_cb=None, postcopy_cb=None, checkpoint_cb=None,
              interval: int = 0, flags: int = 0) -> Any:
        dm = self.dm
        if dm is None:
            return self.real.start(fd, suspend_cb, postcopy_cb, checkpoint_cb,
                                   interval, flags)
        raw = fd if isinstance(fd, int) else fd.fileno()

        def suspended():
            dm.suspend()
            return suspend_cb() if suspend_cb else None

        def postcopy():
            res = postcopy_cb() if postcopy_cb else None
            dm.resume()
            return res

        def checkpoint():
            data = memoryview(dm.records())
            while data:
                data = data[os.write(raw, data):]
            # no callback: one checkpoint, as the trampoline does
            return checkpoint_cb() if checkpoint_cb else False

        return self.real.start(fd, suspended, postcopy, checkpoint, interval, flags,
                               logdirty_cb=dm.set_dirty_log)

    def close(self) -> None:
        try:
            if self.dm is not None:
                self.dm.close()     # qemu continues before the guest resumes
        finally:
            self.dm = None
            self.real.close()
