"""``xen.remus.tapdisk`` (legacy-api.md sections 0.2, 4).

The legacy module could not be imported (it subclassed an unqualified
``BlkDev``); this one can.  ``TapDisk`` handles blktap unames (``tap:``,
``tap2:``) and is *not* registered automatically, as before: the legacy
registry never saw it because the import failed.
"""
from __future__ import annotations

from .blkdev import BlkDev


class TapDisk(BlkDev):
    @classmethod
    def handles(cls, **props):
        uname = props.get("uname", "")
        return uname.startswith("tap:") or uname.startswith("tap2:")
