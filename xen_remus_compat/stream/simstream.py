"""A Python reference sender: the stream ``xl remus`` would send for the
simulated guest of :mod:`.simpage`.

Why: tests and the demo need streams with known content (which page holds
which version at each checkpoint) without a hypervisor, built from the same
writers the engine uses and in the record order of the 4.17 saver
(``xg_sr_save.c: save``; xl-side.md §3.5).  This copies page data through
Python, so it is for tests and the simulator only, never the engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from . import libxc, libxl, writer
from .simpage import page_bytes

#: A small PV config, as ``xl remus`` sends it (c_info.domid forced to 0).
DEFAULT_CONFIG = {
    "c_info": {"type": "pv", "name": "simguest", "domid": 0,
               "uuid": "5e1a5e1a-0000-4000-8000-000000000001"},
    "b_info": {"max_vcpus": 1, "max_memkb": 4096, "target_memkb": 4096,
               "type.pv": {"kernel": "/boot/vmlinuz"}},
}


@dataclass
class SimStream:
    """The bytes plus what a receiver must end up with.

    ``versions[k]`` is ``{pfn: version}`` after checkpoint ``k + 1`` (for a
    plain stream: after END).  ``checkpoint_ends[k]`` is the offset right
    after checkpoint ``k + 1``'s CHECKPOINT_END.  ``boundaries`` lists the
    start offset and name of every header and record.
    """

    data: bytes
    versions: List[Dict[int, int]]
    checkpoint_ends: List[int]
    boundaries: List[Tuple[int, str]] = field(default_factory=list)
    pages_per_checkpoint: List[int] = field(default_factory=list)
    config: Optional[dict] = None

    def memory(self, k: int) -> Dict[int, bytes]:
        """Guest memory after checkpoint *k* (1-based)."""
        return {pfn: page_bytes(pfn, v)
                for pfn, v in self.versions[k - 1].items()}

    def last_complete(self, cut: int) -> int:
        """Number of checkpoints complete in ``data[:cut]``."""
        return sum(1 for end in self.checkpoint_ends if end <= cut)


class _Builder:
    def __init__(self) -> None:
        self.parts: List[bytes] = []
        self.size = 0
        self.boundaries: List[Tuple[int, str]] = []

    def add(self, name: str, data: bytes) -> None:
        self.boundaries.append((self.size, name))
        self.parts.append(data)
        self.size += len(data)


def _pages(builder: _Builder, pfns: Sequence[int], versions: Dict[int, int],
           batch: int) -> int:
    for i in range(0, len(pfns), batch):
        chunk = pfns[i:i + batch]
        builder.add("PAGE_DATA", libxc.page_data(
            [(p, page_bytes(p, versions[p])) for p in chunk]))
    return len(pfns)


def _epoch_tail(builder: _Builder, guest: str, epoch: int, vcpus: int) -> None:
    builder.add("X86_TSC_INFO", libxc.x86_tsc_info(nsec=epoch * 1000000))
    if guest == "pv":
        builder.add("SHARED_INFO", libxc.shared_info(
            epoch.to_bytes(8, "little") + bytes(libxc.PAGE_SIZE - 8)))
        for v in range(vcpus):
            builder.add("X86_PV_VCPU_BASIC", libxc.x86_pv_vcpu(
                libxc.X86_PV_VCPU_BASIC, v,
                bytes([epoch & 0xFF]) * libxc.VCPU_BASIC_SIZE[8]))
            builder.add("X86_PV_VCPU_EXTENDED", libxc.x86_pv_vcpu(
                libxc.X86_PV_VCPU_EXTENDED, v, bytes(16)))
    else:
        builder.add("HVM_CONTEXT", libxc.pack_record(
            libxc.HVM_CONTEXT, b"HVMCTX" + bytes([epoch & 0xFF]) * 58))
        params = libxc.HVM_PARAMS_HEADER.pack(2, 0) + \
            libxc.HVM_PARAMS_ENTRY.pack(1, 0xFEFFF) + \
            libxc.HVM_PARAMS_ENTRY.pack(2, epoch)
        builder.add("HVM_PARAMS", libxc.pack_record(libxc.HVM_PARAMS, params))


def _libxl_tail(builder: _Builder, guest: str, epoch: int) -> None:
    if guest != "hvm":
        return
    builder.add("EMULATOR_XENSTORE_DATA", libxl.emulator_xenstore_record(
        [("physmap/1/start_addr", "f0000000"), ("physmap/1/size", "800000"),
         ("physmap/1/name", "vga.vram")]))
    builder.add("EMULATOR_CONTEXT", libxl.emulator_context_record(
        b"QEVM" + bytes([epoch & 0xFF]) * 60))


def build_stream(nr_pages: int, dirty: Iterable[Iterable[int]] = (), *,
                 live_rounds: Iterable[Iterable[int]] = (),
                 guest: str = "pv", fmt: str = "xl",
                 config: Optional[dict] = None, plain: bool = False,
                 vcpus: int = 1, batch: int = libxc.MAX_BATCH) -> SimStream:
    """Build a stream for a guest of *nr_pages* pages.

    Epoch 0 sends every page at version 0, then one resend per set in
    *live_rounds* (each resent page's version goes up by one, as a page
    dirtied during live migration).  Each set in *dirty* is one further
    checkpoint: those pages' versions go up by one and only they are sent.
    ``plain=True`` ends after epoch 0 with libxc END + libxl END (a plain
    migration); otherwise every epoch ends with CHECKPOINT + CHECKPOINT_END
    and the stream just stops.  ``fmt``: ``xl`` (with header), ``libxl``
    (blackhole: no xl header) or ``libxc`` (bare).
    """
    if guest not in ("pv", "hvm"):
        raise ValueError(f"guest must be pv or hvm, not {guest!r}")
    if batch < 1 or batch > libxc.MAX_BATCH:
        raise ValueError(f"batch must be 1..{libxc.MAX_BATCH}")
    dirty = list(dirty)
    if plain and dirty:
        raise ValueError("a plain stream has one epoch: no dirty sets")
    cfg = dict(config or DEFAULT_CONFIG)
    b = _Builder()
    if fmt == "xl":
        b.add("xl header", writer.xl_header(cfg))
    if fmt in ("xl", "libxl"):
        b.add("libxl header", writer.LIBXL_HEADER)
        b.add("LIBXC_CONTEXT", writer.LIBXC_CONTEXT_RECORD)
    b.add("libxc image header", libxc.pack_image_header())
    gtype = libxc.DHDR_TYPE_X86_PV if guest == "pv" else libxc.DHDR_TYPE_X86_HVM
    b.add("libxc domain header", libxc.pack_domain_header(gtype))
    if guest == "pv":
        b.add("X86_PV_INFO", libxc.x86_pv_info(8))
    b.add("X86_CPUID_POLICY", libxc.pack_record(
        libxc.X86_CPUID_POLICY, bytes(libxc.CPUID_LEAF_SIZE * 2)))
    b.add("STATIC_DATA_END", libxc.static_data_end())
    if guest == "pv":
        b.add("X86_PV_P2M_FRAMES", libxc.x86_pv_p2m_frames(nr_pages))

    versions = {pfn: 0 for pfn in range(nr_pages)}
    history: List[Dict[int, int]] = []
    ends: List[int] = []
    counts: List[int] = []
    sent = _pages(b, list(range(nr_pages)), versions, batch)
    for round_ in live_rounds:
        pfns = sorted(set(round_))
        for p in pfns:
            versions[p] += 1
        sent += _pages(b, pfns, versions, batch)
    epochs = [None] + [sorted(set(d)) for d in dirty]
    for n, pfns in enumerate(epochs):
        if pfns is not None:
            for p in pfns:
                if not 0 <= p < nr_pages:
                    raise ValueError(f"dirty pfn {p} outside 0..{nr_pages - 1}")
                versions[p] += 1
            sent = _pages(b, pfns, versions, batch)
        _epoch_tail(b, guest, n, vcpus)
        if plain:
            b.add("END", libxc.end())
            _libxl_tail(b, guest, n)
            if fmt != "libxc":
                b.add("libxl END", writer.LIBXL_END_RECORD)
            history.append(dict(versions))
            counts.append(sent)
            ends.append(b.size)
            break
        b.add("CHECKPOINT", libxc.checkpoint())
        if fmt != "libxc":
            _libxl_tail(b, guest, n)
            b.add("CHECKPOINT_END", writer.CHECKPOINT_END_RECORD)
        history.append(dict(versions))
        counts.append(sent)
        ends.append(b.size)
    return SimStream(b"".join(b.parts), history, ends, b.boundaries, counts,
                     cfg if fmt == "xl" else None)
