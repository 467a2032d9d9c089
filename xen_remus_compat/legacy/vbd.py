"""``xen.remus.vbd`` (legacy-api.md section 4): ``phy:`` disks; registers on import."""
from __future__ import annotations

from . import blkdev


class VBD(blkdev.BlkDev):
    @classmethod
    def handles(cls, **props):
        uname = props.get("uname", "")
        return uname.startswith("phy:")


blkdev.register(VBD)
