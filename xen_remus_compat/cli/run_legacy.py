"""``xen-remus-compat run-legacy [--sim] [--show] SCRIPT [ARGS...]``.

Runs a remus-era Python 2 script unchanged (the work is
:mod:`xen_remus_compat.py2.run`): translated in memory, run as ``__main__``
with ``sys.argv = [SCRIPT, ARGS...]``, its ``xen.remus``/``xen.xend``
imports answered by our facade.  The exit status is the script's.

* ``--show`` prints the translated text (a standalone Python 3 script) on
  stdout instead of running it, and why it was taken for Python 2 or 3 on
  stderr;
* ``--python 2|3`` overrides the dialect detection;
* ``--sim`` runs the script against the simulated Xen (lowlevel/simxen):
  the process re-executes itself under the stand-in libraries when needed,
  domain lookups use the ``sim`` source, ``xm|xl destroy`` in a fault
  injection destroys the simulated guest and ``ifdown``/``ifup`` are not
  run.  The guest is described by the ``SIMXEN_*`` variables,
  ``SIMXEN_STATE_DIR`` says where simxen records what it did.

Without ``--sim`` the script's ``util.runcmd('xm ...')`` calls run ``xl``
for the subcommands xl shares with xm (:data:`pyrun.XM_TO_XL`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import List, Optional, TextIO

from .. import errors

NAME = "run-legacy"
HELP = "run a legacy (Python 2) remus script unchanged"
PROG = "xen-remus-compat"


def add_parser(sub, parents) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME, parents=parents, help=HELP,
        description="Translate a remus-era Python 2 script to Python 3 in "
                    "memory and run it as __main__, with xen.remus.*, "
                    "xen.lowlevel.checkpoint and xen.xend.* provided by "
                    "xen-remus-compat.  Python 3 scripts run as they are.",
        epilog="Exit status: the script's; 1 when it cannot be translated.")
    _arguments(p)
    p.set_defaults(run=run)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sim", action="store_true",
                   help="run against the simulated Xen (SIMXEN_* variables "
                        "describe the guest)")
    p.add_argument("--show", action="store_true",
                   help="print the translated script instead of running it")
    p.add_argument("--python", choices=("auto", "2", "3"), default="auto",
                   help="the script's Python dialect (default: detect)")
    p.add_argument("script", metavar="SCRIPT", help="the legacy script")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="the script's own arguments")


def _child_argv(args: argparse.Namespace) -> List[str]:
    return (["-m", "xen_remus_compat.cli.run_legacy", "--sim",
             "--python", args.python, args.script] + list(args.args))


def _reexec_sim(args: argparse.Namespace, out: TextIO, err: TextIO,
                stdin: Optional[TextIO]) -> int:
    """Run this command again under the stand-in libraries."""
    from ..sim import simxen
    direct = (out is sys.stdout and err is sys.stderr
              and (stdin is None or stdin is sys.stdin))
    if direct:
        rc = simxen.reexec_if_needed(_child_argv(args))
        return 0 if rc is None else rc
    # a caller with its own streams (tests, embedding): relay through pipes
    env_base = dict(os.environ)
    force = env_base.get("SIMXEN_FORCE") == "1"
    env = simxen.environment(env_base.get("SIMXEN_STATE_DIR"),
                             simxen.SimDomain.from_env(env_base), force=force)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(simxen.ROOT)] + [p for p in [env_base.get("PYTHONPATH")] if p])
    data = stdin.read() if stdin is not None else None
    proc = subprocess.run([sys.executable] + _child_argv(args), env=env,
                          input=data, capture_output=True, text=True,
                          stdin=None if data is not None else subprocess.DEVNULL)
    out.write(proc.stdout)
    err.write(proc.stderr)
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


def _sim_memset(domid: int, mib: int) -> None:
    from ..log import logger
    logger.info("run-legacy --sim: memory target of domain %s -> %d MiB "
                "(not applied to the simulated guest)", domid, mib)


def _prepare(sim: bool) -> None:
    """The facade's injection points for a legacy script (docs/decisions.d/run-legacy.md)."""
    from ..py2 import run as pyrun
    from ..legacy import util, vm
    from ..legacy.xend import XendClient
    util.RUNNER = pyrun.LegacyCommands(sim=sim)
    if sim:
        vm.SOURCE = "sim"
        XendClient.server.memset = _sim_memset


def run(args: argparse.Namespace, out: Optional[TextIO] = None,
        err: Optional[TextIO] = None, stdin: Optional[TextIO] = None) -> int:
    """Translate ``args.script``; show it, or run it (re-executing under
    simxen first with ``--sim``).  Returns the script's exit status."""
    from ..py2 import run as pyrun
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    t = pyrun.translate_file(args.script, dialect=args.python)
    if args.show:
        err.write(f"# {args.script}: Python {t.dialect} ({t.reason})\n")
        out.write(t.show_text())
        return 0
    if args.sim:
        from ..sim import simxen
        if not simxen.active():
            return _reexec_sim(args, out, err, stdin)
    _prepare(args.sim)
    return pyrun.run_main(t, args.args, stdout=out, stderr=err, stdin=stdin)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} {NAME}", description=HELP)
    _arguments(p)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Standalone entry point (``python -m xen_remus_compat.cli.run_legacy``,
    also what ``--sim`` re-executes)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except errors.CompatError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return e.exit_status if e.exit_status in (1, 2) else 1


if __name__ == "__main__":
    sys.exit(main())
