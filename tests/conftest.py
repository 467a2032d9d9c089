"""Test tiers: each test directory is a pytest marker (setup.cfg).

A tier that cannot run on this machine is reported loudly at the end of the
run, with the reason, never skipped in silence.
"""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = pathlib.Path(os.environ.get(
    "XRC_FIXTURES", ROOT.parent / "shared" / "fixtures")).resolve()
TIERS = ("unit", "conformance", "linux", "e2e", "qemu", "xenhost", "xen")

_not_run: dict = {}


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = pathlib.Path(str(item.fspath)).resolve().relative_to(ROOT / "tests")
        tier = rel.parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


def tier_unavailable(tier: str, reason: str):
    """Skip with a reason that is repeated in the closing summary."""
    _not_run.setdefault(tier, set()).add(reason)
    pytest.skip(f"[{tier} tier NOT RUN] {reason}")


def pytest_terminal_summary(terminalreporter):
    if not _not_run:
        return
    tr = terminalreporter
    tr.section("TIERS NOT RUN ON THIS MACHINE", sep="!", red=True, bold=True)
    for tier, reasons in sorted(_not_run.items()):
        for reason in sorted(reasons):
            tr.line(f"{tier}: {reason}", red=True)


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"fixture corpus not found at {FIXTURES} (set XRC_FIXTURES)")
    return FIXTURES
