"""``xen-remus-compat show FILE``: pretty-print a domain configuration as
indented sxpr, libxl JSON or xl.cfg (the work is
:func:`xen_remus_compat.migrate.show.render`)."""
from __future__ import annotations

import argparse
from typing import TextIO

from .. import migrate as lib

NAME = "show"
HELP = "pretty-print an sxpr, libxl JSON or libvirt XML config"


def add_parser(sub, parents) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, parents=parents, help=HELP,
        description="Print FILE (sxpr, 'xl list -l' JSON, libvirt XML, or a "
                    "xend domains directory) as indented sxpr (default), "
                    "libxl JSON or xl.cfg.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-f", "--format", choices=lib.SHOW_FORMATS, default="sxpr",
                   help="output format (default: sxpr)")
    p.add_argument("--remus-disks", choices=lib.REMUS_DISK_MODES,
                   default="script", help="for --format xl: how tap:remus: "
                   "disks are written (see convert)")
    p.add_argument("--lenient", action="store_true",
                   help="accept the unbalanced parentheses libvirt tolerated")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    out.write(lib.render(args.files, args.format, lenient=args.lenient,
                         remus=args.remus_disks))
    return 0
