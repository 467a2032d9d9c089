"""The xen tier: a real Xen 4.17 hypervisor nested under QEMU (docs/xen-tier.md).
Lines for the closing summary: per boot and per scenario."""

SUMMARY = []


def pytest_terminal_summary(terminalreporter):
    if SUMMARY:
        terminalreporter.section("xen tier")
        for line in SUMMARY:
            terminalreporter.line(line)
