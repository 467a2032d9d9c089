"""Fixtures of the in-VM tests (collected only when XRC_IN_VM=1, i.e. inside
the qemu tier's VM, whose kernel has sch_plug)."""
import signal

import pytest

from tests.qemu.inside.netlab import Lab
from tests.support.netbuf_fixtures import fresh_quirks, registry  # noqa: F401 (fixtures)
from xen_remus_compat.devices import netbuf


@pytest.fixture
def lab():
    lab = Lab()
    try:
        yield lab.build()
    finally:
        lab.destroy()


@pytest.fixture
def nic(lab, tmp_path, registry):
    """``nic(**kw)``: a BufferedNIC on vh0 with the real plug qdisc."""
    made = []

    def make(**kw):
        kw.setdefault("buffer_class", netbuf.PlugBuffer)
        n = netbuf.BufferedNIC("vh0", netns=lab.dom0, pool_dir=str(tmp_path),
                               registry=registry, **kw)
        made.append(n)
        return n

    yield make
    for n in made:
        n.uninstall()


TEST_TIMEOUT = 60          # seconds per test, under TCG; a hang must not eat the VM's budget


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def expired(signo, frame):
        raise TimeoutError(f"{item.name} ran over {TEST_TIMEOUT} s inside the VM")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
