"""``xen-remus-compat``: the migration command (design.md, "Translation").

Thin by design: each subcommand module (``convert``, ``disk``, ``show``,
``demo``) declares its options and calls the library; this module owns what
is common to all of them:

* exit status: 0 success; 1 bad input (:class:`errors.InputError` and its
  subclasses, usage errors), printed as one line
  ``xen-remus-compat: <source>:<line>:<col>: <message>`` with no traceback;
  2 for our own bugs (any other exception): one line saying so, the
  traceback only with ``--debug``;
* logging, ``-v``/``--debug`` and ``--version``: :mod:`.base`, shared by
  every command.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence, TextIO

from . import base
from . import completion as completion_cmd
from . import convert as convert_cmd
from . import demo as demo_cmd
from . import disk as disk_cmd
from . import receive_cmd
from . import run_legacy
from . import show as show_cmd
from . import stream_cmd

PROG = "xen-remus-compat"

#: Subcommands in the order ``--help`` lists them.
SUBCOMMANDS = (convert_cmd, disk_cmd, show_cmd, demo_cmd, stream_cmd, receive_cmd,
               run_legacy, completion_cmd)

EXIT_OK = base.EXIT_OK
EXIT_INPUT = base.EXIT_INPUT
EXIT_BUG = base.EXIT_BUG
EXIT_INTERRUPTED = base.EXIT_INTERRUPTED
UsageError = base.UsageError


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar (also used to check the man page)."""
    parser = base.ArgParser(
        prog=PROG,
        description="Migrate xend domain configurations to xl, and inspect "
                    "legacy sxpr, libxl JSON and legacy disk specs.",
        epilog="Exit status: 0 success, 1 bad input, 2 internal error (a bug).")
    base.add_common_arguments(parser, PROG, top=True)
    parser.set_defaults(parser_factory=build_parser)    # for `completion`
    common = base.ArgParser(add_help=False)
    base.add_common_arguments(common, PROG, top=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=base.ArgParser)
    sub.required = True
    for module in SUBCOMMANDS:
        module.add_parser(sub, [common])
    return parser


def _silence_stdout(stdout: TextIO) -> None:
    """After EPIPE on stdout, point fd 1 at /dev/null so the interpreter's
    final flush does not complain again."""
    if stdout is sys.__stdout__:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass


def main(argv: Optional[Sequence[str]] = None, *,
         stdout: Optional[TextIO] = None,
         stderr: Optional[TextIO] = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the
    exit status."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    args_list: List[str] = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(args_list)
    except UsageError as exc:
        err.write(f"{PROG}: {base.one_line(str(exc))}\n")
        return EXIT_INPUT
    except SystemExit as exc:       # --help, --version
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_OK
    debug = bool(args.debug)
    logs = base.Logging(PROG, verbose=args.verbose, debug=debug, stream=err)

    def body() -> int:
        try:
            return args.run(args, out, err)
        except BrokenPipeError:
            _silence_stdout(out)
            return EXIT_INPUT

    try:
        return base.guarded(PROG, body, debug=debug, stream=err)
    finally:
        logs.close()
        try:
            out.flush()
        except (BrokenPipeError, ValueError):
            _silence_stdout(out)


if __name__ == "__main__":
    sys.exit(main())
