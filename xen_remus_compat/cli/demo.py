"""``xen-remus-compat demo`` (``make demo``): the main job on the embedded default.

Protects a simulated guest (``lowlevel/simxen``) with the ``remus`` command
against a simulated backup on this machine for a few seconds at the default
interval, kills the primary at a random moment, and prints a table and the
verdict that the backup holds exactly the primary's memory at the last
complete checkpoint (:mod:`xen_remus_compat.sim.demo`).  ``--json`` prints the
same summary as one object, with the per-checkpoint series; ``--plot FILE``
draws the series as an SVG (:mod:`xen_remus_compat.sim.plot`).  ``--convert`` runs the config-migration demo
instead: it converts the bundled example xend domains tree
(``xen_remus_compat/data/xend-domains``, also ``examples/xend-domains``).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import json
import os
import tempfile
from typing import Iterator, Optional, TextIO

from .. import atomic, errors
from .. import migrate as lib

NAME = "demo"
HELP = "protect a simulated guest, kill the primary, check the backup"

#: Package-relative location of the bundled example tree.
EXAMPLES = ("data", "xend-domains")

#: The example whose converted config the demo prints in full (the PV guest
#: with the tap:remus: disk).
SHOWCASE = "web01"


def add_parser(sub, parents) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, parents=parents, help=HELP,
                       description="Protect a simulated guest with remus against "
                       "a simulated backup, kill the primary at a random moment, "
                       "and check that the backup holds exactly the primary's "
                       "memory at the last complete checkpoint.")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object, with a series "
                   "per checkpoint (pause, pages, throughput, ack latency)")
    p.add_argument("--plot", metavar="FILE",
                   help="draw the pause per checkpoint and the throughput as "
                   "an SVG image in FILE")
    p.add_argument("--seconds", type=float, default=4.0,
                   help="protect for about this long before the kill (default 4)")
    p.add_argument("-i", "--interval", type=int, default=200, metavar="MS",
                   help="checkpoint interval (default 200 ms, as remus)")
    p.add_argument("--pages", type=int, default=16384,
                   help="guest memory in 4 KiB pages (default 16384 = 64 MiB)")
    p.add_argument("--dirty-rate", type=float, default=5.0, metavar="PAGES_PER_MS",
                   help="pages the guest dirties per millisecond (default 5)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for the guest workload and the kill moment")
    p.add_argument("--convert", action="store_true",
                   help="run the config-migration demo instead (convert the "
                   "bundled xend domains)")
    p.add_argument("-o", "--output-dir", dest="outdir", metavar="OUTDIR",
                   help="with --convert: keep the converted files here")
    p.set_defaults(run=run)
    return p


@contextlib.contextmanager
def examples_dir() -> Iterator[str]:
    """The bundled example tree as a real directory path."""
    ref = importlib.resources.files("xen_remus_compat").joinpath(*EXAMPLES)
    with importlib.resources.as_file(ref) as path:
        yield os.fspath(path)


@contextlib.contextmanager
def _outdir(wanted: Optional[str]) -> Iterator[str]:
    if wanted:
        yield wanted
        return
    with tempfile.TemporaryDirectory(prefix="xen-remus-compat-demo-") as tmp:
        yield tmp


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.convert:
        if args.plot:
            raise errors.InputError("--plot draws the Remus demo; it does not "
                                    "go with --convert")
        return run_convert(args, out, err)
    from ..sim import demo
    if not args.json:
        out.write("Remus demo: a simulated primary and backup on this machine "
                  "(lowlevel/simxen, no hypervisor needed)\n")
    res = demo.run_demo(seconds=args.seconds, interval=args.interval,
                        pages=args.pages, dirty_rate=args.dirty_rate, seed=args.seed,
                        log=None if args.json else (lambda m: out.write(m + "\n")))
    if args.plot:
        from ..sim import plot
        try:
            atomic.write_atomic(args.plot, plot.svg(
                res.series, title=f"Remus demo: {res.checkpoints} checkpoints every "
                f"{res.interval_ms} ms"))
        except OSError as exc:
            raise errors.InputError(f"cannot write the plot: {exc.strerror or exc}",
                                    source=args.plot) from exc
    if args.json:
        out.write(json.dumps(res.as_dict(), sort_keys=True) + "\n")
    else:
        out.write("\n" + demo.format_table(res) + "\n")
        if args.plot:
            out.write(f"plot: {args.plot}\n")
    return 0 if (res.failover_ok and res.memory_match) else 1


def run_convert(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with examples_dir() as src, _outdir(args.outdir) as dest:
        out.write(f"Converting the example xend domains tree {src}\n"
                  f"into {dest} (xen-remus-compat convert {src} -o {dest} "
                  "--json)\n\n")
        plan = lib.convert([src], dest, with_json=True)
        out.write(lib.format_report(plan))
        for item in plan.files:
            if item.domain == SHOWCASE and item.path.endswith(lib.CFG_SUFFIX):
                out.write(f"\n==> {item.path} <==\n{item.content}")
        if not args.outdir:
            out.write(f"\n({dest} is removed now; use 'demo --convert -o DIR' to keep "
                      "the files)\n")
    return 0
