"""The qemu tier's harness: boot Debian's own kernel under qemu (TCG) and run
a script inside it, with this host's ``/`` mounted read-only as the root.

Why: network output commit needs the ``plug`` qdisc (legacy-api.md §5.5, §7;
xl-side.md §2.5), and a host kernel may lack it (``CONFIG_NET_SCH_PLUG``
unset, as on the development machines).  Debian's stock kernel has it as a
module, so the tier fetches ``linux-image-amd64`` with apt, unpacks it into
``build/qemu/`` (never touching ``/boot``), and boots it with a tiny busybox
initramfs whose ``/init``:

1. loads the modules (dependencies first, from each module's ``depends=``);
2. mounts the host's ``/`` over virtio-9p, read-only, at ``/host``, plus
   proc, sys, dev, a tmpfs on ``/run`` (``/var/run`` links there) and a
   tmpfs layer over the host's ``/tmp`` (overlayfs): the writable places;
3. mounts a second, writable 9p share (the run directory) at
   ``/run/xrc-out`` and runs ``run.sh`` from it chrooted into ``/host``;
4. prints ``XRC-VM-EXIT <rc>`` and powers off.

qemu's own exit status says nothing about the script, so results come back
through files in the run directory (and the console log, kept beside them).

Run by hand: ``.venv/bin/python -m tests.qemu.vm -- <command>``, or
``scripts/qemu-tier.sh`` (docs/decisions.d/qemu.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import pathlib
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "build" / "qemu"
QEMU = "qemu-system-x86_64"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
KERNEL_METAPACKAGE = "linux-image-amd64"
#: what the tier needs; their dependencies are added from the modules' own
#: ``depends=`` (the .deb ships no modules.dep: depmod runs at install)
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay",
           "sch_plug", "ifb", "veth", "act_mirred", "cls_u32", "sch_ingress")
HOST_TAG, OUT_TAG = "xrchost", "xrcout"
OUT_MOUNT = "/run/xrc-out"              # where run.sh and the results live, in the VM
EXIT_MARK = "XRC-VM-EXIT"
FAIL_MARK = "XRC-VM-FAIL"
APT_OPTS = ("-o", "APT::Sandbox::User=root")   # root downloads into our own dir

Runner = Callable[..., subprocess.CompletedProcess]


class Unavailable(RuntimeError):
    """The tier cannot run here; the message says what is missing and how to get it."""


def _run(argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, **kw)


# -- the kernel -----------------------------------------------------------------
@dataclasses.dataclass
class Kernel:
    """A cached kernel: vmlinuz and the modules to load, in load order."""

    directory: pathlib.Path
    package: str
    version: str
    release: str
    modules: List[str]

    @property
    def vmlinuz(self) -> pathlib.Path:
        return self.directory / "vmlinuz"

    def module_path(self, name: str) -> pathlib.Path:
        return self.directory / "modules" / f"{name}.ko"


def modinfo_depends(ko: bytes) -> List[str]:
    """The ``depends=`` of a module's .modinfo, names normalised to underscores."""
    for field in ko.split(b"\0"):
        if field.startswith(b"depends="):
            return [d.replace("-", "_") for d in field[8:].decode().split(",") if d]
    return []


def module_index(moddir: pathlib.Path) -> Dict[str, pathlib.Path]:
    """``{module name: file}`` for every .ko under ``moddir``."""
    index = {}
    for dirpath, _dirs, files in os.walk(moddir):
        for f in files:
            if f.endswith(".ko"):
                index[f[:-3].replace("-", "_")] = pathlib.Path(dirpath) / f
    return index


def load_order(wanted: Iterable[str], depends: Callable[[str], List[str]]) -> List[str]:
    """``wanted`` plus their dependencies, each after what it depends on."""
    order: List[str] = []
    visiting = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"module dependency cycle through {name}")
        visiting.add(name)
        for dep in depends(name):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def _apt_package(meta: str, run: Runner) -> Tuple[str, str]:
    """The versioned image package the metapackage depends on, and its version."""
    proc = run(["apt-cache", "depends", meta])
    m = re.search(r"^\s*Depends:\s*(linux-image-\S+)", proc.stdout or "", re.M)
    if proc.returncode or not m:
        raise Unavailable(f"apt does not know {meta} ({(proc.stderr or '').strip() or 'no Depends'});"
                          " run 'apt-get update' first")
    pkg = m.group(1)
    pol = run(["apt-cache", "policy", pkg])
    v = re.search(r"Candidate:\s*(\S+)", pol.stdout or "")
    return pkg, v.group(1) if v else "?"


def fetch_kernel(build_dir: pathlib.Path = BUILD_DIR, *, modules: Sequence[str] = MODULES,
                 run: Runner = _run, refresh: bool = False,
                 log: Callable[[str], None] = lambda s: None) -> Kernel:
    """Debian's kernel and the modules we load, cached in ``build_dir/kernel``.

    A cache that has vmlinuz and every wanted module is used as it is (no
    apt call: the tier runs offline once fetched); ``refresh`` refetches.
    """
    build_dir.mkdir(parents=True, exist_ok=True)
    cache = build_dir / "kernel"
    with open(build_dir / ".lock", "w") as lockf:
        fcntl.lockf(lockf, fcntl.LOCK_EX)
        if not refresh:
            k = _cached_kernel(cache, modules)
            if k is not None:
                return k
        for tool in ("apt-get", "apt-cache", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} not found: the qemu tier takes Debian's kernel "
                                  f"package ({KERNEL_METAPACKAGE}) and needs apt")
        work = pathlib.Path(tempfile.mkdtemp(prefix="fetch-", dir=build_dir))
        try:
            try:
                pkg, version = _apt_package(KERNEL_METAPACKAGE, run)
                _download(pkg, work, run)
            except Unavailable:
                if os.geteuid() != 0:
                    raise
                log("apt lists look stale: apt-get update")
                up = run(["apt-get", "update", "-qq"])
                if up.returncode:
                    raise Unavailable(f"apt-get update failed: {up.stderr.strip()}")
                pkg, version = _apt_package(KERNEL_METAPACKAGE, run)
                _download(pkg, work, run)
            deb = next(work.glob("*.deb"))
            log(f"unpacking {deb.name}")
            unpacked = work / "root"
            proc = run(["dpkg-deb", "-x", str(deb), str(unpacked)])
            if proc.returncode:
                raise Unavailable(f"dpkg-deb -x {deb.name}: {proc.stderr.strip()}")
            new = work / "kernel"
            k = _install_cache(unpacked, new, pkg, version, modules)
            if cache.exists():
                shutil.rmtree(cache)
            new.rename(cache)
            k.directory = cache
            return k
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _download(pkg: str, where: pathlib.Path, run: Runner) -> None:
    proc = run(["apt-get", *APT_OPTS, "download", pkg], cwd=str(where))
    if proc.returncode or not list(where.glob("*.deb")):
        raise Unavailable(f"apt-get download {pkg} failed: {proc.stderr.strip()}")


def _install_cache(unpacked: pathlib.Path, dest: pathlib.Path, pkg: str, version: str,
                   modules: Sequence[str]) -> Kernel:
    images = sorted((unpacked / "boot").glob("vmlinuz-*"))
    if not images:
        raise Unavailable(f"{pkg} has no /boot/vmlinuz-*")
    release = images[-1].name[len("vmlinuz-"):]
    index = module_index(unpacked / "lib" / "modules" / release)
    missing = [m for m in modules if m not in index]
    if missing:
        raise Unavailable(f"{pkg} ({release}) lacks modules {missing} (built in or absent?)")
    cache: Dict[str, List[str]] = {}

    def depends(name: str) -> List[str]:
        if name not in cache:
            if name not in index:
                raise Unavailable(f"{pkg}: module dependency {name} not found")
            cache[name] = modinfo_depends(index[name].read_bytes())
        return cache[name]

    order = load_order(modules, depends)
    (dest / "modules").mkdir(parents=True)
    shutil.copy2(images[-1], dest / "vmlinuz")
    for name in order:
        shutil.copy2(index[name], dest / "modules" / f"{name}.ko")
    config = unpacked / "boot" / f"config-{release}"
    if config.exists():
        shutil.copy2(config, dest / "config")
    meta = {"package": pkg, "version": version, "release": release,
            "wanted": list(modules), "load_order": order}
    (dest / "KERNEL.json").write_text(json.dumps(meta, indent=1) + "\n")
    return Kernel(dest, pkg, version, release, order)


def _cached_kernel(cache: pathlib.Path, modules: Sequence[str]) -> Optional[Kernel]:
    try:
        meta = json.loads((cache / "KERNEL.json").read_text())
    except (OSError, ValueError):
        return None
    k = Kernel(cache, meta["package"], meta["version"], meta["release"], meta["load_order"])
    if not set(modules) <= set(k.modules) or not k.vmlinuz.is_file():
        return None
    if not all(k.module_path(m).is_file() for m in k.modules):
        return None
    return k


# -- the initramfs ----------------------------------------------------------------
def _newc(name: str, mode: int, data: bytes = b"", *, ino: int,
          rdev: Tuple[int, int] = (0, 0)) -> bytes:
    """One ``newc`` (SVR4, no CRC) cpio member, as the kernel's unpacker reads it."""
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def cpio_newc(members: Iterable[Tuple[str, int, bytes, Tuple[int, int]]]) -> bytes:
    """An archive of ``(name, mode, data, (rdevmajor, rdevminor))``, with trailer."""
    out = [_newc(name, mode, data, ino=i, rdev=rdev)
           for i, (name, mode, data, rdev) in enumerate(members, 1)]
    out.append(_newc("TRAILER!!!", 0, ino=0))
    return b"".join(out)


INIT = r"""#!/bin/busybox sh
# /init of the qemu tier's initramfs (tests/qemu/vm.py)
/bin/busybox mkdir -p /proc /sys /dev /host
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "@FAIL@ $*"; sync; poweroff -f; sleep 5; }
for m in $(cat /etc/xrc-modules); do
    insmod /lib/modules/$m.ko || fail "insmod $m"
done
opts=trans=virtio,version=9p2000.L,msize=524288
mount -t 9p -o $opts,ro,cache=loose @HOST@ /host || fail "mount the host root over 9p"
mount -t proc proc /host/proc || fail "mount /host/proc"
mount -t sysfs sysfs /host/sys || fail "mount /host/sys"
mount -t devtmpfs devtmpfs /host/dev || fail "mount /host/dev"
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm
mount -t tmpfs -o mode=0755 tmpfs /host/run || fail "tmpfs on /run"
# /tmp: the host's, read-only, under a writable tmpfs layer (a checkout or a
# venv under /tmp stays visible); plain tmpfs if overlayfs refuses 9p
mkdir -p /ovl && mount -t tmpfs tmpfs /ovl && mkdir -p /ovl/upper /ovl/work
chmod 1777 /ovl/upper
if ! mount -t overlay overlay -o lowerdir=/host/tmp,upperdir=/ovl/upper,workdir=/ovl/work /host/tmp; then
    echo "XRC-VM: overlayfs refused, /tmp is an empty tmpfs"
    mount -t tmpfs -o mode=1777 tmpfs /host/tmp || fail "a writable /tmp"
fi
mkdir -p /host@OUT@
mount -t 9p -o $opts @OUTTAG@ /host@OUT@ || fail "mount the run directory over 9p"
echo "XRC-VM-READY $(cat /proc/uptime)"
chroot /host /bin/sh @OUT@/run.sh > /host@OUT@/run.log 2>&1
rc=$?
sync
umount /host@OUT@
echo "@EXIT@ $rc"
poweroff -f
"""


def init_script() -> str:
    return (INIT.replace("@HOST@", HOST_TAG).replace("@OUTTAG@", OUT_TAG)
            .replace("@OUT@", OUT_MOUNT).replace("@EXIT@", EXIT_MARK)
            .replace("@FAIL@", FAIL_MARK))


def find_busybox() -> pathlib.Path:
    """A statically linked busybox (the initramfs has no libc)."""
    for cand in BUSYBOX_CANDIDATES:
        p = pathlib.Path(cand)
        if p.is_file():
            head = p.read_bytes()
            if not _is_static_elf(head):
                raise Unavailable(f"{p} is dynamically linked: install busybox-static")
            return p
    raise Unavailable("busybox not found: install busybox-static")


def _is_static_elf(data: bytes) -> bool:
    """True for an ELF64 little-endian file without a PT_INTERP program header."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", data, phoff + i * phentsize)
        if p_type == 3:                 # PT_INTERP
            return False
    return True


def build_initramfs(kernel: Kernel, out: pathlib.Path,
                    busybox: Optional[pathlib.Path] = None) -> pathlib.Path:
    """Write the (uncompressed) initramfs: busybox, /init, the modules."""
    busybox = busybox or find_busybox()
    members = [(d, 0o40755, b"", (0, 0)) for d in
               ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "host", "tmp")]
    members.append(("dev/console", 0o20600, b"", (5, 1)))
    members.append(("bin/busybox", 0o100755, busybox.read_bytes(), (0, 0)))
    members.append(("bin/sh", 0o120777, b"busybox", (0, 0)))
    members.append(("init", 0o100755, init_script().encode(), (0, 0)))
    members.append(("etc/xrc-modules", 0o100644,
                    ("\n".join(kernel.modules) + "\n").encode(), (0, 0)))
    for name in kernel.modules:
        members.append((f"lib/modules/{name}.ko", 0o100644,
                        kernel.module_path(name).read_bytes(), (0, 0)))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".%d.tmp" % os.getpid())
    tmp.write_bytes(cpio_newc(members))
    tmp.replace(out)
    return out


# -- running ----------------------------------------------------------------------
@dataclasses.dataclass
class VMRun:
    """What one boot produced."""

    rundir: pathlib.Path
    console: str
    exit_code: Optional[int]       # run.sh's, from the console; None if it never ended
    qemu_returncode: Optional[int]
    seconds: float
    timed_out: bool

    @property
    def run_log(self) -> str:
        try:
            return (self.rundir / "run.log").read_text(errors="replace")
        except OSError:
            return ""

    def failure(self) -> Optional[str]:
        """Why the VM run as such failed (not the tests in it), or None."""
        m = re.search(rf"^{FAIL_MARK} (.*)$", self.console, re.M)
        if m:
            return f"VM init failed: {m.group(1).strip()}"
        if self.timed_out:
            return f"VM did not finish within {self.seconds:.0f} s"
        if self.exit_code is None:
            return f"VM ended (qemu rc {self.qemu_returncode}) without running the script"
        return None

    def console_tail(self, lines: int = 40) -> str:
        return "\n".join(self.console.splitlines()[-lines:])


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise Unavailable(f"{QEMU} not found: install the Debian package qemu-system-x86")
    return path


def qemu_command(kernel: Kernel, initramfs: pathlib.Path, rundir: pathlib.Path, *,
                 qemu: str = QEMU, memory_mb: int = 1024, cpus: int = 1,
                 host_root: str = "/") -> List[str]:
    """TCG only (KVM is not there, or hangs); no network device; the host's
    root read-only (``multidevs=remap``: it spans several filesystems)."""
    append = ("console=ttyS0 rdinit=/init panic=-1 loglevel=4 mitigations=off "
              "nokaslr tsc=reliable")
    return [qemu, "-accel", "tcg", "-cpu", "max", "-m", str(memory_mb), "-smp", str(cpus),
            "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
            "-serial", "stdio", "-monitor", "none",
            "-kernel", str(kernel.vmlinuz), "-initrd", str(initramfs), "-append", append,
            "-fsdev", f"local,id=fsh,path={host_root},security_model=none,readonly=on,"
                      "multidevs=remap",
            "-device", f"virtio-9p-pci,fsdev=fsh,mount_tag={HOST_TAG}",
            "-fsdev", f"local,id=fso,path={rundir},security_model=none",
            "-device", f"virtio-9p-pci,fsdev=fso,mount_tag={OUT_TAG}"]


def run_script(script: str, *, rundir: pathlib.Path, kernel: Optional[Kernel] = None,
               build_dir: pathlib.Path = BUILD_DIR, timeout: float = 240.0,
               memory_mb: int = 1024, cpus: int = 1,
               log: Callable[[str], None] = lambda s: None) -> VMRun:
    """Boot, run ``script`` (sh) chrooted in the host's root, power off.

    ``rundir`` (host side, writable) is ``/run/xrc-out`` inside: the script
    writes its results there.  Raises :class:`Unavailable` when qemu, busybox
    or the kernel cannot be had.
    """
    qemu = qemu_binary()
    kernel = kernel or fetch_kernel(build_dir, log=log)
    initramfs = build_initramfs(kernel, build_dir / "initramfs.cpio")
    rundir.mkdir(parents=True, exist_ok=True)
    (rundir / "run.sh").write_text(script)
    argv = qemu_command(kernel, initramfs, rundir, qemu=qemu, memory_mb=memory_mb, cpus=cpus)
    return boot(argv, rundir, timeout)


def boot(argv: Sequence[str], rundir: pathlib.Path, timeout: float) -> VMRun:
    """Run qemu (``argv``) to its end or ``timeout``, its console into
    ``rundir/console.log``; the script's exit status is read from the
    console's :data:`EXIT_MARK` line (shared with the xen tier, tests/xen)."""
    (rundir / "qemu.argv").write_text(shlex.join(argv) + "\n")
    console_path = rundir / "console.log"
    start = time.monotonic()
    timed_out = False
    with open(console_path, "wb") as console:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            rc = proc.wait()
        except BaseException:           # interrupted: leave no qemu behind
            proc.kill()
            proc.wait()
            raise
    seconds = time.monotonic() - start
    text = console_path.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
    m = re.search(rf"^{EXIT_MARK} (\d+)\s*$", text, re.M)
    return VMRun(rundir, text, int(m.group(1)) if m else None, None if timed_out else rc,
                 seconds, timed_out)


def chroot_script(command: Sequence[str], *, cwd: pathlib.Path = ROOT,
                  env: Optional[Dict[str, str]] = None) -> str:
    """A run.sh that runs ``command`` in ``cwd`` with a clean environment."""
    base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "XRC_IN_VM": "1", "TMPDIR": "/run/tmp"}     # fresh, unlike /tmp
    base.update(env or {})
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(base.items()))
    return ("set -u\n" + exports + 'mkdir -p "$TMPDIR"\n'
            + f"cd {shlex.quote(str(cwd))} || exit 125\n"
            + "echo \"uname: $(uname -r)\"\n" + shlex.join(command) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.qemu.vm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--fetch-only", action="store_true", help="fetch the kernel and build the initramfs")
    ap.add_argument("--refresh", action="store_true", help="fetch the kernel again")
    ap.add_argument("--rundir", type=pathlib.Path, help="keep the run's files here")
    ap.add_argument("--timeout", type=float, default=240.0)
    ap.add_argument("command", nargs="*", help="run inside the VM (default: uname -a)")
    args = ap.parse_args(argv)
    say = lambda s: print(f"qemu-tier: {s}", file=sys.stderr)
    try:
        kernel = fetch_kernel(refresh=args.refresh, log=say)
        say(f"kernel {kernel.package} {kernel.version} ({kernel.release}), "
            f"modules {' '.join(kernel.modules)}")
        if args.fetch_only:
            build_initramfs(kernel, BUILD_DIR / "initramfs.cpio")
            return 0
        rundir = args.rundir or pathlib.Path(tempfile.mkdtemp(prefix="xrc-vm-"))
        res = run_script(chroot_script(args.command or ["uname", "-a"]), rundir=rundir,
                         kernel=kernel, timeout=args.timeout, log=say)
    except Unavailable as e:
        say(f"unavailable: {e}")
        return 2
    sys.stdout.write(res.run_log)
    say(f"{res.seconds:.1f} s, files in {rundir}")
    why = res.failure()
    if why:
        say(why)
        say("console:\n" + res.console_tail())
        return 3
    return res.exit_code or 0


if __name__ == "__main__":
    sys.exit(main())
