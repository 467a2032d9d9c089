"""``xen.xend.osdep`` (legacy-api.md §3.3, §12.4): dom0 balloon statistics.

``xen.remus.vm`` imported it for ``lookup_balloon_stat``.  Linux only here
(xl hosts are Linux or FreeBSD; xend's NetBSD and Solaris branches are not
kept).  ``/proc/xen/balloon`` is gone on pvops kernels, so the sysfs files
of ``xen_memory0`` are read first and the proc file is the fallback: the
reverse of xend's order, same values (KiB).  Paths are module settings.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

PROC_XEN_BALLOON = "/proc/xen/balloon"
SYSFS_XEN_MEMORY = "/sys/devices/system/xen_memory/xen_memory0"

#: label -> (sysfs file under SYSFS_XEN_MEMORY, line label in /proc/xen/balloon)
BALLOON_STATS: Dict[str, Tuple[str, str]] = {
    "current": ("info/current_kb", "Current allocation"),
    "target": ("target_kb", "Requested target"),
    "low-balloon": ("info/low_kb", "Low-mem balloon"),
    "high-balloon": ("info/high_kb", "High-mem balloon"),
    "limit": ("info/hard_limit_kb", "Xen hard limit"),
}

#: xend's default vif hotplug script (libxl's default too).
vif_script = "vif-bridge"
xend_autorestart = True


def _first_int(text: str) -> Optional[int]:
    words = text.split()
    return int(words[0]) if words and words[0].isdigit() else None


def lookup_balloon_stat(label: str) -> Optional[int]:
    """dom0's balloon statistic ``label`` in KiB, or ``None`` when the host
    does not report it.  An unknown label raises ``KeyError`` (as xend)."""
    sysfile, procname = BALLOON_STATS[label]
    if os.access(SYSFS_XEN_MEMORY, os.F_OK):
        try:
            with open(os.path.join(SYSFS_XEN_MEMORY, sysfile)) as f:
                return _first_int(f.read())
        except FileNotFoundError:
            return None
    if os.access(PROC_XEN_BALLOON, os.F_OK):
        with open(PROC_XEN_BALLOON) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == procname:
                    return _first_int(value)
        return None
    return None
