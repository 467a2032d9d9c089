"""``remus-receiver``: listen on the legacy relocation port for Remus streams.

Thin CLI over :mod:`xen_remus_compat.remus.receiver`.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import List, Optional

from . import base

PROG = "remus-receiver"


def build_parser() -> argparse.ArgumentParser:
    p = base.ArgParser(
        prog=PROG,
        description="Accept Remus streams on a TCP port (xend's relocation "
                    "port, 8002 by default) and hand each to 'xl migrate-receive "
                    "-r' (or, with --sim, to the simulated receiver).")
    p.add_argument("--port", type=int, default=None,
                   help="TCP port (default: xend-relocation-port from "
                        "/etc/xen/xend-config.sxp, else 8002)")
    p.add_argument("--listen", default="", metavar="ADDR",
                   help="address to bind (default: all addresses, as xend did)")
    p.add_argument("--sim", action="store_true",
                   help="receive into the simulated backup instead of xl")
    p.add_argument("--once", action="store_true",
                   help="serve one connection, then exit")
    p.add_argument("--json", action="store_true",
                   help="with --once: print a summary object at the end")
    p.add_argument("-e", dest="no_wait", action="store_true",
                   help="pass -e to xl migrate-receive")
    p.add_argument("--xl", default=None, help="path of the real xl binary")
    p.add_argument("--ready-file", default=None,
                   help="write the bound port to this file once listening")
    base.add_common_arguments(p, PROG)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except base.UsageError as e:
        print(f"{PROG}: {base.one_line(str(e))}", file=sys.stderr)
        return base.EXIT_INPUT
    except SystemExit as e:            # --help, --version
        return int(e.code or 0) if isinstance(e.code, int) else 0
    if args.json and not args.once:
        print(f"{PROG}: --json needs --once", file=sys.stderr)
        return base.EXIT_INPUT
    logs = base.Logging(PROG, verbose=args.verbose, debug=args.debug)
    try:
        return base.guarded(PROG, lambda: _serve(args), debug=args.debug,
                            interrupted=base.EXIT_OK)
    finally:
        logs.close()


def _serve(args: argparse.Namespace) -> int:
    from ..remus.receiver import ReceiverService
    from ..sources import xendconfig
    port = args.port if args.port is not None else xendconfig.relocation_port()
    svc = ReceiverService(listen=args.listen, port=port, sim=args.sim, xl=args.xl,
                          xl_args=["-e"] if args.no_wait else [])
    bound = svc.bind()
    if args.ready_file:
        from ..atomic import write_atomic
        write_atomic(args.ready_file, f"{bound}\n")
    print(f"{PROG}: listening on {args.listen or '*'}:{bound}"
          f"{' (simulated backup)' if args.sim else ''}", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        sessions = svc.serve(once=args.once)
    except SystemExit:                 # SIGTERM: a clean stop
        return base.EXIT_OK
    rc = 0
    for s in sessions:
        if s.error:
            print(f"{PROG}: {s.peer}: {s.error}", file=sys.stderr)
            if not s.summary.get("failover_ok"):
                rc = 1
    if args.json and sessions:
        s = sessions[-1]
        out = dict(s.summary)
        out.setdefault("checkpoints", None)
        out.setdefault("failover_ok", False)
        out["peer"] = s.peer
        if s.error:
            out["receiver_error"] = s.error
        result = getattr(s, "result", None)
        if result is not None and getattr(result, "memory", None) is not None:
            out["page_versions_digest"] = _versions_digest(result)
        print(json.dumps(out, sort_keys=True))
    return rc


def _versions_digest(result) -> str:
    import hashlib
    h = hashlib.sha256()
    for pfn, ver in sorted(result.page_versions().items()):
        h.update(f"{pfn}:{ver};".encode())
    return h.hexdigest()


if __name__ == "__main__":
    sys.exit(main())
