"""``remus-receiver``: listen on the legacy relocation port for Remus streams.

Thin CLI over :mod:`xen_remus_compat.remus.receiver`.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import List, Optional

from . import base

PROG = "remus-receiver"


def _port(text: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def _positive(kind):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value
    return convert


def build_parser() -> argparse.ArgumentParser:
    p = base.ArgParser(
        prog=PROG,
        description="Accept Remus streams on a TCP port (xend's relocation "
                    "port, 8002 by default) and hand each to 'xl migrate-receive "
                    "-r' (or, with --sim, to the simulated receiver).")
    p.add_argument("--port", type=_port, default=None,
                   help="TCP port (default: xend-relocation-port from "
                        "/etc/xen/xend-config.sxp, else 8002; with "
                        "xend-relocation-ssl-server, xend-relocation-ssl-port)")
    p.add_argument("--listen", default=None, metavar="ADDR",
                   help="address to bind (default: xend-relocation-address, "
                        "else all addresses, as xend did)")
    p.add_argument("--hosts-allow", default=None, metavar="REGEXES",
                   help="space-separated regular expressions; a peer whose "
                        "address or reverse name matches one may connect "
                        "(default: xend-relocation-hosts-allow; empty: any)")
    p.add_argument("--tls-cert", default=None, metavar="FILE",
                   help="serve TLS with this certificate (PEM; default: "
                        "xend-relocation-server-ssl-cert-file when "
                        "xend-relocation-ssl-server is set)")
    p.add_argument("--tls-key", default=None, metavar="FILE",
                   help="the private key of --tls-cert")
    p.add_argument("--tls-ca", default=None, metavar="FILE",
                   help="require a client certificate signed by this CA")
    p.add_argument("--insecure", action="store_true",
                   help="listen on every address with neither an allow-list "
                        "nor client certificates")
    p.add_argument("--max-sessions", type=_positive(int), default=4, metavar="N",
                   help="streams received at once (default 4)")
    p.add_argument("--handshake-timeout", type=_positive(float), default=10.0,
                   metavar="SECONDS", help="from connecting to the end of the "
                   "xl header (default 10)")
    p.add_argument("--silence-timeout", type=_positive(float), default=3.0,
                   metavar="SECONDS", help="a primary silent this long is dead: "
                   "fail over (default 3; never less than 3 of the recent "
                   "checkpoint intervals)")
    p.add_argument("--max-memory", type=_positive(int), default=512,
                   metavar="MIB", help="memory for received data, shared "
                   "equally by --max-sessions sessions (default 512)")
    p.add_argument("--failover", choices=("auto", "cluster"), default="auto",
                   help="when the stream stops: 'auto' resumes the backup "
                        "(xl's Remus failover, the default); 'cluster' keeps "
                        "it paused until the cluster manager promotes this "
                        "node (the OCF agent ocf:xen-remus-compat:remus)")
    p.add_argument("--state-dir", default=None, metavar="DIR",
                   help="after each session write DIR/DOMAIN.state: what the "
                        "backup holds (state=paused, running or none)")
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
    # a service: its session lines (INFO) are what the journal is for, so
    # INFO is the floor here; -vv or --debug add debug
    logs = base.Logging(PROG, level=min(logging.INFO,
                                        base.log_level(args.verbose, args.debug)))
    try:
        return base.guarded(PROG, lambda: _serve(args), debug=args.debug,
                            interrupted=base.EXIT_OK)
    finally:
        logs.close()


def _policy(args: argparse.Namespace, conf):
    """Peers and TLS from the options, else from xend-config.sxp; and
    whether TLS came from the file (then its port is the SSL port)."""
    from ..errors import InputError
    from ..remus import access
    if args.hosts_allow is not None:
        allow, source = args.hosts_allow, "--hosts-allow"
    else:
        allow, source = conf.hosts_allow, "xend-relocation-hosts-allow"
    patterns = access.parse_hosts_allow(allow, source=source)
    cert, key, from_file = args.tls_cert, args.tls_key, False
    if cert is None and conf.ssl_server:
        if not (conf.key_file and conf.cert_file):
            raise InputError("xend-relocation-ssl-server is set but "
                             "xend-relocation-server-ssl-key-file or -cert-file "
                             "is missing", source=conf.path)
        cert, key, from_file = conf.cert_file, conf.key_file, True
    if cert is None and (args.tls_key or args.tls_ca):
        raise InputError("--tls-key and --tls-ca need --tls-cert")
    tls = access.server_context(cert, key, args.tls_ca) if cert else None
    return access.Policy(patterns=patterns, tls=tls,
                         client_certs=bool(tls and args.tls_ca),
                         hosts_allow_source=source), from_file


def _serve(args: argparse.Namespace) -> int:
    from ..remus.receiver import Limits, ReceiverService
    from ..sources import xendconfig
    conf = xendconfig.relocation_settings()
    policy, tls_from_file = _policy(args, conf)
    port = args.port if args.port is not None else (
        conf.ssl_port if tls_from_file else conf.port)
    listen = args.listen if args.listen is not None else conf.address
    limits = Limits(max_sessions=args.max_sessions,
                    handshake_timeout=args.handshake_timeout,
                    silence_timeout=args.silence_timeout,
                    max_memory=args.max_memory << 20)
    svc = ReceiverService(listen=listen, port=port, sim=args.sim, xl=args.xl,
                          xl_args=["-e"] if args.no_wait else [],
                          policy=policy, limits=limits, insecure=args.insecure,
                          failover=args.failover, state_dir=args.state_dir)
    from ..remus import sdsocket
    inherited = sdsocket.inherited()        # remus-receiver.socket (systemd)
    bound = svc.adopt(inherited) if inherited is not None else svc.bind()
    if args.ready_file:
        from ..atomic import write_atomic
        write_atomic(args.ready_file, f"{bound}\n")
    how = []
    if policy.tls is not None:
        how.append("TLS" + (", client certificates required"
                            if policy.client_certs else ""))
    if policy.patterns is not None:
        how.append(f"peers allowed by {policy.hosts_allow_source}")
    if args.sim:
        how.append("simulated backup")
    if args.failover == "cluster":
        how.append("failover held for the cluster manager")
    print(f"{PROG}: listening on {svc.where()}"
          + (f" ({'; '.join(how)})" if how else ""), file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        sessions = svc.serve(once=args.once)
    except SystemExit:                 # SIGTERM: a clean stop
        if args.failover == "cluster":  # hold each backup paused first
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            svc.stop_all("remus-receiver stopped (SIGTERM)")
        return base.EXIT_OK
    rc = 0
    for s in sessions:
        if s.crashed:                  # logged once, as a bug, by the service
            rc = base.EXIT_BUG
        elif s.error:
            print(f"{PROG}: {s.peer}: {base.one_line(s.error)}", file=sys.stderr)
            if not s.summary.get("failover_ok"):
                rc = rc or 1
    if args.json and sessions:
        s = sessions[-1]
        out = dict(s.summary)
        out.setdefault("checkpoints", None)
        out.setdefault("failover_ok", False)
        out["peer"] = s.peer
        if s.error:
            out["receiver_error"] = s.error
        print(json.dumps(out, sort_keys=True))
    return rc


if __name__ == "__main__":
    sys.exit(main())
