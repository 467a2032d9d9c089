"""Fixtures and helpers shared by the buffered-NIC tests of every tier.

Why: the unit (fake rtnl), linux (network namespaces) and qemu in-VM
(real sch_plug) tests of ``devices/netbuf.py`` each need a fresh cleanup
registry, the process-wide quirks reset around every test, and a look at the
IFB pool's claim table.  Import the fixtures into a test module or conftest
to use them (pytest finds fixtures among a module's names); nothing here
touches the host at import.  The in-VM tests import this module from the
host's tree too (tests/qemu/vm.py runs them chrooted into the host's ``/``).
"""
from __future__ import annotations

import pathlib
from typing import Iterator, Union

import pytest

from xen_remus_compat import quirks
from xen_remus_compat.devices import netbuf


@pytest.fixture
def registry() -> netbuf.CleanupRegistry:
    """A cleanup registry of the test's own, never the process-wide one."""
    return netbuf.CleanupRegistry()


@pytest.fixture(autouse=True)
def fresh_quirks() -> Iterator[None]:
    """Quirk switches are process-wide: each test starts and ends with none."""
    quirks.reset()
    yield
    quirks.reset()


def pool_text(pool_dir: Union[str, pathlib.Path]) -> str:
    """The IFB pool's claim table ``<pool_dir>/ifb``, "" when there is none."""
    p = pathlib.Path(pool_dir, "ifb")
    return p.read_text() if p.exists() else ""
