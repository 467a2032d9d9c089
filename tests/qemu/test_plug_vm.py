"""The qemu tier, host side: boot Debian's kernel once (TCG), run the in-VM
suite ``tests/qemu/inside/`` there against the real ``sch_plug``, and turn
each in-VM test into a pass or a failure here, with its output.

This host's kernel may lack the plug qdisc (CONFIG_NET_SCH_PLUG); network
output commit (legacy-api.md §5.3-5.5, §7; xl-side.md §2.5) is only proven
on a kernel that has it.  If qemu, busybox or the kernel package cannot be
had the tests FAIL with the reason: the tier is never skipped on Linux.
"""
from __future__ import annotations

import ast
import dataclasses
import os
import pathlib
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Dict, List

import pytest

from tests.conftest import tier_unavailable
from tests.qemu import vm
from tests.qemu.conftest import SUMMARY

INSIDE = pathlib.Path(__file__).resolve().parent / "inside"
JUNIT = "junit.xml"
VM_TIMEOUT = 300.0          # seconds for boot + suite; a normal run takes ~50 s


def inside_tests() -> List[str]:
    """``file::function`` of every in-VM test, read from the source (the
    files cannot be imported here: they are for the VM)."""
    names = []
    for path in sorted(INSIDE.glob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        names += [f"{path.stem}::{node.name}" for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
    return names


@dataclasses.dataclass
class Case:
    outcome: str            # passed, failed, error, skipped
    detail: str


@dataclasses.dataclass
class Suite:
    run: vm.VMRun
    kernel: vm.Kernel
    cases: Dict[str, List[Case]]


def parse_junit(path: pathlib.Path) -> Dict[str, List[Case]]:
    """``{file::function: [Case]}`` (parametrized cases grouped)."""
    cases: Dict[str, List[Case]] = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        stem = tc.get("classname", "").rsplit(".", 1)[-1]
        key = f"{stem}::{tc.get('name', '').split('[')[0]}"
        outcome, detail = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = tc.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                detail = f"{el.get('message', '')}\n{el.text or ''}"
                break
        for tag in ("system-out", "system-err"):
            el = tc.find(tag)
            text = el.text or "" if el is not None else ""
            if any(line.strip() and not line.startswith("-----") for line in text.splitlines()):
                detail += f"\n--- {tag} ---\n{text}"
        cases.setdefault(key, []).append(Case(outcome, detail))
    return cases


def _fail(why: str, run: vm.VMRun = None) -> None:
    text = f"qemu tier: {why}"
    if run is not None:
        text += (f"\n--- in-VM output (tail) ---\n{_tail(run.run_log, 60)}"
                 f"\n--- console (tail) ---\n{run.console_tail()}\nrun files: {run.rundir}")
    pytest.fail(text, pytrace=False)


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def vm_suite(tmp_path_factory) -> Suite:
    if not sys.platform.startswith("linux"):
        tier_unavailable("qemu", f"needs a Linux host with qemu (this is {sys.platform})")
    rundir = tmp_path_factory.mktemp("qemu-vm")
    cannot = None
    try:
        kernel = vm.fetch_kernel()
        run = vm.run_script(
            vm.chroot_script([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                              "-q", "-o", "junit_logging=all",
                              f"--junitxml={vm.OUT_MOUNT}/{JUNIT}", "tests/qemu/inside"]),
            rundir=rundir, kernel=kernel, timeout=VM_TIMEOUT)
    except vm.Unavailable as e:
        cannot = str(e)
    except (OSError, subprocess.SubprocessError) as e:
        cannot = f"{type(e).__name__}: {e}"
    if cannot:
        _fail(f"cannot run: {cannot}")
    why = run.failure()
    if why:
        _fail(why, run)
    if not (rundir / JUNIT).exists():
        _fail(f"the in-VM pytest wrote no results (exit {run.exit_code})", run)
    suite = Suite(run, kernel, parse_junit(rundir / JUNIT))
    outcomes = [c.outcome for cs in suite.cases.values() for c in cs]
    SUMMARY.append(f"VM run {run.seconds:.1f} s under TCG, kernel {kernel.package} "
                   f"{kernel.version}; in-VM tests: {outcomes.count('passed')} passed, "
                   f"{len(outcomes) - outcomes.count('passed')} not passed; files in {rundir}")
    return suite


@pytest.mark.parametrize("name", inside_tests())
def test_in_vm(vm_suite: Suite, name: str) -> None:
    cases = vm_suite.cases.get(name)
    if not cases:
        _fail(f"{name} did not run in the VM (in-VM pytest exit {vm_suite.run.exit_code})",
              vm_suite.run)
    bad = [c for c in cases if c.outcome != "passed"]
    if bad:
        pytest.fail(f"in the VM ({vm_suite.kernel.release}), {name} "
                    + "; ".join(c.outcome for c in bad) + ":\n"
                    + "\n".join(c.detail for c in bad), pytrace=False)


def test_vm_ran_the_whole_suite_on_debians_kernel(vm_suite: Suite) -> None:
    """Every in-VM result belongs to a known test, the kernel is the one we
    booted, and the in-VM pytest's exit status agrees with the results."""
    assert set(vm_suite.cases) == set(inside_tests())
    assert f"uname: {vm_suite.kernel.release}" in vm_suite.run.run_log
    all_passed = all(c.outcome == "passed" for cs in vm_suite.cases.values() for c in cs)
    assert (vm_suite.run.exit_code == 0) == all_passed


# -- the harness itself (no VM needed) --------------------------------------------
def test_load_order_puts_dependencies_first() -> None:
    deps = {"9p": ["9pnet", "fscache", "netfs"], "fscache": ["netfs"], "9pnet": [],
            "netfs": [], "sch_plug": []}
    order = vm.load_order(["9p", "sch_plug", "fscache"], deps.__getitem__)
    assert sorted(order) == sorted(deps)
    for mod, needs in deps.items():
        assert all(order.index(d) < order.index(mod) for d in needs)
    with pytest.raises(ValueError, match="cycle"):
        vm.load_order(["a"], {"a": ["b"], "b": ["a"]}.__getitem__)


def test_modinfo_depends_field() -> None:
    ko = b"\x7fELF...\0license=GPL\0depends=9pnet,fs-cache,netfs\0vermagic=6.1\0"
    assert vm.modinfo_depends(ko) == ["9pnet", "fs_cache", "netfs"]
    assert vm.modinfo_depends(b"license=GPL\0depends=\0") == []


def test_initramfs_is_a_newc_archive_busybox_can_read(tmp_path) -> None:
    """busybox's own cpio (an independent reader) unpacks what the harness
    wrote: the console device node, the sh symlink, an executable /init."""
    try:
        busybox = vm.find_busybox()
    except vm.Unavailable as e:
        _fail(f"cannot run: {e}")
    mods = tmp_path / "k" / "modules"
    mods.mkdir(parents=True)
    (mods / "sch_plug.ko").write_bytes(b"\0module\0")
    kernel = vm.Kernel(tmp_path / "k", "pkg", "1", "6.1.0-test", ["sch_plug"])
    out = vm.build_initramfs(kernel, tmp_path / "initramfs.cpio")
    root = tmp_path / "root"
    root.mkdir()
    with open(out, "rb") as archive:
        proc = subprocess.run([str(busybox), "cpio", "-i", "-d"], stdin=archive, cwd=root,
                              capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    st = os.lstat(root / "dev" / "console")
    assert stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (5, 1)
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert os.access(root / "init", os.X_OK)
    assert (root / "init").read_text().startswith("#!/bin/busybox sh\n")
    assert (root / "bin" / "busybox").read_bytes() == busybox.read_bytes()
    assert (root / "etc" / "xrc-modules").read_text() == "sch_plug\n"
    assert (root / "lib" / "modules" / "sch_plug.ko").read_bytes() == b"\0module\0"
