"""A ctypes binding to libxenlight 4.17 (``libxenlight.so.4.17``).

Why ctypes and not cffi: we only pass pointers to opaque, libxl-allocated
structures and read them back as JSON through libxl's own generators
(``libxl_dominfo_to_json``, ``libxl_domain_config_to_json``), so no field
offset is hard-coded; the only ABI facts are the two structure sizes below,
which ``tests/conformance/test_libxl_binding.py`` checks against Debian's
headers with a compiled ``_Static_assert`` (docs/decisions.md).

libxl's log messages (a xentoollog logger whose ``vmessage`` is a Python
callback formatting the ``va_list`` with libc's ``vsnprintf``) go to the
``xen_remus_compat`` logger; the warnings and errors logged *during* a call
are kept (first line of each, in order), so every failing call raises
:class:`errors.XenError` with libxl's code *and* its text, cause first
(e.g. yajl's "parse error: premature EOF" before libxl's "unable to
generate libxl__json_object"), never a message left over from an earlier
call.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import threading
from typing import Dict, List, Optional

from .. import errors
from ..log import logger

SONAME = "libxenlight.so.4.17"
#: sizeof() in Debian's 4.17 headers (x86_64); checked by the conformance tier.
SIZEOF_DOMAIN_CONFIG = 1288
SIZEOF_DOMINFO = 120
LIBXL_VERSION = 0

#: libxl_error (``_libxl_types.h``)
LIBXL_ERRORS: Dict[int, str] = {
    -1: "ERROR_NONSPECIFIC", -2: "ERROR_VERSION", -3: "ERROR_FAIL",
    -4: "ERROR_NI", -5: "ERROR_NOMEM", -6: "ERROR_INVAL", -7: "ERROR_BADFAIL",
    -8: "ERROR_GUEST_TIMEDOUT", -9: "ERROR_TIMEDOUT", -10: "ERROR_NOPARAVIRT",
    -11: "ERROR_NOT_READY", -12: "ERROR_OSEVENT_REG_FAIL",
    -13: "ERROR_BUFFERFULL", -14: "ERROR_UNKNOWN_CHILD",
    -15: "ERROR_LOCK_FAIL", -16: "ERROR_JSON_CONFIG_EMPTY",
    -17: "ERROR_DEVICE_EXISTS", -18: "ERROR_CHECKPOINT_DEVOPS_DOES_NOT_MATCH",
    -19: "ERROR_CHECKPOINT_DEVICE_NOT_SUPPORTED",
    -20: "ERROR_VNUMA_CONFIG_INVALID", -21: "ERROR_DOMAIN_NOTFOUND",
    -22: "ERROR_ABORTED", -23: "ERROR_NOTFOUND", -24: "ERROR_DOMAIN_DESTROYED",
    -25: "ERROR_FEATURE_REMOVED",
}

#: xentoollog levels -> logging levels
_XTL_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.DEBUG,
               4: logging.INFO, 5: logging.INFO, 6: logging.INFO,
               7: logging.WARNING, 8: logging.ERROR, 9: logging.CRITICAL}

_VMESSAGE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                             ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_PROGRESS = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p,
                             ctypes.c_char_p, ctypes.c_int, ctypes.c_ulong,
                             ctypes.c_ulong)
_DESTROY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _Logger(ctypes.Structure):
    _fields_ = [("vmessage", _VMESSAGE), ("progress", _PROGRESS),
                ("destroy", _DESTROY)]


_lib_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                            ctypes.c_void_p]
_libc.free.argtypes = [ctypes.c_void_p]


def load_library(path: Optional[str] = None) -> ctypes.CDLL:
    """Load libxenlight once; a missing library is EnvironmentProblem."""
    global _lib
    with _lib_lock:
        if _lib is not None and path is None:
            return _lib
        name = path or SONAME
        try:
            lib = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL, use_errno=True)
        except OSError as e:
            raise errors.EnvironmentProblem(
                f"libxenlight not available ({name}: {e}); install Debian's "
                "libxen-dev/libxenmisc4.17 or use the 'xl' source") from e
        _declare(lib)
        if path is None:
            _lib = lib
        return lib


def _declare(lib: ctypes.CDLL) -> None:
    vp, c_int, u32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32
    sigs = {
        "libxl_ctx_alloc": (c_int, [ctypes.POINTER(vp), c_int, ctypes.c_uint, vp]),
        "libxl_ctx_free": (c_int, [vp]),
        "libxl_name_to_domid": (c_int, [vp, ctypes.c_char_p, ctypes.POINTER(u32)]),
        "libxl_domid_to_name": (vp, [vp, u32]),
        "libxl_list_domain": (vp, [vp, ctypes.POINTER(c_int)]),
        "libxl_dominfo_list_free": (None, [vp, c_int]),
        "libxl_dominfo_init": (None, [vp]),
        "libxl_dominfo_dispose": (None, [vp]),
        "libxl_dominfo_to_json": (vp, [vp, vp]),
        "libxl_domain_info": (c_int, [vp, vp, u32]),
        "libxl_domain_config_init": (None, [vp]),
        "libxl_domain_config_dispose": (None, [vp]),
        "libxl_domain_config_to_json": (vp, [vp, vp]),
        "libxl_domain_config_from_json": (c_int, [vp, vp, ctypes.c_char_p]),
        "libxl_retrieve_domain_configuration": (c_int, [vp, u32, vp, vp]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def _take_string(ptr: Optional[int]) -> Optional[str]:
    """Copy a malloc'd C string returned by libxl and free it."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        _libc.free(ptr)


class Context:
    """A libxl context (``libxl_ctx``) with a logger routed to ours.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, library: Optional[str] = None, *, quiet: bool = False) -> None:
        self.lib = load_library(library)
        #: probing (source auto-detection): log everything at DEBUG only
        self.quiet = quiet
        #: first lines of the WARNING+ messages libxl logged in this call
        self.messages: List[str] = []
        self._keep = _Logger(_VMESSAGE(self._vmessage), _PROGRESS(0),
                             _DESTROY(self._destroy))
        ctx = ctypes.c_void_p()
        self._begin()
        rc = self.lib.libxl_ctx_alloc(ctypes.byref(ctx), LIBXL_VERSION, 0,
                                      ctypes.addressof(self._keep))
        if rc:
            raise self._error("libxl_ctx_alloc", rc,
                              "cannot open a libxl context (are you root on a "
                              "Xen dom0?)")
        self.ctx = ctx

    # -- logger -----------------------------------------------------------
    def _vmessage(self, _lg, level, errnoval, context, fmt, va) -> None:
        buf = ctypes.create_string_buffer(2048)
        _libc.vsnprintf(buf, len(buf), fmt, va)
        text = buf.value.decode("utf-8", "replace")
        if errnoval is not None and errnoval > 0:
            text += f": {os.strerror(errnoval)}"
        ctxname = context.decode("utf-8", "replace") if context else "libxl"
        pylevel = _XTL_LEVELS.get(level, logging.INFO)
        if pylevel >= logging.WARNING:
            first = text.splitlines()[0].strip() if text.strip() else text
            if first not in self.messages:
                self.messages.append(first)
        logger.log(logging.DEBUG if self.quiet else pylevel, "%s: %s", ctxname, text)

    def _destroy(self, _lg) -> None:
        pass

    @property
    def last_message(self) -> Optional[str]:
        return self.messages[-1] if self.messages else None

    def _begin(self) -> None:
        """Start of a libxl call: forget what earlier calls logged."""
        self.messages = []

    def _error(self, call: str, rc: int, default: str = "") -> errors.XenError:
        name = LIBXL_ERRORS.get(rc, str(rc))
        msg = "; ".join(self.messages) or default or "failed"
        self.messages = []
        return errors.XenError(f"{call}: {msg} [{name}]", code=rc,
                               errno=ctypes.get_errno() or None)

    # -- lifetime ---------------------------------------------------------
    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.lib.libxl_ctx_free(self.ctx)
            self.ctx = None

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- calls ------------------------------------------------------------
    def name_to_domid(self, name: str) -> int:
        out = ctypes.c_uint32()
        self._begin()
        rc = self.lib.libxl_name_to_domid(self.ctx, name.encode(), ctypes.byref(out))
        if rc:
            raise errors.DomainLookupError(f"no domain named {name!r}") \
                if rc in (-21, -6, -3) and not self.last_message \
                else self._error("libxl_name_to_domid", rc)
        return out.value

    def domid_to_name(self, domid: int) -> Optional[str]:
        self._begin()
        return _take_string(self.lib.libxl_domid_to_name(self.ctx, domid))

    def list_domains(self) -> List[dict]:
        """``libxl_list_domain``: one dict (libxl's JSON of libxl_dominfo) each."""
        n = ctypes.c_int()
        self._begin()
        arr = self.lib.libxl_list_domain(self.ctx, ctypes.byref(n))
        if not arr:
            raise self._error("libxl_list_domain", -3)
        try:
            out = []
            for i in range(n.value):
                js = _take_string(self.lib.libxl_dominfo_to_json(
                    self.ctx, arr + i * SIZEOF_DOMINFO))
                out.append(json.loads(js) if js else {})
            return out
        finally:
            self.lib.libxl_dominfo_list_free(arr, n.value)

    def domain_info(self, domid: int) -> dict:
        buf = ctypes.create_string_buffer(SIZEOF_DOMINFO)
        self.lib.libxl_dominfo_init(buf)
        self._begin()
        try:
            rc = self.lib.libxl_domain_info(self.ctx, buf, domid)
            if rc:
                if rc == -21:
                    raise errors.DomainLookupError(f"no domain with id {domid}")
                raise self._error("libxl_domain_info", rc)
            js = _take_string(self.lib.libxl_dominfo_to_json(self.ctx, buf))
            return json.loads(js) if js else {}
        finally:
            self.lib.libxl_dominfo_dispose(buf)

    def retrieve_domain_configuration(self, domid: int) -> dict:
        """The domain's ``libxl_domain_config`` as libxl's own JSON (a dict)."""
        buf = ctypes.create_string_buffer(SIZEOF_DOMAIN_CONFIG)
        self.lib.libxl_domain_config_init(buf)
        self._begin()
        try:
            rc = self.lib.libxl_retrieve_domain_configuration(self.ctx, domid,
                                                              buf, None)
            if rc:
                raise self._error("libxl_retrieve_domain_configuration", rc)
            return json.loads(self._config_json(buf))
        finally:
            self.lib.libxl_domain_config_dispose(buf)

    def config_roundtrip(self, text: str) -> str:
        """``libxl_domain_config_from_json`` then ``_to_json``: libxl's own
        reading of a config (used to check our JSON against libxl)."""
        buf = ctypes.create_string_buffer(SIZEOF_DOMAIN_CONFIG)
        self.lib.libxl_domain_config_init(buf)
        self._begin()
        try:
            rc = self.lib.libxl_domain_config_from_json(self.ctx, buf,
                                                        text.encode("utf-8"))
            if rc:
                raise self._error("libxl_domain_config_from_json", rc,
                                  "libxl rejected the JSON")
            return self._config_json(buf)
        finally:
            self.lib.libxl_domain_config_dispose(buf)

    def _config_json(self, buf) -> str:
        js = _take_string(self.lib.libxl_domain_config_to_json(self.ctx, buf))
        if js is None:
            raise self._error("libxl_domain_config_to_json", -3)
        return js


class LibxlSource:
    """The ``libxl`` domain source: libxenlight in this process."""

    name = "libxl"

    def __init__(self, library: Optional[str] = None) -> None:
        self.library = library

    def _record(self, ctx: Context, domid: int, info: Optional[dict] = None):
        from ..config.formats import libxl_json
        from .base import DomainRecord
        cfg = ctx.retrieve_domain_configuration(domid)
        dom = libxl_json.domain_from_libxl(cfg, domid=domid,
                                           source=f"libxl domain {domid}")
        state = _state_string(info) if info else None
        dom.state = dom.state or state
        return DomainRecord(dom, domid, state=state, source="libxl",
                            libxl_config=cfg)

    def open_domain(self, ref):
        from .base import classify_ref
        kind, key = classify_ref(ref)
        with Context(self.library) as ctx:
            domid = key if kind == "domid" else self._find(ctx, ref)
            info = ctx.domain_info(domid)
            return self._record(ctx, domid, info)

    @staticmethod
    def _find(ctx: Context, ref) -> int:
        """The domid of a name or UUID, chosen by :func:`base.resolve` among
        every domain's name and UUID, so an ambiguous name and the Remus
        backup's ``<name>--incoming`` behave as in the other sources
        (``libxl_name_to_domid`` takes the first match silently)."""
        from ..config.model import Domain
        from .base import DomainRecord, resolve
        stubs = []
        for info in ctx.list_domains():
            domid = info.get("domid", 0)      # 0 is omitted (libxl JSON default)
            dom = Domain(name=ctx.domid_to_name(domid) or "", uuid=info.get("uuid"),
                         domid=domid)
            stubs.append(DomainRecord(dom, domid, source="libxl"))
        return resolve(ref, stubs, "libxl").domid

    def records(self):
        with Context(self.library) as ctx:
            out = []
            for info in ctx.list_domains():
                domid = info.get("domid", 0)
                try:
                    out.append(self._record(ctx, domid, info))
                except errors.XenError as e:
                    # as xl list -l does: a domain without a stored libxl
                    # configuration (a dom0 that xen-init-dom0 never saw) is
                    # left out; xen-init-dom0's stub config for domid 0 is not
                    logger.debug("libxl: no configuration for domain %d: %s", domid, e)
            return out


#: libxl_dominfo flags -> xend's six-letter state string (r b p s c d)
_STATE_FLAGS = (("running", "r"), ("blocked", "b"), ("paused", "p"),
                ("shutdown", "s"), ("crashed", "c"), ("dying", "d"))


def _state_string(info: dict) -> str:
    crashed = info.get("shutdown") and info.get("shutdown_reason") == "crash"
    flags = dict(info)
    flags["crashed"] = crashed
    return "".join(ch if flags.get(key) in (True, "True", 1) else "-"
                   for key, ch in _STATE_FLAGS)
