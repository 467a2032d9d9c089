"""The target of a legacy Remus disk: ``remus:HOST:PORT|TYPE:PATH``.

xend's ``tap:remus:HOST:PORT|aio:/img`` uname (legacy-api.md section 13.1)
and the xl disk this package writes for it (``script=block-remus``,
``target=remus:HOST:PORT|TYPE:PATH``, xl-side.md section 1.8) carry the
same replication peer; ``diskspec.py`` (unames) and ``disk_libxl.py``
(libxl JSON) both read it here into a :class:`~..model.RemusPeer`.
"""
from __future__ import annotations

from typing import Optional

from ... import errors
from ..model import Disk, RemusPeer

__all__ = ["REMUS_SCRIPT", "remus_peer", "remus_target", "remus_from_target"]

#: Hotplug script that gets a legacy remus disk (xl-side.md §1.8).
REMUS_SCRIPT = "block-remus"


def remus_peer(params: str) -> RemusPeer:
    """``HOST:PORT|TYPE:PATH`` (legacy-api.md §13.1: split on ``|``, each
    element at its first ``:``; the remus name is host up to the first ``:``)."""
    peer, bar, inner = params.partition("|")
    host, colon, port = peer.partition(":")
    if not bar or not colon or not host:
        raise errors.DiskSpecError(
            f"remus disk {params!r}: expected HOST:PORT|TYPE:PATH")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise errors.DiskSpecError(
            f"remus disk {params!r}: port {port!r} is not a TCP port number")
    driver, colon, path = inner.partition(":")
    if not colon or not driver or not path:
        raise errors.DiskSpecError(
            f"remus disk {params!r}: the underlying image {inner!r} is not TYPE:PATH")
    return RemusPeer(host=host, port=int(port), inner_driver=driver, inner_path=path)


def remus_target(peer: RemusPeer) -> str:
    """The xl target (and tapdisk params) of a remus disk."""
    return f"remus:{peer.host}:{peer.port}|{peer.inner_driver}:{peer.inner_path}"


def remus_from_target(disk: Disk) -> Optional[RemusPeer]:
    """The peer of an xl disk written by ``diskspec.format_xl`` in script
    form (``script=block-remus``, ``target=remus:...``), else None."""
    if disk.remus is not None:
        return disk.remus
    script = (disk.script or "").rsplit("/", 1)[-1]
    target = disk.target or ""
    if script != REMUS_SCRIPT or not target.startswith("remus:"):
        return None
    try:
        return remus_peer(target[len("remus:"):])
    except errors.DiskSpecError:
        return None
