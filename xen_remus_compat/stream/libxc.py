"""libxc domain image format v3 (docs/specs/libxc-migration-stream.pandoc rev 3).

xl-side.md §3.4.  Image header big-endian; domain header and records in the
stream's byte order (little-endian: big-endian streams are refused, as by
libxc's ``read_headers``).  The per-record rules are libxc 4.17's restorer
(``xg_sr_restore.c``, ``xg_sr_restore_x86_pv.c``, ``xg_sr_common_x86.c``)
plus Xen's verifier (``xen/migration/libxc.py``) for what only it checks;
the latter are :meth:`Rules.only_strict` (reserved fields, see records.py).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple

from .records import RecordBodyError, Rules, pack_record

# --- image header (spec "Image Header") ---------------------------------------
IHDR = struct.Struct(">QIIHHI")    # marker, id, version, options, rsvd16, rsvd32
MARKER = 0xFFFFFFFFFFFFFFFF
ID = 0x58454E46                    # "XENF"
VERSION = 3
VERSIONS = (2, 3)                  # what the 4.17 restorer accepts
IHDR_OPT_BIG_ENDIAN = 1 << 0

# --- domain header (spec "Domain Header") -----------------------------------
DHDR = struct.Struct("<IHHII")     # type, page_shift, rsvd, xen_major, xen_minor
DHDR_TYPE_X86_PV = 1
DHDR_TYPE_X86_HVM = 2
DOMAIN_TYPES = {DHDR_TYPE_X86_PV: "x86 PV", DHDR_TYPE_X86_HVM: "x86 HVM"}
GUEST_KIND = {DHDR_TYPE_X86_PV: "pv", DHDR_TYPE_X86_HVM: "hvm"}
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

# --- records (spec "Records") -------------------------------------------------
END = 0x00
PAGE_DATA = 0x01
X86_PV_INFO = 0x02
X86_PV_P2M_FRAMES = 0x03
X86_PV_VCPU_BASIC = 0x04
X86_PV_VCPU_EXTENDED = 0x05
X86_PV_VCPU_XSAVE = 0x06
SHARED_INFO = 0x07
X86_TSC_INFO = 0x08
HVM_CONTEXT = 0x09
HVM_PARAMS = 0x0A
TOOLSTACK = 0x0B
X86_PV_VCPU_MSRS = 0x0C
VERIFY = 0x0D
CHECKPOINT = 0x0E
CHECKPOINT_DIRTY_PFN_LIST = 0x0F
STATIC_DATA_END = 0x10
X86_CPUID_POLICY = 0x11
X86_MSR_POLICY = 0x12

#: REC_LENGTH_MAX of xg_sr_common.h: the restorer refuses longer bodies.
MAX_BODY = 128 << 20
#: MAX_BATCH_SIZE of xg_save_restore.h: the saver's pages per PAGE_DATA.
MAX_BATCH = 1024

# --- PAGE_DATA (spec "PAGE_DATA") ---------------------------------------------
PAGE_DATA_HEADER = struct.Struct("<II")    # count, reserved
PFN_MASK = (1 << 52) - 1
PFN_RESERVED_MASK = ((1 << 60) - 1) & ~PFN_MASK
TYPE_SHIFT = 60
#: XEN_DOMCTL_PFINFO_* >> 28 (spec table "XEN_DOMCTL_PFINFO_* Page Types").
PAGE_TYPES = {0x0: "NOTAB", 0x1: "L1TAB", 0x2: "L2TAB", 0x3: "L3TAB",
              0x4: "L4TAB", 0x9: "L1TAB_PIN", 0xA: "L2TAB_PIN",
              0xB: "L3TAB_PIN", 0xC: "L4TAB_PIN", 0xD: "BROKEN",
              0xE: "XALLOC", 0xF: "XTAB"}
TYPES_WITHOUT_DATA = frozenset({0xD, 0xE, 0xF})

X86_PV_INFO_BODY = struct.Struct("<BBHI")  # guest_width, pt_levels, rsvd, rsvd
PV_INFO_COMBINATIONS = {4: 3, 8: 4}       # width -> pt_levels (restorer)
P2M_FRAMES_HEADER = struct.Struct("<II")  # start_pfn, end_pfn
VCPU_HEADER = struct.Struct("<II")        # vcpu_id, reserved
TSC_INFO_BODY = struct.Struct("<IIQII")   # mode, khz, nsec, incarnation, rsvd
HVM_PARAMS_HEADER = struct.Struct("<II")  # count, reserved
HVM_PARAMS_ENTRY = struct.Struct("<QQ")
CPUID_LEAF_SIZE = 24                      # xen_cpuid_leaf_t
MSR_ENTRY_SIZE = 16                       # xen_msr_entry_t, xen_domctl_vcpu_msr_t
#: sizeof(vcpu_guest_context_x86_{64,32}_t) from Xen's public headers.
VCPU_BASIC_SIZE = {8: 5168, 4: 2800}
VCPU_EXTENDED_MAX = 128
VCPU_XSAVE_MIN = 16


@dataclass
class State:
    """What the restorer remembers between records (for order checks)."""

    version: int = VERSION
    guest: str = "pv"
    width: int = 0
    levels: int = 0
    seen_pv_info: bool = False
    seen_static_data_end: bool = False
    max_pfn: Optional[int] = None
    vcpu_basic: set = field(default_factory=set)
    shared_info: bool = False

    def static_data_end(self) -> None:
        if self.seen_static_data_end:
            raise RecordBodyError("Multiple STATIC_DATA_END records found")
        self.seen_static_data_end = True

    def need_static_data_end(self) -> None:
        if self.seen_static_data_end:
            return
        if self.version < 3:        # v2 compat: infer it (spec "v3 compat")
            self.seen_static_data_end = True
            return
        raise RecordBodyError("No STATIC_DATA_END seen")

    def need_pv_info(self) -> None:
        if not self.seen_pv_info:
            raise RecordBodyError("Not yet received X86_PV_INFO record")


@dataclass
class PageData:
    """A parsed PAGE_DATA body: pfns, types, and where each page's data is."""

    pfns: List[int]
    types: List[int]
    data_start: int

    @property
    def count(self) -> int:
        return len(self.pfns)

    @property
    def pages_with_data(self) -> int:
        return sum(1 for t in self.types if t not in TYPES_WITHOUT_DATA)

    def pages(self, body: bytes) -> Iterator[Tuple[int, int, Optional[memoryview]]]:
        """``(pfn, type, 4096-byte view or None)`` in record order."""
        view = memoryview(body)
        at = self.data_start
        for pfn, ptype in zip(self.pfns, self.types):
            if ptype in TYPES_WITHOUT_DATA:
                yield pfn, ptype, None
            else:
                yield pfn, ptype, view[at:at + PAGE_SIZE]
                at += PAGE_SIZE


def parse_page_data(body: bytes, state: State, rules: Rules) -> PageData:
    """Check a PAGE_DATA body like ``handle_page_data`` and parse it."""
    state.need_static_data_end()
    if len(body) < PAGE_DATA_HEADER.size:
        raise RecordBodyError(f"PAGE_DATA record truncated: length {len(body)},"
                              f" min {PAGE_DATA_HEADER.size}")
    count, rsvd = PAGE_DATA_HEADER.unpack_from(body)
    if rsvd:
        rules.only_strict(f"reserved field of PAGE_DATA is 0x{rsvd:x}", 4)
    if count < 1:
        raise RecordBodyError("Expected at least 1 pfn in PAGE_DATA record")
    pfn_end = PAGE_DATA_HEADER.size + 8 * count
    if len(body) < pfn_end:
        raise RecordBodyError(f"PAGE_DATA record (length {len(body)}) too "
                              f"short to contain {count} pfns")
    raw = struct.unpack_from(f"<{count}Q", body, PAGE_DATA_HEADER.size)
    pfns, types, with_data = [], [], 0
    for i, word in enumerate(raw):
        at = PAGE_DATA_HEADER.size + 8 * i
        pfn, ptype = word & PFN_MASK, word >> TYPE_SHIFT
        if ptype not in PAGE_TYPES:
            raise RecordBodyError(f"Unknown type 0x{ptype:x} for pfn 0x{pfn:x}"
                                  f" (index {i})", at)
        if word & PFN_RESERVED_MASK:
            rules.only_strict(f"reserved bits set in pfn[{i}]: "
                              f"0x{word & PFN_RESERVED_MASK:016x}", at)
        if state.max_pfn is not None and pfn > state.max_pfn:
            raise RecordBodyError(f"pfn 0x{pfn:x} (index {i}) outside domain "
                                  f"maximum 0x{state.max_pfn:x}", at)
        if ptype not in TYPES_WITHOUT_DATA:
            with_data += 1
        pfns.append(pfn)
        types.append(ptype)
    expected = pfn_end + PAGE_SIZE * with_data
    if len(body) != expected:
        raise RecordBodyError(f"PAGE_DATA record wrong size: length "
                              f"{len(body)}, expected {PAGE_DATA_HEADER.size}"
                              f" + {8 * count} + {PAGE_SIZE * with_data}")
    return PageData(pfns, types, pfn_end)


# --- per-type checks: (body, state, rules) -> (info, detail) ------------------
Check = Callable[[bytes, State, Rules], Tuple[object, str]]


def _empty(body: bytes, state: State, rules: Rules):
    if body:
        raise RecordBodyError(f"record must be empty, has {len(body)} bytes")
    return None, ""


def _page_data(body, state, rules):
    pd = parse_page_data(body, state, rules)
    lo, hi = min(pd.pfns), max(pd.pfns)
    return pd, (f"{pd.count} pfn{'s' if pd.count != 1 else ''}, {pd.pages_with_data} with data, "
                f"pfn 0x{lo:x}..0x{hi:x}")


def _pv_info(body, state, rules):
    if state.seen_pv_info:
        raise RecordBodyError("Already received X86_PV_INFO record")
    if len(body) < X86_PV_INFO_BODY.size:
        raise RecordBodyError(f"X86_PV_INFO record truncated: length "
                              f"{len(body)}, expected {X86_PV_INFO_BODY.size}")
    if len(body) != X86_PV_INFO_BODY.size:
        rules.only_strict(f"X86_PV_INFO: expected length of "
                          f"{X86_PV_INFO_BODY.size}, got {len(body)}")
    width, levels, r1, r2 = X86_PV_INFO_BODY.unpack_from(body)
    if PV_INFO_COMBINATIONS.get(width) != levels:
        raise RecordBodyError(f"Invalid X86_PV_INFO combination: width "
                              f"{width}, pt_levels {levels}")
    if r1 or r2:
        rules.only_strict("reserved bits set in X86_PV_INFO", 2)
    state.seen_pv_info, state.width, state.levels = True, width, levels
    return None, f"{width * 8}-bit guest, {levels} levels of pagetables"


def _p2m_frames(body, state, rules):
    state.need_static_data_end()
    state.need_pv_info()
    if len(body) < P2M_FRAMES_HEADER.size:
        raise RecordBodyError(f"X86_PV_P2M_FRAMES record truncated: length "
                              f"{len(body)}, min {P2M_FRAMES_HEADER.size}")
    start, end = P2M_FRAMES_HEADER.unpack_from(body)
    if start > end:
        raise RecordBodyError(f"End pfn in stream (0x{end:x}) exceeds Start "
                              f"(0x{start:x})")
    fpp = PAGE_SIZE // state.width
    frames = end // fpp - start // fpp + 1
    if len(body) != P2M_FRAMES_HEADER.size + 8 * frames:
        raise RecordBodyError(f"X86_PV_P2M_FRAMES record wrong size: start_pfn"
                              f" 0x{start:x}, end_pfn 0x{end:x}, length "
                              f"{len(body)}, expected {P2M_FRAMES_HEADER.size}"
                              f" + {frames} * 8")
    state.max_pfn = end if state.max_pfn is None else max(state.max_pfn, end)
    return None, f"pfn 0x{start:x}..0x{end:x}, {frames} frames"


def _vcpu(kind: str) -> Check:
    def check(body, state, rules):
        state.need_pv_info()
        if len(body) < VCPU_HEADER.size:
            raise RecordBodyError(f"X86_PV_VCPU_{kind} record truncated: "
                                  f"length {len(body)}, header size "
                                  f"{VCPU_HEADER.size}")
        vcpu, rsvd = VCPU_HEADER.unpack_from(body)
        if rsvd:
            rules.only_strict(f"reserved field of X86_PV_VCPU_{kind} is "
                              f"0x{rsvd:x}", 4)
        blob = len(body) - VCPU_HEADER.size
        if blob == 0:          # errata 1: tolerated, ignored
            return vcpu, f"vcpu{vcpu}, empty (ignored)"
        problem = {
            "BASIC": blob != VCPU_BASIC_SIZE.get(state.width, blob),
            "EXTENDED": blob > VCPU_EXTENDED_MAX,
            "XSAVE": blob < VCPU_XSAVE_MIN,
            "MSRS": blob % MSR_ENTRY_SIZE != 0,
        }[kind]
        if problem:
            raise RecordBodyError(f"X86_PV_VCPU_{kind} record for vcpu{vcpu} "
                                  f"has a bad size: {blob} bytes of context")
        if kind == "BASIC":
            state.vcpu_basic.add(vcpu)
        return vcpu, f"vcpu{vcpu}, {blob} bytes"
    return check


def _shared_info(body, state, rules):
    state.need_pv_info()
    if len(body) != PAGE_SIZE:
        raise RecordBodyError(f"SHARED_INFO record wrong size: length "
                              f"{len(body)}, expected {PAGE_SIZE}")
    state.shared_info = True
    return None, ""


def _tsc_info(body, state, rules):
    if len(body) != TSC_INFO_BODY.size:
        raise RecordBodyError(f"X86_TSC_INFO record wrong size: length "
                              f"{len(body)}, expected {TSC_INFO_BODY.size}")
    mode, khz, nsec, incarnation, rsvd = TSC_INFO_BODY.unpack(body)
    if rsvd:
        rules.only_strict(f"reserved field of X86_TSC_INFO is 0x{rsvd:x}", 20)
    return None, f"mode {mode}, {khz} kHz, {nsec} ns, incarnation {incarnation}"


def _hvm_context(body, state, rules):
    if not body:
        rules.only_strict("zero length HVM_CONTEXT")
    return None, f"{len(body)} bytes"


def _hvm_params(body, state, rules):
    if len(body) < HVM_PARAMS_HEADER.size:
        raise RecordBodyError(f"HVM_PARAMS record truncated: length "
                              f"{len(body)}, min {HVM_PARAMS_HEADER.size}")
    count, rsvd = HVM_PARAMS_HEADER.unpack_from(body)
    if rsvd:
        rules.only_strict(f"reserved field of HVM_PARAMS is 0x{rsvd:x}", 4)
    if len(body) != HVM_PARAMS_HEADER.size + count * HVM_PARAMS_ENTRY.size:
        raise RecordBodyError(f"HVM_PARAMS record wrong size: length "
                              f"{len(body)}, {count} params")
    return None, f"{count} params"


def _policy(name: str, unit: int) -> Check:
    def check(body, state, rules):
        if state.version < 3:
            rules.only_strict(f"{name} record found in v2 stream")
        if not body or len(body) % unit:
            raise RecordBodyError(f"{name} size {len(body)} should be a "
                                  f"multiple of {unit}")
        return None, f"{len(body) // unit} entries"
    return check


def _static_data_end(body, state, rules):
    _empty(body, state, rules)
    if state.version < 3:
        rules.only_strict("STATIC_DATA_END record found in v2 stream")
    state.static_data_end()
    return None, ""


def _refuse(why: str) -> Check:
    def check(body, state, rules):
        raise RecordBodyError(why)
    return check


@dataclass(frozen=True)
class RecordType:
    """One row of the spec's record table.

    ``guests``: domain kinds whose restorer handles it; ``token``: its
    letter in the grammar of xl-side.md §3.5 (see verify.py).
    """

    code: int
    name: str
    guests: FrozenSet[str]
    token: str
    check: Check


_ANY = frozenset({"pv", "hvm"})
_PV = frozenset({"pv"})
_HVM = frozenset({"hvm"})

RECORD_TYPES: Dict[int, RecordType] = {r.code: r for r in (
    RecordType(END, "END", _ANY, "$", _empty),
    RecordType(PAGE_DATA, "PAGE_DATA", _ANY, "P", _page_data),
    RecordType(X86_PV_INFO, "X86_PV_INFO", _PV, "I", _pv_info),
    RecordType(X86_PV_P2M_FRAMES, "X86_PV_P2M_FRAMES", _PV, "F", _p2m_frames),
    RecordType(X86_PV_VCPU_BASIC, "X86_PV_VCPU_BASIC", _PV, "B", _vcpu("BASIC")),
    RecordType(X86_PV_VCPU_EXTENDED, "X86_PV_VCPU_EXTENDED", _PV, "E",
               _vcpu("EXTENDED")),
    RecordType(X86_PV_VCPU_XSAVE, "X86_PV_VCPU_XSAVE", _PV, "X", _vcpu("XSAVE")),
    RecordType(SHARED_INFO, "SHARED_INFO", _PV, "S", _shared_info),
    RecordType(X86_TSC_INFO, "X86_TSC_INFO", _ANY, "T", _tsc_info),
    RecordType(HVM_CONTEXT, "HVM_CONTEXT", _HVM, "H", _hvm_context),
    RecordType(HVM_PARAMS, "HVM_PARAMS", _HVM, "Q", _hvm_params),
    RecordType(TOOLSTACK, "TOOLSTACK", frozenset(), "!",
               _refuse("deprecated TOOLSTACK record: the 4.17 restorer does "
                       "not handle it")),
    RecordType(X86_PV_VCPU_MSRS, "X86_PV_VCPU_MSRS", _PV, "M", _vcpu("MSRS")),
    RecordType(VERIFY, "VERIFY", _ANY, "V", _empty),
    RecordType(CHECKPOINT, "CHECKPOINT", _ANY, "^", _empty),
    RecordType(CHECKPOINT_DIRTY_PFN_LIST, "CHECKPOINT_DIRTY_PFN_LIST",
               frozenset(), "!",
               _refuse("CHECKPOINT_DIRTY_PFN_LIST belongs on the COLO back "
                       "channel, not in a forward stream")),
    RecordType(STATIC_DATA_END, "STATIC_DATA_END", _ANY, "D", _static_data_end),
    RecordType(X86_CPUID_POLICY, "X86_CPUID_POLICY", _ANY, "C",
               _policy("X86_CPUID_POLICY", CPUID_LEAF_SIZE)),
    RecordType(X86_MSR_POLICY, "X86_MSR_POLICY", _ANY, "R",
               _policy("X86_MSR_POLICY", MSR_ENTRY_SIZE)),
)}


def check_image_header(raw: bytes, rules: Rules) -> Tuple[int, str]:
    """Validate the image header like ``read_headers``; (version, text)."""
    marker, ident, version, options, r16, r32 = IHDR.unpack(raw)
    if marker != MARKER:
        raise RecordBodyError(f"Invalid marker: Got 0x{marker:016x}")
    if ident != ID:
        raise RecordBodyError(f"Invalid ID: Expected 0x{ID:08x}, Got "
                              f"0x{ident:08x}", 8)
    if version not in VERSIONS:
        raise RecordBodyError(f"Invalid Version: Expected 2 <= ver <= 3, Got "
                              f"{version}", 12)
    if options & IHDR_OPT_BIG_ENDIAN:
        raise RecordBodyError("Unable to handle big endian streams", 16)
    if options & ~IHDR_OPT_BIG_ENDIAN & 0xFFFF:
        rules.only_strict(f"reserved bits set in image options: "
                          f"0x{options:04x}", 16)
    if r16 or r32:
        rules.only_strict("reserved bits set in image header", 18)
    return version, f"v{version}, little endian"


def check_domain_header(raw: bytes, rules: Rules) -> Tuple[str, str]:
    """Validate the domain header; (guest kind, text)."""
    gtype, page_shift, rsvd, major, minor = DHDR.unpack(raw)
    if gtype not in DOMAIN_TYPES:
        raise RecordBodyError(f"Unrecognised domain type 0x{gtype:x}")
    if page_shift != PAGE_SHIFT:
        raise RecordBodyError(f"Invalid page size {1 << min(page_shift, 63)} "
                              f"(page_shift {page_shift}); expected "
                              f"{PAGE_SIZE}", 4)
    if rsvd:
        rules.only_strict(f"reserved bits set in domain header 0x{rsvd:04x}", 6)
    origin = (f"legacy converted (v{minor})" if major == 0
              else f"from Xen {major}.{minor}")
    return GUEST_KIND[gtype], f"{DOMAIN_TYPES[gtype]} {origin}"


# --- writers (the simulator and tests; the engine leaves these to libxc) -----
def pack_image_header(version: int = VERSION) -> bytes:
    return IHDR.pack(MARKER, ID, version, 0, 0, 0)


def pack_domain_header(gtype: int = DHDR_TYPE_X86_PV, xen_major: int = 4,
                       xen_minor: int = 17) -> bytes:
    return DHDR.pack(gtype, PAGE_SHIFT, 0, xen_major, xen_minor)


def x86_pv_info(width: int = 8) -> bytes:
    return pack_record(X86_PV_INFO,
                       X86_PV_INFO_BODY.pack(width, PV_INFO_COMBINATIONS[width],
                                             0, 0))


def x86_pv_p2m_frames(nr_pfns: int, frames: Optional[List[int]] = None,
                      width: int = 8) -> bytes:
    """P2M frame list covering pfns 0..nr_pfns-1 (the saver's start 0)."""
    end = nr_pfns - 1
    n = end // (PAGE_SIZE // width) + 1
    frames = list(frames) if frames is not None else list(range(n))
    return pack_record(X86_PV_P2M_FRAMES,
                       P2M_FRAMES_HEADER.pack(0, end)
                       + struct.pack(f"<{n}Q", *frames))


def page_data(pages: List[Tuple[int, bytes]], ptype: int = 0) -> bytes:
    """PAGE_DATA for ``(pfn, 4096 bytes)`` pairs, all of type *ptype*."""
    head = PAGE_DATA_HEADER.pack(len(pages), 0)
    pfns = struct.pack(f"<{len(pages)}Q",
                       *((ptype << TYPE_SHIFT) | pfn for pfn, _ in pages))
    return pack_record(PAGE_DATA, head + pfns + b"".join(d for _, d in pages))


def x86_tsc_info(mode: int = 0, khz: int = 2000000, nsec: int = 0,
                 incarnation: int = 0) -> bytes:
    return pack_record(X86_TSC_INFO,
                       TSC_INFO_BODY.pack(mode, khz, nsec, incarnation, 0))


def shared_info(data: bytes = bytes(PAGE_SIZE)) -> bytes:
    return pack_record(SHARED_INFO, data)


def x86_pv_vcpu(rtype: int, vcpu: int, blob: bytes) -> bytes:
    return pack_record(rtype, VCPU_HEADER.pack(vcpu, 0) + blob)


def static_data_end() -> bytes:
    return pack_record(STATIC_DATA_END)


def checkpoint() -> bytes:
    return pack_record(CHECKPOINT)


def end() -> bytes:
    return pack_record(END)
