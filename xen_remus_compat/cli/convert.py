"""``xen-remus-compat convert``: xend configs -> ``OUTDIR/<name>.cfg``
(+ ``.json``).  Options and printing only; the work is
:mod:`xen_remus_compat.migrate`."""
from __future__ import annotations

import argparse
import json
import time
from typing import Optional, TextIO

from .. import atomic, errors
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
    p.add_argument("--check-host", action="store_true",
                   help="check that every path written (kernel, ramdisk, "
                   "bootloader, firmware, device model, file and phy disks) "
                   "exists on this host, and report the missing ones")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the summary line")
    p.add_argument("--report-json", metavar="FILE",
                   help="also write the report as JSON to FILE ('-': to "
                   "stdout, instead of the text report)")
    p.add_argument("--lenient", action="store_true",
                   help="accept the unbalanced parentheses libvirt tolerated "
                   "(missing final ')', stray trailing ')')")
    p.set_defaults(run=run)
    return p


class Progress:
    """``converting N/TOTAL NAME`` on one terminal line, for batches; only
    when ``stream`` is a terminal, at most ten updates a second, erased
    when done."""

    def __init__(self, stream: TextIO, *, minimum: int = 2,
                 clock=time.monotonic) -> None:
        try:
            self.live = stream.isatty()
        except (AttributeError, ValueError):
            self.live = False
        self.stream, self.minimum, self.clock = stream, minimum, clock
        self.last = 0.0
        self.width = 0

    def __call__(self, done: int, total: int, name: str) -> None:
        if not self.live or total < self.minimum:
            return
        now = self.clock()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        text = "" if done >= total else f"converting {done + 1}/{total} {name}"[:78]
        pad = max(0, self.width - len(text))
        self.stream.write("\r" + text + " " * pad + ("\r" if done >= total else ""))
        self.stream.flush()
        self.width = len(text)


def _write_json(path: str, report: dict, out: TextIO) -> None:
    text = json.dumps(report, indent=1, sort_keys=False) + "\n"
    if path == "-":
        out.write(text)
        return
    try:
        atomic.write_atomic(path, text)
    except OSError as exc:
        raise errors.InputError(f"cannot write the report: {exc.strerror or exc}",
                                source=path) from exc


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    plan = lib.prepare(args.inputs, args.outdir, remus=args.remus_disks,
                       lenient=args.lenient, with_json=args.json,
                       to_pvh=args.to_pvh, progress=Progress(err))
    if args.check_host:
        lib.check_host(plan)
    # with --report-json -, stdout holds the JSON alone
    text_out: Optional[TextIO] = None if args.report_json == "-" else out
    if args.dry_run:
        if text_out is not None:
            for item in plan.files:
                if args.diff:
                    text_out.write(lib.unified_diff(item))
                elif item.status != "unchanged" and not args.quiet:
                    text_out.write(f"==> {item.path} ({item.status}) <==\n{item.content}")
            text_out.write(lib.format_report(plan, dry_run=True, force=args.force,
                                             quiet=args.quiet))
        if args.report_json:
            _write_json(args.report_json, lib.report_json(plan, dry_run=True), out)
        return 0
    if args.diff and text_out is not None:
        for item in plan.files:
            text_out.write(lib.unified_diff(item))
    lib.check_overwrites(plan.files, args.force)
    lib.write(plan, force=args.force)
    if text_out is not None:
        text_out.write(lib.format_report(plan, quiet=args.quiet))
    if args.report_json:
        _write_json(args.report_json, lib.report_json(plan), out)
    return 0
