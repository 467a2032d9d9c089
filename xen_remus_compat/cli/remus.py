"""``remus``: the legacy command (legacy-api.md section 1) on an xl host.

Options, defaults, messages, ``PROF:`` lines, stdin fault commands and exit
statuses are the legacy ones; the stream is what ``xl remus`` sends, to a
stock ``xl migrate-receive -r``:

* default: ``ssh DEST xl migrate-receive -r`` (``-s CMD`` to change it);
* ``-p PORT``: TCP to ``remus-receiver`` on DEST (the legacy relocation-port path);
  the receiver acknowledges each checkpoint and output is released only
  after the ack (``--sync``: after the write, as xl);
* ``--blackhole``: ``/dev/null``.

Intended behaviour where the legacy one was accidental (section 1.5):
Ctrl-C and SIGTERM uninstall the buffers, leave the guest running and exit 0
(SIGTERM printing ``*** signalled ***``); stdin at EOF does not print
``unknown command:`` every epoch.
"""
from __future__ import annotations

import errno
import select
import signal
import sys
import time
from typing import List, Optional

from .. import errors, quirks
from ..log import logger
from . import base

PROG = "remus"

REMUS_FLAGS_COMPRESSION = 1
FAULT_COMMANDS = ("s", "s2", "r", "r2", "c", "c2")


class CfgException(Exception):
    pass


class SignalException(Exception):
    def __init__(self, signo):
        super().__init__(signo)
        self.signo = signo


class FaultInjected(Exception):
    """A stdin fault command destroyed the domain (``die()``)."""


class Cfg(object):
    REMUS_FLAGS_COMPRESSION = REMUS_FLAGS_COMPRESSION

    def __init__(self, argv: Optional[List[str]] = None) -> None:
        self.domid = 0
        self.host = "localhost"
        self.nullremus = False
        self.port = None
        self.interval = 200
        self.netbuffer = True
        self.nodisk = False
        self.flags = REMUS_FLAGS_COMPRESSION
        self.timer = False
        self.ssh = None
        self.sim = False
        self.source = None
        self.nowait = False
        self.connect_timeout = 30.0
        self.write_timeout = None           # the engine's default
        self.sync = False
        self.capture_limit = None           # the engine's default (1 GiB)
        self.in_flight = 1

        parser = base.OptParser(prog=PROG)
        parser.usage = "%prog [options] domain [destination]"
        parser.add_option("-i", "--interval", dest="interval", type="int",
                          metavar="MS", help="checkpoint every MS milliseconds")
        parser.add_option("-p", "--port", dest="port", type="int",
                          help="send stream to port PORT (remus-receiver on the "
                               "backup; default: ssh to xl migrate-receive -r); "
                               "the legacy remus relocation port, not xl "
                               "remus's -p (the COLO proxy)",
                          metavar="PORT")
        parser.add_option("", "--blackhole", dest="nullremus", action="store_true",
                          help="replicate to /dev/null (no disk checkpoints, only "
                               "memory & net buffering)")
        parser.add_option("", "--no-net", dest="nonet", action="store_true",
                          help="run without net buffering (benchmark option)")
        parser.add_option("", "--no-compression", dest="nocompress",
                          action="store_true",
                          help="run without checkpoint compression (accepted; "
                               "a no-op with Xen 4.17's stream v2)")
        parser.add_option("", "--timer", dest="timer", action="store_true",
                          help="force pause at checkpoint interval (experimental)")
        parser.add_option("-s", "--ssh", dest="ssh", metavar="CMD",
                          help="reach the backup by running 'CMD DEST xl "
                               "migrate-receive -r' (as xl remus -s; default "
                               "ssh; '' makes DEST the whole command)")
        parser.add_option("", "--no-disk", dest="nodisk", action="store_true",
                          help="run without disk replication (as xl remus -d)")
        parser.add_option("-e", "", dest="nowait", action="store_true",
                          help="pass -e to xl migrate-receive on the backup "
                               "(do not wait in the background for the domain's death)")
        parser.add_option("", "--connect-timeout", dest="connect_timeout",
                          type="float", metavar="SECONDS",
                          help="give up when the backup has not answered (banner) "
                               "within SECONDS (default 30)")
        parser.add_option("", "--write-timeout", dest="write_timeout",
                          type="float", metavar="SECONDS",
                          help="stop protecting, with the guest running, when "
                               "the backup takes no data for SECONDS or a "
                               "checkpoint is not written within SECONDS of "
                               "the guest's suspension (default 5; 0: never)")
        parser.add_option("", "--sync", dest="sync", action="store_true",
                          help="release each checkpoint's output once it is "
                               "written, without waiting for remus-receiver's "
                               "acknowledgement, and let libxc write each "
                               "checkpoint to the link while the guest is "
                               "paused (as xl remus)")
        parser.add_option("", "--capture-limit", dest="capture_limit", type="int",
                          metavar="MIB",
                          help="hold at most MIB MiB of one checkpoint in "
                               "memory while the guest is paused (default "
                               "1024); the rest of a larger one goes straight "
                               "to the link")
        parser.add_option("", "--epochs-in-flight", dest="in_flight", type="int",
                          metavar="N",
                          help="let up to N checkpoints await remus-receiver's "
                               "acknowledgement while the guest goes on "
                               "(default 1; more needs --no-net and --no-disk: "
                               "the kernel's plug qdisc holds one epoch)")
        parser.add_option("", "--tls-ca", dest="tls_ca", metavar="FILE",
                          help="with -p: TLS, the receiver's certificate "
                               "checked against this CA (and its name)")
        parser.add_option("", "--tls-cert", dest="tls_cert", metavar="FILE",
                          help="with -p: TLS, presenting this client "
                               "certificate (PEM; may hold the key too)")
        parser.add_option("", "--tls-key", dest="tls_key", metavar="FILE",
                          help="the private key of --tls-cert")
        parser.add_option("", "--sim", dest="sim", action="store_true",
                          help="protect a simulated guest (lowlevel/simxen) "
                               "instead of a real domain")
        parser.add_option("", "--source", dest="source", metavar="NAME",
                          help="domain source: auto, libxl, xl, xend, files")
        base.add_common_options(parser, PROG)
        self.parser = parser

    def usage(self):
        self.parser.print_help()

    def getargs(self, argv: Optional[List[str]] = None):
        opts, args = self.parser.parse_args(argv)
        if opts.interval:
            self.interval = opts.interval
        if opts.port:
            self.port = opts.port
        if opts.nullremus:
            self.nullremus = True
        if opts.nonet:
            self.netbuffer = False
        if opts.nocompress:
            self.flags &= ~REMUS_FLAGS_COMPRESSION
        if opts.timer:
            self.timer = True
        if opts.ssh is not None:
            self.ssh = opts.ssh
        if opts.nodisk:
            self.nodisk = True
        if opts.nowait:
            self.nowait = True
        if opts.connect_timeout:
            self.connect_timeout = opts.connect_timeout
        if opts.write_timeout is not None:
            if not 0 <= opts.write_timeout <= 3600:
                raise CfgException("--write-timeout must be 0..3600 seconds")
            self.write_timeout = opts.write_timeout
        self.sync = bool(opts.sync)
        if opts.capture_limit is not None:
            if not 1 <= opts.capture_limit <= 1 << 20:
                raise CfgException("--capture-limit must be 1..1048576 MiB")
            self.capture_limit = opts.capture_limit << 20
        if opts.in_flight is not None:
            from ..remus.engine import MAX_IN_FLIGHT
            if not 1 <= opts.in_flight <= MAX_IN_FLIGHT:
                raise CfgException(f"--epochs-in-flight must be 1..{MAX_IN_FLIGHT}")
            self.in_flight = opts.in_flight
        self.tls = (opts.tls_ca, opts.tls_cert, opts.tls_key)
        if any(self.tls) and not opts.port:
            raise CfgException("--tls-ca, --tls-cert and --tls-key need -p PORT")
        self.sim = bool(opts.sim)
        self.source = opts.source
        self.debug = bool(opts.debug)
        self.verbose = int(opts.verbose or 0)
        if not args:
            raise CfgException("Missing domain")
        self.domid = args[0]
        if len(args) > 1:
            self.host = args[1]


class Faults:
    """The stdin fault commands (section 1.4): sticky, read once per epoch."""

    def __init__(self, stdin=None, die=None) -> None:
        self.stdin = stdin if stdin is not None else sys.stdin
        self.cmd: Optional[str] = None
        self.die = die
        self.at_eof = False

    def poll(self) -> None:
        if self.at_eof or self.stdin is None or self.stdin.closed:
            return
        try:
            r, _, _ = select.select([self.stdin], [], [], 0)
        except (ValueError, OSError):
            self.at_eof = True
            return
        if not r:
            return
        line = self.stdin.readline()
        if line == "":
            if not quirks.get().stdin_eof_spam:
                self.at_eof = True
                return
        cmd = line.strip()
        if cmd not in FAULT_COMMANDS:
            print("unknown command: %s" % cmd)
        self.cmd = cmd

    def fire(self, point: str) -> None:
        if self.cmd == point and self.die:
            self.die()


def _prof(what: str) -> None:
    sys.stderr.write("PROF: %s at %0.6f\n" % (what, time.time()))
    sys.stderr.flush()


def run(cfg: Cfg) -> int:
    """The legacy ``run(cfg)`` (section 1.2) on the xl engine."""
    from ..legacy import device, save, vm
    from ..remus import transport as tp

    closure = {"starttime": 0.0, "signalled": False}

    def sigexception(signo, frame):
        # once: a repeat (a service manager signals the whole group, the
        # --sim wrapper forwards its copy) must not interrupt the cleanup
        # nor, once the handler is gone, kill us (exit 143)
        if closure["signalled"]:
            return
        closure["signalled"] = True
        raise SignalException(signo)

    old_term = signal.signal(signal.SIGTERM, sigexception)

    try:
        dom = vm.VM(cfg.domid)
    except vm.VMException as e:
        print(str(e))
        return 1
    # can this guest be protected on this hypervisor at all?  Asked before
    # any device is touched or the backup is contacted (a PV guest on a
    # hypervisor built without shadow paging fails here, still running)
    from ..remus import engine
    try:
        engine.preflight(int(dom.domid))
    except errors.CheckpointFailed as e:
        print(str(e))
        return 1

    bufs = []
    sink = None
    primary_gone = False
    rc = 0

    def die():
        print("dying...")
        for buf in bufs:
            try:
                buf.uninstall()
            except Exception as e:
                logger.warning("uninstall during die(): %s", e)
        destroy_domain(dom, cfg)
        raise FaultInjected("fault command %r: domain %s destroyed" % (faults.cmd, dom.domid))

    faults = Faults(die=die)

    def postsuspend():
        if not _timer_paced(cfg):
            closure["starttime"] = time.time()
        faults.fire("s")
        for buf in bufs:
            buf.postsuspend()
        faults.fire("s2")

    def preresume():
        faults.fire("r")
        for buf in bufs:
            buf.preresume()
        faults.fire("r2")

    def commit():
        faults.fire("c")
        _prof("flushed memory")
        for buf in bufs:
            buf.commit()
        faults.fire("c2")
        faults.poll()
        if not _timer_paced(cfg):
            elapsed = (time.time() - closure["starttime"]) * 1000
            if elapsed < cfg.interval:
                time.sleep((cfg.interval - elapsed) / 1000.0)
        return True

    try:
        # disks first, then NICs: network output is released only after
        # every disk of the epoch has acknowledged (section 1.2 step 3)
        if not cfg.nullremus and not cfg.nodisk:
            for disk in dom.disks:
                try:
                    bufs.append(device.ReplicatedDisk(disk))
                except device.ReplicatedDiskException as e:
                    print(str(e))
                    continue
        if cfg.netbuffer:
            for v in dom.vifs:
                bufs.append(device.BufferedNIC(v))

        _check_in_flight(cfg, bufs)

        if cfg.nullremus:
            sink = save.NullSocket((cfg.host, cfg.port))
        elif cfg.port:
            sink = tp.TcpTransport(cfg.host, cfg.port, tls=_tls_context(cfg),
                                   acks=not cfg.sync, heartbeat=_heartbeat(cfg))
            sink.connect(cfg.connect_timeout)
            _say_release_mode(sink, cfg)
        else:
            argv = list(tp.RECEIVER_ARGV) + (["-e"] if cfg.nowait else [])
            sink = tp.SshTransport(cfg.host, cfg.ssh, receiver_argv=argv)
            sink.connect(cfg.connect_timeout)
            _say_release_mode(sink, cfg)

        # the interval is slept out in the commit hook, as the legacy remus
        # did, unless --timer or commits are deferred (--epochs-in-flight:
        # a checkpoint's callback may commit none, or two): then the
        # trampoline's timer paces, suspending when the loop is ready
        interval = cfg.interval if _timer_paced(cfg) else 0
        saver = save.Saver(cfg.domid, sink, postsuspend, preresume, commit,
                           interval, cfg.flags)
        saver.write_timeout = getattr(cfg, "write_timeout", None)
        # --sync: libxc writes to the link with the guest paused, as xl
        saver.capture = False if cfg.sync else None
        saver.capture_limit = getattr(cfg, "capture_limit", None)
        saver.in_flight = getattr(cfg, "in_flight", 1)
        try:
            saver.start()
        except save.CheckpointError as e:
            print(str(e))
            rc = 1
            primary_gone = _domain_gone(e)
        except KeyboardInterrupt:
            pass
        except SignalException:
            print("*** signalled ***")
        except FaultInjected as e:
            print(str(e))
            rc = 1
    except (errors.CompatError, OSError) as e:   # TransportError included
        print(f"remus: {e}", file=sys.stderr)
        rc = 1
    except device.BufferedNICException as e:
        print(f"remus: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        pass
    except SignalException:
        print("*** signalled ***")
    finally:
        # After a failure the plugs hold output of epochs the backup never
        # acknowledged: drop it (abandon).  On a clean stop (Ctrl-C,
        # SIGTERM, a callback asking to stop) release what is held.
        failed = rc != 0 or sys.exc_info()[0] is not None   # incl. our own bugs
        for buf in bufs:
            try:
                if failed and hasattr(buf, "abandon"):
                    buf.abandon()
                else:
                    buf.uninstall()
            except Exception as e:
                logger.warning("uninstalling %s: %s", buf, e)
        if sink is not None:
            try:
                if primary_gone and hasattr(sink, "release_receiver"):
                    sink.release_receiver()
                sink.close()
            except Exception:
                pass
        # signalled: we are on our way out, repeats are ignored to the end
        signal.signal(signal.SIGTERM,
                      signal.SIG_IGN if closure["signalled"] else old_term)
    return rc


def _timer_paced(cfg: Cfg) -> bool:
    return bool(cfg.timer) or getattr(cfg, "in_flight", 1) > 1


def _check_in_flight(cfg: Cfg, bufs) -> None:
    """``--epochs-in-flight N`` (N > 1) only where every device can hold
    N epochs apart; said before anything is installed on the backup."""
    n = getattr(cfg, "in_flight", 1)
    if n <= 1:
        return
    for buf in bufs:
        limit = getattr(buf, "in_flight_limit", 1)
        if limit is not None and n > limit:
            dev = getattr(getattr(buf, "vif", None), "dev", None)
            what = f"vif {dev}" if dev else (
                getattr(getattr(buf, "_impl", buf), "label", None) or type(buf).__name__)
            raise errors.ConfigError(
                f"--epochs-in-flight {n}: {what} cannot take part: "
                f"{getattr(buf, 'in_flight_why', '') or 'it holds one epoch'} "
                f"(use --no-net/--no-disk, or 1; see remus(1))")
    if cfg.sync:
        raise errors.ConfigError(f"--epochs-in-flight {n} needs acknowledgements: "
                                 "--sync releases each checkpoint once written")


def _domain_gone(exc: BaseException) -> bool:
    """Whether checkpointing stopped because the protected domain no longer
    exists (the trampoline's ESRCH): the primary failed, and the backup's
    receiver is taking over."""
    seen = 0
    while exc is not None and seen < 8:
        if getattr(exc, "errno", None) == errno.ESRCH:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _heartbeat(cfg: Cfg) -> float:
    """How often the backup's heartbeats should come: a quarter of the
    write deadline, which is also how long its silence is borne."""
    from ..remus import engine
    deadline = cfg.write_timeout if cfg.write_timeout is not None \
        else engine.DEFAULT_WRITE_TIMEOUT
    return deadline / 4 if deadline else 1.0


def _say_release_mode(sink, cfg: Cfg) -> None:
    """One line at start when output is released without acknowledgements."""
    if getattr(sink, "backchannel", None) is not None:
        logger.info("%s acknowledges each checkpoint: output is released "
                    "after the ack", sink.description)
        return
    if cfg.sync:
        why = "--sync"
    elif getattr(sink, "old_receiver", False):
        why = f"{sink.description} sends no acknowledgements (an older version)"
    else:
        why = f"the backup ({sink.description}) is stock xl, which sends no acknowledgements"
    print(f"remus: {why}: each checkpoint's output is released once it is "
          "written, as xl remus does", file=sys.stderr)


def _tls_context(cfg: Cfg):
    """The client TLS context of ``-p`` (None: plain TCP)."""
    ca, cert, key = getattr(cfg, "tls", (None, None, None))
    if not (ca or cert or key):
        return None
    from ..remus import access
    return access.client_context(ca, cert, key)


def destroy_domain(dom, cfg: Cfg) -> None:
    """``xl destroy`` (the legacy ``sudo xm destroy``), or the simulated one."""
    if cfg.sim:
        from ..sim import simxen
        simxen.destroy(dom.domid)
        return
    from ..sources.xlcli import _run_xl, find_xl
    _run_xl([find_xl(), "destroy", "--", str(dom.domid)])


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = Cfg()
    try:
        cfg.getargs(argv)
    except CfgException as inst:
        print(str(inst))
        cfg.usage()
        return base.EXIT_INPUT
    logs = base.Logging(PROG, verbose=cfg.verbose, debug=cfg.debug)
    try:
        return base.guarded(PROG, lambda: _main(cfg, argv), debug=cfg.debug,
                            interrupted=base.EXIT_OK)
    finally:
        logs.close()


def _main(cfg: Cfg, argv: List[str]) -> int:
    if cfg.sim:
        from ..sim import simxen
        reexec = simxen.reexec_if_needed(["-m", "xen_remus_compat.cli.remus"] + argv)
        if reexec is not None:
            return reexec
        from ..legacy import vm
        vm.SOURCE = "sim"
    elif cfg.source:
        from ..legacy import vm
        vm.SOURCE = cfg.source
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
