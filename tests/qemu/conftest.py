"""The qemu tier: ``inside/`` holds the tests that run in the VM (under
Debian's kernel, with the real sch_plug); on the host only
``test_plug_vm.py`` (and the harness's own tests) are collected, and it
boots the VM that runs them."""
import os

collect_ignore = [] if os.environ.get("XRC_IN_VM") == "1" else ["inside"]

#: lines for the closing summary (VM wall time, in-VM counts)
SUMMARY = []


def pytest_terminal_summary(terminalreporter):
    if SUMMARY:
        terminalreporter.section("qemu tier")
        for line in SUMMARY:
            terminalreporter.line(line)
