"""``xen-remus-compat disk UNAME DEV MODE``: one legacy xend disk triple ->
one xl disk string (xl-side.md §1, §1.8).

stdout carries exactly the xl string, so ``$(xen-remus-compat disk ...)``
is safe in scripts; notes go to stderr; ``--explain`` appends the parsed
fields on stdout after a blank line, each line starting with ``#``.  No xl
equivalent -> exit 1 and the reason on stderr.
"""
from __future__ import annotations

import argparse
import json
from typing import List, TextIO

from .. import errors
from ..migrate import REMUS_DISK_MODES

NAME = "disk"
HELP = "translate one legacy disk (uname dev mode) to an xl disk string"

#: Legacy (xend) fields shown by --explain, in this order.
_LEGACY_FIELDS = (("uname", "uname"), ("device_class", "device class"),
                  ("mode", "mode"), ("shareable", "shareable (w!)"))


def add_parser(sub, parents) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, parents=parents, help=HELP,
        description="Print the xl disk string (xl.cfg 'disk' entry, "
                    "'xl block-attach' argument) for a legacy xend disk, e.g. "
                    "'tap:remus:backup:9000|aio:/dev/vg/web01 xvda w'.")
    p.add_argument("uname", metavar="UNAME",
                   help="xend uname, e.g. phy:/dev/vg/lv, tap:aio:/img, "
                   "tap:remus:HOST:PORT|aio:/img ('' for an empty cdrom)")
    p.add_argument("dev", metavar="DEV", help="xend dev, e.g. xvda, hdc:cdrom")
    p.add_argument("mode", metavar="MODE", help="xend mode: r, w or w!")
    p.add_argument("--remus-disks", choices=REMUS_DISK_MODES, default="script",
                   help="remus disks via script=block-remus (default) or the "
                   "plain underlying image")
    p.add_argument("--explain", action="store_true",
                   help="after the string, print the parsed fields")
    p.set_defaults(run=run)
    return p


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, str) and (not v or v != v.strip()) else str(v)


def explain_lines(tr, uname: str, dev: str, mode: str) -> List[str]:
    """The ``--explain`` block (without the leading blank line)."""
    from ..config.specs import diskspec
    disk = tr.disk
    lines = [f"# input: uname={uname!r} dev={dev!r} mode={mode!r}",
             "# libxl_device_disk fields (defaults omitted):"]
    fields = diskspec.disk_to_libxl(disk)
    width = max((len(k) for k in fields), default=0)
    lines.extend(f"#   {k.ljust(width)}  {_value(v)}" for k, v in fields.items())
    lines.append("# legacy (xend) view:")
    for attr, label in _LEGACY_FIELDS:
        value = getattr(disk, attr, None)
        if value not in (None, "", False):
            lines.append(f"#   {label}: {_value(value)}")
    if disk.remus is not None:
        peer = disk.remus
        lines.append(f"#   remus peer: {peer.host}:{peer.port}, replicating "
                     f"{peer.inner_driver}:{peer.inner_path}")
    for note in tr.diagnostics:
        lines.append(f"# note: {note}")
    return lines


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..config.specs import diskspec
    try:
        tr = diskspec.translate(args.uname, args.dev, args.mode,
                                remus=args.remus_disks)
    except errors.CompatError as exc:
        if exc.source is None:
            exc.source = "disk"
        raise
    out.write(tr.xl + "\n")
    if args.explain:
        out.write("\n" + "\n".join(explain_lines(tr, args.uname, args.dev,
                                                 args.mode)) + "\n")
    else:
        for note in tr.diagnostics:
            err.write(f"xen-remus-compat: note: {note}\n")
    return 0
