"""Run Debian's real ``xl`` (and libxenlight) without a hypervisor.

Why: the conformance tier checks our xl disk strings, xl.cfg text and
migration preambles against the real 4.17 parsers, not against our reading
of them.  ``xl`` cannot even start without ``/dev/xen``, so it runs under the
LD_PRELOAD stub ``build/libxlstub.so`` (lowlevel/xlstub, built by
``make native``), which answers host queries for an empty imaginary host and
fails every other Xen call (xl-side.md section 7; docs/decisions.d/xlstub.md).

Only three xl paths are meaningful under the stub: ``xl -N create``,
``xl -N block-attach 0`` and ``xl migrate-receive`` up to domain creation.

Host isolation: when ``unshare --mount`` works (root), xl runs in a private
mount namespace where ``/var/lock`` (xl's lock file), ``/var/lib/xen`` and
``/var/log/xen`` are empty tmpfs and ``/etc/xen/xl.conf`` is replaced by
:data:`XL_CONF` (Debian's shipped file sets nothing, so the result is the
same as a default Debian host, whatever this host's admin configured).
Without it, xl runs directly; the only host write seen then is the empty
lock file ``/var/lock/xl`` of ``migrate-receive``.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import pathlib
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from xen_remus_compat.errors import XenError

log = logging.getLogger("xen_remus_compat")

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: The real binary; /usr/sbin/xl is a wrapper that asks the hypervisor
#: which version directory to use.
XL_PATH = pathlib.Path(os.environ.get("XRC_REAL_XL", "/usr/lib/xen-4.17/bin/xl"))
STUB_PATH = pathlib.Path(os.environ.get("XRC_XLSTUB", ROOT / "build" / "libxlstub.so"))
TIMEOUT = 20.0
#: xl.conf seen by xl inside the namespace: Debian's has no active setting.
XL_CONF = "# xen-remus-compat tests: compiled-in xl defaults\n"
#: State xl could write; hidden behind tmpfs when isolated.  Resolved at
#: run time (``/var/lock`` is a symlink to ``/run/lock`` on Debian).
STATE_DIRS = ("/var/lock", "/var/lib/xen", "/var/log/xen", "/var/run/xen")
XL_CONF_PATH = "/etc/xen/xl.conf"
#: ``xl -N block-attach`` prints this, then the disk's JSON.
DISK_PREFIX = "disk: "
#: The PV guest configuration of xl-side.md section 4.4 (``web01``), verbatim;
#: several conformance tests feed it to the real xl.
WEB01_CFG = """\
name = "web01"
uuid = "5f2a1c3e-8d4b-4e6f-9a7b-0c1d2e3f4a5b"
type = "pv"
kernel = "/boot/vmlinuz-guest"
ramdisk = "/boot/initrd-guest"
extra = "console=hvc0 root=/dev/xvda1 ro"
memory = 1024
maxmem = 2048
vcpus = 2
maxvcpus = 4
on_crash = "restart"
disk = [ 'phy:/dev/drbd0,xvda,w', 'format=raw, vdev=xvdb, access=rw, target=/dev/drbd1' ]
vif = [ 'mac=00:16:3e:12:34:56,bridge=xenbr0,ip=192.168.1.10',
        'mac=00:16:3e:12:34:57,bridge=xenbr1,script=vif-bridge,vifname=web01-eth1' ]
"""

Runner = Callable[..., subprocess.CompletedProcess]

# Runs inside the new mount namespace: $1 = stub, $2 = xl.conf copy,
# $3 = state dirs (space separated), then the xl command line.  The stub is
# preloaded into xl only, not into sh/mount.  "mount -n" keeps libmount from
# creating /run/mount/utab on the (shared) host /run.
_SANDBOX_SH = r'''
set -e
stub=$1; conf=$2; dirs=$3; shift 3
for d in $dirs; do
    mount -n -t tmpfs -o size=4m,mode=0755 xrc-xlstub "$d"
done
if [ -f /etc/xen/xl.conf ]; then mount -n --bind "$conf" /etc/xen/xl.conf; fi
LD_PRELOAD=$stub exec "$@"
'''


class RealXlError(XenError):
    """The real xl failed where a result was expected; carries its stderr."""

    def __init__(self, message: str, *, stderr: str = "", **kw) -> None:
        if stderr:
            message = f"{message}\n--- xl stderr ---\n{stderr.rstrip()}"
        super().__init__(message, **kw)
        self.stderr = stderr


@dataclass(frozen=True)
class XlRunner:
    """How to run xl: the binary, the stub, the timeout, the process runner."""

    xl: pathlib.Path = XL_PATH
    stub: pathlib.Path = STUB_PATH
    timeout: float = TIMEOUT
    isolate: Optional[bool] = None          # None: when unshare works
    run: Runner = field(default=subprocess.run, compare=False)

    def isolated(self) -> bool:
        return self.isolate if self.isolate is not None else _unshare_works()

    def __call__(self, args: Sequence[str], *, stdin: bytes = b"",
                 cwd: Optional[str] = None) -> tuple[int, bytes, bytes]:
        """Run ``xl ARGS`` under the stub; returns (rc, stdout, stderr)."""
        with tempfile.TemporaryDirectory(prefix="xrc-realxl-") as tmp:
            env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
            env["LC_ALL"] = "C"
            if self.isolated():
                conf = pathlib.Path(tmp, "xl.conf")
                conf.write_text(XL_CONF)
                argv = ["unshare", "--mount", "--propagation", "private", "--",
                        "/bin/sh", "-c", _SANDBOX_SH, "xrc-realxl",
                        str(self.stub), str(conf), " ".join(_state_dirs()),
                        str(self.xl), *args]
            else:
                env["LD_PRELOAD"] = str(self.stub)
                argv = [str(self.xl), *args]
            log.debug("realxl: %s", " ".join(argv))
            try:
                proc = self.run(argv, input=stdin, capture_output=True,
                                env=env, cwd=cwd or tmp, timeout=self.timeout)
            except subprocess.TimeoutExpired as exc:
                raise RealXlError(
                    f"xl {' '.join(args)} timed out after {self.timeout:g} s",
                    source=str(self.xl),
                    stderr=(exc.stderr or b"").decode("utf-8", "replace")) from exc
        return proc.returncode, proc.stdout, proc.stderr


def _state_dirs() -> list[str]:
    """Existing state directories, symlinks resolved, without duplicates."""
    seen: list[str] = []
    for d in STATE_DIRS:
        real = os.path.realpath(d)
        if os.path.isdir(real) and real not in seen:
            seen.append(real)
    return seen


@functools.lru_cache(maxsize=None)
def _unshare_works() -> bool:
    try:
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "true"],
            capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if proc.returncode != 0:
        log.warning("realxl: no private mount namespace (%s); xl will run "
                    "against the host's /etc/xen and /var/lock",
                    proc.stderr.decode("utf-8", "replace").strip())
    return proc.returncode == 0


DEFAULT = XlRunner()


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@functools.lru_cache(maxsize=None)
def _check(runner: XlRunner) -> tuple[bool, str]:
    if not runner.xl.is_file() or not os.access(runner.xl, os.X_OK):
        return False, f"real xl not found at {runner.xl} (install xen-utils-4.17)"
    if not runner.stub.is_file():
        make = subprocess.run(["make", "-C", str(ROOT / "lowlevel"), "xlstub"],
                              capture_output=True, timeout=120)
        if not runner.stub.is_file():
            return False, (f"{runner.stub} missing and `make -C lowlevel xlstub` "
                           f"did not build it: "
                           f"{_text(make.stdout + make.stderr).strip()[-400:]}")
    try:
        rc, out, err = runner(["-N", "block-attach", "0", "/dev/xrc,,xvda"])
    except RealXlError as exc:
        return False, str(exc)
    if rc != 0 or not _text(out).startswith(DISK_PREFIX):
        return False, (f"xl does not run under {runner.stub} (rc {rc}): "
                       f"{_text(err).strip()[-400:]}")
    return True, ("isolated in a mount namespace" if runner.isolated()
                  else "NOT isolated: host /etc/xen/xl.conf and /var/lock in use")


def available(runner: XlRunner = DEFAULT) -> tuple[bool, str]:
    """Whether the real xl runs here under the stub, and why (not)."""
    return _check(runner)


def xl_create_raw(cfg_text: str, *, runner: XlRunner = DEFAULT
                  ) -> tuple[int, str, str]:
    """``xl -N create FILE`` on *cfg_text*: (rc, stdout, stderr)."""
    with tempfile.TemporaryDirectory(prefix="xrc-cfg-") as tmp:
        path = pathlib.Path(tmp, "domain.cfg")
        path.write_text(cfg_text)
        rc, out, err = runner(["-N", "create", str(path)], cwd=tmp)
    return rc, _text(out), _text(err)


def xl_create_json(cfg_text: str, *, runner: XlRunner = DEFAULT) -> dict:
    """The ``libxl_domain_config`` JSON xl builds from *cfg_text* (xl-side §4.1)."""
    rc, out, err = xl_create_raw(cfg_text, runner=runner)
    if rc != 0:
        raise RealXlError(f"xl -N create failed with exit status {rc}",
                          source="xl -N create", code=rc, stderr=err)
    try:
        return json.loads(out)
    except json.JSONDecodeError as exc:
        raise RealXlError(f"xl -N create printed no JSON: {exc.msg}",
                          source="xl -N create stdout", line=exc.lineno,
                          col=exc.colno, stderr=err) from exc


def xl_block_attach(specs: Sequence[str], *, runner: XlRunner = DEFAULT
                    ) -> tuple[int, Optional[dict], str]:
    """``xl -N block-attach 0 SPEC...`` (xl-side §1.9): (rc, disk JSON, stderr)."""
    rc, out, err = runner(["-N", "block-attach", "0", *specs])
    text, stderr = _text(out), _text(err)
    if not text:
        return rc, None, stderr
    if not text.startswith(DISK_PREFIX):
        raise RealXlError(f"unexpected xl block-attach output {text[:60]!r}",
                          source="xl -N block-attach", code=rc, stderr=stderr)
    try:
        disk = json.loads(text[len(DISK_PREFIX):])
    except json.JSONDecodeError as exc:
        raise RealXlError(f"xl block-attach printed bad JSON: {exc.msg}",
                          source="xl -N block-attach stdout", line=exc.lineno,
                          col=exc.colno, stderr=stderr) from exc
    return rc, disk, stderr


def xl_migrate_receive(stream: bytes,
                       extra_args: Sequence[str] = ("-d", "-e", "-r"), *,
                       runner: XlRunner = DEFAULT) -> tuple[int, bytes, str]:
    """Feed *stream* to ``xl migrate-receive`` (xl-side §2.2, §7).

    xl writes the 54-byte banner to stdout, checks the xl header, prints the
    config (with ``-d``, on stderr) and then fails at domain creation, since
    the stub has no Xen: (rc, stdout bytes, stderr).
    """
    rc, out, err = runner(["migrate-receive", *extra_args], stdin=stream)
    return rc, out, _text(err)
