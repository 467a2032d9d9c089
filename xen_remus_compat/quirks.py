"""Switches that restore legacy behaviour where we fixed a legacy bug.

legacy-api.md section 14.2 lists the quirks of the old ``xen.remus`` code.
We fix them by default; each switch here brings one back for a site whose
scripts depend on the old output.  Switches are read from the environment
variable ``XEN_REMUS_COMPAT_QUIRKS`` (comma-separated names) when first
asked for, or set in code with :func:`set_quirks`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Optional

ENV = "XEN_REMUS_COMPAT_QUIRKS"


@dataclass(frozen=True)
class Quirks:
    #: ``BlkDev.dev = dev.rstrip(':disk')`` (strips any of ``:disk`` chars).
    blkdev_rstrip: bool = False
    #: vif names from the sxpr list index, not xl's devid / vifname.
    vif_index_naming: bool = False
    #: sxp ``\\xHH`` letters decoded from 'A'/'a' and unknown escapes dropped.
    sxp_escapes: bool = False
    #: ``vdi.set_blockstore`` has no effect.
    vdi_set_blockstore_noop: bool = False
    #: ``NullSocket`` opens /dev/null with flags 0o666.
    nullsocket_flags: bool = False
    #: block-remus ``fail`` is not fatal (network still released).
    blockremus_fail_nonfatal: bool = False
    #: only IPv4 is redirected to the IFB (``proto ip``).
    netbuf_proto_ip: bool = False
    #: ``parsedominfo`` raises AttributeError on a repeated scalar key
    #: (real xend output repeats a vbd's ``bootable``).
    parsedominfo_dup_scalar: bool = False
    #: ``unknown command:`` printed every epoch when stdin is at EOF.
    stdin_eof_spam: bool = False

    @classmethod
    def names(cls) -> list:
        return [f.name for f in fields(cls)]

    @classmethod
    def parse(cls, text: str) -> "Quirks":
        wanted = [w.strip() for w in text.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in cls.names()]
        if unknown:
            raise ValueError(f"{ENV}: unknown quirk(s) {', '.join(unknown)}; "
                             f"known: {', '.join(cls.names())}")
        return cls(**{w: True for w in wanted})


_current: Optional[Quirks] = None


def get() -> Quirks:
    """The active switches (read from the environment on first use)."""
    global _current
    if _current is None:
        _current = Quirks.parse(os.environ.get(ENV, ""))
    return _current


def set_quirks(**changes: bool) -> Quirks:
    """Turn switches on or off in code; returns the new setting."""
    global _current
    _current = replace(get(), **changes)
    return _current


def reset() -> None:
    global _current
    _current = None
