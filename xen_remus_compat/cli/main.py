"""``xen-remus-compat``: the migration command (design.md, "Translation").

Thin by design: each subcommand module (``convert``, ``disk``, ``show``,
``demo``) declares its options and calls the library; this module owns what
is common to all of them:

* exit status: 0 success; 1 bad input (:class:`errors.InputError` and its
  subclasses, usage errors), printed as one line
  ``xen-remus-compat: <source>:<line>:<col>: <message>`` with no traceback;
  2 for our own bugs (any other exception): one line saying so, the
  traceback only with ``--debug``;
* logging: configured here and only here, on the package logger, for the
  duration of :func:`main` (``-v`` info, ``-vv``/``--debug`` debug);
* ``--version``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import List, Optional, Sequence, TextIO

from .. import __version__, errors
from . import convert as convert_cmd
from . import demo as demo_cmd
from . import disk as disk_cmd
from . import receive_cmd
from . import run_legacy
from . import show as show_cmd
from . import stream_cmd

PROG = "xen-remus-compat"
LOGGER_NAME = "xen_remus_compat"

#: Subcommands in the order ``--help`` lists them.
SUBCOMMANDS = (convert_cmd, disk_cmd, show_cmd, demo_cmd, stream_cmd, receive_cmd,
               run_legacy)

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_BUG = 2
EXIT_INTERRUPTED = 130


class UsageError(errors.InputError):
    """A command line argparse rejected (exit status 1, like other bad input)."""


class _Parser(argparse.ArgumentParser):
    """argparse exits with status 2 on a usage error; 2 is reserved for our
    bugs here, so the error is raised and reported as bad input instead."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _common_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v/--debug accepted before or after the subcommand."""
    default = 0 if top else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more log output on stderr (-vv: debug)")
    parser.add_argument("--debug", action="store_true",
                        default=False if top else argparse.SUPPRESS,
                        help="debug logging, and a traceback for internal errors")


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar (also used to check the man page)."""
    parser = _Parser(
        prog=PROG,
        description="Migrate xend domain configurations to xl, and inspect "
                    "legacy sxpr, libxl JSON and legacy disk specs.",
        epilog="Exit status: 0 success, 1 bad input, 2 internal error (a bug).")
    parser.add_argument("--version", action="version",
                        version=f"{PROG} {__version__}")
    _common_options(parser, top=True)
    common = _Parser(add_help=False)
    _common_options(common, top=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=_Parser)
    sub.required = True
    for module in SUBCOMMANDS:
        module.add_parser(sub, [common])
    return parser


def _one_line(text: str) -> str:
    """Error messages stay on one line whatever the input held."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _setup_logging(stream: TextIO, verbose: int, debug: bool):
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s: %(message)s"))
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    if verbose >= 2 or debug:
        level = logging.DEBUG
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger, handler, old_level


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
        err.write(f"{PROG}: {_one_line(str(exc))}\n")
        return EXIT_INPUT
    except SystemExit as exc:       # --help, --version
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_OK
    debug = bool(args.debug)
    logger, handler, old_level = _setup_logging(err, args.verbose, debug)
    try:
        return args.run(args, out, err)
    except errors.CompatError as exc:
        if debug:
            traceback.print_exc(file=err)
        err.write(f"{PROG}: {_one_line(str(exc))}\n")
        return exc.exit_status if exc.exit_status in (EXIT_INPUT, EXIT_BUG) else EXIT_INPUT
    except BrokenPipeError:
        _silence_stdout(out)
        return EXIT_INPUT
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc(file=err)
        detail = _one_line(f"{type(exc).__name__}: {exc}")
        hint = "" if debug else "; run with --debug for the traceback"
        err.write(f"{PROG}: internal error, this is a bug in {PROG} "
                  f"{__version__}, please report it: {detail}{hint}\n")
        return EXIT_BUG
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        try:
            out.flush()
        except (BrokenPipeError, ValueError):
            _silence_stdout(out)


if __name__ == "__main__":
    sys.exit(main())
