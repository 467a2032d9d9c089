"""``convert --check-host``: is every path written into the .cfg files on
this host?

The xl.cfg writer lists each host path it wrote (``XlConfig.paths``): the
kernel and ramdisk (not with a bootloader: those are paths in the guest),
the bootloader (a bare name is looked up as xl does, ``hostpaths.candidates``),
the firmware and device model, and the image or block device behind each
file or phy disk (a remus disk's underlying image; not a DRBD resource or
other hotplug-script target, which is no path).  Run on the xl host the
domains will run on, the check names what is missing before ``xl create``
does.  Side effects are parameters (``exists``, ``which``) so that it can be
tested anywhere.
"""
from __future__ import annotations

import os
import shutil
from typing import Callable, List, Optional, Sequence, Tuple

from ..config import hostpaths
from .plan import ConversionPlan, DomainResult

__all__ = ["check_host", "check_domain"]

Exists = Callable[[str], bool]
Which = Callable[[str], Optional[str]]


def _found(kind: str, path: str, exists: Exists, which: Which) -> bool:
    for candidate in hostpaths.candidates(kind, path):
        if candidate.startswith("PATH:"):
            if which(candidate[len("PATH:"):]):
                return True
        elif exists(candidate):
            return True
    return False


def check_domain(res: DomainResult, *, exists: Exists = os.path.exists,
                 which: Which = shutil.which) -> List[Tuple[str, str]]:
    """(key, path) of the paths in ``res`` that are not on this host; also
    stored in ``res.missing``."""
    missing = [(key, path) for kind, key, path in res.paths
               if not _found(kind, path, exists, which)]
    res.missing = missing
    return missing


def check_host(plan: ConversionPlan, *, exists: Exists = os.path.exists,
               which: Which = shutil.which) -> int:
    """Check every domain of ``plan``; the number of missing paths."""
    return sum(len(check_domain(res, exists=exists, which=which))
               for res in plan.results)


def missing_lines(results: Sequence[DomainResult]) -> List[str]:
    """``DOMAIN: KEY PATH`` for each missing path."""
    return [f"{res.name}: {key} {path}" for res in results
            for key, path in (res.missing or [])]
