"""Walk a migration stream record by record, checkpoint-aware.

The grammar is xl-side.md §3.5::

    xl_hdr libxl_hdr REC(LIBXC_CONTEXT) xc_ihdr xc_dhdr
        ( xc_records XC(CHECKPOINT) libxl_records REC(CHECKPOINT_END) )*
        [ xc_records XC(END) libxl_records REC(END) ]

A Remus stream never ends: it stops.  :class:`StreamWalker` yields every
header and record in stream order with its offset, checks each one as the
4.17 readers do (xl ``create_domain``, libxl ``process_record``, libxc
``read_record``/``process_record``), and yields a :class:`Mark` whenever a
consistent state is complete (a ``CHECKPOINT_END``, or the libxc ``END`` of
a plain stream).  Breaks surface as :class:`~.source.StreamError`
subclasses; the walker's counters then say which checkpoint was the last
complete one (what xl fails over to, §3.6).

Memory: one record at a time, each at most 128 MiB (libxc's REC_LENGTH_MAX),
read in 1 MiB chunks so a lying length field allocates nothing up front.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator, List, Optional, Union

from . import libxc, libxl, xl
from .records import HEADER as RECORD_HEADER
from .records import Record, RecordBodyError, Rules, padding, type_name
from .source import ByteSource, StreamError, StreamTruncated

log = logging.getLogger("xen_remus_compat")

FORMATS = ("xl", "libxl", "libxc")
#: First bytes of each format, for ``fmt="auto"``.
SIGNATURES = {
    "xl": xl.MAGIC[:8],
    "libxl": libxl.HEADER.pack(libxl.IDENT, 0, 0)[:8],
    "libxc": b"\xff" * 8,
}


@dataclass
class Header:
    """A stream or layer header as read (``kind``: xl, libxl, libxc-image,
    libxc-domain)."""

    kind: str
    offset: int
    size: int
    detail: str
    value: object = None

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass
class Mark:
    """A consistent state is complete at ``offset``.

    ``kind`` is ``checkpoint`` (libxl CHECKPOINT_END; for a bare libxc
    stream, libxc CHECKPOINT) with its 1-based ``number``, ``libxc-end``
    (libxc END) or ``end`` (libxl END: the stream is over).
    """

    kind: str
    offset: int
    number: int = 0


Event = Union[Header, Record, Mark]


def detect_format(src: ByteSource) -> str:
    """xl, libxl or libxc from the first 8 bytes."""
    head = src.peek(8)
    for fmt, sig in SIGNATURES.items():
        if head == sig:
            return fmt
    if len(head) < 8:
        raise StreamTruncated(f"stream too short to identify ({len(head)} "
                              "bytes)", source=src.source, offset=0,
                              needed=8, got=len(head))
    raise StreamError(f"not a migration stream: starts with {head!r} (no xl "
                      "magic, libxl ident or libxc marker)",
                      source=src.source, offset=0)


class StreamWalker:
    """Iterate over one stream; see the module docstring.

    ``strict`` (verifier) rejects what the restorers ignore (reserved
    fields, non-zero padding); lenient mode (receiver) logs it in
    ``rules.warnings``.  ``keep_bodies=False`` drops bodies once checked.
    """

    def __init__(self, src: ByteSource, *, fmt: str = "auto",
                 strict: bool = True, keep_bodies: bool = True,
                 max_record: Optional[int] = None) -> None:
        if fmt not in FORMATS + ("auto",):
            raise ValueError(f"unknown stream format {fmt!r}")
        self.src = src
        self.fmt = fmt
        self.rules = Rules(strict)
        self.keep_bodies = keep_bodies
        #: A reader's own ceiling on one record body, below the specs' own
        #: (a service bounding its memory per connection); None: the specs'.
        self.max_record = max_record
        self.xl_header: Optional[xl.Header] = None
        self.config: Optional[dict] = None
        self.state = libxc.State()
        self.phase = "start"
        #: 0-based epoch of the records being read.
        self.epoch = 0
        #: Complete checkpoints, and the offset right after each one.
        self.checkpoints = 0
        self.checkpoint_offsets: List[int] = []
        self.libxc_started = False
        self.libxc_ended = False
        self.ended = False

    # --- helpers ------------------------------------------------------------
    def _fail(self, message: str, offset: int) -> StreamError:
        return StreamError(message, source=self.src.source, offset=offset)

    def _header(self, size: int, what: str) -> tuple:
        start = self.src.offset
        return start, self.src.read_exact(size, what)

    def _check(self, fn, raw, start: int, what: str):
        self.rules.base = start
        try:
            return fn(raw, self.rules)
        except RecordBodyError as exc:
            raise self._fail(f"{what}: {exc}", start + exc.at) from None

    def _record(self, layer: str, table: dict, max_body: int) -> Record:
        """Read one record: header, capped body, padding."""
        start = self.src.offset
        try:
            raw = self.src.read_exact(RECORD_HEADER.size,
                                      f"{layer} record header")
        except StreamTruncated as exc:
            if exc.got:
                raise
            raise StreamTruncated(
                f"end of stream at a record boundary, expecting a {layer} "
                f"record ({self.phase} phase)", source=self.src.source,
                offset=start, needed=exc.needed, got=0) from None
        rtype, length = RECORD_HEADER.unpack(raw)
        name = type_name(table, rtype, layer)
        if length > max_body:
            raise self._fail(f"{layer} record (0x{rtype:08x}, {name}) length "
                             f"0x{length:x} exceeds max (0x{max_body:x})",
                             start + 4)
        if self.max_record is not None and length > self.max_record:
            raise self._fail(f"{layer} record (0x{rtype:08x}, {name}) length "
                             f"0x{length:x} exceeds this reader's limit of "
                             f"0x{self.max_record:x} bytes per record",
                             start + 4)
        pad = padding(length)
        try:
            data = self.src.read_exact(length + pad, f"{name} record body")
        except StreamTruncated as exc:
            raise StreamTruncated(
                f"stream ends inside {layer} {name} record (body {length} "
                f"bytes): {exc.got} of {length + pad} bytes after the header",
                source=self.src.source, offset=start, needed=exc.needed,
                got=exc.got) from None
        body = data[:length]
        if pad and data[length:] != bytes(pad):
            self.rules.base = start + RECORD_HEADER.size
            try:
                self.rules.only_strict(f"{name} record: padding contains "
                                       "non-zero bytes", length)
            except RecordBodyError as exc:
                raise self._fail(str(exc), start + RECORD_HEADER.size
                                 + exc.at) from None
        return Record(layer, rtype, name, start, length, body, self.epoch)

    # --- the walk -----------------------------------------------------------
    def events(self) -> Iterator[Event]:
        """Every header, record and mark, in stream order."""
        fmt = self.fmt if self.fmt != "auto" else detect_format(self.src)
        self.fmt = fmt
        if fmt == "xl":
            yield self._read_xl_header()
        if fmt in ("xl", "libxl"):
            yield self._read_libxl_header()
            yield from self._libxl_records()
        else:
            yield from self._libxc_headers()
            yield from self._libxc_records()

    def _read_xl_header(self) -> Header:
        self.phase = "xl header"
        hdr = xl.read_header(self.src)
        if not hdr.streamv2:
            raise self._fail("xl header lacks the STREAMv2 flag: a legacy "
                             "(pre-4.6) stream, which xl would pipe through "
                             "convert-legacy-stream; not supported here",
                             hdr.offset + 36)
        self.xl_header = hdr
        self.config = xl.check_config(hdr, self.src)
        return Header("xl", hdr.offset, hdr.size, hdr.describe(), hdr)

    def _read_libxl_header(self) -> Header:
        self.phase = "libxl header"
        start, raw = self._header(libxl.HEADER.size, "libxl header")
        options, text = self._check(libxl.check_header, raw, start,
                                    "libxl header")
        return Header("libxl", start, libxl.HEADER.size, text, options)

    def _libxc_headers(self) -> Iterator[Header]:
        self.phase = "libxc headers"
        start, raw = self._header(libxc.IHDR.size, "libxc image header")
        version, text = self._check(libxc.check_image_header, raw, start,
                                    "libxc image header")
        self.state.version = version
        yield Header("libxc-image", start, libxc.IHDR.size, text, version)
        start, raw = self._header(libxc.DHDR.size, "libxc domain header")
        guest, text = self._check(libxc.check_domain_header, raw, start,
                                  "libxc domain header")
        self.state.guest = guest
        self.libxc_started = True
        yield Header("libxc-domain", start, libxc.DHDR.size, text, guest)

    def _libxl_records(self) -> Iterator[Event]:
        """libxl records around (and, via LIBXC_CONTEXT, including) libxc."""
        self.phase = "libxl"
        while True:
            rec = self._record("libxl", libxl.RECORD_TYPES, libxl.MAX_BODY)
            self._check_libxl(rec)
            if not self.keep_bodies:
                rec.body = b""
            yield rec
            if rec.type == libxl.LIBXC_CONTEXT:
                yield from self._libxc_headers()
                yield from self._libxc_records()
            elif rec.type == libxl.CHECKPOINT_END:
                self.checkpoints += 1
                self.epoch += 1
                self.checkpoint_offsets.append(rec.end)
                yield Mark("checkpoint", rec.end, self.checkpoints)
                yield from self._libxc_records()
            elif rec.type == libxl.END:
                self.ended = True
                self.phase = "done"
                yield Mark("end", rec.end)
                return

    def _check_libxl(self, rec: Record) -> None:
        """libxl's ``process_record`` rules, plus where each type may occur."""
        kind = libxl.RECORD_TYPES.get(rec.type)
        if kind is None:
            raise self._fail(f"Unrecognised libxl record 0x{rec.type:08x} "
                             "(libxl has no optional records)", rec.offset)
        rec.detail = self._check(lambda b, r: kind.check(b, r), rec.body,
                                 rec.offset + RECORD_HEADER.size,
                                 f"libxl {kind.name} record")
        phase = self.phase
        where = {
            libxl.LIBXC_CONTEXT: phase == "libxl" and not self.libxc_started,
            libxl.END: phase == "libxl tail",
            libxl.CHECKPOINT_END: phase == "checkpoint",
            libxl.EMULATOR_XENSTORE_DATA: phase in ("checkpoint", "libxl tail"),
            libxl.EMULATOR_CONTEXT: phase in ("checkpoint", "libxl tail"),
            libxl.CHECKPOINT_STATE: False,
        }[rec.type]
        if not where:
            why = {
                libxl.LIBXC_CONTEXT: "a second LIBXC_CONTEXT record",
                libxl.END: ("END inside a checkpoint" if phase == "checkpoint"
                            else "END before the libxc stream"),
                libxl.CHECKPOINT_END: "Unexpected CHECKPOINT_END record in "
                                      "stream (no libxc CHECKPOINT before it)",
                libxl.CHECKPOINT_STATE: "CHECKPOINT_STATE is COLO's back "
                                        "channel record, not Remus",
            }.get(rec.type, f"{kind.name} before the libxc stream")
            raise self._fail(f"libxl {kind.name} record out of place: {why}",
                             rec.offset)
        if rec.type in (libxl.EMULATOR_XENSTORE_DATA, libxl.EMULATOR_CONTEXT) \
                and self.state.guest != "hvm":
            raise self._fail(f"libxl {kind.name} record in a PV stream "
                             "(libxl: none was expected)", rec.offset)

    def _libxc_records(self) -> Iterator[Event]:
        """libxc records up to CHECKPOINT or END (libxc read_record)."""
        self.phase = "libxc"
        while True:
            rec = self._record("libxc", libxc.RECORD_TYPES, libxc.MAX_BODY)
            kind = libxc.RECORD_TYPES.get(rec.type)
            body_at = rec.offset + RECORD_HEADER.size
            if kind is None:
                if not rec.optional:
                    raise self._fail(f"Mandatory record 0x{rec.type:08x} "
                                     "(unknown) not handled", rec.offset)
                rec.detail = "optional, ignored"
            elif self.state.guest not in kind.guests:
                hint = (f"not valid in an {self.state.guest.upper()} stream"
                        if kind.guests else "")
                raise self._fail(f"Mandatory record 0x{rec.type:08x} "
                                 f"({kind.name}) not handled"
                                 + (f": {hint}" if hint else ""), rec.offset)
            else:
                rec.info, rec.detail = self._check(
                    lambda b, r: kind.check(b, self.state, r), rec.body,
                    body_at, f"libxc {kind.name} record")
            if not self.keep_bodies:
                rec.body = b""
            yield rec
            if rec.type == libxc.CHECKPOINT:
                if self.fmt == "libxc":       # nobody above us: complete now
                    self.checkpoints += 1
                    self.epoch += 1
                    self.checkpoint_offsets.append(rec.end)
                    yield Mark("checkpoint", rec.end, self.checkpoints)
                    continue
                self.phase = "checkpoint"
                return
            if rec.type == libxc.END:
                self.libxc_ended = True
                yield Mark("libxc-end", rec.end)
                if self.fmt == "libxc":
                    self.ended = True
                    self.phase = "done"
                    return
                self.phase = "libxl tail"
                return

    @property
    def last_complete_offset(self) -> Optional[int]:
        """Offset just after the last complete checkpoint, if any."""
        return self.checkpoint_offsets[-1] if self.checkpoint_offsets else None


def iter_records(src: ByteSource, **kw) -> Iterator[Event]:
    """Shorthand: ``StreamWalker(src, **kw).events()``."""
    return StreamWalker(src, **kw).events()
