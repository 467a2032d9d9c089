"""The xen tier's harness: a real Xen 4.17 hypervisor nested under QEMU (TCG),
with a Debian dom0 that sees this host's ``/`` (its installed xen-utils-4.17
and this checkout's .venv) and runs scenario scripts there.

Facts and recipe: ../shared/docs/real-xen.md.  Everything is built from
Debian packages and cached under ``build/xen/`` (once per machine, keyed on
the package versions; no network once cached):

- ``stock-<ver>/xen``: Debian's own hypervisor (``xen-hypervisor-4.17-amd64``,
  ``apt-get download`` + ``dpkg-deb -x``, gunzipped to the ELF QEMU's
  multiboot loader wants).  Built without shadow paging: no PV log-dirty.
- ``shadow-<ver>/xen``: the same hypervisor configuration plus
  ``CONFIG_SHADOW_PAGING=y``, built from Debian's ``xen`` source package
  (a private deb-src apt setup under ``apt/``, nothing in /etc is touched;
  the downloads are kept in ``source/``, the build tree is removed).
- ``kernel/``: Debian's kernel and the dom0 modules (tests/qemu/vm.py's
  fetcher); the same vmlinuz is dom0's, the PV and the PVH guests' kernel.
- ``dom0.cpio``, ``guest.cpio``: busybox initramfs, rebuilt at each boot
  (the guest's carries ``xen-netfront`` for guests with a vif).
- ``tools/domwatch-<hash>``: tests/xen/domwatch.c built against the host's
  libxenctrl (dom0 runs it: the hypervisor's view of the guests' states, a
  CLOCK_MONOTONIC clock and a line stamper for the scenarios).

One boot runs a list of :class:`Scenario` (bash, cwd this checkout, each with
its own results folder and timeout) after starting the Xen daemons by hand
(real-xen.md step 5).  Results come back through a writable 9p share; QEMU's
exit status says nothing (``poweroff -f`` ends it with 0 whatever happened).

By hand::

    .venv/bin/python -m tests.xen.xenvm build [--shadow]
    .venv/bin/python -m tests.xen.xenvm run [--shadow] [--rundir D] -- 'xl info'
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import gzip
import hashlib
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

from tests.qemu import vm
from tests.qemu.vm import Unavailable

ROOT = vm.ROOT
BUILD_DIR = ROOT / "build" / "xen"
HYPERVISOR_PACKAGE = "xen-hypervisor-4.17-amd64"
USERLAND_PACKAGE = "xen-utils-4.17"
SOURCE_PACKAGE = "xen"
XEN_BIN = "/usr/lib/xen-4.17/bin"          # the real xl (/usr/sbin/xl is a wrapper)
SHADOW_OPTION = "CONFIG_SHADOW_PAGING"
#: dom0's modules; their dependencies come from the modules' own depends=
DOM0_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay",
                "xen_evtchn", "xen_privcmd", "xen_gntdev", "xen_gntalloc", "xenfs",
                "xen_blkback", "xen_netback", "bridge", "tun", "veth",
                "sch_plug", "ifb", "act_mirred", "cls_u32", "sch_ingress")
#: the physical CPU (of the two QEMU gives Xen) every guest's vCPU is pinned to
GUEST_PCPU = 1
#: the guests' modules (a guest with a vif needs netfront; dom0 does not load it)
GUEST_MODULES = ("xen_netfront",)
OUT = vm.OUT_MOUNT                          # the results share, in dom0
GUEST_KERNEL_ARGS = "console=hvc0 rdinit=/init quiet panic=-1"
DOMWATCH_SOURCE = pathlib.Path(__file__).with_name("domwatch.c")
DOM0_KERNEL_ARGS = ("console=hvc0 earlyprintk=xen rdinit=/init panic=-1 loglevel=4 "
                    "nokaslr")
XEN_ARGS = ("console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=2 "
            "loglvl=all guest_loglvl=all")
#: -cpu: qemu64 plus nested SVM and NPT gives virt_caps "pv hvm hap" (PVH and
#: HVM guests); "max" and EPYC crash dom0 (emulated SMAP), KVM hangs here
QEMU_CPU = "qemu64,+svm,+npt"
QEMU_MEMORY_MB = 3072
APT_OPTS = vm.APT_OPTS

Runner = Callable[..., subprocess.CompletedProcess]
Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


# -- locking and small helpers ---------------------------------------------------
class _Lock:
    """An exclusive lock on ``build/xen/xen.lock`` (not ``.lock``: the kernel
    fetcher locks that one, and a process's second fcntl lock on one file
    would be dropped by the first close)."""

    def __init__(self, build_dir: pathlib.Path):
        build_dir.mkdir(parents=True, exist_ok=True)
        self.path = build_dir / "xen.lock"

    def __enter__(self):
        self.f = open(self.path, "w")
        fcntl.lockf(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.f.close()


def _need_tools(*tools: str, why: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} not found: {why} (scripts/install-deps.sh installs it)")


def installed_version(package: str, run: Runner = vm._run) -> str:
    proc = run(["dpkg-query", "-W", "-f=${Status}\t${Version}", package])
    status, _, version = (proc.stdout or "").partition("\t")
    if proc.returncode or "install ok installed" not in status:
        raise Unavailable(f"{package} is not installed: dom0 runs this host's Xen userland "
                          "(scripts/install-deps.sh installs it)")
    return version


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", version)


def _write_meta(directory: pathlib.Path, meta: dict) -> None:
    (directory / "META.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def _read_meta(directory: pathlib.Path) -> Optional[dict]:
    try:
        meta = json.loads((directory / "META.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if (directory / "xen").is_file() else None


def _is_elf(path: pathlib.Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


# -- hypervisors -----------------------------------------------------------------
@dataclasses.dataclass
class Hypervisor:
    kind: str                   # "stock" or "shadow"
    directory: pathlib.Path
    meta: dict

    @property
    def path(self) -> pathlib.Path:
        return self.directory / "xen"

    @property
    def config(self) -> pathlib.Path:
        return self.directory / "xen.config"

    def describe(self) -> str:
        src = self.meta.get("source_version")
        return (f"{self.kind} hypervisor {self.meta['package_version']}"
                + (f" (built from source {src})" if src else ""))


def stock_hypervisor(build_dir: pathlib.Path = BUILD_DIR, *, run: Runner = vm._run,
                     log: Log = _quiet) -> Hypervisor:
    """Debian's hypervisor, of the same version as the installed userland."""
    version = installed_version(USERLAND_PACKAGE, run)
    directory = build_dir / f"stock-{_safe(version)}"
    with _Lock(build_dir):
        meta = _read_meta(directory)
        if meta is not None:
            return Hypervisor("stock", directory, meta)
        _need_tools("apt-get", "dpkg-deb", why="the xen tier unpacks Debian's hypervisor package")
        work = pathlib.Path(tempfile.mkdtemp(prefix="fetch-", dir=build_dir))
        try:
            spec = f"{HYPERVISOR_PACKAGE}={version}"
            log(f"apt-get download {spec}")
            _apt_download(spec, work, run, log)
            deb = next(work.glob("*.deb"))
            unpacked = work / "root"
            proc = run(["dpkg-deb", "-x", str(deb), str(unpacked)])
            if proc.returncode:
                raise Unavailable(f"dpkg-deb -x {deb.name}: {proc.stderr.strip()}")
            images = sorted((unpacked / "boot").glob("xen-*.gz"))
            configs = sorted((unpacked / "boot").glob("xen-*.config"))
            if not images or not configs:
                raise Unavailable(f"{deb.name} has no boot/xen-*.gz and boot/xen-*.config")
            new = work / "out"
            new.mkdir()
            with gzip.open(images[-1]) as src, open(new / "xen", "wb") as dst:
                shutil.copyfileobj(src, dst)
            if not _is_elf(new / "xen"):
                raise Unavailable(f"{images[-1].name} does not hold an ELF image")
            shutil.copy2(configs[-1], new / "xen.config")
            meta = {"package": HYPERVISOR_PACKAGE, "package_version": version,
                    "image": images[-1].name, "shadow_paging": _config_has(
                        (new / "xen.config").read_text(), SHADOW_OPTION)}
            _write_meta(new, meta)
            if directory.exists():
                shutil.rmtree(directory)
            new.rename(directory)
            return Hypervisor("stock", directory, meta)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _apt_download(spec: str, where: pathlib.Path, run: Runner, log: Log) -> None:
    proc = run(["apt-get", *APT_OPTS, "download", spec], cwd=str(where))
    if (proc.returncode or not list(where.glob("*.deb"))) and os.geteuid() == 0:
        log("apt lists look stale: apt-get update")
        run(["apt-get", "update", "-qq"])
        proc = run(["apt-get", *APT_OPTS, "download", spec], cwd=str(where))
    if proc.returncode or not list(where.glob("*.deb")):
        raise Unavailable(f"apt-get download {spec} failed: {proc.stderr.strip()}")


def _config_has(config: str, option: str) -> bool:
    return re.search(rf"^{option}=y$", config, re.M) is not None


def shadow_config(stock_config: str) -> str:
    """Debian's hypervisor configuration with shadow paging switched on."""
    lines = [ln for ln in stock_config.splitlines()
             if not re.match(rf"^(# )?{SHADOW_OPTION}[= ]", ln)]
    return "\n".join(lines + [f"{SHADOW_OPTION}=y"]) + "\n"


# apt, privately: deb-src entries for the Debian mirrors the host uses, with
# lists of our own (the host's /etc/apt and /var/lib/apt are left alone)
def deb_src_stanzas(sources_dir: pathlib.Path = pathlib.Path("/etc/apt")) -> str:
    """deb822 ``deb-src`` stanzas mirroring the host's Debian ``deb`` entries
    (``sources.list.d/*.sources`` and one-line ``sources.list`` entries)."""
    stanzas = []
    for path in sorted((sources_dir / "sources.list.d").glob("*.sources")):
        for block in re.split(r"\n\s*\n", path.read_text()):
            fields: Dict[str, str] = {}
            for line in block.splitlines():
                if line.strip() and not line.lstrip().startswith("#") and ":" in line:
                    key, _, value = line.partition(":")
                    fields[key.strip()] = value.strip()
            if ("deb" in fields.get("Types", "").split()
                    and fields.get("Enabled", "yes") != "no"
                    and "debian" in fields.get("URIs", "")):
                fields["Types"] = "deb-src"
                stanzas.append("\n".join(f"{k}: {v}" for k, v in fields.items()))
    one_line = sources_dir / "sources.list"
    if one_line.exists():
        for line in one_line.read_text().splitlines():
            m = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$", line.strip())
            if m and "debian" in m.group(2):
                opts = m.group(1) or ""
                signed = re.search(r"signed-by=(\S+?)\]?(\s|$)", opts)
                stanza = (f"Types: deb-src\nURIs: {m.group(2)}\nSuites: {m.group(3)}\n"
                          f"Components: {m.group(4)}")
                if signed:
                    stanza += f"\nSigned-By: {signed.group(1).rstrip(']')}"
                stanzas.append(stanza)
    return "\n\n".join(stanzas) + "\n" if stanzas else ""


def _private_apt(build_dir: pathlib.Path) -> List[str]:
    apt = build_dir / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "parts").mkdir(exist_ok=True)
    return [*APT_OPTS, "-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={apt / 'parts'}",
            "-o", f"Dir::State::Lists={apt / 'lists'}",
            "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]


def _source_versions(opts: List[str], run: Runner) -> List[str]:
    proc = run(["apt-cache", *opts, "showsrc", SOURCE_PACKAGE])
    versions = re.findall(r"^Version:\s*(\S+)", proc.stdout or "", re.M)
    if not versions:
        return []
    cmp = lambda a, b: run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0
    ordered: List[str] = []
    for v in dict.fromkeys(versions):         # newest first (insertion sort)
        i = 0
        while i < len(ordered) and not cmp(v, ordered[i]):
            i += 1
        ordered.insert(i, v)
    return ordered


def fetch_source(build_dir: pathlib.Path, prefer: str, *, run: Runner = vm._run,
                 log: Log = _quiet) -> pathlib.Path:
    """The .dsc of Debian's xen source package, ``prefer`` (the userland's
    version) if the mirror has it, else the newest it has; kept in
    ``build_dir/source``."""
    store = build_dir / "source"
    store.mkdir(parents=True, exist_ok=True)
    have = sorted(store.glob("*.dsc"))
    for dsc in have:
        if dsc.name == f"{SOURCE_PACKAGE}_{prefer.split(':')[-1]}.dsc":
            return dsc
    _need_tools("apt-get", "apt-cache", "dpkg-source",
                why="the shadow-paging hypervisor is built from Debian's source package")
    stanzas = deb_src_stanzas()
    if not stanzas:
        raise Unavailable("no Debian deb entry in /etc/apt to derive a deb-src entry from")
    opts = _private_apt(build_dir)
    (build_dir / "apt" / "parts" / "debian-src.sources").write_text(stanzas)
    log("apt-get update (private deb-src lists in build/xen/apt)")
    up = run(["apt-get", *opts, "update", "-qq"])
    if up.returncode:
        if have:
            return have[-1]
        raise Unavailable(f"apt-get update of the deb-src lists failed: {up.stderr.strip()}")
    versions = _source_versions(opts, run)
    tried = []
    for version in ([prefer] if prefer in versions else []) + [v for v in versions if v != prefer]:
        work = pathlib.Path(tempfile.mkdtemp(prefix="src-", dir=build_dir))
        try:
            log(f"apt-get source --download-only {SOURCE_PACKAGE}={version}")
            proc = run(["apt-get", *opts, "source", "--download-only",
                        f"{SOURCE_PACKAGE}={version}"], cwd=str(work))
            dscs = list(work.glob("*.dsc"))
            if proc.returncode == 0 and dscs:
                for f in work.iterdir():
                    f.replace(store / f.name)
                return store / dscs[0].name
            tried.append(f"{version}: {(proc.stderr or '').strip().splitlines()[-1:]}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if have:
        return have[-1]
    raise Unavailable(f"cannot download Debian's {SOURCE_PACKAGE} source package "
                      f"(versions known: {versions or 'none'}; {'; '.join(tried)})")


def shadow_hypervisor(build_dir: pathlib.Path = BUILD_DIR, *, stock: Optional[Hypervisor] = None,
                      run: Runner = vm._run, log: Log = _quiet,
                      jobs: int = 2) -> Hypervisor:
    """Debian's hypervisor configuration plus shadow paging, built from Debian's
    source package (real-xen.md step 1); cached per stock package version."""
    stock = stock or stock_hypervisor(build_dir, run=run, log=log)
    config = shadow_config(stock.config.read_text())
    digest = hashlib.sha256(config.encode()).hexdigest()[:12]
    directory = build_dir / f"shadow-{_safe(stock.meta['package_version'])}"
    with _Lock(build_dir):
        meta = _read_meta(directory)
        if meta is not None and meta.get("config_sha256") == digest:
            return Hypervisor("shadow", directory, meta)
        _need_tools("make", "gcc", "flex", "bison", "python3",
                    why="building the shadow-paging hypervisor")
        dsc = fetch_source(build_dir, stock.meta["package_version"], run=run, log=log)
        source_version = dsc.name[len(SOURCE_PACKAGE) + 1:-len(".dsc")]
        work = pathlib.Path(tempfile.mkdtemp(prefix="build-", dir=build_dir))
        blog = build_dir / "shadow-build.log"
        try:
            tree = work / "tree"
            log(f"dpkg-source -x {dsc.name}")
            proc = run(["dpkg-source", "--no-check", "-x", str(dsc), str(tree)])
            if proc.returncode:
                raise Unavailable(f"dpkg-source -x {dsc.name}: {proc.stderr.strip()[-500:]}")
            xen_dir = tree / "xen"
            (xen_dir / ".config").write_text(config)
            start = time.monotonic()
            log(f"make olddefconfig && make -j{jobs} in the xen/ folder (1-3 min)")
            with open(blog, "w") as out:
                for argv in (["make", "olddefconfig"], ["make", f"-j{jobs}"]):
                    out.write(f"$ {shlex.join(argv)}\n")
                    out.flush()
                    rc = subprocess.run(argv, cwd=str(xen_dir), stdout=out,
                                        stderr=subprocess.STDOUT).returncode
                    if rc:
                        tail = "\n".join(blog.read_text(errors="replace").splitlines()[-15:])
                        raise Unavailable(f"building the shadow-paging hypervisor failed "
                                          f"({shlex.join(argv)}, rc {rc}; {blog}):\n{tail}")
            built_config = (xen_dir / ".config").read_text()
            if not _config_has(built_config, SHADOW_OPTION):
                raise Unavailable(f"{SHADOW_OPTION}=y did not survive make olddefconfig")
            if not _is_elf(xen_dir / "xen"):
                raise Unavailable("the build left no xen/xen ELF image")
            new = work / "out"
            new.mkdir()
            shutil.copy2(xen_dir / "xen", new / "xen")
            (new / "xen.config").write_text(built_config)
            meta = {"package_version": stock.meta["package_version"],
                    "source_version": source_version, "config_sha256": digest,
                    "shadow_paging": True, "build_seconds": round(time.monotonic() - start, 1)}
            _write_meta(new, meta)
            if directory.exists():
                shutil.rmtree(directory)
            new.rename(directory)
            return Hypervisor("shadow", directory, meta)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def hypervisor(kind: str, build_dir: pathlib.Path = BUILD_DIR, **kw) -> Hypervisor:
    if kind == "stock":
        return stock_hypervisor(build_dir, **kw)
    if kind == "shadow":
        return shadow_hypervisor(build_dir, **kw)
    raise ValueError(f"unknown hypervisor kind {kind!r}")


# -- kernel and initramfs --------------------------------------------------------
def kernel(build_dir: pathlib.Path = BUILD_DIR, log: Log = _quiet) -> vm.Kernel:
    """Debian's kernel with dom0's and the guests' modules (tests/qemu/vm.py's
    fetcher; ``Kernel.modules`` lists both, see :func:`module_sets`)."""
    return vm.fetch_kernel(build_dir, modules=DOM0_MODULES + GUEST_MODULES, log=log)


def module_sets(k: vm.Kernel) -> Dict[str, List[str]]:
    """``{"dom0": [...], "guest": [...]}``: each side's modules with their
    dependencies, in load order."""
    deps = lambda m: vm.modinfo_depends(k.module_path(m).read_bytes())
    return {"dom0": vm.load_order(DOM0_MODULES, deps),
            "guest": vm.load_order(GUEST_MODULES, deps)}


def domwatch(build_dir: pathlib.Path = BUILD_DIR, *, run: Runner = vm._run,
             log: Log = _quiet) -> pathlib.Path:
    """tests/xen/domwatch.c built against this host's libxenctrl (dom0 runs
    the host's userland, so the same library), cached by the source's hash."""
    source = DOMWATCH_SOURCE.read_bytes()
    out = build_dir / "tools" / f"domwatch-{hashlib.sha256(source).hexdigest()[:12]}"
    if out.is_file():
        return out
    _need_tools("gcc", why="the xen tier builds its dom0 helper tests/xen/domwatch.c")
    if not pathlib.Path("/usr/include/xenctrl.h").exists():
        raise Unavailable("/usr/include/xenctrl.h not found: the xen tier's dom0 helper "
                          "needs libxen-dev (scripts/install-deps.sh installs it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    log(f"gcc {DOMWATCH_SOURCE.name} -lxenctrl")
    proc = run(["gcc", "-O2", "-Wall", "-o", str(tmp), str(DOMWATCH_SOURCE), "-lxenctrl"])
    if proc.returncode:
        raise Unavailable(f"building {DOMWATCH_SOURCE.name} failed: {proc.stderr.strip()[-500:]}")
    tmp.replace(out)
    return out


DOM0_INIT = r"""#!/bin/busybox sh
# /init of the xen tier's dom0 (tests/xen/xenvm.py): the host's / read-only
# over 9p under a tmpfs overlay (so /etc, /var/lib/xen, /var/log/xen are
# writable and nothing reaches the host), then run.sh chrooted into it
/bin/busybox mkdir -p /proc /sys /dev /lower /ovl /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "@FAIL@ $*"; sync; poweroff -f; sleep 5; }
for m in $(cat /etc/xrc-modules); do
    insmod /lib/modules/$m.ko || fail "insmod $m"
done
opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $opts,ro,cache=loose @HOST@ /lower || fail "mount the host root over 9p"
mount -t tmpfs -o mode=0755 tmpfs /ovl && mkdir -p /ovl/upper /ovl/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/ovl/upper,workdir=/ovl/work /newroot \
    || fail "overlayfs over the host root"
R=/newroot
mount -t proc proc $R/proc || fail "mount proc"
mount -t sysfs sysfs $R/sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs $R/dev || fail "mount devtmpfs"
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs -o mode=0755 tmpfs $R/run || fail "tmpfs on /run"
mkdir -p $R@OUT@
mount -t 9p -o $opts @OUTTAG@ $R@OUT@ || fail "mount the results share over 9p"
echo "XRC-VM-READY $(cat /proc/uptime)"
chroot $R /bin/bash @OUT@/run.sh > $R@OUT@/run.log 2>&1
rc=$?
sync
umount $R@OUT@
echo "@EXIT@ $rc"
poweroff -f
"""

GUEST_INIT = r"""#!/bin/busybox sh
# /init of the xen tier's guest (tests/xen/xenvm.py): a heartbeat on hvc0
# each second; the counter lives in guest memory, so after a failover the
# backup copy goes on counting from the last checkpoint.
# With xrc_ip=ADDR/LEN xrc_peer=IP:PORT xrc_peermac=MAC on the kernel command
# line: once eth0 (netfront; a vif from the start or attached later) is
# there, it gets ADDR statically, the peer a static neighbour entry (no ARP),
# and from then on each beat n also goes to the peer as one UDP datagram
# (busybox syslogd -R forwards "hb: n" that logger hands it).
/bin/busybox mkdir -p /proc /dev /sys /run /var/log
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
ip= peer= peermac= netup=
for arg in $(cat /proc/cmdline); do
    case $arg in
        xrc_ip=*) ip=${arg#xrc_ip=} ;;
        xrc_peer=*) peer=${arg#xrc_peer=} ;;
        xrc_peermac=*) peermac=${arg#xrc_peermac=} ;;
    esac
done
net_up() {
    [ -e /sys/class/net/eth0 ] || return 1
    ip link set lo up
    ip addr add $ip dev eth0
    ip link set eth0 up
    arp -i eth0 -s ${peer%:*} $peermac
    syslogd -n -S -R $peer &
    echo "NET eth0 $ip peer $peer ($(cat /sys/class/net/eth0/address))"
}
if [ -n "$ip" ]; then
    mount -t sysfs sysfs /sys
    for m in $(cat /etc/xrc-modules); do insmod /lib/modules/$m.ko; done
fi
n=0
while :; do
    [ -n "$ip" ] && [ -z "$netup" ] && net_up && netup=1
    n=$((n + 1))
    read up idle < /proc/uptime
    echo "HB $n up=$up"
    [ -n "$netup" ] && logger -t hb "$n"
    sleep 1
done
"""


def dom0_init() -> str:
    return (DOM0_INIT.replace("@HOST@", vm.HOST_TAG).replace("@OUTTAG@", vm.OUT_TAG)
            .replace("@OUT@", OUT).replace("@EXIT@", vm.EXIT_MARK)
            .replace("@FAIL@", vm.FAIL_MARK))


def _write_cpio(out: pathlib.Path, members) -> pathlib.Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".%d.tmp" % os.getpid())
    tmp.write_bytes(vm.cpio_newc(members))
    tmp.replace(out)
    return out


def _busybox_members(init: str) -> list:
    busybox = vm.find_busybox()
    members = [(d, 0o40755, b"", (0, 0)) for d in ("bin", "dev", "etc", "proc", "sys")]
    members.append(("dev/console", 0o20600, b"", (5, 1)))
    members.append(("bin/busybox", 0o100755, busybox.read_bytes(), (0, 0)))
    members.append(("bin/sh", 0o120777, b"busybox", (0, 0)))
    members.append(("init", 0o100755, init.encode(), (0, 0)))
    return members


def _module_members(k: vm.Kernel, modules: Sequence[str]) -> list:
    members = [(d, 0o40755, b"", (0, 0)) for d in ("lib", "lib/modules")]
    members.append(("etc/xrc-modules", 0o100644, ("\n".join(modules) + "\n").encode(), (0, 0)))
    members += [(f"lib/modules/{m}.ko", 0o100644, k.module_path(m).read_bytes(), (0, 0))
                for m in modules]
    return members


def build_dom0_initramfs(k: vm.Kernel, out: pathlib.Path) -> pathlib.Path:
    return _write_cpio(out, _busybox_members(dom0_init())
                       + _module_members(k, module_sets(k)["dom0"]))


def build_guest_initramfs(k: vm.Kernel, out: pathlib.Path) -> pathlib.Path:
    return _write_cpio(out, _busybox_members(GUEST_INIT)
                       + _module_members(k, module_sets(k)["guest"]))


@dataclasses.dataclass
class Artifacts:
    """What a boot needs, all under ``build_dir``."""

    hypervisor: Hypervisor
    kernel: vm.Kernel
    dom0_initramfs: pathlib.Path
    guest_initramfs: pathlib.Path
    domwatch: pathlib.Path


def prepare(kind: str = "stock", build_dir: pathlib.Path = BUILD_DIR, *,
            log: Log = _quiet) -> Artifacts:
    """Fetch or build (cached) everything a boot on the ``kind`` hypervisor
    needs.  Raises :class:`Unavailable` with the reason when it cannot."""
    vm.qemu_binary()
    hv = hypervisor(kind, build_dir, log=log)
    k = kernel(build_dir, log=log)
    with _Lock(build_dir):
        dom0 = build_dom0_initramfs(k, build_dir / "dom0.cpio")
        guest = build_guest_initramfs(k, build_dir / "guest.cpio")
        watch = domwatch(build_dir, log=log)
    return Artifacts(hv, k, dom0, guest, watch)


# -- guests ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GuestNet:
    """A guest's one vif on a dom0 bridge, its static address and the peer
    in dom0 its heartbeat datagrams go to (all inside this VM)."""

    bridge: str = "xrcbr0"
    bridge_mac: str = "02:58:52:43:00:01"
    dom0_ip: str = "10.199.0.1"
    guest_ip: str = "10.199.0.2"
    prefix: int = 24
    guest_mac: str = "00:16:3e:58:52:02"
    port: int = 5514

    def kernel_args(self) -> str:
        return (f"xrc_ip={self.guest_ip}/{self.prefix} xrc_peer={self.dom0_ip}:{self.port} "
                f"xrc_peermac={self.bridge_mac}")

    def vif(self) -> str:
        return f"bridge={self.bridge},mac={self.guest_mac}"

    def attach_args(self) -> List[str]:
        """``xl network-attach DOMAIN`` takes the same keys as words."""
        return self.vif().split(",")

    def dom0_setup(self) -> str:
        """bash for dom0: the bridge with its fixed MAC and dom0's address."""
        return (f"ip link add {self.bridge} type bridge stp_state 0 forward_delay 0\n"
                f"ip link set {self.bridge} address {self.bridge_mac}\n"
                f"ip addr add {self.dom0_ip}/{self.prefix} dev {self.bridge}\n"
                f"ip link set {self.bridge} up\n")


def guest_config(name: str, kind: str, artifacts: Artifacts, *, memory_mb: int = 128,
                 net: Optional[GuestNet] = None, vif: bool = True) -> str:
    """An xl configuration for the heartbeat guest (``kind``: pv, pvh or
    hvm), with one vif on ``net``'s bridge if given (``vif=False``: the guest
    knows its network but gets its vif later, ``xl network-attach``).

    An HVM guest boots the same kernel directly through Debian's device model
    (qemu-system-xen's /usr/libexec/xen-qemu-system-i386 in dom0, which runs
    this host's userland); its heartbeat goes to the PV console ``hvc0``,
    which xenconsoled logs (it does not log the emulated serial port)."""
    extra = GUEST_KERNEL_ARGS + (" " + net.kernel_args() if net else "")
    hvm = ['device_model_version = "qemu-xen"', 'serial = "pty"', "vnc = 0", "sdl = 0"] \
        if kind == "hvm" else []
    return "\n".join([
        f'name = "{name}"', f'type = "{kind}"', *hvm,
        f'kernel = "{artifacts.kernel.vmlinuz}"',
        f'ramdisk = "{artifacts.guest_initramfs}"',
        f'extra = "{extra}"',
        f"memory = {memory_mb}", "vcpus = 1",
        # pinned to one physical CPU (= one QEMU vCPU thread): a PVH guest
        # whose vCPU Xen moves between the nested CPUs triple-faults or panics
        # every minute or so under QEMU 7.2's TCG (SVM+NPT); pinned, none in
        # ~800 checkpoints (docs/xen-tier.md, "Guests are pinned")
        f'cpus = "{GUEST_PCPU}"',
        f"vif = ['{net.vif()}']" if net and vif else "vif = []", "disk = []",
        'on_crash = "preserve"', ""])


# -- running ---------------------------------------------------------------------
@dataclasses.dataclass
class Scenario:
    """A bash script run in dom0 (cwd: this checkout) with ``$SCEN`` its own
    results folder and ``timeout`` seconds; ``files`` are written into
    ``$SCEN`` first.  The script starts with ``. $OUT/lib.sh`` (the helpers
    of :data:`SCENARIO_LIB`).

    ``guests``: the domain names it creates; afterwards those (and their
    ``NAME--*`` copies) are destroyed and their console logs cleared.  Without
    ``guests`` every guest is destroyed and every log cleared.  A
    ``background`` scenario runs beside the ones after it (it must name its
    guests); dom0 waits for it before powering off."""

    name: str
    script: str
    timeout: float
    files: Dict[str, str] = dataclasses.field(default_factory=dict)
    guests: Sequence[str] = ()
    background: bool = False


#: sourced by every scenario script: shared helpers (tests/xen/scenarios.py
#: builds on them).  @DOMWATCH@ is tests/xen/domwatch.c's binary.
SCENARIO_LIB = r"""
CON=/var/log/xen/console
DW=@DOMWATCH@
mono() { $DW now; }
# ev NAME: an event, "NAME <CLOCK_REALTIME> <CLOCK_MONOTONIC>" in $SCEN/events
ev() { echo "$1 $EPOCHREALTIME $(mono)" >> $SCEN/events; echo "--- $1"; }
# fact KEY VALUE...: a line in $SCEN/facts
fact() { echo "$*" >> $SCEN/facts; }
within() {   # within SECONDS COMMAND...: poll COMMAND every 0.1 s
    local end=$(( EPOCHSECONDS + $1 )); shift
    until "$@"; do [ "$EPOCHSECONDS" -ge "$end" ] && return 1; sleep 0.1; done
}
beats() { cat "$@" 2>/dev/null | grep -c 'HB [0-9]'; }
has_domain() { xl domid "$1" > /dev/null 2>&1; }
no_domain() { ! has_domain "$1"; }
domid_of() { xl domid "$1" 2>/dev/null; }
# the state column of xl list (r, b, p, s, c, d as xl prints them)
state_of() { xl list "$1" 2>/dev/null | awk 'NR == 2 {print $5}'; }
# the hypervisor's view of every domain, into $SCEN/domwatch.txt (domwatch.c)
start_watch() { $DW watch $SCEN/domwatch.txt ${1:-1000} & WATCH_PID=$!; }
stop_watch() { [ -n "${WATCH_PID:-}" ] && kill $WATCH_PID 2>/dev/null && wait $WATCH_PID; }
# run_bg LABEL CMD...: CMD in the background, its stdout and stderr stamped
# line by line (CLOCK_REALTIME, CLOCK_MONOTONIC) into $SCEN/LABEL.log; its pid
# (CMD's own: signals reach it) in $SCEN/LABEL.pid; when the pipe ends (CMD
# and whatever it started that kept its output open), CMD's status in
# $SCEN/LABEL.rc
run_bg() {
    local label=$1; shift
    rm -f $SCEN/$label.rc $SCEN/$label.pid
    ( sh -c 'echo $$ > "$0"; exec "$@"' $SCEN/$label.pid "$@" < /dev/null 2>&1 \
          | $DW stamp > $SCEN/$label.log
      echo "${PIPESTATUS[0]}" > $SCEN/$label.rc ) &
    within 20 test -s $SCEN/$label.pid
}
alive() { [ -s $SCEN/$1.pid ] && kill -0 $(cat $SCEN/$1.pid) 2>/dev/null; }
ended() { [ -e $SCEN/$1.rc ] || ! alive $1; }
"""


#: dom0's run.sh: the Xen daemons by hand (real-xen.md step 5), then each
#: scenario under its own timeout (a background one beside the next ones),
#: each one's guests cleared after it
DOM0_PRELUDE = r"""
set -u
export PATH=@XENBIN@:$PATH
T() { echo "$1 $(cut -d' ' -f1 /proc/uptime)" >> $OUT/timings; }
T dom0-userspace
mkdir -p /proc/xen /run/xen /run/xenstored /var/lib/xen /var/log/xen/console /var/lib/xenstored
grep -q xenfs /proc/mounts || mount -t xenfs xenfs /proc/xen
ip link set lo up
XENSTORED_ROOTDIR=/run/xenstored xenstored --pid-file /run/xenstore.pid
for i in $(seq 300); do [ -S /run/xenstored/socket ] && break; sleep 0.1; done
[ -S /run/xenstored/socket ] || { echo "xenstored did not start"; exit 90; }
xen-init-dom0 || { echo "xen-init-dom0 failed"; exit 91; }
xenconsoled --log=guest --log-dir=/var/log/xen/console --timestamp=guest \
    --pid-file=/run/xenconsoled.pid || { echo "xenconsoled failed"; exit 92; }
T xen-daemons
clear_guests() {
    for d in $(xl list | awk 'NR > 1 && $2 != 0 {print $2}'); do xl destroy $d; done
}
clear_named() {     # clear_named NAME...: these guests and their NAME--* copies
    local g d
    for g in "$@"; do
        for d in $(xl list | awk -v g="$g" 'NR > 1 && ($1 == g || index($1, g "--") == 1) {print $2}'); do
            xl destroy $d
        done
    done
}
run_one() {
    local s=$1 SCEN=$OUT/$1 rc start guests g
    export SCEN
    echo "=== scenario $s"
    start=$(cut -d' ' -f1 /proc/uptime)
    timeout -k 5 $(cat $SCEN/timeout) bash $SCEN/script.sh > $SCEN/output.log 2>&1 < /dev/null
    rc=$?
    echo $rc > $SCEN/rc
    echo "$start $(cut -d' ' -f1 /proc/uptime)" > $SCEN/uptimes
    echo "=== scenario $s rc $rc"
    guests=$(cat $SCEN/guests 2>/dev/null)
    if [ -n "$guests" ]; then clear_named $guests; else clear_guests; fi
    mkdir -p $SCEN/xenlog && cp -r /var/log/xen/. $SCEN/xenlog/ 2>/dev/null
    if [ -n "$guests" ]; then
        for g in $guests; do
            rm -f /var/log/xen/console/guest-$g.log /var/log/xen/console/guest-$g--*.log \
                  /var/log/xen/xl-$g.log /var/log/xen/xl-$g--*.log
        done
    else
        rm -f /var/log/xen/console/* /var/log/xen/*.log
    fi
}
background=()
for s in @SCENARIOS@; do
    if [ -e $OUT/$s/background ]; then run_one $s & background+=($!); else run_one $s; fi
done
for p in "${background[@]}"; do wait $p; done
clear_guests
T done
"""


@dataclasses.dataclass
class ScenarioResult:
    name: str
    directory: pathlib.Path
    rc: Optional[int]                   # None: never ran or never finished
    seconds: Optional[float]            # dom0 time it took

    def text(self, name: str) -> str:
        try:
            return (self.directory / name).read_text(errors="replace")
        except OSError:
            return ""

    @property
    def output(self) -> str:
        return self.text("output.log")

    def console_logs(self) -> Dict[str, str]:
        """xenconsoled's guest logs, ``{domain name: text}``."""
        logs = {}
        for p in sorted((self.directory / "xenlog" / "console").glob("guest-*.log")):
            logs[p.name[len("guest-"):-len(".log")]] = p.read_text(errors="replace")
        return logs


@dataclasses.dataclass
class Dom0Run:
    vmrun: vm.VMRun
    artifacts: Artifacts
    results: Dict[str, ScenarioResult]

    @property
    def rundir(self) -> pathlib.Path:
        return self.vmrun.rundir

    def timings(self) -> Dict[str, float]:
        """dom0 uptime at each stage (``timings`` file)."""
        out = {}
        for line in (self.rundir / "timings").read_text().splitlines() \
                if (self.rundir / "timings").exists() else []:
            name, _, value = line.partition(" ")
            out[name] = float(value)
        return out

    def failure(self) -> Optional[str]:
        why = self.vmrun.failure()
        if why:
            return why
        if self.vmrun.exit_code:
            return f"dom0's run.sh exited {self.vmrun.exit_code} (Xen daemons?)"
        return None

    def report(self, tail: int = 40) -> str:
        return ("--- dom0 run.log (tail) ---\n"
                + "\n".join(self.vmrun.run_log.splitlines()[-tail:])
                + f"\n--- console (tail) ---\n{self.vmrun.console_tail(tail)}"
                + f"\nrun files: {self.rundir}")


def new_rundir(label: str, build_dir: pathlib.Path = BUILD_DIR, keep: int = 3) -> pathlib.Path:
    """A fresh ``build_dir/runs/<label>-<time>-<pid>``; older runs of the same
    label beyond the last ``keep`` are removed."""
    runs = build_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted(runs.glob(f"{label}-*"), key=lambda p: p.stat().st_mtime)
    for p in old[:max(0, len(old) - keep + 1)]:
        shutil.rmtree(p, ignore_errors=True)
    rundir = runs / f"{label}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    rundir.mkdir()
    return rundir


def qemu_command(artifacts: Artifacts, rundir: pathlib.Path, *, qemu: str = vm.QEMU,
                 memory_mb: int = QEMU_MEMORY_MB, cpus: int = 2) -> List[str]:
    """real-xen.md step 4: Xen by multiboot, dom0's kernel and initramfs as
    its modules (commas in the module strings are doubled)."""
    dom0 = f"{artifacts.kernel.vmlinuz} {DOM0_KERNEL_ARGS}".replace(",", ",,")
    modules = f"{dom0},{str(artifacts.dom0_initramfs).replace(',', ',,')}"
    return [qemu, "-accel", "tcg", "-M", "q35", "-cpu", QEMU_CPU,
            "-smp", str(cpus), "-m", str(memory_mb),
            "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
            "-serial", "stdio", "-monitor", "none",
            "-kernel", str(artifacts.hypervisor.path), "-append", XEN_ARGS,
            "-initrd", modules,
            "-fsdev", "local,id=fsh,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", f"virtio-9p-pci,fsdev=fsh,mount_tag={vm.HOST_TAG}",
            "-fsdev", f"local,id=fso,path={rundir},security_model=none",
            "-device", f"virtio-9p-pci,fsdev=fso,mount_tag={vm.OUT_TAG}"]


def run_scenarios(scenarios: Sequence[Scenario], *, artifacts: Artifacts,
                  rundir: pathlib.Path, boot_seconds: float = 150.0,
                  env: Optional[Dict[str, str]] = None) -> Dom0Run:
    """Boot Xen and dom0 once, run ``scenarios`` in order, power off.

    The VM's timeout is the scenarios' own plus ``boot_seconds`` (boot, the
    daemons, shutdown; slow on a loaded host)."""
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names) or not all(re.fullmatch(r"[\w.-]+", n) for n in names):
        raise ValueError(f"scenario names must be unique words: {names}")
    for s in scenarios:
        if s.background and not s.guests:
            raise ValueError(f"background scenario {s.name} must name its guests")
    rundir.mkdir(parents=True, exist_ok=True)
    (rundir / "lib.sh").write_text(SCENARIO_LIB.replace("@DOMWATCH@",
                                                        shlex.quote(str(artifacts.domwatch))))
    for s in scenarios:
        sdir = rundir / s.name
        sdir.mkdir(exist_ok=True)
        (sdir / "script.sh").write_text("set -u\n. $OUT/lib.sh\n" + s.script)
        (sdir / "timeout").write_text(f"{int(s.timeout)}\n")
        if s.guests:
            (sdir / "guests").write_text(" ".join(s.guests) + "\n")
        if s.background:
            (sdir / "background").write_text("")
        for fname, text in s.files.items():
            (sdir / fname).write_text(text)
    dom0_script = (DOM0_PRELUDE.replace("@XENBIN@", XEN_BIN)
                   .replace("@SCENARIOS@", " ".join(names)))
    (rundir / "dom0.sh").write_text(dom0_script)
    base_env = {"OUT": OUT, "XRC_IN_XEN_DOM0": "1"}
    base_env.update(env or {})
    (rundir / "run.sh").write_text(vm.chroot_script(["/bin/bash", f"{OUT}/dom0.sh"],
                                                    env=base_env))
    argv = qemu_command(artifacts, rundir, qemu=vm.qemu_binary())
    total = boot_seconds + sum(s.timeout + 10 for s in scenarios if not s.background) \
        + max([s.timeout + 10 for s in scenarios if s.background] or [0])
    vmrun = vm.boot(argv, rundir, total)
    results = {}
    for s in scenarios:
        sdir = rundir / s.name
        rc = seconds = None
        try:
            rc = int((sdir / "rc").read_text())
            a, b = map(float, (sdir / "uptimes").read_text().split())
            seconds = b - a
        except (OSError, ValueError):
            pass
        results[s.name] = ScenarioResult(s.name, sdir, rc, seconds)
    return Dom0Run(vmrun, artifacts, results)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.xen.xenvm",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("build", "run"))
    ap.add_argument("--shadow", action="store_true",
                    help="the shadow-paging hypervisor (PV guests) instead of Debian's")
    ap.add_argument("--rundir", type=pathlib.Path, help="keep the run's files here")
    ap.add_argument("--timeout", type=float, default=300.0, help="for the command, seconds")
    ap.add_argument("command", nargs="*", help="bash run in dom0 (default: xl info)")
    args = ap.parse_intermixed_args(argv)
    say = lambda s: print(f"xen-tier: {s}", file=sys.stderr)
    kind = "shadow" if args.shadow else "stock"
    try:
        arts = prepare(kind, log=say)
    except Unavailable as e:
        say(f"unavailable: {e}")
        return 2
    say(f"{arts.hypervisor.describe()}: {arts.hypervisor.path}")
    mods = module_sets(arts.kernel)
    say(f"kernel {arts.kernel.package} {arts.kernel.version}, dom0 modules "
        f"{' '.join(mods['dom0'])}; guest modules {' '.join(mods['guest'])}")
    say(f"domwatch {arts.domwatch}")
    if args.action == "build":
        return 0
    rundir = args.rundir or new_rundir(f"cmd-{kind}")
    script = " ".join(args.command) or "xl info"
    res = run_scenarios([Scenario("cmd", script + "\n", args.timeout)],
                        artifacts=arts, rundir=rundir)
    sys.stdout.write(res.results["cmd"].output)
    say(f"{res.vmrun.seconds:.1f} s, dom0 timings {res.timings()}, files in {rundir}")
    why = res.failure()
    if why:
        say(why)
        say(res.report())
        return 3
    return res.results["cmd"].rc if res.results["cmd"].rc is not None else 4


if __name__ == "__main__":
    sys.exit(main())
