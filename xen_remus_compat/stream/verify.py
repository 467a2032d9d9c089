"""Verify migration streams: ours (checkpoint-aware) and Xen's own classes.

* :func:`verify` walks a stream with :class:`~.reader.StreamWalker` in
  strict mode (Xen's verifier rules plus the 4.17 restorers'), counts
  complete checkpoints and checks each epoch's record order against the
  grammar of xl-side.md §3.5.
* :func:`verify_with_xen` drives Xen's ``VerifyLibxl``/``VerifyLibxc`` from
  ``/usr/lib/xen-4.17/lib/python`` checkpoint-aware, as xl-side.md §5.5
  describes (Xen's ``verify-stream-v2`` cannot check Remus streams, §0.7),
  with the Python 3 ``EMULATOR_XENSTORE_DATA`` bug worked around.

Acceptance (both): the stream ends with libxl ``END`` (plain), or it stops
(EOF) after at least one complete checkpoint (Remus).  Malformed data is a
failure even after checkpoints; the *receiver* would still fail over.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import struct
import sys
import threading
import types
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from . import libxc, libxl, xl
from .reader import Header, Mark, StreamWalker
from .records import Record, RecordBodyError
from .source import (ByteSource, StreamError, StreamLike, StreamReadError,
                     StreamTruncated, how_it_ended, open_source)

log = logging.getLogger("xen_remus_compat")

XEN_PYTHON = "/usr/lib/xen-4.17/lib/python"

# --- xl-side.md §3.5 as regular expressions over record tokens ---------------
# Tokens are libxc.RecordType.token; runs of PAGE_DATA count as one "P".
_EPOCH = {
    "pv": r"P*(?:VP*)?TS(?:BE?X?M?)+",
    "hvm": r"P*(?:VP*)?T(?:HQ|QH)",
}
_STATIC = {"pv": r"IC?R?DF", "hvm": r"C?R?D"}
GRAMMAR = {
    (guest, first): re.compile((_STATIC[guest] if first else "") + _EPOCH[guest])
    for guest in ("pv", "hvm") for first in (True, False)
}
GRAMMAR_TEXT = {
    "pv": "[X86_PV_INFO [CPUID] [MSR] STATIC_DATA_END X86_PV_P2M_FRAMES] "
          "PAGE_DATA* X86_TSC_INFO SHARED_INFO (VCPU_BASIC [EXTENDED] "
          "[XSAVE] [MSRS])+",
    "hvm": "[[CPUID] [MSR] STATIC_DATA_END] PAGE_DATA* X86_TSC_INFO "
           "HVM_CONTEXT HVM_PARAMS (either order)",
}


@dataclass
class Report:
    """Outcome of :func:`verify`."""

    source: str
    fmt: str = ""
    ok: bool = False
    complete: bool = False
    checkpoints: int = 0
    checkpoint_offsets: List[int] = field(default_factory=list)
    records: int = 0
    bytes: int = 0
    ended: str = ""
    error: Optional[str] = None
    error_offset: Optional[int] = None
    warnings: List[str] = field(default_factory=list)
    config: Optional[dict] = None
    guest: Optional[str] = None

    @property
    def last_complete_offset(self) -> Optional[int]:
        return self.checkpoint_offsets[-1] if self.checkpoint_offsets else None

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in (
            "source", "fmt", "ok", "complete", "checkpoints",
            "checkpoint_offsets", "records", "bytes", "ended", "error",
            "error_offset", "warnings", "guest")}
        out["last_complete_offset"] = self.last_complete_offset
        out["domain_name"] = xl.config_name(self.config)
        return out


def verify(stream: StreamLike, *, fmt: str = "auto", strict: bool = True,
           grammar: str = "warn", source: Optional[str] = None,
           on_event: Optional[Callable[[object], None]] = None) -> Report:
    """Check a whole stream.  Stream problems end up in the report; only
    an input that cannot be opened raises (:class:`StreamReadError`).

    ``grammar``: ``warn`` (default), ``error`` or ``off`` for deviations
    from the §3.5 record order.  ``on_event`` sees every header, record
    (bodies dropped) and mark, e.g. for ``stream dump``.
    """
    if grammar not in ("warn", "error", "off"):
        raise ValueError(f"grammar must be warn, error or off, not {grammar!r}")
    with open_source(stream, source=source) as src:
        rep = Report(source=src.source)
        walker = StreamWalker(src, fmt=fmt, strict=strict, keep_bodies=False)
        tokens: List[str] = []
        epoch_start = [0]

        def close_epoch(rec: Record) -> None:
            guest = walker.state.guest
            seq = "".join(tokens)
            first = rec.epoch == 0
            if grammar != "off" and not GRAMMAR[(guest, first)].fullmatch(seq):
                msg = (f"epoch {rec.epoch} (offset {epoch_start[0]}..{rec.end})"
                       f": record order {seq or '(none)'} is not what libxl "
                       f"writes: {GRAMMAR_TEXT[guest]}")   # xl-side.md §3.5
                if grammar == "error":
                    raise StreamError(msg, source=src.source,
                                      offset=epoch_start[0])
                rep.warnings.append(msg)
            tokens.clear()
            epoch_start[0] = rec.end

        try:
            for ev in walker.events():
                if on_event is not None:
                    on_event(ev)
                if isinstance(ev, Record):
                    rep.records += 1
                    if ev.layer != "libxc":
                        continue
                    kind = libxc.RECORD_TYPES.get(ev.type)
                    if kind is None:
                        continue
                    if ev.type in (libxc.CHECKPOINT, libxc.END):
                        close_epoch(ev)
                    elif not (kind.token == "P" and tokens[-1:] == ["P"]):
                        tokens.append(kind.token)
                elif isinstance(ev, Header):
                    if ev.kind == "libxc-domain":
                        rep.guest = str(ev.value)
                        epoch_start[0] = ev.end
                elif isinstance(ev, Mark) and ev.kind == "end":
                    rep.ended = "end"
            rep.ended = rep.ended or "end"
            rep.complete = True
        except StreamError as exc:
            rep.ended = how_it_ended(exc)
            rep.error = str(exc)
            rep.error_offset = exc.offset
        rep.fmt = walker.fmt
        rep.bytes = src.offset
        rep.config = walker.config
        rep.checkpoints = walker.checkpoints
        rep.checkpoint_offsets = list(walker.checkpoint_offsets)
    rep.warnings += [f"offset {at}: {msg}" for at, msg in walker.rules.warnings]
    rep.ok = rep.complete or (rep.checkpoints > 0
                              and rep.ended in ("eof", "truncated"))
    return rep


# --- Xen's own verifier, checkpoint-aware (xl-side.md §5.5) ------------------
_LOAD_LOCK = threading.Lock()
_LOADED: Dict[str, types.SimpleNamespace] = {}
_XEN_FILES = ("verify", "libxc", "libxl", "xl")


def load_xen_migration(path: str = XEN_PYTHON) -> types.SimpleNamespace:
    """Private copies of Xen's ``xen.migration`` modules from *path*.

    They are executed under their own names (their absolute imports need
    that) and then taken out of ``sys.modules`` again, so neither Debian's
    ``xen`` package nor our legacy ``xen.*`` aliases are disturbed, and the
    xenstore-data fix below patches only our copy.
    """
    with _LOAD_LOCK:
        if path in _LOADED:
            return _LOADED[path]
        base = os.path.join(path, "xen", "migration")
        missing = [f for f in _XEN_FILES
                   if not os.path.isfile(os.path.join(base, f + ".py"))]
        if missing:
            raise FileNotFoundError(
                f"Xen's migration tools not found under {base} (missing "
                f"{', '.join(m + '.py' for m in missing)}; install "
                "xen-utils-4.17)")
        names = ["xen", "xen.migration"] + [f"xen.migration.{f}"
                                            for f in _XEN_FILES]
        saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
        try:
            for pkg, pkg_path in (("xen", os.path.join(path, "xen")),
                                  ("xen.migration", base)):
                mod = types.ModuleType(pkg)
                mod.__path__ = [pkg_path]
                sys.modules[pkg] = mod
            loaded = {}
            for f in _XEN_FILES:
                name = f"xen.migration.{f}"
                spec = importlib.util.spec_from_file_location(
                    name, os.path.join(base, f + ".py"))
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod
                spec.loader.exec_module(mod)
                loaded[f] = mod
        finally:
            for n in names:
                sys.modules.pop(n, None)
            sys.modules.update(saved)
        ns = types.SimpleNamespace(**loaded, path=path)
        _patch_xenstore_data(ns)
        _LOADED[path] = ns
        return ns


def _patch_xenstore_data(ns: types.SimpleNamespace) -> None:
    """Replace the Python 3-broken EMULATOR_XENSTORE_DATA check (§5.2/§5.5).

    Xen's version compares ``content[-1]`` (an int) with ``'\\x00'`` and so
    rejects every non-empty record.  Ours checks the same rules on bytes.
    """
    xl_mod = ns.libxl
    hdr_fmt = xl_mod.EMULATOR_HEADER_FORMAT

    def verify_xenstore_data(self, content):
        minsz = struct.calcsize(hdr_fmt)
        if len(content) < minsz:
            raise xl_mod.RecordError(f"Length must be at least {minsz} bytes, "
                                     f"got {len(content)}")
        emu_id, emu_idx = struct.unpack(hdr_fmt, content[:minsz])
        if emu_id not in xl_mod.emulator_id_to_str:
            raise xl_mod.RecordError(f"Unrecognised emulator id 0x{emu_id:x}")
        self.info(f"Emulator Xenstore Data "
                  f"({xl_mod.emulator_id_to_str[emu_id]}, idx {emu_idx})")
        try:
            pairs = libxl.xenstore_pairs(bytes(content[minsz:]))
        except RecordBodyError as exc:
            raise xl_mod.RecordError(str(exc)) from None
        for key, val in pairs:
            self.info(f"  '{key.decode('utf-8', 'replace')}' = "
                      f"'{val.decode('utf-8', 'replace')}'")

    def no_nested_libxc(self, content):
        raise xl_mod.StreamError("LIBXC_CONTEXT record inside a checkpoint "
                                 "(only one libxc stream per migration)")

    # Our driver reads the one legitimate LIBXC_CONTEXT itself (§5.5 step 3);
    # any other would make Xen's class recurse into a stock libxc loop.
    xl_mod.record_verifiers[xl_mod.REC_TYPE_emulator_xenstore_data] = \
        verify_xenstore_data
    xl_mod.record_verifiers[xl_mod.REC_TYPE_libxc_context] = no_nested_libxc


@dataclass
class XenReport:
    """Outcome of :func:`verify_with_xen`; ``log`` is Xen's ``info`` output."""

    source: str
    ok: bool = False
    complete: bool = False
    checkpoints: int = 0
    ended: str = ""
    error: Optional[str] = None
    error_offset: Optional[int] = None
    config: Optional[dict] = None
    log: List[str] = field(default_factory=list)


class _XenReader:
    """``read(n)`` for Xen's classes: loops on short reads, counts bytes,
    refuses sizes beyond libxc's record limit (Xen's code would try)."""

    LIMIT = libxc.MAX_BODY + 8

    def __init__(self, src: ByteSource) -> None:
        self.src = src

    def __call__(self, n: int) -> bytes:
        if n > self.LIMIT:
            raise StreamError(f"record length {n} exceeds the 128 MiB limit",
                              source=self.src.source, offset=self.src.offset)
        out = bytearray()
        while len(out) < n:
            data = self.src.read_some(n - len(out))
            if not data:
                break
            out += data
        return bytes(out)


def verify_with_xen(stream: StreamLike, *, fmt: str = "xl",
                    xen_python: str = XEN_PYTHON,
                    source: Optional[str] = None) -> XenReport:
    """Drive Xen's ``VerifyLibxl``/``VerifyLibxc`` checkpoint-aware (§5.5).

    ``fmt``: ``xl`` (with the xl header), ``libxl`` (blackhole form) or
    ``libxc`` (bare).  Raises only when Xen's tools are missing
    (:class:`FileNotFoundError`).
    """
    if fmt not in ("xl", "libxl", "libxc"):
        raise ValueError(f"fmt must be xl, libxl or libxc, not {fmt!r}")
    ns = load_xen_migration(xen_python)
    with open_source(stream, source=source) as src:
        rep = XenReport(source=src.source)
        read = _XenReader(src)
        info = rep.log.append
        try:
            _drive_xen(ns, fmt, read, info, rep)
        except (OSError, StreamTruncated, StreamReadError) as exc:
            # Xen's rdexact raises IOError("Stream truncated") at EOF.
            rep.ended = "eof"
            rep.error = f"{src.source}: offset {src.offset}: {exc}"
            rep.error_offset = src.offset
        except (StreamError, ns.verify.StreamError, ns.verify.RecordError,
                RuntimeError, DeprecationWarning, ValueError,
                struct.error) as exc:
            rep.ended = "error"
            rep.error = (f"{src.source}: offset {src.offset}: "
                         f"{type(exc).__name__}: {exc}")
            rep.error_offset = src.offset
        else:
            rep.complete = True
            rep.ended = "end"
    rep.ok = rep.complete or (rep.ended == "eof" and rep.checkpoints > 0)
    return rep


def _drive_xen(ns, fmt: str, read, info, rep: XenReport) -> None:
    """Steps 1-5 of xl-side.md §5.5."""
    xc_mod, xl_mod = ns.libxc, ns.libxl
    vl = ns.libxl.VerifyLibxl(info, read)
    if fmt == "xl":
        magic = vl.rdexact(32)
        if magic != ns.xl.MAGIC.encode("latin-1"):
            raise ns.verify.StreamError(f"No xl header (magic {magic!r})")
        byteorder, mandatory, _optflags, optlen = vl.unpack_exact(
            ns.xl.HEADER_FORMAT)
        if byteorder != xl.BYTEORDER:
            raise ns.verify.StreamError(f"xl header byteorder 0x{byteorder:x}")
        if not mandatory & ns.xl.MANDATORY_FLAG_STREAMV2:
            raise ns.verify.StreamError("xl header: not a v2 stream")
        opt = vl.rdexact(optlen) if optlen else b""
        if mandatory & xl.MANDATORY_FLAG_JSON and len(opt) >= 4:
            (cfglen,) = struct.unpack("=I", opt[:4])
            text = opt[4:4 + cfglen].rstrip(b"\0").decode("utf-8", "replace")
            rep.config = json.loads(text)
        info("Processed xl header")
    if fmt in ("xl", "libxl"):
        vl.verify_hdr()
        rtype, length = vl.unpack_exact(xl_mod.RH_FORMAT)
        if (rtype, length) != (xl_mod.REC_TYPE_libxc_context, 0):
            raise ns.verify.StreamError(
                f"expected an empty LIBXC_CONTEXT record, got type "
                f"0x{rtype:x} length {length}")
        info("Libxl Record: Libxc context, length 0")
    vc = xc_mod.VerifyLibxc(info, read)
    vc.verify_ihdr()
    vc.verify_dhdr()
    while True:
        try:
            rtype = vc.verify_record()
        except OSError:
            if rep.checkpoints:
                info(f"Stream stops after checkpoint {rep.checkpoints}")
            raise
        if rtype == xc_mod.REC_TYPE_end:
            if fmt != "libxc":
                while vl.verify_record() != xl_mod.REC_TYPE_end:
                    pass
            return
        if rtype != xc_mod.REC_TYPE_checkpoint:
            continue
        if fmt == "libxc":
            rep.checkpoints += 1
            continue
        while True:
            lt = vl.verify_record()
            if lt == xl_mod.REC_TYPE_checkpoint_end:
                break
            if lt == xl_mod.REC_TYPE_end:
                raise ns.verify.StreamError("libxl END inside a checkpoint")
        rep.checkpoints += 1
