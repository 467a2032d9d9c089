"""``xen-remus-compat convert``: xend configs -> ``OUTDIR/<name>.cfg``
(+ ``.json``).  Options and printing only; the work is
:mod:`xen_remus_compat.migrate`."""
from __future__ import annotations

import argparse
from typing import TextIO

from .. import migrate as lib

NAME = "convert"
HELP = "convert xend/libxl/libvirt domain configs to xl.cfg files"


def add_parser(sub, parents) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, parents=parents, help=HELP,
        description="Convert domain configurations (sxpr: runtime, stored "
                    "config.sxp or an 'xm list -l' dump; 'xl list -l' JSON; "
                    "libvirt XML; or a /var/lib/xend/domains tree) into "
                    "OUTDIR/<name>.cfg for xl.  All inputs are read and "
                    "translated before anything is written: on any error "
                    "nothing is written.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="file or xend domains directory")
    p.add_argument("-o", "--output-dir", dest="outdir", required=True,
                   metavar="OUTDIR", help="directory for the .cfg files "
                   "(created if missing)")
    p.add_argument("--json", action="store_true",
                   help="also write OUTDIR/<name>.json (libxl_domain_config)")
    p.add_argument("--dry-run", action="store_true",
                   help="write nothing; print the files that would be written")
    p.add_argument("--diff", action="store_true",
                   help="print a unified diff of each file against what is "
                   "in OUTDIR now")
    p.add_argument("--force", action="store_true",
                   help="overwrite existing files whose content differs")
    p.add_argument("--remus-disks", choices=lib.REMUS_DISK_MODES,
                   default="script",
                   help="tap:remus: disks: keep replication through the "
                   "block-remus hotplug script (script, default) or use the "
                   "underlying image (plain)")
    p.add_argument("--to-pvh", action="store_true",
                   help="convert PV and HVM domains to PVH guests (what a stock "
                   "Debian hypervisor can protect with Remus); refused, with the "
                   "reason, where PVH would not boot the same guest")
    p.add_argument("--lenient", action="store_true",
                   help="accept the unbalanced parentheses libvirt tolerated "
                   "(missing final ')', stray trailing ')')")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan = lib.prepare(args.inputs, args.outdir, remus=args.remus_disks,
                       lenient=args.lenient, with_json=args.json,
                       to_pvh=args.to_pvh)
    if args.dry_run:
        for item in plan.files:
            if args.diff:
                out.write(lib.unified_diff(item))
            elif item.status != "unchanged":
                out.write(f"==> {item.path} ({item.status}) <==\n{item.content}")
        out.write(lib.format_report(plan, dry_run=True, force=args.force))
        return 0
    if args.diff:
        for item in plan.files:
            out.write(lib.unified_diff(item))
    lib.check_overwrites(plan.files, args.force)
    lib.write(plan, force=args.force)
    out.write(lib.format_report(plan))
    return 0
