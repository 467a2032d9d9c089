"""``xen.remus.vdi`` (legacy-api.md section 9.3): blktap1 blockstore helpers.

Kept for API completeness: the ``vdi_*`` tools belonged to blktap1 and are
not shipped with xl-era Xen, so every command fails with a clear
``VDIException`` on such hosts.  ``set_blockstore`` works (the legacy one
assigned a local; ``XEN_REMUS_COMPAT_QUIRKS=vdi_set_blockstore_noop``
restores that).
"""
from __future__ import annotations

import shlex
import subprocess

from .. import quirks

_blockstore = "/blockstore.dat"


def set_blockstore(blockstore: str) -> None:
    global _blockstore
    if quirks.get().vdi_set_blockstore_noop:
        return
    _blockstore = blockstore


def run(cmd: str):
    """Run a shell command; returns ``(exit_ok, non_blank_lines)``."""
    proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True,
                          errors="replace")
    lines = [ln for ln in proc.stdout.split("\n") if ln.strip()]
    return proc.returncode == 0, lines


def _q(*words) -> tuple:
    """Each operand quoted for the shell: a name is a name, never shell
    syntax (the legacy interpolated them raw; docs/decisions.md,
    "Hardening the receiver")."""
    return tuple(shlex.quote(str(w)) for w in words)


class VDIException(Exception):
    pass


class SnapShot:
    def __init__(self, vdi, block, index):
        self.__vdi = vdi
        self.__block = block
        self.__index = index

    def __str__(self):
        return "%s %s %s" % (self.__vdi.id(), self.__block, self.__index)

    def vdi(self):
        return self.__vdi

    def block(self):
        return self.__block

    def index(self):
        return self.__index

    def match(self, block, index):
        return self.__block == block and self.__index == index


class VDI:
    def __init__(self, id, name):
        self.__id = id
        self.__name = name

    def __str__(self):
        return "vdi: %s %s" % (self.__id, self.__name)

    def id(self):
        return self.__id

    def name(self):
        return self.__name

    def list_snapshots(self):
        res = []
        ok, lines = run("vdi_snap_list %s %s" % _q(_blockstore, self.__id))
        if not ok:
            raise VDIException("Error reading snapshot list")
        for line in lines[1:]:
            block, index = line.split()
            res.append(SnapShot(self, block, index))
        return res

    def snapshot(self):
        ok, lines = run("vdi_checkpoint %s %s" % _q(_blockstore, self.__id))
        if ok and lines:
            fields = lines[0].split()
            if len(fields) == 3:
                return SnapShot(self, fields[1], fields[2])
        raise VDIException("Error taking vdi snapshot")


def create(name, snap):
    ok, _ = run("vdi_create %s %s %s %s" % _q(_blockstore, name, snap.block(),
                                              snap.index()))
    if not ok:
        raise VDIException("Unable to create vdi from snapshot")
    return lookup_by_name(name)


def fill(name, img):
    ok, _ = run("vdi_create %s %s" % _q(_blockstore, name))
    if not ok:
        raise VDIException("Unable to create vdi from disk img file")
    vdi = lookup_by_name(name)
    ok, _ = run("vdi_fill %s %s" % _q(vdi.id(), img))
    if not ok:
        raise VDIException("Unable to create vdi from disk img file")
    return vdi


def list_vdis():
    ok, lines = run("vdi_list %s" % _q(_blockstore))
    if not ok:
        raise VDIException("Error doing vdi list")
    vdis = []
    for line in lines:
        parts = line.split(None, 1)
        if len(parts) == 2:
            vdis.append(VDI(parts[0], parts[1]))
    return vdis


def lookup_by_id(id):
    for vdi in list_vdis():
        if vdi.id() == id:
            return vdi
    raise VDIException("No match from vdi id")


def lookup_by_name(name):
    for vdi in list_vdis():
        if vdi.name() == name:
            return vdi
    raise VDIException("No match for vdi name")
