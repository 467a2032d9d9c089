"""Run the checkpoint trampoline against simxen, the simulated Xen.

Why: the trampoline (``xen_remus_compat._checkpoint``) is linked against
libxenctrl, libxenguest, libxenstore and libxenevtchn.  ``lowlevel/simxen``
builds stand-ins with the same SONAMEs and symbol versions that simulate one
PV domain in-process (design.md "Real components"; legacy-api.md §10), so the
same compiled extension runs on a machine without a hypervisor when a
process finds ``build/simxen`` first on ``LD_LIBRARY_PATH``.

This module builds that environment (:func:`environment`), re-executes a
command under it (:func:`reexec_if_needed`), loads the stand-ins into the
running process (:func:`activate`), destroys the simulated guest
(:func:`destroy`) and reads what simxen recorded (:func:`read_state`).  It
refuses to do any of that on a Xen host unless forced, so the simulation
can never hide a real hypervisor.  The recorded files are described in
docs/decisions.d/trampoline.md.
"""
from __future__ import annotations

import array
import ctypes
import json
import os
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import (Callable, Dict, Iterator, List, Mapping, Optional, Sequence,
                    Tuple)

from ..errors import EnvironmentProblem, InputError

ROOT = Path(__file__).resolve().parents[2]
#: Where a Xen host shows itself (either one is enough to refuse).
XEN_MARKS = ("/proc/xen/privcmd", "/dev/xen")
#: The stand-ins, in load order (dependencies first).
LIBRARIES = ("libsimxen.so.0", "libxenctrl.so.4.17", "libxenevtchn.so.1",
             "libxenstore.so.4", "libxenguest.so.4.17")
PATTERNS = ("random", "sequential", "hotspot")
SUSPEND_PATHS = ("evtchn", "xenstore")
TYPES = ("pv", "pvh", "hvm", "pvhvm")
FAULT_KINDS = ("open", "suspend", "write", "resume")
PAGE_SIZE = 4096


@dataclass(frozen=True)
class SimDomain:
    """The simulated guest, one field per ``SIMXEN_*`` variable.

    ``dirty_rate`` is pages dirtied per millisecond of run time; ``fail``
    lists faults ``kind[@N]`` (open, suspend@N: the guest ignores its N-th
    suspend request, write@N: the stream write fails in epoch N, resume@N:
    the first resume after the N-th suspension fails; repeat an item to
    make it fail again).
    """

    domid: int = 1
    name: str = "simguest"
    pages: int = 16384
    vcpus: int = 1
    dirty_rate: float = 5.0
    dirty_pattern: str = "random"
    seed: int = 1
    #: None: as the guest type does by default (PV: event channel; PVH, like
    #: the Debian 6.1 guest, none, so xenstore)
    suspend: Optional[str] = None
    type: str = "pv"
    fail: Tuple[str, ...] = ()
    #: False: a hypervisor built without CONFIG_SHADOW_PAGING (Debian's), on
    #: which a PV guest's log-dirty mode fails
    shadow_paging: bool = True

    def __post_init__(self) -> None:
        checks = (
            ("domid", 1 <= self.domid <= 0x7fef),
            ("pages", 1 <= self.pages <= 1 << 24),
            ("vcpus", 1 <= self.vcpus <= 128),
            ("dirty_rate", 0 <= self.dirty_rate <= 1e6),
            ("dirty_pattern", self.dirty_pattern in PATTERNS),
            ("seed", 0 <= self.seed < 1 << 64),
            ("suspend", self.suspend is None or self.suspend in SUSPEND_PATHS),
            ("type", self.type in TYPES),
            ("fail", all(_fault_ok(f) for f in self.fail)),
        )
        for name, ok in checks:
            if not ok:
                raise InputError(f"invalid simulated domain setting "
                                 f"{name}={getattr(self, name)!r}",
                                 source="simxen")

    def variables(self) -> Dict[str, str]:
        """The ``SIMXEN_*`` variables that describe this domain."""
        out = {
            "SIMXEN_DOMID": str(self.domid),
            "SIMXEN_NAME": self.name,
            "SIMXEN_PAGES": str(self.pages),
            "SIMXEN_VCPUS": str(self.vcpus),
            "SIMXEN_DIRTY_RATE": repr(float(self.dirty_rate)),
            "SIMXEN_DIRTY_PATTERN": self.dirty_pattern,
            "SIMXEN_SEED": str(self.seed),
            "SIMXEN_TYPE": self.type,
            "SIMXEN_FAIL": ",".join(self.fail),
        }
        if self.suspend is not None:
            out["SIMXEN_SUSPEND"] = self.suspend
        if not self.shadow_paging:
            out["SIMXEN_NO_SHADOW"] = "1"
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "SimDomain":
        """The domain an environment describes (unset = default)."""
        conv: Dict[str, Callable] = {
            "domid": int, "pages": int, "vcpus": int, "seed": int,
            "dirty_rate": float,
            "fail": lambda v: tuple(x for x in v.split(",") if x),
        }
        kw: Dict[str, object] = {}
        if env.get("SIMXEN_NO_SHADOW") == "1":
            kw["shadow_paging"] = False
        for f in fields(cls):
            if f.name == "shadow_paging":
                continue
            raw = env.get("SIMXEN_" + f.name.upper())
            if raw:
                try:
                    kw[f.name] = conv.get(f.name, str)(raw)
                except ValueError:
                    raise InputError(f"invalid SIMXEN_{f.name.upper()}={raw!r}",
                                     source="environment") from None
        return cls(**kw)


def _fault_ok(item: str) -> bool:
    kind, _, n = item.partition("@")
    return kind in FAULT_KINDS and (not n or (n.isdigit() and int(n) >= 1))


#: where a wheel or the Debian package ships the stand-ins (setup.py)
PACKAGED = Path(__file__).resolve().parent / "lib"


def lib_dir() -> Path:
    """``$XRC_SIMXEN_LIBDIR``; else the stand-ins shipped in the package
    (``sim/lib``: a wheel, the Debian package); else ``build/simxen`` of
    this source tree (``make native``)."""
    wanted = os.environ.get("XRC_SIMXEN_LIBDIR")
    if wanted:
        return Path(wanted)
    if (PACKAGED / LIBRARIES[0]).is_file() or not _source_tree():
        return PACKAGED
    return ROOT / "build" / "simxen"


def _source_tree() -> bool:
    return (ROOT / "lowlevel" / "simxen" / "simxen.mk").is_file()


def xen_host(exists: Callable[[str], bool] = os.path.exists) -> Optional[str]:
    """The first sign of a real Xen host, or None."""
    return next((mark for mark in XEN_MARKS if exists(mark)), None)


def available(libdir: Optional[Path] = None) -> Tuple[bool, str]:
    """Are the stand-ins built?  ``(ok, reason)``."""
    libdir = Path(libdir) if libdir else lib_dir()
    missing = [n for n in LIBRARIES if not (libdir / n).is_file()]
    if not missing:
        return True, ""
    where = f"{', '.join(missing)} missing in {libdir}"
    if os.environ.get("XRC_SIMXEN_LIBDIR"):
        return False, (f"the simulated Xen's libraries are not where "
                       f"XRC_SIMXEN_LIBDIR points ({where})")
    if _source_tree():
        return False, (f"the simulated Xen (simxen) is not built ({where}); "
                       f"run `make native` (or `make -C lowlevel simxen`)")
    return False, (f"the simulated Xen's libraries are not installed ({where}); "
                   f"this installation was built without them: reinstall "
                   f"xen-remus-compat from a wheel or Debian package built by "
                   f"its setup.py, or point XRC_SIMXEN_LIBDIR at them")


def _refuse_on_xen(force: bool, exists: Callable[[str], bool]) -> None:
    mark = xen_host(exists)
    if mark and not force:
        raise EnvironmentProblem(
            f"refusing to simulate Xen on a Xen host ({mark} exists); "
            f"pass force=True (SIMXEN_FORCE=1) to override", source="simxen")


def environment(state_dir: Optional[os.PathLike] = None,
                domain: SimDomain = SimDomain(), *,
                base: Optional[Mapping[str, str]] = None,
                libdir: Optional[os.PathLike] = None,
                force: bool = False,
                exists: Callable[[str], bool] = os.path.exists
                ) -> Dict[str, str]:
    """The environment of a child process that runs against simxen.

    ``base`` (default ``os.environ``) loses every ``SIMXEN_*`` variable it
    had; the stand-ins' directory goes first on ``LD_LIBRARY_PATH``.
    ``state_dir`` is where simxen records run states and version vectors.
    """
    _refuse_on_xen(force, exists)
    libdir = Path(libdir) if libdir else lib_dir()
    ok, why = available(libdir)
    if not ok:
        raise EnvironmentProblem(why, source="simxen")
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith("SIMXEN_")}
    env.update(domain.variables())
    env["SIMXEN_ENABLE"] = "1"
    if force:
        env["SIMXEN_FORCE"] = "1"
    if state_dir is not None:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        env["SIMXEN_STATE_DIR"] = str(Path(state_dir).resolve())
    old = env.get("LD_LIBRARY_PATH")
    env["LD_LIBRARY_PATH"] = str(libdir.resolve()) + (":" + old if old else "")
    return env


def active(env: Mapping[str, str] = os.environ) -> bool:
    """Does this process run against simxen already?"""
    first = env.get("LD_LIBRARY_PATH", "").split(":")[0]
    return env.get("SIMXEN_ENABLE") == "1" and bool(first) and \
        Path(first).resolve() == lib_dir().resolve()


def reexec_if_needed(args: Sequence[str], *,
                     state_dir: Optional[os.PathLike] = None,
                     force: bool = False) -> Optional[int]:
    """Run ``python ARGS`` under simxen unless this process already is.

    Returns None when the caller already runs against simxen (go on),
    else the child's exit status.  The child's domain comes from the
    caller's ``SIMXEN_*`` variables.  Ctrl-C reaches the child through the
    terminal; SIGTERM is forwarded, and the child gets SIGTERM too when this
    process dies without forwarding it (SIGKILL): it never protects on its
    own (:func:`die_with_parent`).
    """
    if active():
        die_with_parent()
        return None
    force = force or os.environ.get("SIMXEN_FORCE") == "1"
    env = environment(state_dir or os.environ.get("SIMXEN_STATE_DIR"),
                      SimDomain.from_env(os.environ), force=force)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env[PARENT_ENV] = str(os.getpid())
    proc = subprocess.Popen([sys.executable, *args], env=env)
    forwarded = []

    def forward(signo, frame):
        forwarded.append(signo)
        proc.send_signal(signo)

    old = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:
                continue            # the child got it too and decides
    finally:
        # the child has stopped: a late repeat must not kill us (143)
        signal.signal(signal.SIGTERM, signal.SIG_IGN if forwarded else old)
    return 128 - rc if rc < 0 else rc


#: the pid of the :func:`reexec_if_needed` wrapper, in its child's environment
PARENT_ENV = "XRC_SIMXEN_WRAPPER_PID"
#: prctl(2)
PR_SET_PDEATHSIG = 1


def die_with_parent(signo: int = signal.SIGTERM) -> bool:
    """In the child of :func:`reexec_if_needed`: be sent ``signo`` when the
    wrapper dies (``PR_SET_PDEATHSIG``), as if it had forwarded a SIGTERM,
    so the guest is resumed and buffers removed rather than protected by an
    orphan nobody controls.  The variable is consumed (commands this process
    starts are not the wrapper's children).  True when armed."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None or not parent.isdigit():
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signo), 0, 0, 0) != 0:
        raise EnvironmentProblem("prctl(PR_SET_PDEATHSIG): "
                                 + os.strerror(ctypes.get_errno()), source="simxen")
    if os.getppid() != int(parent):     # it died before we could ask
        os.kill(os.getpid(), signo)
    return True


def run(args: Sequence[str], state_dir: Optional[os.PathLike] = None,
        domain: SimDomain = SimDomain(), *, force: bool = False,
        **kw) -> "subprocess.CompletedProcess":
    """``subprocess.run(args)`` against simxen (with this tree importable)."""
    env = environment(state_dir, domain, base=kw.pop("env", None), force=force)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run(list(args), env=env, **kw)


def _loaded(name: str) -> bool:
    with open("/proc/self/maps") as maps:
        return any(line.rstrip().endswith("/" + name) for line in maps)


def activate(state_dir: Optional[os.PathLike] = None,
             domain: SimDomain = SimDomain(), *, force: bool = False,
             exists: Callable[[str], bool] = os.path.exists) -> None:
    """Load the stand-ins into this process before the trampoline is.

    The dynamic linker then binds the extension's DT_NEEDED sonames to
    them.  Too late once the real libraries are loaded: that raises.
    """
    if _loaded("libxenctrl.so.4.17") and not _loaded("libsimxen.so.0"):
        raise EnvironmentProblem("the real libxenctrl is already loaded in "
                                 "this process", source="simxen")
    env = environment(state_dir, domain, force=force, exists=exists)
    for key, value in env.items():
        if key.startswith("SIMXEN_"):
            os.environ[key] = value
    libdir = lib_dir()
    for name in LIBRARIES:
        ctypes.CDLL(str(libdir / name), mode=ctypes.RTLD_GLOBAL)


def destroy(domid: int) -> None:
    """``xl destroy`` for the simulated guest of this process."""
    if not _loaded("libsimxen.so.0"):
        raise EnvironmentProblem("this process does not run against simxen",
                                 source="simxen")
    lib = ctypes.CDLL(str(lib_dir() / "libsimxen.so.0"), use_errno=True)
    lib.simxen_lock()
    try:
        rc = lib.simxen_destroy(ctypes.c_uint32(int(domid)))
    finally:
        lib.simxen_unlock()
    if rc:
        err = ctypes.get_errno()
        raise EnvironmentProblem(f"cannot destroy simulated domain {domid}: "
                                 f"{os.strerror(err)}", source="simxen")


# --- what simxen recorded --------------------------------------------------


@dataclass(frozen=True)
class RunState:
    """One line of runstate.log."""

    time: float             # CLOCK_REALTIME (as the PROF lines)
    monotonic: float
    state: str              # running | suspended | destroyed
    suspensions: int


@dataclass(frozen=True)
class Checkpoint:
    """One line of checkpoints.log: written before the CHECKPOINT record."""

    save: int               # 1-based xc_domain_save call in the process
    number: int             # 1-based checkpoint in that save
    time: float
    pages_sent: int         # PAGE_DATA pages of that epoch


@dataclass
class SimState:
    """Everything under a ``SIMXEN_STATE_DIR``."""

    state_dir: Path
    domain: dict = field(default_factory=dict)
    runstates: List[RunState] = field(default_factory=list)
    checkpoints: List[Checkpoint] = field(default_factory=list)

    @property
    def final_state(self) -> Optional[str]:
        return self.runstates[-1].state if self.runstates else None

    def never_left_suspended(self) -> bool:
        """Every suspension was followed by a resume (or a destroy)."""
        return self.final_state in ("running", "destroyed")

    def suspended_intervals(self) -> List[Tuple[float, float]]:
        """(suspend, resume) monotonic times, seconds."""
        out, start = [], None
        for rs in self.runstates:
            if rs.state == "suspended":
                start = rs.monotonic
            elif start is not None:
                out.append((start, rs.monotonic))
                start = None
        return out

    def versions(self, number: int, save: int = 1) -> "array.array":
        """The page-version vector at checkpoint ``number`` of ``save``.

        versions.log holds, per checkpoint, the pages whose version changed
        since the previous checkpoint of the same save (all pages in the
        first); the vector is rebuilt by applying them in order.
        """
        for n, vec in self.iter_versions(save):
            if n == number:
                return array.array("Q", vec)
        raise EnvironmentProblem(f"no recorded versions for checkpoint {number} "
                                 f"of save {save}", source=str(self.state_dir))

    def iter_versions(self, save: int = 1) -> Iterator[Tuple[int, "array.array"]]:
        """``(number, vector)`` for every recorded checkpoint of ``save``, in
        order; the vector is updated in place (copy it to keep it)."""
        vec = array.array("Q", bytes(8 * self.domain["pages"]))
        for entry_save, n, pairs in self._version_entries():
            if entry_save == save:
                items = iter(pairs)
                for pfn, version in zip(items, items):
                    vec[pfn] = version
                yield n, vec

    def _version_entries(self) -> Iterator[Tuple[int, int, "array.array"]]:
        path = self.state_dir / "versions.log"
        words = array.array("Q")
        words.frombytes(path.read_bytes() if path.exists() else b"")
        if sys.byteorder != "little":
            words.byteswap()
        at = 0
        while at + 3 <= len(words):
            save, n, count = words[at:at + 3]
            end = at + 3 + 2 * count
            if end > len(words):
                break                   # a torn last entry: the process died
            yield save, n, words[at + 3:end]
            at = end


def read_state(state_dir: os.PathLike) -> SimState:
    """Parse domain.json, runstate.log and checkpoints.log (versions.log is
    read on demand by :meth:`SimState.versions`)."""
    root = Path(state_dir)
    st = SimState(root)
    if (root / "domain.json").exists():
        st.domain = json.loads((root / "domain.json").read_text())
    for name, parse, into in (("runstate.log", _runstate, st.runstates),
                              ("checkpoints.log", _checkpoint,
                               st.checkpoints)):
        path = root / name
        if not path.exists():
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            try:
                into.append(parse(line.split()))
            except (ValueError, IndexError):
                raise EnvironmentProblem(f"unreadable line {line!r}",
                                         source=str(path), line=lineno) from None
    return st


def _runstate(parts: List[str]) -> RunState:
    real, mono, state, count = parts
    return RunState(float(real), float(mono), state, int(count))


def _checkpoint(parts: List[str]) -> Checkpoint:
    save, number, real, sent = parts
    return Checkpoint(int(save), int(number), float(real), int(sent))


# --- replaying a simxen stream against what simxen recorded ---------------


@dataclass
class Replay:
    """What :func:`replay` found: complete checkpoints and every mismatch."""

    checkpoints: int = 0
    checkpoint_ends: int = 0        # libxl CHECKPOINT_END right after each
    pages: int = 0                  # PAGE_DATA pages read
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


_REC = (0x01, 0x0E, 0x00)           # PAGE_DATA, CHECKPOINT, END (libxc)
_CHECKPOINT_END = (4).to_bytes(4, "little") + bytes(4)   # libxl record 4


def replay(stream: os.PathLike, state: SimState, *, save: int = 1,
           max_problems: int = 20) -> Replay:
    """Rebuild the guest's memory from a libxc stream written by simxen and
    compare it, at every CHECKPOINT record, with the version vector simxen
    recorded for that checkpoint; page bytes must follow the simpage
    contract.  A libxl CHECKPOINT_END right after a CHECKPOINT (what the
    engine's checkpoint callback writes) is accepted and counted.  Record
    framing beyond that is :mod:`.stream.verify`'s business.
    """
    from ..stream import simpage

    data = memoryview(Path(stream).read_bytes())
    rep = Replay()
    memory: Dict[int, int] = {}
    recorded = state.iter_versions(save)

    def problem(msg: str) -> None:
        if len(rep.problems) < max_problems:
            rep.problems.append(msg)

    if bytes(data[:8]) != b"\xff" * 8 or bytes(data[8:12]) != b"XENF":
        problem("not a libxc stream (image header)")
        return rep
    off = 24 + 16
    while off + 8 <= len(data):
        rtype, length = struct.unpack_from("<II", data, off)
        start = off + 8
        if start + length > len(data):
            break                   # truncated: the receiver fails over
        body = data[start:start + length]
        off = start + length + (-length % 8)
        if rtype == _REC[0]:
            count = struct.unpack_from("<I", body, 0)[0]
            pfns = struct.unpack_from(f"<{count}Q", body, 8)
            pos = 8 + 8 * count
            for pfn in pfns:
                page = bytes(body[pos:pos + PAGE_SIZE])
                pos += PAGE_SIZE
                got = simpage.decode(page)
                if got is None or got[0] != pfn & ((1 << 52) - 1):
                    problem(f"offset {start}: page for pfn {pfn:#x} does not "
                            f"follow the simpage contract")
                    continue
                memory[got[0]] = got[1]
                rep.pages += 1
        elif rtype == _REC[1]:
            rep.checkpoints += 1
            n, vec = next(recorded, (None, None))
            if n != rep.checkpoints:
                problem(f"checkpoint {rep.checkpoints}: no recorded versions")
                break
            bad = [pfn for pfn in range(len(vec)) if memory.get(pfn) != vec[pfn]]
            if bad:
                problem(f"checkpoint {rep.checkpoints}: {len(bad)} pages differ "
                        f"from the recorded versions (first pfn {bad[0]:#x}: "
                        f"stream {memory.get(bad[0])}, guest {vec[bad[0]]})")
            if bytes(data[off:off + 8]) == _CHECKPOINT_END:
                rep.checkpoint_ends += 1
                off += 8
        elif rtype == _REC[2]:
            break
    return rep
