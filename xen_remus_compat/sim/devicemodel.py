"""The stand-in device model of a simulated HVM guest: a small QMP server.

Why: an HVM guest's checkpoint includes its device model's state, which
libxl saves through QMP (xl-side.md §3.3, EMULATOR_CONTEXT).  On a machine
without Xen there is no qemu-xen serving the guest, so simxen's HVM guests
get this stand-in: it answers the QMP commands the engine uses
(``qmp_capabilities``, ``stop``, ``cont``, ``query-status``, ``add-fd``,
``remove-fd``, ``xen-save-devices-state``, ``xen-set-global-dirty-log``,
``query-version``), emits ``STOP``/``RESUME`` events as qemu does, and saves
a state blob that changes with every save and ties the device state to the
guest memory of that moment:

``QEVM`` u32be 3 (qemu's savevm magic and version), ``XRCSIMDM``, u32le n,
n bytes of JSON (:func:`decode_state`), then a filler the size of a real
qemu-xen state (8 KiB) derived from the save number.  The JSON says which
save this is, whether the device model was paused (``vm_state``) and the
guest suspended (``guest``) when it was taken, and ``memory``: a BLAKE2b of
the guest's page-version vector at that moment (:func:`memory_digest`), so a
receiver can prove that the device state it fails over to belongs to the
memory it fails over to.

It runs as a thread of the process that loads simxen (it reads the guest
through ``libsimxen``), on ``<state_dir>/qmp-libxl-<domid>``; every command
is appended to ``<state_dir>/qmp.log`` (``REALTIME COMMAND JSON-ARGS``).
"""
from __future__ import annotations

import array
import ctypes
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..remus.qmp import bind_or_connect

MAGIC = b"QEVM" + (3).to_bytes(4, "big")
TAG = b"XRCSIMDM"
FILLER = 8192
QEMU_VERSION = {"major": 7, "minor": 2, "micro": 0}


def socket_path(state_dir: os.PathLike, domid: int) -> Path:
    """Where the stand-in listens (libxl: ``/var/run/xen/qmp-libxl-<domid>``)."""
    return Path(state_dir) / f"qmp-libxl-{domid}"


def save_path(state_dir: os.PathLike, domid: int) -> Path:
    """The save file in the simulation (libxl: ``/var/lib/xen/qemu-save.<domid>``)."""
    return Path(state_dir) / f"qemu-save.{domid}"


def memory_digest(versions: bytes) -> str:
    """BLAKE2b-128 of a page-version vector (little-endian u64 per pfn)."""
    return hashlib.blake2b(versions, digest_size=16).hexdigest()


def digest_of_memory(memory: Dict[int, bytes], pages: int) -> str:
    """:func:`memory_digest` of a receiver's memory (pfn -> simpage bytes)."""
    from ..stream import simpage
    vec = array.array("Q", bytes(8 * pages))
    for pfn, data in memory.items():
        got = simpage.decode(data)
        if got is not None and got[0] == pfn and pfn < pages:
            vec[pfn] = got[1]
    if sys.byteorder != "little":
        vec.byteswap()
    return memory_digest(vec.tobytes())


def encode_state(info: dict) -> bytes:
    body = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
    seed = f"{info.get('domid')}:{info.get('save')}".encode()
    return MAGIC + TAG + struct.pack("<I", len(body)) + body + \
        hashlib.shake_128(seed).digest(FILLER)


def decode_state(blob: bytes) -> dict:
    """The JSON of a stand-in state blob; ValueError if it is not one."""
    head = len(MAGIC) + len(TAG)
    if blob[:len(MAGIC)] != MAGIC or blob[len(MAGIC):head] != TAG:
        raise ValueError("not a simulated device-model state (QEVM/XRCSIMDM)")
    (n,) = struct.unpack_from("<I", blob, head)
    info = json.loads(blob[head + 4:head + 4 + n])
    want = encode_state(info)
    if blob != want:
        raise ValueError("simulated device-model state corrupt (filler or length)")
    return info


class _Guest:
    """The simulated guest, read through libsimxen (same instance as the
    trampoline's: the library is already loaded in this process)."""

    def __init__(self, load: bool = True) -> None:
        self.lib = None
        self.pages = int(os.environ.get("SIMXEN_PAGES") or 16384)
        if not load:
            return
        try:
            from . import simxen
            lib = ctypes.CDLL(str(simxen.lib_dir() / "libsimxen.so.0"))
            lib.simxen_versions.restype = ctypes.c_void_p
            self.lib = lib
        except OSError:
            self.lib = None

    def look(self) -> Tuple[str, Optional[str]]:
        """("suspended" | "running" | "unknown", memory digest or None)."""
        if self.lib is None:
            return "unknown", None
        self.lib.simxen_lock()
        try:
            ptr = self.lib.simxen_versions()
            if not ptr:
                return "unknown", None
            state = "suspended" if self.lib.simxen_is_suspended() else "running"
            return state, memory_digest(ctypes.string_at(ptr, 8 * self.pages))
        finally:
            self.lib.simxen_unlock()


class SimDeviceModel:
    """The QMP server thread; ``start()``, ``stop()``; state in attributes."""

    def __init__(self, state_dir: os.PathLike, domid: int, *,
                 guest: Optional[_Guest] = None, delay: float = 0.0) -> None:
        self.state_dir = Path(state_dir)
        self.domid = int(domid)
        self.path = socket_path(state_dir, domid)
        self.guest = guest
        #: seconds each xen-save-devices-state takes (tests of timeouts)
        self.delay = delay
        self.status = "running"
        self.dirty_log = False
        self.saves = 0
        self.stops = 0
        self.conts = 0
        self.running_ns = 0
        self._since = time.monotonic_ns()
        self.fdsets: Dict[int, List[int]] = {}
        self.commands: List[str] = []
        self._listener: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._log = None

    # -- life cycle ---------------------------------------------------------
    def start(self) -> "SimDeviceModel":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        if self.guest is None:
            self.guest = _Guest()
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        bind_or_connect(lst, str(self.path), bind=True)
        lst.listen(4)
        lst.settimeout(0.2)
        self._listener = lst
        self._log = open(self.state_dir / "qmp.log", "a", buffering=1)
        self._thread = threading.Thread(target=self._serve, name=f"simdm-{self.domid}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
        for fds in self.fdsets.values():
            for fd in fds:
                os.close(fd)
        self.fdsets.clear()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- serving -----------------------------------------------------------
    def _serve(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._session(conn)
                except OSError:
                    pass

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        send = lambda msg: conn.sendall(json.dumps(msg).encode() + b"\r\n")  # noqa: E731
        send({"QMP": {"version": {"qemu": QEMU_VERSION,
                                  "package": "xen-remus-compat simulated device model"},
                      "capabilities": ["oob"]}})
        negotiated = False
        decoder = json.JSONDecoder()
        buf = b""
        pending: List[int] = []
        while not self._stop.is_set():
            try:
                data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 8)
            except socket.timeout:
                continue
            if not data:
                break
            pending.extend(fds)
            buf += data
            # as qemu's JSON streamer: objects back to back, newlines optional
            while True:
                text = buf.lstrip()
                if not text:
                    buf = b""
                    break
                try:
                    msg, end = decoder.raw_decode(text.decode("utf-8", "replace"))
                except ValueError:
                    if len(text) > 1 << 20 or b"\n" in text and \
                            text.rstrip().endswith(b"}"):
                        buf = b""
                        send({"error": {"class": "GenericError",
                                        "desc": "JSON parse error"}})
                    break
                buf = text[len(text.decode("utf-8", "replace")[:end].encode()):]
                try:
                    cmd = msg["execute"]
                except (KeyError, TypeError):
                    send({"error": {"class": "GenericError",
                                    "desc": "QMP input must be a JSON object "
                                            "with 'execute'"}})
                    continue
                args = msg.get("arguments") or {}
                if self._log is not None:
                    self._log.write(f"{time.time():.6f} {cmd} "
                                    f"{json.dumps(args, sort_keys=True)}\n")
                self.commands.append(cmd)
                if not negotiated and cmd != "qmp_capabilities":
                    reply = {"error": {"class": "CommandNotFound", "desc":
                                       "Expecting capabilities negotiation "
                                       "with 'qmp_capabilities'"}}
                else:
                    if cmd == "qmp_capabilities":
                        negotiated = True
                    reply, events = self._command(cmd, args, pending)
                    for ev in events:
                        send({"timestamp": _stamp(), "event": ev})
                if "id" in msg:
                    reply["id"] = msg["id"]
                send(reply)
        for fd in pending:
            os.close(fd)

    def _command(self, cmd: str, args: dict, pending: List[int]) -> Tuple[dict, List[str]]:
        ok: dict = {"return": {}}
        if cmd == "qmp_capabilities":
            return ok, []
        if cmd == "query-version":
            return {"return": {"qemu": QEMU_VERSION, "package": "simulated"}}, []
        if cmd == "query-status":
            return {"return": {"status": self.status, "singlestep": False,
                               "running": self.status == "running"}}, []
        if cmd == "stop":
            self.stops += 1
            if self.status == "running":
                self.running_ns += time.monotonic_ns() - self._since
                self.status = "paused"
                return ok, ["STOP"]
            return ok, []
        if cmd == "cont":
            self.conts += 1
            if self.status != "running":
                self.status = "running"
                self._since = time.monotonic_ns()
                return ok, ["RESUME"]
            return ok, []
        if cmd == "xen-set-global-dirty-log":
            self.dirty_log = bool(args.get("enable"))
            return ok, []
        if cmd == "add-fd":
            if not pending:
                return _generic("No file descriptor supplied via SCM_RIGHTS"), []
            fd = pending.pop(0)
            fdset = int(args.get("fdset-id", max(self.fdsets, default=-1) + 1))
            self.fdsets.setdefault(fdset, []).append(fd)
            return {"return": {"fdset-id": fdset, "fd": fd}}, []
        if cmd == "remove-fd":
            fds = self.fdsets.pop(int(args.get("fdset-id", -1)), None)
            if fds is None:
                return _generic("File descriptor named 'fdset-id:%s' not found"
                                % args.get("fdset-id")), []
            for fd in fds:
                os.close(fd)
            return ok, []
        if cmd == "xen-save-devices-state":
            return self._save(args), []
        return {"error": {"class": "CommandNotFound",
                          "desc": f"The command {cmd} has not been found"}}, []

    def _save(self, args: dict) -> dict:
        name = args.get("filename")
        if not isinstance(name, str):
            return _generic("Parameter 'filename' is missing")
        if self.delay:
            time.sleep(self.delay)
        self.saves += 1
        assert self.guest is not None
        guest, digest = self.guest.look()
        running = self.running_ns + (time.monotonic_ns() - self._since
                                     if self.status == "running" else 0)
        blob = encode_state({
            "domid": self.domid, "save": self.saves, "vm_state": self.status,
            "guest": guest, "memory": digest, "dirty_log": self.dirty_log,
            "live": bool(args.get("live", False)), "stops": self.stops,
            "running_ns": running,
        })
        try:
            if name.startswith("/dev/fdset/"):
                fds = self.fdsets.get(int(name[len("/dev/fdset/"):]), [])
                wfd = next((fd for fd in fds if _accmode(fd) == os.O_WRONLY),
                           None)
                if wfd is None:
                    return _generic(f"Could not dup FD for {name} flags 241")
                fd = os.dup(wfd)            # as qemu: a dup, closed after
            else:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o660)
            try:
                view = memoryview(blob)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except (OSError, ValueError) as e:
            return {"error": {"class": "GenericError", "desc": f"An IO error has occurred: {e}"}}
        return {"return": {}}


def _accmode(fd: int) -> int:
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def _generic(desc: str) -> dict:
    return {"error": {"class": "GenericError", "desc": desc}}


def _stamp() -> dict:
    now = time.time()
    return {"seconds": int(now), "microseconds": int((now % 1) * 1e6)}


_RUNNING: Dict[Tuple[str, int], SimDeviceModel] = {}
_LOCK = threading.Lock()


def ensure(state_dir: os.PathLike, domid: int) -> SimDeviceModel:
    """The stand-in device model of this process for (state_dir, domid),
    started on first use (the simulated guest's qemu is up as long as it)."""
    key = (str(Path(state_dir).resolve()), int(domid))
    with _LOCK:
        dm = _RUNNING.get(key)
        if dm is None:
            dm = _RUNNING[key] = SimDeviceModel(state_dir, domid).start()
        return dm


def stop_all() -> None:
    with _LOCK:
        for dm in _RUNNING.values():
            dm.stop()
        _RUNNING.clear()


if __name__ == "__main__":      # a stand-alone stand-in (no guest): benchmarks
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("state_dir")
    ap.add_argument("--domid", type=int, default=1)
    ns = ap.parse_args()
    srv = SimDeviceModel(ns.state_dir, ns.domid, guest=_Guest(load=False))
    srv.start()
    print(srv.path, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
