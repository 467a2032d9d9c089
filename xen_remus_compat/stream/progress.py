"""Follow a Remus stream's framing as bytes pass by, without keeping them.

Why: ``remus-receiver`` relays a primary's bytes to ``xl migrate-receive -r``
and must still say how many checkpoints arrived (its end-of-session line)
and how far apart they come (its silence timeout is never shorter than a
few checkpoint intervals).  :class:`Progress` reads only the framing of
xl-side.md §3.5 (libxl header, record headers, libxc headers) and skips
bodies by counting, so it costs a few bytes of state whatever the records
hold.  It checks nothing: xl does.  After the xl header::

    libxl_hdr REC(LIBXC_CONTEXT) xc_ihdr xc_dhdr
        ( xc_records XC(CHECKPOINT) libxl_records REC(CHECKPOINT_END) )*
        [ xc_records XC(END) libxl_records REC(END) ]
"""
from __future__ import annotations

from typing import Callable, Collection, Optional

from . import libxc, libxl
from .records import HEADER as RECORD_HEADER
from .records import padding


class Progress:
    """Feed it the bytes that follow the xl header, in order.

    ``checkpoints``: complete checkpoints (libxl CHECKPOINT_END) seen;
    ``ended``: the libxl END arrived (a plain migration, complete);
    ``on_checkpoint(n)`` is called as each one completes.

    ``strip``: record types removed where a libxc record may come (the
    primary's in-band heartbeat, :mod:`xen_remus_compat.remus.backchannel`):
    :meth:`feed` then returns the bytes to pass on without them, holding
    back a libxc record header (8 bytes) until its type is known.  Without
    ``strip`` it returns what it was given.
    """

    def __init__(self, on_checkpoint: Optional[Callable[[int], None]] = None,
                 strip: Collection[int] = ()) -> None:
        self.on_checkpoint = on_checkpoint
        self.checkpoints = 0
        self.ended = False
        self.bytes = 0
        self.strip = frozenset(strip)
        #: records removed (``strip``)
        self.stripped = 0
        self._dropping = False
        # what comes next: (kind, size); kinds: libxl-hdr, libxl-rec,
        # libxc-hdr, libxc-rec, body (skip), done
        self._layer = "libxl"
        self._want = "libxl-hdr"
        self._need = libxl.HEADER.size
        self._buf = b""
        self._after_body = "libxl-rec"

    def feed(self, data: bytes) -> bytes:
        view = memoryview(data)
        self.bytes += len(view)
        if not self.strip:
            self._walk(view, None)
            return data
        out = bytearray()
        self._walk(view, out)
        return bytes(out)

    def flush(self) -> bytes:
        """Bytes held back (a partial libxc record header at the end)."""
        held, self._buf = (self._buf, b"") if self.strip and \
            self._want == "libxc-rec" else (b"", self._buf)
        return held

    def _walk(self, view: memoryview, out: Optional[bytearray]) -> None:
        while view and self._want != "done":
            if self._want == "body":
                take = min(self._need, len(view))
                if out is not None and not self._dropping:
                    out += view[:take]
                self._need -= take
                view = view[take:]
                if not self._need:
                    self._next_record(self._after_body)
                continue
            take = min(self._need - len(self._buf), len(view))
            held = self._want == "libxc-rec"
            self._buf += bytes(view[:take])
            if out is not None and not held:
                out += view[:take]
            view = view[take:]
            if len(self._buf) == self._need:
                raw, self._buf = self._buf, b""
                keep = self._header(raw)
                if out is not None and held and keep:
                    out += raw
        if out is not None and view:
            out += view

    def _next_record(self, layer_kind: str) -> None:
        self._dropping = False
        self._want = layer_kind
        self._need = RECORD_HEADER.size

    def _header(self, raw: bytes) -> bool:
        """Take a complete header; False for a record to strip."""
        want = self._want
        if want == "libxl-hdr":
            self._next_record("libxl-rec")
        elif want == "libxc-hdr":
            self._next_record("libxc-rec")
        elif want == "libxl-rec":
            rtype, length = RECORD_HEADER.unpack(raw)
            after = "libxl-rec"
            if rtype == libxl.LIBXC_CONTEXT:
                self._want, self._need = "libxc-hdr", (libxc.IHDR.size
                                                        + libxc.DHDR.size)
                return True
            if rtype == libxl.CHECKPOINT_END:
                self.checkpoints += 1
                after = "libxc-rec"
                if self.on_checkpoint is not None:
                    self.on_checkpoint(self.checkpoints)
            elif rtype == libxl.END:
                self.ended = True
                self._want = "done"
                return True
            self._body(length, after)
        elif want == "libxc-rec":
            rtype, length = RECORD_HEADER.unpack(raw)
            if rtype in self.strip:
                self.stripped += 1
                self._dropping = True       # its body too (until the next record)
                self._body(length, "libxc-rec")
                return False
            after = ("libxl-rec" if rtype in (libxc.CHECKPOINT, libxc.END)
                     else "libxc-rec")
            self._body(length, after)
        return True

    def _body(self, length: int, after: str) -> None:
        size = length + padding(length)
        if size:
            self._want, self._need, self._after_body = "body", size, after
        else:
            self._next_record(after)
