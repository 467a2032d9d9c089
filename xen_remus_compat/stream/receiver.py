"""The backup side of ``xl remus``: receive a checkpointed stream, fail over.

Behaviour of ``xl migrate-receive -r`` (xl-side.md §2.2, §3.1, §3.6; Xen 4.17
``xl_migrate.c: migrate_receive``, ``libxl_stream_read.c``,
``xg_sr_restore.c: restore/handle_checkpoint``):

* write the 54-byte banner, then read the xl header + JSON config and the
  stream; nothing else is ever written back in Remus mode;
* the records of an epoch are buffered and applied only when its libxl
  ``CHECKPOINT_END`` has arrived;
* when the stream breaks (EOF, read error, a record that cannot be read)
  after at least one complete checkpoint, the partial epoch is dropped and
  the domain is finished from the last complete checkpoint (failover); a
  libxc ``END`` after checkpoints is a failover too (libxc stops reading);
* a break before the first checkpoint completes is a failure.

Without a hypervisor there is no domain to build; ``sim=True`` materialises
the guest memory (pfn -> 4096 bytes) so it can be compared with
:mod:`.simpage`, and an HVM guest's device-model state: the
``EMULATOR_CONTEXT`` of the last complete checkpoint (libxl writes each
checkpoint's to ``qemu-resume.<domid>`` and starts qemu from the last one at
failover; an epoch without one leaves the previous one in place) and the
``EMULATOR_XENSTORE_DATA`` keys written so far.  One deliberate difference from xl: records are checked as
they arrive, so a malformed record in an epoch makes *that* epoch
incomplete and we fail over, where libxc would only notice while applying
the epoch and abort (docs/decisions.d/stream.md).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from . import libxc, libxl, simpage, xl
from .reader import Header, Mark, StreamWalker
from .records import Record
from .source import StreamError, StreamLike, how_it_ended, open_source

log = logging.getLogger("xen_remus_compat")


@dataclass
class ReceiveResult:
    """What arrived and what the backup would run (see module docstring).

    ``checkpoints``: complete checkpoints; ``pages_per_checkpoint[k]``:
    pages (with data) received in epoch ``k`` (the first one includes the
    whole live migration); ``committed_offset``: where the last consistent
    state ends; ``ended``: ``end`` (libxl END), ``libxc-end``, ``eof`` (at
    a record boundary), ``truncated`` (inside a header or record),
    ``read-error`` or ``error`` (malformed data).
    """

    source: str
    fmt: str = ""
    config: Optional[dict] = None
    domain_name: Optional[str] = None
    guest: Optional[str] = None
    checkpoints: int = 0
    pages_per_checkpoint: List[int] = field(default_factory=list)
    bytes: int = 0
    committed_offset: Optional[int] = None
    plain: bool = False
    failover_ok: bool = False
    ended: str = ""
    error: Optional[str] = None
    error_offset: Optional[int] = None
    errno: Optional[int] = None
    discarded_records: int = 0
    discarded_pages: int = 0
    warnings: List[str] = field(default_factory=list)
    memory: Optional[Dict[int, bytes]] = field(default=None, repr=False)
    #: HVM: the emulator of the committed device state (``qemu-upstream``)
    emulator: Optional[str] = None
    #: HVM: bytes of the committed EMULATOR_CONTEXT state (any mode) ...
    device_state_size: Optional[int] = None
    #: ... and the state itself (``sim=True`` only), what qemu restarts from
    device_state: Optional[bytes] = field(default=None, repr=False)
    #: HVM: EMULATOR_XENSTORE_DATA keys committed (relative to the device
    #: model's xenstore directory)
    emulator_xenstore: Dict[str, str] = field(default_factory=dict)

    def page_versions(self) -> Dict[int, Optional[int]]:
        """pfn -> simpage version (None where the page is not a sim page)."""
        out: Dict[int, Optional[int]] = {}
        for pfn, data in (self.memory or {}).items():
            decoded = simpage.decode(data)
            out[pfn] = decoded[1] if decoded and decoded[0] == pfn else None
        return out

    def bad_sim_pages(self) -> List[int]:
        """pfns whose content does not follow the simpage contract."""
        return sorted(p for p, v in self.page_versions().items() if v is None)

    def as_dict(self) -> dict:
        """JSON-able summary (memory summarised, not included)."""
        out = {k: getattr(self, k) for k in (
            "source", "fmt", "domain_name", "guest", "checkpoints",
            "pages_per_checkpoint", "bytes", "committed_offset", "plain",
            "failover_ok", "ended", "error", "error_offset", "errno",
            "discarded_records", "discarded_pages", "warnings", "emulator",
            "device_state_size", "emulator_xenstore")}
        if self.memory is not None:
            out["memory_pages"] = len(self.memory)
            out["bad_sim_pages"] = len(self.bad_sim_pages())
        return out


class ReceiveFailed(StreamError):
    """The stream broke before any consistent state: no failover possible.

    ``result`` holds everything known (xl: "Domain creation failed").
    """

    def __init__(self, message: str, result: ReceiveResult, **kw) -> None:
        super().__init__(message, **kw)
        self.result = result


def _write_banner(back_channel) -> None:
    if isinstance(back_channel, int):
        data = memoryview(xl.BANNER)
        while data:
            data = data[os.write(back_channel, data):]
    else:
        back_channel.write(xl.BANNER)
        back_channel.flush()


class _Epochs:
    """Pages and records of the epoch in flight, and the committed memory.

    ``max_memory``: bytes of page data (committed plus in flight) a
    ``sim`` receiver may hold; beyond it the record is refused like a
    malformed one (the epoch in flight is dropped).
    """

    def __init__(self, sim: bool, max_memory: Optional[int] = None) -> None:
        self.sim = sim
        self.memory: Optional[Dict[int, bytes]] = {} if sim else None
        self.pending: Dict[int, bytes] = {}
        self.pages = 0
        self.records = 0
        self.vcpu_basic: set = set()
        self.max_pages = (None if max_memory is None
                          else max_memory // libxc.PAGE_SIZE)
        #: emulator records of the epoch in flight: (id, size, state|None)
        self.context: Optional[tuple] = None
        self.xenstore: Dict[str, str] = {}

    def add_emulator(self, rec: Record) -> None:
        """An EMULATOR_CONTEXT or EMULATOR_XENSTORE_DATA record (libxl)."""
        emu_id, _index = libxl.EMULATOR_HEADER.unpack_from(rec.body) \
            if rec.body else (libxl.EMULATOR_QEMU_UPSTREAM, 0)
        data = rec.body[libxl.EMULATOR_HEADER.size:]
        if rec.type == libxl.EMULATOR_CONTEXT:
            self.context = (libxl.EMULATOR_IDS.get(emu_id, str(emu_id)),
                            rec.length - libxl.EMULATOR_HEADER.size,
                            bytes(data) if self.sim else None)
        else:
            for key, value in libxl.xenstore_pairs(bytes(data)):
                self.xenstore[key.decode(errors="replace")] = \
                    value.decode(errors="replace")

    def commit_emulator(self, result: "ReceiveResult") -> None:
        if self.context is not None:
            result.emulator, result.device_state_size, result.device_state = \
                self.context
        result.emulator_xenstore.update(self.xenstore)
        self.context, self.xenstore = None, {}

    def add(self, rec: Record) -> Optional[str]:
        """Keep ``rec``; a reason string when it would exceed the memory cap."""
        self.records += 1
        if rec.type != libxc.PAGE_DATA:
            return None
        self.pages += rec.info.pages_with_data
        if not self.sim:
            return None
        for pfn, _ptype, view in rec.info.pages(rec.body):
            if view is not None:       # XTAB/XALLOC/BROKEN: no content
                self.pending[pfn] = bytes(view)
        if self.max_pages is not None and \
                len(self.memory) + len(self.pending) > self.max_pages:
            held = len(self.memory) + len(self.pending)
            self.pending = {}
            limit = self.max_pages * libxc.PAGE_SIZE
            size = (f"{limit >> 20} MiB" if limit >= 1 << 20
                    else f"{limit >> 10} KiB")
            return (f"guest memory exceeds this receiver's limit of {size} "
                    f"({held} pages held: committed and in flight)")
        return None

    def commit(self, state: libxc.State) -> int:
        pages = self.pages
        if self.memory is not None:
            self.memory.update(self.pending)
        self.vcpu_basic = set(state.vcpu_basic)
        self.pending, self.pages, self.records = {}, 0, 0
        return pages


def receive(stream: StreamLike, *, back_channel=None, sim: bool = False,
            fmt: str = "xl", source: Optional[str] = None,
            strict: bool = False,
            on_checkpoint: Optional[Callable[[int, ReceiveResult], None]] = None,
            max_record: Optional[int] = None,
            max_memory: Optional[int] = None) -> ReceiveResult:
    """Receive one stream; return the result of the failover.

    *back_channel* (an fd or binary file) gets the banner first, as from
    ``xl migrate-receive``; ``None`` writes nothing (reading a file).
    Raises :class:`ReceiveFailed` when no checkpoint was complete.
    ``max_record`` (bytes of one record body) and ``max_memory`` (bytes of
    guest pages held with ``sim``) bound what one stream may make us
    allocate; a stream beyond them breaks there, like a malformed one.
    """
    if back_channel is not None:
        _write_banner(back_channel)
    with open_source(stream, source=source) as src:
        result = ReceiveResult(source=src.source)
        walker = StreamWalker(src, fmt=fmt, strict=strict, keep_bodies=True,
                              max_record=max_record)
        epochs = _Epochs(sim, max_memory)
        result.memory = epochs.memory       # committed pages, live
        try:
            for ev in walker.events():
                if isinstance(ev, Record):
                    if ev.layer == "libxc":
                        over = epochs.add(ev)
                        ev.body = b""       # the pages are kept, not the record
                        if over:
                            raise StreamError(over, source=src.source,
                                              offset=ev.offset)
                    elif ev.type in (libxl.EMULATOR_CONTEXT,
                                     libxl.EMULATOR_XENSTORE_DATA):
                        epochs.add_emulator(ev)
                        if result.plain:        # the tail of a plain stream
                            epochs.commit_emulator(result)
                    ev.body = b""
                elif isinstance(ev, Header):
                    if ev.kind == "xl":
                        result.config = walker.config
                        result.domain_name = xl.config_name(walker.config)
                    elif ev.kind == "libxc-domain":
                        result.guest = str(ev.value)
                elif isinstance(ev, Mark):
                    if ev.kind == "checkpoint":
                        result.pages_per_checkpoint.append(
                            epochs.commit(walker.state))
                        epochs.commit_emulator(result)
                        result.checkpoints = ev.number
                        result.committed_offset = ev.offset
                        log.debug("receiver: checkpoint %d complete at %d",
                                  ev.number, ev.offset)
                        if on_checkpoint is not None:
                            on_checkpoint(ev.number, result)
                    elif ev.kind == "libxc-end":
                        if result.checkpoints:     # libxc stops reading
                            result.ended = "libxc-end"
                            break
                        result.pages_per_checkpoint.append(
                            epochs.commit(walker.state))
                        result.plain = True
                        result.committed_offset = ev.offset
                    elif ev.kind == "end":
                        result.ended = "end"
            else:
                result.ended = result.ended or "end"
        except StreamError as exc:
            result.ended = how_it_ended(exc)
            result.error = str(exc)
            result.error_offset = exc.offset
            result.errno = exc.errno
            cause: Optional[StreamError] = exc
        else:
            cause = None
        result.fmt = walker.fmt
        result.bytes = src.offset
    result.discarded_records = epochs.records
    result.discarded_pages = epochs.pages
    result.warnings = [f"offset {at}: {msg}" for at, msg in walker.rules.warnings]
    if result.checkpoints == 0 and not result.plain:
        why = cause.message if cause is not None else "no checkpoint in stream"
        raise ReceiveFailed(
            f"migration stream broke before the first checkpoint was "
            f"complete: {why}", result, source=result.source,
            offset=cause.offset if cause is not None else result.bytes,
            errno=cause.errno if cause is not None else None)
    if result.guest == "pv" and 0 not in epochs.vcpu_basic:
        result.failover_ok = False
        result.error = (result.error + "; " if result.error else "") + \
            "Sender didn't send vcpu0's basic state"
        raise ReceiveFailed("cannot build the domain from the last "
                            "checkpoint: Sender didn't send vcpu0's basic "
                            "state", result, source=result.source,
                            offset=result.committed_offset)
    result.failover_ok = True
    if result.checkpoints:
        log.debug("receiver: Remus failover to checkpoint %d of %s (%s)",
                  result.checkpoints,
                  xl.shown(result.domain_name or result.source), result.ended)
    return result
