"""``xen-remus-compat demo`` (``make demo``).

For now: convert the bundled example xend domains tree
(``xen_remus_compat/data/xend-domains``, also ``examples/xend-domains``)
into a scratch directory and print the report and one converted file.

The Remus demo (primary, backup, checkpoints, failover on simxen) will
replace :func:`run`; keep the interface ``add_parser(sub, parents)`` /
``run(args, out, err) -> int`` and the rest of the CLI needs no change.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import os
import tempfile
from typing import Iterator, Optional, TextIO

from .. import convert as lib

NAME = "demo"
HELP = "run the demonstration (converts the bundled xend examples)"

#: Package-relative location of the bundled example tree.
EXAMPLES = ("data", "xend-domains")

#: The example whose converted config the demo prints in full (the PV guest
#: with the tap:remus: disk).
SHOWCASE = "web01"


def add_parser(sub, parents) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, parents=parents, help=HELP,
                       description="Convert the bundled example xend domains "
                       "(/var/lib/xend/domains layout) and print the report.")
    p.add_argument("-o", "--output-dir", dest="outdir", metavar="OUTDIR",
                   help="keep the converted files here (default: a "
                   "temporary directory, removed afterwards)")
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
            out.write(f"\n({dest} is removed now; use 'demo -o DIR' to keep "
                      "the files)\n")
    return 0
