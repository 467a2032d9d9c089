"""What every command shares: option conventions, logging set-up, exit codes.

The three commands (``xen-remus-compat``, ``remus``, ``remus-receiver``)
agree on:

* ``-v``/``--verbose`` (info; twice: debug), ``--debug`` (debug logging and
  the traceback of an internal error), ``--version``;
* exit status 0 success, 1 bad input or usage (:class:`errors.InputError`,
  a usage error, a failure the user can act on), 2 our own bug, 130 Ctrl-C
  where a command does not define Ctrl-C as a clean stop;
* logging configured here only, on the package logger, for the duration of
  a command: stderr with ``PROG: LEVEL: message``, plus syslog (which the
  journal reads) when stderr is not a terminal, so a service's messages are
  kept even when nobody reads its stderr (but not when stderr is the journal
  already, as in a systemd unit: once is enough).
"""
from __future__ import annotations

import argparse
import logging
import logging.handlers
import optparse
import os
import sys
import traceback
from typing import Callable, Optional, TextIO

from .. import __version__, errors
from ..log import logger as package_logger

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_BUG = 2
EXIT_INTERRUPTED = 130

#: where syslog listens (the journal's socket on systemd hosts)
SYSLOG_SOCKET = "/dev/log"


class UsageError(errors.InputError):
    """A command line the parser rejected (exit status 1, like other bad input)."""


class ArgParser(argparse.ArgumentParser):
    """argparse exits with status 2 on a usage error; 2 is reserved for our
    bugs, so the error is raised and reported as bad input instead."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


class OptParser(optparse.OptionParser):
    """optparse for the legacy ``remus`` command line (its help text is part of
    the legacy interface); usage errors exit 1 as everywhere else."""

    def error(self, msg: str):  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_INPUT, f"{self.get_prog_name()}: error: {msg}\n")


def version_string(prog: str) -> str:
    return f"{prog} {__version__}"


def add_common_arguments(parser: argparse.ArgumentParser, prog: str, *,
                         top: bool = True) -> None:
    """``-v``/``--verbose``, ``--debug`` and (on a top-level parser) ``--version``.

    With ``top=False`` the defaults are suppressed, so the options can be given
    after a subcommand too without overwriting what was given before it."""
    if top:
        parser.add_argument("--version", action="version", version=version_string(prog))
    parser.add_argument("-v", "--verbose", action="count",
                        default=0 if top else argparse.SUPPRESS,
                        help="more log output on stderr (-vv: debug)")
    parser.add_argument("--debug", action="store_true",
                        default=False if top else argparse.SUPPRESS,
                        help="debug logging, and a traceback for internal errors")


def add_common_options(parser: optparse.OptionParser, prog: str) -> None:
    """The same options for an optparse parser."""
    parser.version = version_string(prog)
    parser.add_option("--version", action="version",
                      help="show the program's version number and exit")
    parser.add_option("-v", "--verbose", dest="verbose", action="count", default=0,
                      help="more log output on stderr (-vv: debug)")
    parser.add_option("--debug", dest="debug", action="store_true", default=False,
                      help="debug logging, and a traceback for internal errors")


def log_level(verbose: int, debug: bool) -> int:
    if debug or verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return logging.INFO
    return logging.WARNING


class Logging:
    """The package logger's handlers for one command run; ``close()`` undoes it."""

    def __init__(self, prog: str, *, verbose: int = 0, debug: bool = False,
                 stream: Optional[TextIO] = None, level: Optional[int] = None,
                 syslog: Optional[bool] = None) -> None:
        self.logger = package_logger
        self.old_level = self.logger.level
        self.handlers = []
        stream = stream if stream is not None else sys.stderr
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(f"{prog}: %(levelname)s: %(message)s"))
        self.handlers.append(handler)
        if syslog is None:
            syslog = (not _isatty(stream) and os.path.exists(SYSLOG_SOCKET)
                      and not journal_stream(stream))
        if syslog:
            try:
                sl = logging.handlers.SysLogHandler(address=SYSLOG_SOCKET)
            except OSError as e:       # no syslog: stderr alone
                package_logger.debug("syslog unavailable: %s", e)
            else:
                sl.ident = f"{prog}[{os.getpid()}]: "
                sl.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
                self.handlers.append(sl)
        for h in self.handlers:
            self.logger.addHandler(h)
        self.logger.setLevel(level if level is not None else log_level(verbose, debug))

    def close(self) -> None:
        for h in self.handlers:
            self.logger.removeHandler(h)
            if isinstance(h, logging.handlers.SysLogHandler):
                h.close()
        self.handlers = []
        self.logger.setLevel(self.old_level)


def journal_stream(stream) -> bool:
    """Is ``stream`` the journal already?  systemd sets ``JOURNAL_STREAM`` to
    the device and inode of a unit's journal stream (systemd.exec(5)); syslog
    would then record every message a second time."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return os.environ.get("JOURNAL_STREAM") == f"{st.st_dev}:{st.st_ino}"


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def one_line(text: str) -> str:
    """Error messages stay on one line whatever the input held."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def internal_error(prog: str, exc: BaseException, *, debug: bool,
                   stream: Optional[TextIO] = None) -> int:
    """Report our own bug in one line (the traceback only with --debug); exit 2."""
    err = stream if stream is not None else sys.stderr
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=err)
    detail = one_line(f"{type(exc).__name__}: {exc}")
    hint = "" if debug else "; run with --debug for the traceback"
    err.write(f"{prog}: internal error, this is a bug in xen-remus-compat "
              f"{__version__}, please report it: {detail}{hint}\n")
    return EXIT_BUG


def guarded(prog: str, body: Callable[[], int], *, debug: bool,
            stream: Optional[TextIO] = None,
            interrupted: int = EXIT_INTERRUPTED) -> int:
    """Run ``body`` with the shared exit-status mapping."""
    err = stream if stream is not None else sys.stderr
    try:
        return body()
    except errors.CompatError as exc:
        if debug:
            traceback.print_exc(file=err)
        err.write(f"{prog}: {one_line(str(exc))}\n")
        return exc.exit_status if exc.exit_status in (EXIT_INPUT, EXIT_BUG) else EXIT_INPUT
    except KeyboardInterrupt:
        if interrupted != EXIT_OK:
            err.write(f"{prog}: interrupted\n")
        return interrupted
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        return internal_error(prog, exc, debug=debug, stream=err)
