"""A legacy-style remus set-up script against every domain source.

The script (below) does what the ``remus`` command's set-up did before
its first checkpoint (legacy-api.md 1.2, 3, 5.2, 2): ``vm.VM(dom)``, one
``ReplicatedDisk`` per disk (printing the ``ReplicatedDiskException``,
i.e. ``Disk is not replicated: uname,dev,mode``, for plain disks),
the vifs, ``str(vm)``, and a ``Saver(domid, NullSocket((host, port)), cb1,
cb2, cb3, 0, 1)`` that is never started.  It runs as a subprocess with
``XEN_REMUS_COMPAT_SOURCE`` choosing the source:

* ``files``  - the recorded fixture (paths through ``vm.SOURCE_OPTIONS``,
  which is the only way the files source takes them: no variable names
  them);
* ``xend``   - a stdlib XML-RPC server on a unix socket (``$XM_SERVER``)
  serving the fixture's sxpr as xend sent it (numbers as ints, 11.5);
* ``xl``     - a fake ``$XL`` printing ``xl list -l`` JSON for the fixture;
* ``sim``    - the simulated Xen's environment (``simxen.environment``)
  describing the same guest.

Expected output is written here from the spec for each fixture: legacy
``str(BlkDev)`` is ``uname,dev,mode`` without a literal ``:disk`` (4,
14.2); MACs canonical; vifs named ``vif<domid>.<devid>`` (15, fixed
naming); on xl, libxl keeps no uname prefix, so a plain disk's uname is
rebuilt as ``phy:`` for a ``/dev/`` path and ``file:`` otherwise, and
vdevs lose xend's ``ioemu:`` (docs/decisions.md, "libxl JSON"); on sim the
MACs are ``00:16:3e:00:00:NN`` and the vif names are the host interfaces
given (sources/sim.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.support.xendserver import serve_xend, wire_ints
from xen_remus_compat.sim import simxen
from xen_remus_compat import sxp
from xen_remus_compat.config.formats import libxl_json, sxpr as sxprmod

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60

SCRIPT = r'''#!/usr/bin/env python3
# remus-style set-up: find the domain, protect its disks and NICs, build the
# checkpointer.  Nothing is started.
import sys

from xen.remus import device, save, vm


def main(argv):
    if len(argv) < 4:
        print("usage: setup.py domain host port")
        return 2
    dom, host, port = argv[1], argv[2], int(argv[3])
    try:
        dom = vm.VM(dom)
    except vm.VMException as e:
        print("error: %s" % e)
        return 1

    bufs = []
    for disk in dom.disks:
        try:
            bufs.append(device.ReplicatedDisk(disk))
        except device.ReplicatedDiskException as e:
            print(e)
            continue
    for vif in dom.vifs:
        print("vif %s %s" % (vif.dev, vif.mac))
    print(str(dom))

    def postsuspend():
        return True

    def preresume():
        return True

    def commit():
        return False

    fd = save.NullSocket((host, port))
    checkpointer = save.Saver(dom.domid, fd, postsuspend, preresume, commit, 0, 1)
    print("saver %d %s %d" % (checkpointer.vm.domid, checkpointer.vm.name, len(bufs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
'''

#: how a site would point the files source at its recorded dumps
FILES_LAUNCHER = (
    "import runpy, sys; from xen.remus import vm; "
    "vm.SOURCE_OPTIONS['paths'] = [sys.argv.pop(1)]; "
    "sys.argv[0] = sys.argv[1]; del sys.argv[1]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')")

SEXPR2XML = FIXTURES / "libvirt" / "sexpr2xml"
GANETI = FIXTURES / "ganeti" / "xen-xl-list-long-4.0.1.txt"


class Fixture:
    def __init__(self, path, ref, lenient=False, expected=None, sim=None):
        self.path, self.ref, self.lenient = path, ref, lenient
        self.expected = expected          # source -> list of output lines
        self.sim = sim                    # (SimDomain kwargs, disks, vifs) or None

    def domains(self):
        vals = sxp.load_file(self.path, continuations=True, lenient=self.lenient)
        return [v for v in vals if isinstance(v, list) and v and v[0] == "domain"]


def lines_for(disks, vifs, domid, name):
    """The script's output, from the spec's rules."""
    out = [f"Disk is not replicated: {d}" for d in disks]
    out += [f"vif {dev} {mac}" for dev, mac in vifs]
    out.append("VM %d (%s), vifs: [%s], disks: [%s]" % (
        domid, name, ", ".join(m for _, m in vifs), ", ".join(disks)))
    out.append(f"saver {domid} {name} 0")
    return out


CURMEM = Fixture(
    SEXPR2XML / "sexpr2xml-curmem.sexpr", "rhel5",
    expected={
        # (device (tap (dev xvda:disk) (uname tap:aio:/xen/rhel5.img) (mode w)))
        "recorded": lines_for(["tap:aio:/xen/rhel5.img,xvda,w"],
                              [("vif5.0", "00:16:3e:1d:06:15")], 5, "rhel5"),
        "xl": lines_for(["file:/xen/rhel5.img,xvda,w"],
                        [("vif5.0", "00:16:3e:1d:06:15")], 5, "rhel5"),
        "sim": lines_for(["tap:aio:/xen/rhel5.img,xvda,w"],
                         [("xrcsim0", "00:16:3e:00:00:01")], 5, "rhel5"),
    },
    sim=({"name": "rhel5", "domid": 5}, "tap:aio:/xen/rhel5.img,xvda,w", "xrcsim0"))

FV_UTC = Fixture(
    SEXPR2XML / "sexpr2xml-fv-utc.sexpr", "fvtest",
    expected={
        # two vbds: (dev 'ioemu:hda') file:/root/foo.img w, hdc:cdrom r
        "recorded": lines_for(["file:/root/foo.img,ioemu:hda,w",
                               "file:/root/boot.iso,hdc:cdrom,r"],
                              [("vif3.0", "00:16:3e:1b:b1:47")], 3, "fvtest"),
        "xl": lines_for(["file:/root/foo.img,hda,w", "file:/root/boot.iso,hdc:cdrom,r"],
                        [("vif3.0", "00:16:3e:1b:b1:47")], 3, "fvtest"),
    })

GUEST = "instance1.example.com"
GANETI_GUEST = Fixture(
    GANETI, GUEST,
    expected={
        # the uname is split over three lines; the path contains a ':'
        "recorded": lines_for(
            ["phy:/var/run/ganeti/instance-disks/instance1.example.com:0,sda,w"],
            [("vif119.0", "aa:00:00:30:8d:9d")], 119, GUEST),
        "xl": lines_for(
            ["file:/var/run/ganeti/instance-disks/instance1.example.com:0,sda,w"],
            [("vif119.0", "aa:00:00:30:8d:9d")], 119, GUEST),
    })

FIXTURE_SET = {"curmem": CURMEM, "fv-utc": FV_UTC, "ganeti": GANETI_GUEST}


# ---------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("legacy") / "setup.py"
    path.write_text(SCRIPT)
    return path


def base_env(source: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIMXEN_", "XEN_REMUS_COMPAT_", "XM_SERVER", "XL"))
           and k != "LD_PRELOAD"}
    env["XEN_REMUS_COMPAT_SOURCE"] = source
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(argv, env):
    proc = subprocess.run([sys.executable, *argv], env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=str(ROOT))
    return proc


def output(proc):
    return proc.stdout.splitlines()


# ------------------------------------------------------------------- files

@pytest.mark.parametrize("name", sorted(FIXTURE_SET))
def test_files_source(script, name):
    fx = FIXTURE_SET[name]
    proc = run(["-c", FILES_LAUNCHER, str(fx.path), str(script), fx.ref,
                "backup", "8002"], base_env("files"))
    assert proc.returncode == 0, proc.stderr
    assert output(proc) == fx.expected["recorded"], proc.stderr


def test_files_source_unknown_domain(script):
    proc = run(["-c", FILES_LAUNCHER, str(CURMEM.path), str(script), "nosuch",
                "backup", "8002"], base_env("files"))
    assert proc.returncode == 1, proc.stderr
    assert output(proc) == [f"error: error looking up domain nosuch: no domain 'nosuch' "
                            f"in files {CURMEM.path} (known: rhel5(5))"]
    assert "Traceback" not in proc.stderr


# -------------------------------------------------------------------- xend

@pytest.fixture(scope="module")
def xend_server(tmp_path_factory):
    """xend's XML-RPC on a unix socket, serving every fixture's domains by
    domid, name and UUID, with xend's fault 3 for anything else."""
    doms = {}
    for fx in FIXTURE_SET.values():
        for raw in fx.domains():
            wire = wire_ints(raw)
            for key in ("domid", "name", "uuid"):
                value = sxp.child_value(raw, key)
                if value is not None:
                    doms[str(value)] = wire
    path = str(tmp_path_factory.mktemp("xend") / "xmlrpc.sock")
    with serve_xend(path, doms) as url:
        yield url


@pytest.mark.parametrize("name", sorted(FIXTURE_SET))
def test_xend_source(script, xend_server, name):
    fx = FIXTURE_SET[name]
    env = base_env("xend")
    env["XM_SERVER"] = xend_server
    proc = run([str(script), fx.ref, "backup", "8002"], env)
    assert proc.returncode == 0, proc.stderr
    assert output(proc) == fx.expected["recorded"], proc.stderr


def test_xend_source_unknown_domain_and_refusing_socket(script, xend_server, tmp_path):
    env = base_env("xend")
    env["XM_SERVER"] = xend_server
    proc = run([str(script), "nosuch", "backup", "8002"], env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert output(proc) == ["error: error looking up domain nosuch: xend "
                            f"{xend_server[len('httpu://'):]}: xend: "
                            "Domain 'nosuch' does not exist."]
    env["XM_SERVER"] = "httpu://" + str(tmp_path / "no-xend.sock")
    proc = run([str(script), "rhel5", "backup", "8002"], env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = output(proc)
    assert line.startswith("error: error looking up domain rhel5: cannot reach xend at "
                           f"{tmp_path / 'no-xend.sock'}")
    assert "ENOENT" in line


# ---------------------------------------------------------------------- xl

def fake_xl(tmp_path: Path, fx: Fixture) -> str:
    """``$XL``: prints ``xl list -l`` for the fixture's guests (xl skips
    Domain-0, xl-side.md 4.1), refuses any other command."""
    listing = []
    for raw in fx.domains():
        dom = sxprmod.domain_from_sxpr(raw, source=str(fx.path))
        if dom.domid:
            listing.append(json.loads(libxl_json.dumps(dom, wrapper=True)))
    data = tmp_path / "xl-list-l.json"
    data.write_text(json.dumps(listing, indent=4) + "\n")
    xl = tmp_path / "xl"
    xl.write_text("#!/bin/sh\n"
                  f'if [ "$1 $2" = "list -l" ]; then cat "{data}"; exit 0; fi\n'
                  'echo "xl: unexpected command: $*" >&2\nexit 1\n')
    xl.chmod(0o755)
    return str(xl)


@pytest.mark.parametrize("name", sorted(FIXTURE_SET))
def test_xl_source(script, tmp_path, name):
    fx = FIXTURE_SET[name]
    env = base_env("xl")
    env["XL"] = fake_xl(tmp_path, fx)
    proc = run([str(script), fx.ref, "backup", "8002"], env)
    assert proc.returncode == 0, proc.stderr
    assert output(proc) == fx.expected["xl"], proc.stderr


def test_xl_source_failing_xl(script, tmp_path):
    xl = tmp_path / "xl"
    xl.write_text("#!/bin/sh\necho 'libxl: error: cannot init xl context' >&2\nexit 1\n")
    xl.chmod(0o755)
    env = base_env("xl")
    env["XL"] = str(xl)
    proc = run([str(script), "rhel5", "backup", "8002"], env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    from xen_remus_compat.sources import no_hypervisor_hint
    assert output(proc) == [f"error: error looking up domain rhel5: {xl} list -l failed "
                            "(exit 1): libxl: error: cannot init xl context"
                            + no_hypervisor_hint()]


# --------------------------------------------------------------------- sim

def test_sim_source(script, tmp_path):
    ok, why = simxen.available()
    if not ok:
        pytest.fail(f"simulated Xen missing: {why}")
    kw, disks, vifs = CURMEM.sim
    env = simxen.environment(tmp_path / "state", simxen.SimDomain(**kw),
                             base=base_env("sim"))
    env["XEN_REMUS_COMPAT_SIM_DISKS"] = disks
    env["XEN_REMUS_COMPAT_SIM_VIFS"] = vifs
    proc = run([str(script), CURMEM.ref, "backup", "8002"], env)
    assert proc.returncode == 0, proc.stderr
    assert output(proc) == CURMEM.expected["sim"], proc.stderr
    # by domid too, and an unknown name is the facade's VMException
    proc = run([str(script), "5", "backup", "8002"], env)
    assert output(proc) == CURMEM.expected["sim"], proc.stderr
    proc = run([str(script), "nosuch", "backup", "8002"], env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert output(proc) == ["error: error looking up domain nosuch: no domain 'nosuch' "
                            "in the simulated Xen (simxen) (known: rhel5(5))"]
