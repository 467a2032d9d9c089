"""Host memory facts for shadow-mode ballooning, on an xl host.

legacy-api.md section 3.3 (``getshadowmem``) read free memory from libxc,
dom0's allocation from ``/proc/xen/balloon`` and ballooned through xend.
Here: free memory from ``xen.lowlevel.xc`` when Debian's binding is
importable, else ``xl info``; dom0's allocation from sysfs (the pvops path)
or ``/proc/xen/balloon``; the target through ``xl mem-set 0 <N>m``.
"""
from __future__ import annotations

import re
from typing import Callable, List, Optional

from .. import errors
from ..sources.xlcli import _run_xl, find_xl

SYSFS_CURRENT = "/sys/devices/system/xen_memory/xen_memory0/info/current_kb"
PROC_BALLOON = "/proc/xen/balloon"


class XlHostMemory:
    def __init__(self, xl: Optional[str] = None,
                 run: Callable[[List[str]], str] = _run_xl,
                 sysfs: str = SYSFS_CURRENT, proc: str = PROC_BALLOON) -> None:
        self._xl = xl
        self.run = run
        self.sysfs = sysfs
        self.proc = proc

    @property
    def xl(self) -> str:
        if self._xl is None:
            self._xl = find_xl()
        return self._xl

    def free_kib(self) -> int:
        try:
            import xen.lowlevel.xc as xc  # Debian's binding, when installed
            return int(xc.xc().physinfo()["free_memory"])
        except Exception:
            pass
        text = self.run([self.xl, "info"])
        m = re.search(r"^free_memory\s*:\s*(\d+)", text, re.M)
        if not m:
            raise errors.XenError("'xl info' did not report free_memory")
        return int(m.group(1)) * 1024

    def dom0_current_kib(self) -> int:
        try:
            with open(self.sysfs) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            pass
        try:
            with open(self.proc) as f:
                for line in f:
                    if line.startswith("Current allocation"):
                        return int(line.split(":")[1].split()[0])
        except (OSError, ValueError, IndexError):
            pass
        raise errors.EnvironmentProblem(
            f"cannot read dom0's memory allocation ({self.sysfs}, {self.proc})")

    def set_dom0_target_mib(self, mib: int) -> None:
        self.run([self.xl, "mem-set", "--", "0", f"{int(mib)}m"])


def default() -> XlHostMemory:
    return XlHostMemory()
