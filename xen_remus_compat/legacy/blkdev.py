"""``xen.remus.blkdev`` (legacy-api.md section 4): disk descriptors.

Fixed: ``dev`` loses a literal ``:disk`` suffix only (the legacy
``rstrip(':disk')`` turned ``hdd`` into ``h``); the old rule comes back with
``XEN_REMUS_COMPAT_QUIRKS=blkdev_rstrip``.
"""
from __future__ import annotations

from .. import quirks

handlers = []


class BlkDevException(Exception):
    pass


def _strip_disk(dev: str) -> str:
    if quirks.get().blkdev_rstrip:
        return dev.rstrip(":disk")
    return dev[:-len(":disk")] if dev.endswith(":disk") else dev


class BlkDev(object):
    "Object representing a VM block device"

    def __init__(self, **props):
        self.uname = ""
        if "dev" not in props:
            raise BlkDevException("no device")
        if "mode" not in props:
            raise BlkDevException("no mode")
        self.__dict__.update(props)
        self.dev = _strip_disk(props["dev"])

    def __str__(self):
        return "%s,%s,%s" % (self.uname, self.dev, self.mode)


def register(handler):
    "register a block device class with parser"
    if handler not in handlers:
        handlers.insert(0, handler)


def parse(props):
    "turn a vm device dictionary into a blkdev object"
    for handler in handlers:
        if handler.handles(**props):
            return handler(**props)
    return BlkDev(**props)
