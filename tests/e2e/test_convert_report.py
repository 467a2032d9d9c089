"""``convert``'s report for a whole site (issue 14 items 1, 3): bounded in
size, each reason once with its count, ``--quiet``, ``--report-json``, a
progress line only on a terminal, a summary table, and ``--check-host``.

The fleet is 500 domains as ``xm list -l`` of xend 4.x printed them
(tests/support/xendfleet.py): before this report, converting it printed
8,851 lines, almost all of them keys at their defaults (``tsc_mode 0``,
``nomigrate 0``, ``Pool-0``, an empty ``pci``) repeated for every domain.
"""
from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.e2e.test_cli import inproc
from tests.support import xendfleet

FLEET = 500
#: the whole report for the fleet: a heading, the grouped reasons, the
#: table; it does not grow with the number of domains
MAX_REPORT_LINES = 60


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    d = tmp_path_factory.mktemp("fleet")
    return [str(p) for p in xendfleet.write(d, FLEET)]


def test_report_for_500_domains_is_bounded_and_grouped(fleet, tmp_path):
    run = inproc("convert", *fleet, "-o", tmp_path / "out",
                 "--report-json", tmp_path / "report.json")
    assert run.rc == 0, run
    lines = run.out.splitlines()
    assert len(lines) <= MAX_REPORT_LINES, run.out
    assert len(list((tmp_path / "out").glob("*.cfg"))) == FLEET
    report = json.loads((tmp_path / "report.json").read_text())
    reasons = report["reasons"]
    assert reasons, report["summary"]
    text = " ".join(run.out.split())
    for group in reasons:
        # each reason once, with its count (the reason may wrap over lines)
        first = " ".join(group["reason"].split())[:50]
        assert text.count(first) == 1, first
        assert re.search(rf"\b{group['count']} [a-z ]+: {re.escape(group['keys'][0])}", text)
        assert group["count"] == sum(
            1 for d in report["domains"] for i in d["items"]
            if i["reason"] == group["reason"])
    # what was reported per domain before: defaults, now counted, not listed
    assert "tsc_mode" not in run.out and "Pool-0" not in run.out
    assert "nomigrate" not in run.out
    omitted = {o["key"] for d in report["domains"] for o in d["omitted"]}
    assert {"tsc_mode", "image.nomigrate", "pool_name", "image.pci"} <= omitted
    # the summary table
    assert re.search(r"converted\s+500", run.out)
    assert re.search(r"left out: xl's default, runtime\s+500\s+\d+", run.out)
    assert run.out.rstrip().splitlines()[-1].startswith("summary: 500 domain(s) converted")


def test_quiet_prints_the_summary_line_only(fleet, tmp_path):
    run = inproc("convert", *fleet[:20], "-o", tmp_path, "--quiet")
    assert run.rc == 0, run
    assert run.out.count("\n") == 1 and run.out.startswith("summary: 20 domain(s)")


def test_report_json_on_stdout_is_the_only_output(fleet, tmp_path):
    run = inproc("convert", *fleet[:12], "-o", tmp_path, "--report-json", "-",
                 "--dry-run")
    assert run.rc == 0, run
    report = json.loads(run.out)
    assert report["schema"] == "xen-remus-compat/convert-report/1"
    assert report["dry_run"] is True and report["summary"]["domains"] == 12
    d = next(d for d in report["domains"] if d["name"] == "guest0004")
    assert d["files"] == [{"path": str(tmp_path / "guest0004.cfg"), "status": "new"}]
    (item,) = d["items"]
    assert item == {"kind": "rewritten", "key": "bootloader",
                    "reason": item["reason"], "value": '"/usr/lib/xen-4.1/bin/pygrub"',
                    "new": "pygrub"}
    assert d["missing"] is None                  # not checked
    assert not list(tmp_path.iterdir())          # dry run


def test_small_batches_keep_a_section_per_domain():
    run = inproc("convert", ROOT / "examples" / "xend-domains", "-o", "/nonexistent",
                 "--dry-run")
    assert run.rc == 0, run
    win = run.out.split("win01  (from")[1].split("\n\n")[0]
    assert "rewritten for this host:" in win and "device_model" in win
    assert "qemu-xen-system" not in win and "hvmloader" not in win


def test_check_host_reports_the_missing_paths(tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_text("")
    image = tmp_path / "disk.img"
    image.write_text("")
    src = tmp_path / "g.sxp"
    src.write_text(
        f"(domain (name g) (memory 64) (image (linux (kernel {kernel}) "
        f"(ramdisk {tmp_path}/missing-initrd)))"
        f" (device (vbd (uname file:{image}) (dev xvda) (mode w)))"
        f" (device (vbd (uname phy:/dev/xrc-test-no-such-vg/lv) (dev xvdb) (mode w))))")
    run = inproc("convert", src, "-o", tmp_path / "out", "--check-host",
                 "--report-json", tmp_path / "r.json")
    assert run.rc == 0, run
    section = " ".join(run.out.split("not on this host:")[1].split())
    assert f"ramdisk {tmp_path}/missing-initrd" in section
    assert "disk[xvdb] /dev/xrc-test-no-such-vg/lv" in section
    assert str(kernel) not in section and str(image) not in section
    assert "2 path(s) not on this host" in run.out
    (dom,) = json.loads((tmp_path / "r.json").read_text())["domains"]
    assert [m["key"] for m in dom["missing"]] == ["ramdisk", "disk[xvdb]"]


def _convert_on(stderr_tty: bool, args):
    """Run convert in a child with stderr a pty (a terminal) or a pipe."""
    argv = [sys.executable, "-m", "xen_remus_compat.cli.main", "convert", *args]
    if not stderr_tty:
        p = subprocess.run(argv, capture_output=True, timeout=120, cwd=ROOT)
        return p.returncode, p.stderr.decode()
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave,
                         stdin=subprocess.DEVNULL, cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(timeout=120), b"".join(chunks).decode()


def test_progress_line_only_on_a_terminal(fleet, tmp_path):
    rc, err = _convert_on(True, [*fleet[:200], "-o", str(tmp_path / "a")])
    assert rc == 0, err
    assert re.search(r"\rconverting \d+/200 guest\d{4}", err), repr(err[:300])
    assert err.endswith("\r")                   # erased when done
    rc, err = _convert_on(False, [*fleet[:200], "-o", str(tmp_path / "b")])
    assert rc == 0 and err == "", err
