"""``xen-remus-compat stream verify|dump FILE``: check or list a migration
stream (the work is :mod:`xen_remus_compat.stream.verify`).

``verify`` accepts a plain stream that ends with libxl END and a Remus
stream that stops after at least one complete checkpoint (xl-side.md §3.5,
§5.5); ``--xen`` also runs Xen's own verifier classes checkpoint-aware.
Exit status 0 valid, 1 invalid or unreadable.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence, TextIO

from ..stream import verify as lib
from ..stream.reader import FORMATS, Header, Mark
from ..stream.records import Record
from ..stream.source import StreamError

NAME = "stream"
HELP = "verify or dump an xl/libxl/libxc migration stream"


def add_parser(sub, parents: Sequence[argparse.ArgumentParser] = ()
               ) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, parents=list(parents), help=HELP,
                       description="Check or list a migration stream as sent "
                       "by 'xl migrate' / 'xl remus' (FILE '-' = stdin).")
    actions = p.add_subparsers(dest="stream_action", metavar="ACTION")
    actions.required = True
    for action, text in (("verify", "check a stream, checkpoint-aware"),
                         ("dump", "list every header and record with its "
                                  "offset")):
        a = actions.add_parser(action, parents=list(parents), help=text,
                               description=text)
        a.add_argument("file", metavar="FILE")
        a.add_argument("-f", "--format", choices=("auto",) + FORMATS,
                       default="auto", help="stream kind: xl (with xl "
                       "header), libxl (blackhole form), libxc (bare); "
                       "default: detect")
        a.add_argument("--lenient", action="store_true",
                       help="accept non-zero reserved fields and padding "
                       "(what the restorers ignore) with a warning")
        a.add_argument("--json", action="store_true",
                       help="machine-readable output")
        if action == "verify":
            a.add_argument("--grammar", choices=("warn", "error", "off"),
                           default="warn", help="check the order of records "
                           "in each checkpoint against what libxl writes "
                           "(default: warn)")   # the grammar: xl-side.md §3.5
            a.add_argument("--xen", action="store_true",
                           help="also run Xen's VerifyLibxl/VerifyLibxc "
                           "classes (from --xen-python), checkpoint-aware")
            a.add_argument("--xen-python", default=lib.XEN_PYTHON,
                           metavar="DIR", help="where Xen's python package "
                           f"lives (default {lib.XEN_PYTHON})")
        a.set_defaults(run=run)
    return p


def _input(args, stdin):
    if args.file == "-":
        src = stdin if stdin is not None else sys.stdin.buffer
        return src, "<stdin>"
    return args.file, args.file


def _summary(rep: lib.Report) -> str:
    name = lib.xl.config_name(rep.config)
    what = f"{rep.fmt} stream" + (f", {rep.guest.upper()} guest"
                                  if rep.guest else "")
    if name:
        what += f" '{lib.xl.shown(name)}'"     # read from the stream
    if rep.complete:
        state = (f"complete (libxl END at {rep.bytes}), "
                 f"{rep.checkpoints} checkpoints")
    else:
        last = rep.last_complete_offset
        state = (f"{rep.checkpoints} complete checkpoints"
                 + (f", the last ends at offset {last}" if last is not None
                    else "") + f"; stream stops at offset {rep.bytes} "
                 f"({rep.ended})")
    return f"{rep.source}: {'OK' if rep.ok else 'INVALID'}: {what}: " \
           f"{rep.records} records, {state}"


def _run_verify(args, out: TextIO, err: TextIO, stdin) -> int:
    src, name = _input(args, stdin)
    rep = lib.verify(src, fmt=args.format, strict=not args.lenient,
                     grammar=args.grammar, source=name)
    xen = None
    if args.xen:
        if args.file == "-":
            err.write("stream verify: --xen needs a FILE, not stdin\n")
            return 1
        fmt = rep.fmt if rep.fmt in FORMATS else "xl"
        try:
            xen = lib.verify_with_xen(args.file, fmt=fmt,
                                      xen_python=args.xen_python, source=name)
        except FileNotFoundError as exc:
            err.write(f"stream verify: {exc}\n")
            return 1
    if args.json:
        doc = rep.as_dict()
        if xen is not None:
            doc["xen"] = {"ok": xen.ok, "checkpoints": xen.checkpoints,
                          "ended": xen.ended, "error": xen.error}
        out.write(json.dumps(doc, indent=2) + "\n")
    else:
        out.write(_summary(rep) + "\n")
        for w in rep.warnings:
            err.write(f"{rep.source}: warning: {w}\n")
        if rep.error and not rep.ok:
            err.write(f"{rep.error}\n")
        elif rep.error:
            out.write(f"  stopped: {rep.error}\n")
        if xen is not None:
            out.write(f"{rep.source}: Xen's verifier: "
                      f"{'OK' if xen.ok else 'INVALID'}: {xen.checkpoints} "
                      f"checkpoints, {xen.ended}"
                      + (f" ({xen.error})" if xen.error else "") + "\n")
    ok = rep.ok and (xen is None or xen.ok)
    return 0 if ok else 1


_HEADER_NAMES = {"xl": "xl header", "libxl": "libxl header",
                 "libxc-image": "image header", "libxc-domain": "domain header"}


def _event_row(ev) -> Optional[dict]:
    if isinstance(ev, Header):
        return {"offset": ev.offset, "layer": ev.kind.split("-")[0],
                "record": _HEADER_NAMES[ev.kind], "length": ev.size,
                "detail": ev.detail}
    if isinstance(ev, Record):
        return {"offset": ev.offset, "layer": ev.layer, "record": ev.name,
                "type": ev.type, "length": ev.length, "epoch": ev.epoch,
                "detail": ev.detail}
    if isinstance(ev, Mark):
        text = {"checkpoint": f"checkpoint {ev.number} complete",
                "libxc-end": "libxc stream complete",
                "end": "end of stream"}[ev.kind]
        return {"offset": ev.offset, "layer": "--", "record": text,
                "length": None, "detail": ""}
    return None


def _run_dump(args, out: TextIO, err: TextIO, stdin) -> int:
    src, name = _input(args, stdin)

    def show(ev) -> None:
        row = _event_row(ev)
        if row is None:
            return
        if args.json:
            out.write(json.dumps(row) + "\n")
            return
        length = "" if row["length"] is None else str(row["length"])
        out.write(f"0x{row['offset']:08x} {row['offset']:>10}  "
                  f"{row['layer']:<6} {row['record']:<24} {length:>9}  "
                  f"{row['detail']}".rstrip() + "\n")

    if not args.json:
        out.write(f"{'offset':>10} {'(dec)':>10}  {'layer':<6} "
                  f"{'record':<24} {'length':>9}  detail\n")
    rep = lib.verify(src, fmt=args.format, strict=not args.lenient,
                     grammar="off", source=name, on_event=show)
    if rep.error:
        stream = err if not rep.ok else out
        stream.write(("" if rep.ok else "error: ") + rep.error + "\n")
    if not args.json:
        out.write(_summary(rep) + "\n")
    return 0 if rep.ok else 1


def run(args: argparse.Namespace, out: Optional[TextIO] = None,
        err: Optional[TextIO] = None, stdin=None) -> int:
    """Entry point for ``stream verify`` and ``stream dump``."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    action = _run_verify if args.stream_action == "verify" else _run_dump
    try:
        return action(args, out, err, stdin)
    except StreamError as exc:         # e.g. FILE cannot be opened
        err.write(f"stream {args.stream_action}: {exc}\n")
        return 1
