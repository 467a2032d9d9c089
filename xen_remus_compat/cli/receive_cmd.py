"""``xen-remus-compat receive``: the backup side of ``xl remus`` without Xen.

Like ``xl migrate-receive -r``: reads the stream on
stdin and writes the 54-byte banner to stdout (the back channel; nothing
else is written there), then fails over to the last complete checkpoint
when the stream stops.  ``-i FILE`` reads a recorded stream instead (no
banner).  ``--sim`` keeps the guest memory and checks it against the
simulated guest's page contract.  The summary goes to stderr when stdout is
the back channel, else to stdout.  Exit status 0 after a failover to a
complete checkpoint (or a complete plain stream), 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence, TextIO

from ..stream import receiver as lib
from ..stream.reader import FORMATS
from ..stream.source import StreamError

NAME = "receive"
HELP = "receive a Remus stream like 'xl migrate-receive -r' (no hypervisor)"


def add_parser(sub, parents: Sequence[argparse.ArgumentParser] = ()
               ) -> argparse.ArgumentParser:
    # the module docstring is the --help text (the protocol: xl-side.md
    # §2.2, §3.6)
    p = sub.add_parser(NAME, parents=list(parents), help=HELP,
                       description=__doc__.split("\n\n", 1)[1].strip())
    p.add_argument("-i", "--input", metavar="FILE",
                   help="read a recorded stream from FILE (default: stdin, "
                   "with the banner on stdout)")
    p.add_argument("--banner", action=argparse.BooleanOptionalAction,
                   default=None, help="write the xl banner to stdout "
                   "(default: only when reading stdin)")
    p.add_argument("-f", "--format", choices=("auto",) + FORMATS, default="xl",
                   help="stream kind (default: xl, as from 'xl remus'; "
                   "libxl = blackhole form)")
    p.add_argument("--sim", action="store_true",
                   help="materialise guest memory and check it against the "
                   "simulated guest's pages")
    p.add_argument("--strict", action="store_true",
                   help="reject non-zero reserved fields and padding "
                   "instead of warning")
    p.add_argument("--json", action="store_true",
                   help="print the summary as JSON")
    p.set_defaults(run=run)
    return p


def _text(res: lib.ReceiveResult) -> str:
    lines = []
    who = lib.xl.shown(res.domain_name or res.source)   # read from the stream
    if res.plain:
        lines.append(f"migration target: complete plain stream for {who}")
    else:
        lines.append(f"migration target: Remus Failover for domain {who} "
                     f"to checkpoint {res.checkpoints} (stream {res.ended} "
                     f"at offset {res.bytes})")
    lines.append(f"  checkpoints: {res.checkpoints}, pages per checkpoint: "
                 f"{res.pages_per_checkpoint}")
    lines.append(f"  bytes: {res.bytes}, last consistent state ends at "
                 f"{res.committed_offset}; discarded {res.discarded_records} "
                 f"records / {res.discarded_pages} pages of the partial epoch")
    if res.memory is not None:
        bad = res.bad_sim_pages()
        lines.append(f"  memory: {len(res.memory)} pages, {len(bad)} not "
                     "matching the simulated guest"
                     + (f" (first pfns {bad[:8]})" if bad else ""))
    if res.error:
        lines.append(f"  stopped: {res.error}")
    lines += [f"  warning: {w}" for w in res.warnings]
    return "\n".join(lines) + "\n"


def _back_channel(out: TextIO):
    buf = getattr(out, "buffer", None)
    if buf is not None:
        out.flush()
        return buf
    return _TextBackChannel(out)


class _TextBackChannel:
    """Banner onto a text stream (tests); the banner is plain ASCII."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, data: bytes) -> None:
        self.out.write(data.decode("ascii"))

    def flush(self) -> None:
        self.out.flush()


def run(args: argparse.Namespace, out: Optional[TextIO] = None,
        err: Optional[TextIO] = None, stdin=None) -> int:
    """Entry point for ``receive``."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    from_stdin = args.input is None
    banner = args.banner if args.banner is not None else from_stdin
    report = err if banner else out
    if from_stdin:
        stream = stdin if stdin is not None else sys.stdin.buffer
        source = "<stdin>"
    else:
        stream, source = args.input, args.input
    if not args.json:
        err.write("migration target: Ready to receive domain.\n")
    try:
        res = lib.receive(stream, back_channel=_back_channel(out)
                          if banner else None, sim=args.sim, fmt=args.format,
                          source=source, strict=args.strict)
    except lib.ReceiveFailed as exc:
        if args.json:
            doc = exc.result.as_dict()
            doc["failed"] = str(exc)
            report.write(json.dumps(doc, indent=2) + "\n")
        err.write(f"migration target: Domain creation failed: {exc}\n")
        return 1
    except StreamError as exc:          # the input could not be opened
        err.write(f"migration target: {exc}\n")
        return 1
    bad = res.bad_sim_pages() if args.sim else []
    if args.json:
        report.write(json.dumps(res.as_dict(), indent=2) + "\n")
    else:
        report.write(_text(res))
    return 0 if res.failover_ok and not bad else 1
