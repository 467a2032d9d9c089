"""The packages (issue 14 items 5 and 6): the wheel in a clean venv and the
Debian package in a scratch root work on their own.

scripts/build-package.sh builds both from the work tree under build/pkg
(skipped when the same sources were built before).  The wheel is installed
with its dependencies in a fresh venv; the .deb is unpacked (dpkg -x) into a
scratch root, which a private mount namespace lays over /usr read-only, so
that /usr/bin/remus, Debian's python3 and the package's .pth run as they
would after `dpkg -i`, without touching this machine's /usr.  There the
units pass `systemd-analyze verify` (ExecStart= and the man pages found),
and bash-completion loads the installed completion on demand.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import tier_unavailable

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "pkg"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
DEB_TOOLS = ("dpkg-buildpackage", "dh", "dh_python3", "lintian")
UNITS = ("remus@.service", "remus-receiver.service", "remus-receiver.socket")
COMMANDS = ("xen-remus-compat", "remus", "remus-receiver")


def _build(kind: str) -> None:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build-package.sh"), kind],
                          env=dict(os.environ, PYTHON=sys.executable),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"


def _version() -> str:
    from xen_remus_compat import __version__
    return __version__


def _sim_protect(argv, cwd, env=None, seconds=2.0):
    """Run ``remus --sim --blackhole simguest`` for ``seconds``, then SIGTERM:
    the legacy clean stop (exit 0, '*** signalled ***')."""
    proc = subprocess.Popen(argv + ["--sim", "--blackhole", "simguest"], cwd=cwd,
                            env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


# --- the wheel -----------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel_venv():
    _build("wheel")
    wheels = sorted((OUT / "dist").glob(f"xen_remus_compat-{_version()}-*.whl"))
    assert len(wheels) == 1, wheels
    venv = OUT / "venv"
    stamp = venv / "installed-wheel"
    wanted = f"{wheels[0].name} {wheels[0].stat().st_mtime_ns}"
    if not (stamp.is_file() and stamp.read_text() == wanted):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                              str(wheels[0])], capture_output=True, text=True, timeout=600)
        if pip.returncode != 0:
            pytest.fail(f"pip install of the wheel (with its dependencies) failed:\n"
                        f"{pip.stdout}\n{pip.stderr}")
        stamp.write_text(wanted)
    return venv


def _venv_env(venv: pathlib.Path) -> dict:
    """The venv's commands, nothing of this source tree on the path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "XRC_SIMXEN_LIBDIR", "LD_LIBRARY_PATH")
           and not k.startswith("SIMXEN_")}
    env["PATH"] = f"{venv / 'bin'}:{SYSTEM_PATH}"
    return env


def test_wheel_remus_sim_works_from_the_wheel_alone(wheel_venv, tmp_path):
    env = _venv_env(wheel_venv)
    rc, out, err = _sim_protect([str(wheel_venv / "bin" / "remus")], tmp_path, env)
    assert rc == 0, err[-2000:]
    assert "*** signalled ***" in out
    assert "PROF: flushed memory" in err and "Traceback" not in err
    where = subprocess.run([str(wheel_venv / "bin" / "python"), "-c",
                            "from xen_remus_compat.sim import simxen; print(simxen.lib_dir())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(wheel_venv / "lib"))


def test_wheel_demo(wheel_venv, tmp_path):
    proc = subprocess.run([str(wheel_venv / "bin" / "xen-remus-compat"), "demo", "--json",
                           "--seconds", "1.2"], cwd=tmp_path, env=_venv_env(wheel_venv),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["failover_ok"] and res["memory_match"] and res["checkpoints"] >= 2


def test_wheel_without_simxen_says_so_in_one_line(wheel_venv, tmp_path):
    lib = next(wheel_venv.glob("lib/python3*/site-packages/xen_remus_compat/sim/lib"))
    hidden = lib.with_name("lib.hidden")
    lib.rename(hidden)
    try:
        for argv in ([str(wheel_venv / "bin" / "remus"), "--sim", "--blackhole", "g"],
                     [str(wheel_venv / "bin" / "xen-remus-compat"), "demo"]):
            proc = subprocess.run(argv, cwd=tmp_path, env=_venv_env(wheel_venv),
                                  capture_output=True, text=True, timeout=60)
            assert proc.returncode == 1, proc.stderr
            assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
            assert "simulated Xen's libraries are not installed" in proc.stderr
            assert "make" not in proc.stderr
    finally:
        hidden.rename(lib)


def test_wheel_installs_legacy_names_man_pages_units_completions(wheel_venv, tmp_path):
    proc = subprocess.run([str(wheel_venv / "bin" / "python"), "-c",
                           "import xen.remus.vm, xen.lowlevel.checkpoint; print('ok')"],
                          cwd=tmp_path, env=_venv_env(wheel_venv),
                          capture_output=True, text=True)
    assert proc.stdout == "ok\n", proc.stderr
    for c in COMMANDS:
        assert (wheel_venv / "share" / "man" / "man1" / f"{c}.1").is_file()
        assert (wheel_venv / "share" / "bash-completion" / "completions" / c).is_file()
    for u in UNITS:
        assert (wheel_venv / "lib" / "systemd" / "system" / u).is_file()


# --- the Debian package ----------------------------------------------------------


@pytest.fixture(scope="module")
def deb():
    missing = [t for t in DEB_TOOLS if shutil.which(t, path=SYSTEM_PATH) is None]
    if missing:
        tier_unavailable("e2e", f"Debian packaging tools missing ({', '.join(missing)}; "
                         "scripts/install-deps.sh installs them): the .deb was "
                         "neither built nor tested")
    _build("deb")
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True, check=True).stdout.strip()
    path = OUT / f"xen-remus-compat_{_version()}_{arch}.deb"
    assert path.is_file()
    return path


def _contents(deb_path) -> list:
    out = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb_path)],
                         capture_output=True, check=True)
    names = subprocess.run(["tar", "-t"], input=out.stdout, capture_output=True,
                           check=True).stdout.decode()
    return [n[1:] if n.startswith(".") else n for n in names.splitlines()]


def test_deb_contents(deb):
    files = set(_contents(deb))
    for c in COMMANDS:
        assert f"/usr/bin/{c}" in files
        assert f"/usr/share/man/man1/{c}.1.gz" in files
        assert f"/usr/share/bash-completion/completions/{c}" in files
    for u in UNITS:                        # once, where bookworm's debhelper looks
        assert f"/lib/systemd/system/{u}" in files
        assert f"/usr/lib/systemd/system/{u}" not in files
    assert "/usr/lib/python3/dist-packages/xen_remus_compat-xen.pth" in files
    assert "/etc/default/remus" in files
    lib = "/usr/lib/python3/dist-packages/xen_remus_compat/sim/lib/"
    assert {lib + "libsimxen.so.0", lib + "libxenctrl.so.4.17"} <= files
    conffiles = subprocess.run(["dpkg-deb", "--info", str(deb), "conffiles"],
                               capture_output=True, text=True).stdout
    assert "/etc/default/remus" in conffiles


def test_deb_depends_on_what_bookworm_has(deb):
    depends = subprocess.run(["dpkg-deb", "--field", str(deb), "Depends"],
                             capture_output=True, text=True, check=True).stdout
    for pkg in ("python3-lxml", "python3-pyroute2", "python3-fissix", "libxenmisc4.17"):
        assert pkg in depends, depends
    # and nothing on Xen's libraries is taken from the simulated stand-ins
    assert "xen-remus-compat" not in depends


def test_lintian_reports_no_error(deb):
    report = (OUT / "lintian.txt").read_text()
    errors = [line for line in report.splitlines() if line.startswith("E:")]
    assert not errors, report


def _overlay_ok(root: pathlib.Path) -> bool:
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            f"mount -t overlay overlay -o lowerdir={root}/usr:/usr /usr"],
                           capture_output=True, text=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def deb_root(deb):
    """The package unpacked as dpkg would lay it on a merged-/usr system."""
    root = OUT / "root"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    if (root / "lib").is_dir():                 # /lib -> usr/lib on bookworm
        shutil.copytree(root / "lib", root / "usr" / "lib", dirs_exist_ok=True)
        shutil.rmtree(root / "lib")
    return root


def _in_namespace(root: pathlib.Path, script: str, tmp_path) -> subprocess.CompletedProcess:
    if shutil.which("unshare") is None or not _overlay_ok(root):
        tier_unavailable("e2e", "cannot lay the unpacked .deb over /usr (unshare -m "
                         "and an overlay mount need CAP_SYS_ADMIN): the package's "
                         "contents were checked, its commands not run")
    body = tmp_path / "inside.sh"
    body.write_text(textwrap.dedent(f"""\
        mount -t overlay overlay -o lowerdir={root}/usr:/usr /usr || exit 99
        cd {tmp_path}
        """) + textwrap.dedent(script))
    env = {"PATH": SYSTEM_PATH, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    return subprocess.run(["unshare", "-m", "bash", str(body)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_deb_remus_sim_and_legacy_imports(deb_root, tmp_path):
    proc = _in_namespace(deb_root, """\
        timeout --foreground --preserve-status -s TERM 3 /usr/bin/remus --sim --blackhole simguest \\
            > remus.out 2> remus.err < /dev/null
        echo "remus exit $?"
        /usr/bin/python3 -c 'import xen.remus.vm, xen.lowlevel.checkpoint, xen_remus_compat.sim.simxen as s; print(s.lib_dir())'
        /usr/bin/xen-remus-compat --version
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    err = (tmp_path / "remus.err").read_text()
    assert lines[0] == "remus exit 0", err[-2000:]
    assert "*** signalled ***" in (tmp_path / "remus.out").read_text()
    assert "PROF: flushed memory" in err
    assert lines[1] == "/usr/lib/python3/dist-packages/xen_remus_compat/sim/lib"
    assert lines[2] == f"xen-remus-compat {_version()}"


def test_deb_units_pass_systemd_analyze_verify(deb_root, tmp_path):
    if shutil.which("systemd-analyze", path=SYSTEM_PATH) is None:
        tier_unavailable("e2e", "systemd-analyze not installed (Debian's systemd): "
                         "the units were not verified")
    units = " ".join(f"/usr/lib/systemd/system/{u}" for u in
                     ("remus@web01.service", "remus-receiver.service",
                      "remus-receiver.socket"))
    proc = _in_namespace(deb_root, f"""\
        systemd-analyze verify --man=yes {units}
        echo "verify exit $?"
        """, tmp_path)
    assert proc.stdout.splitlines()[-1:] == ["verify exit 0"], proc.stderr


def test_deb_bash_completion_loads_on_demand(deb_root, tmp_path):
    loader = pathlib.Path("/usr/share/bash-completion/bash_completion")
    if not loader.is_file():
        tier_unavailable("e2e", "bash-completion not installed: the on-demand "
                         "loading of the installed completions was not tested")
    proc = _in_namespace(deb_root, f"""\
        bash --norc --noprofile -c '
            source {loader}
            for c in remus remus-receiver xen-remus-compat; do
                __load_completion "$c" && complete -p "$c"
            done'
        """, tmp_path)
    assert proc.stdout.splitlines() == [
        "complete -F _xrc_remus remus",
        "complete -F _xrc_remus_receiver remus-receiver",
        "complete -F _xrc_xen_remus_compat xen-remus-compat"], proc.stderr


def test_units_under_a_real_systemd():
    """Only systemd as PID 1 can start the units for real; this test does not
    hand the machine's own systemd a package's units, so it says where they
    were checked instead."""
    try:
        pid1 = pathlib.Path("/proc/1/comm").read_text().strip()
    except OSError:
        pid1 = "unknown"
    booted = pathlib.Path("/run/systemd/system").is_dir()
    tier_unavailable("e2e", "the units were not started under a real systemd "
                     f"(PID 1 here is {pid1!r}"
                     f"{', systemd' if booted else ', not systemd'}); they pass "
                     "`systemd-analyze verify` and remus-receiver's socket "
                     "activation runs under systemd-socket-activate "
                     "(tests/e2e/test_units.py)")
