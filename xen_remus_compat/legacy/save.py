"""``xen.remus.save`` (legacy-api.md section 2): streams and ``Saver``.

Differences from the legacy module, all deliberate:

* no libxc handle at import time (section 0.2): ``xc`` is created on first
  attribute access, from Debian's ``xen.lowlevel.xc`` when installed;
* ``NullSocket`` opens /dev/null with ``O_RDWR`` (the legacy code passed the
  mode 0666 as flags; ``XEN_REMUS_COMPAT_QUIRKS=nullsocket_flags`` restores it);
* ``MigrationSocket`` talks to ``remus-receiver`` on the backup, which hands
  the stream to ``xl migrate-receive -r``: it sends ``receive\\n`` as before
  and consumes exactly the one-line reply, so the xl banner that follows is
  left for the engine;
* ``Saver.start`` runs the xl-compatible engine (``xen_remus_compat.remus.engine``):
  the stream is what ``xl remus`` sends, not the xend image.  This module
  only adapts: it picks the stream mode from the legacy stream classes, the
  libxl config from the legacy ``VM`` and maps the engine's failure to
  ``CheckpointError``;
* HVM guests: the engine saves the device model over QMP as libxl does
  (no qemu-dm ``save`` command, no ``/var/lib/xen/qemu-save.<domid>`` for
  the caller to read); a device-model failure is a ``CheckpointError``.
"""
from __future__ import annotations

import os
import select
import socket
import threading

from .. import quirks
from . import vm

XCFLAGS_LIVE = 1
xcsave = "/usr/lib/xen/bin/xc_save"


def __getattr__(name):
    if name == "xc":
        try:
            import xen.lowlevel.xc as _xc   # Debian's binding; fails off-dom0
            value = _xc.xc()
        except Exception as e:
            raise AttributeError(
                "xc: no libxc handle (%s: %s); Debian's xen.lowlevel.xc needs "
                "/usr/lib/xen-4.17/lib/python on sys.path and a Xen dom0"
                % (type(e).__name__, e)) from e
        globals()["xc"] = value
        return value
    raise AttributeError(name)


class _proxy(object):
    "proxy simulates an object without inheritance"

    def __init__(self, obj):
        self._obj = obj

    def __getattr__(self, name):
        return getattr(self._obj, name)

    def proxy(self, obj):
        self._obj = obj


class CheckpointError(Exception):
    pass


class CheckpointingFile(_proxy):
    """Tee a stream into a file, starting a new file at each checkpoint."""

    def __init__(self, path):
        self.path = path
        self.round = 0
        self.rfd, self.wfd = os.pipe()
        self.fd = open(path, "wb")
        # this pipe is used to notify the writer thread of checkpoints
        self.cprfd, self.cpwfd = os.pipe()
        super(CheckpointingFile, self).__init__(self.fd)
        wt = threading.Thread(target=self._wrthread, name="disk-write-thread")
        wt.daemon = True
        wt.start()
        self.wt = wt

    def fileno(self):
        return self.wfd

    def close(self):
        os.close(self.wfd)
        # closing wfd should signal writer to stop
        self.wt.join()
        os.close(self.rfd)
        os.close(self.cprfd)
        os.close(self.cpwfd)
        self.fd.close()
        self.wt = None

    def checkpoint(self):
        os.write(self.cpwfd, b"1")

    def _wrthread(self):
        while True:
            r, o, e = select.select((self.rfd, self.cprfd), (), ())
            if self.rfd in r:
                data = os.read(self.rfd, 256 * 1024)
                if not data:
                    break
                self.fd.write(data)
            if self.cprfd in r:
                junk = os.read(self.cprfd, 1)
                self.round += 1
                self.fd = open("%s.%d" % (self.path, self.round), "wb")
                self.proxy(self.fd)


class MigrationSocket(_proxy):
    """TCP to the backup's ``remus-receiver`` (default port 8002)."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.connect(address)
        self.sock.sendall(b"receive\n")
        reply = b""
        while not reply.endswith(b"\n") and len(reply) < 80:
            chunk = self.sock.recv(1)
            if not chunk:
                break
            reply += chunk
        self.reply = reply
        fd = os.dup(self.sock.fileno())
        self.fd = os.fdopen(fd, "w+b", buffering=0)
        super(MigrationSocket, self).__init__(self.fd)


class NullSocket(_proxy):
    def __init__(self, address):
        flags = 0o666 if quirks.get().nullsocket_flags else os.O_RDWR
        filedev = os.open("/dev/null", flags)
        self.fd = os.fdopen(filedev, "w+b", buffering=0)
        super(NullSocket, self).__init__(self.fd)


class Keepalive(object):
    "Call a keepalive method at intervals"

    def __init__(self, method, interval=0.1):
        self.keepalive = method
        self.interval = interval
        self.thread = None
        self.running = False

    def start(self):
        if not self.interval:
            return
        self.thread = threading.Thread(target=self.run, name="keepalive-thread")
        self.thread.daemon = True
        self.running = True
        self.thread.start()

    def stop(self):
        if not self.thread:
            return
        self.running = False
        self.thread.join()
        self.thread = None

    def run(self):
        import time
        while self.running:
            self.keepalive()
            time.sleep(self.interval)
        self.keepalive(stop=True)


class Saver(object):
    def __init__(self, domid, fd, suspendcb=None, resumecb=None,
                 checkpointcb=None, interval=0, flags=0):
        """Create a Saver object for taking guest checkpoints.
        domid:        name, number or UUID of a running domain
        fd:           a stream to which checkpoint data will be written.
        suspendcb:    callback invoked after guest is suspended
        resumecb:     callback invoked before guest resumes
        checkpointcb: callback invoked when a checkpoint is complete. Return
                      True to take another checkpoint, or False to stop.
        flags:        Remus flags to be passed to xc_domain_save
        """
        self.fd = fd
        self.suspendcb = suspendcb
        self.resumecb = resumecb
        self.checkpointcb = checkpointcb
        self.interval = interval
        self.flags = flags

        self.vm = vm.VM(domid)

        self.checkpointer = None
        #: not in the legacy API: the stream's write deadline in seconds
        #: (None: the engine's default; 0: none), see ``remus --write-timeout``
        self.write_timeout = None
        #: not in the legacy API: local capture during the pause (None: the
        #: engine's default, on unless the stream is a blackhole; False: libxc
        #: writes to the link with the guest paused, ``remus --sync``) and
        #: its bound in bytes (None: 1 GiB), see ``remus --capture-limit``
        self.capture = None
        self.capture_limit = None
        #: not in the legacy API: checkpoints sent and not yet acknowledged
        #: and committed, at most (1; ``remus --epochs-in-flight``)
        self.in_flight = 1

    def start(self):
        """Checkpoint until a callback stops it (legacy-api.md section 2)."""
        from .. import errors
        from ..remus import engine
        record = getattr(self.vm, "record", None)
        if record is None or record.source != "sim":
            vm.getshadowmem(self.vm)
        mode = _stream_mode(self.fd)
        config = None
        if mode != "blackhole":
            config = engine.libxl_config_for(
                record, domain=None if record is not None else _dominfo_domain(self.vm))

        def attach(loop):
            self.checkpointer = loop

        try:
            self.stats = engine.protect(
                int(self.vm.domid), self.fd, config=config, mode=mode,
                postsuspend=self.suspendcb, preresume=self.resumecb,
                commit=self.checkpointcb, interval=self.interval, flags=self.flags,
                on_start=attach, capture=self.capture,
                capture_limit=self.capture_limit, in_flight=self.in_flight,
                **({} if self.write_timeout is None
                   else {"write_timeout": self.write_timeout}))
        except (errors.CheckpointFailed, errors.DeviceModelError) as e:
            # an HVM guest's device model failing (QMP) is a checkpoint
            # failure, as libcheckpoint's "error reading QEMU state" was
            raise CheckpointError(str(e)) from e

    def _resume(self):
        """low-overhead version of XendDomainInfo.resumeDomain"""
        from ..remus import engine
        engine.resume_domain(self.vm.domid)


def _stream_mode(fd):
    """The engine's stream mode for a legacy stream object."""
    from ..remus import engine
    if isinstance(fd, NullSocket):
        return "blackhole"
    if isinstance(fd, MigrationSocket):
        return "banner"             # remus-receiver: the xl banner follows its reply
    return engine.stream_mode(fd)


def _dominfo_domain(v):
    """The model of a VM built from a bare dominfo sxpr (no source record)."""
    from ..config.formats import sxpr as sxprmod
    return sxprmod.domain_from_sxpr(v.dominfo, source=f"domain {v.domid}")
