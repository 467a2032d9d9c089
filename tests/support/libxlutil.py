"""Oracle: Debian's real libxlutil 4.17 ``xlu_disk_parse`` (and
``xlu_vif_parse_rate``), driven through ctypes.

The disk structure is never mirrored in Python: it lives in an opaque,
generously sized buffer that libxl itself initialises
(``libxl_device_disk_init``) and serialises (``libxl_device_disk_gen_json``
with a plain yajl generator, no libxl_ctx, so no hypervisor is needed).  The
JSON is libxl's own, defaults omitted: the same dict shape as
``diskspec.disk_to_libxl``.  The error text is what libxlutil prints into
the report ``FILE*`` given to ``xlu_cfg_init`` (an ``open_memstream``).

The C code runs in a worker process: some inputs make the flex scanner call
``exit(2)`` ("flex scanner jammed"), which must not take the test run down.
The worker is restarted after such a death and the death is reported as
``OracleResult.fatal``.
"""
from __future__ import annotations

import atexit
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

LIBXLUTIL = os.environ.get("XRC_LIBXLUTIL", "libxlutil.so.4.17")
LIBXENLIGHT = os.environ.get("XRC_LIBXENLIGHT", "libxenlight.so.4.17")
LIBYAJL = os.environ.get("XRC_LIBYAJL", "libyajl.so.2")
#: bytes reserved for a libxl_device_disk / libxl_device_nic (4.17: 144 / 504)
STRUCT_BUF = 4096
SOURCE = "oracle"


@dataclass
class OracleResult:
    rc: int                      # xlu_* return value (errno), -1 if fatal
    fields: Dict                 # libxl JSON of the struct after the call
    report: str                  # what libxlutil printed to its report FILE
    fatal: Optional[str] = None  # the worker died (exit status + stderr)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.fatal is None


# ------------------------------------------------------------- worker side

class _Libs:
    def __init__(self) -> None:
        c_void_p, c_char_p, c_int = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        self.libc = libc = ctypes.CDLL(None)
        self.xl = xl = ctypes.CDLL(LIBXENLIGHT)
        self.xlu = xlu = ctypes.CDLL(LIBXLUTIL)
        self.yajl = yajl = ctypes.CDLL(LIBYAJL)
        libc.open_memstream.restype = c_void_p
        libc.open_memstream.argtypes = [ctypes.POINTER(c_void_p),
                                        ctypes.POINTER(ctypes.c_size_t)]
        libc.fclose.argtypes = [c_void_p]
        libc.free.argtypes = [c_void_p]
        xlu.xlu_cfg_init.restype = c_void_p
        xlu.xlu_cfg_init.argtypes = [c_void_p, c_char_p]
        xlu.xlu_cfg_destroy.argtypes = [c_void_p]
        xlu.xlu_disk_parse.restype = c_int
        xlu.xlu_disk_parse.argtypes = [c_void_p, c_int, ctypes.POINTER(c_char_p),
                                       c_void_p]
        xlu.xlu_vif_parse_rate.restype = c_int
        xlu.xlu_vif_parse_rate.argtypes = [c_void_p, c_char_p, c_void_p]
        for kind in ("disk", "nic"):
            for fn in ("init", "dispose"):
                getattr(xl, f"libxl_device_{kind}_{fn}").argtypes = [c_void_p]
            getattr(xl, f"libxl_device_{kind}_gen_json").argtypes = [c_void_p, c_void_p]
        yajl.yajl_gen_alloc.restype = c_void_p
        yajl.yajl_gen_alloc.argtypes = [c_void_p]
        yajl.yajl_gen_free.argtypes = [c_void_p]
        yajl.yajl_gen_get_buf.argtypes = [c_void_p, ctypes.POINTER(c_void_p),
                                          ctypes.POINTER(ctypes.c_size_t)]

    def _json(self, kind: str, struct) -> str:
        gen = self.yajl.yajl_gen_alloc(None)
        try:
            getattr(self.xl, f"libxl_device_{kind}_gen_json")(gen, struct)
            buf, size = ctypes.c_void_p(), ctypes.c_size_t()
            self.yajl.yajl_gen_get_buf(gen, ctypes.byref(buf), ctypes.byref(size))
            return ctypes.string_at(buf, size.value).decode("utf-8", "surrogateescape")
        finally:
            self.yajl.yajl_gen_free(gen)

    def call(self, kind: str, source: str, fn) -> dict:
        """Run fn(cfg, struct) with a fresh report stream and struct."""
        buf, size = ctypes.c_void_p(), ctypes.c_size_t()
        stream = self.libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
        cfg = self.xlu.xlu_cfg_init(stream, source.encode())
        struct = ctypes.create_string_buffer(STRUCT_BUF)
        getattr(self.xl, f"libxl_device_{kind}_init")(struct)
        try:
            rc = fn(cfg, struct)
            text = self._json(kind, struct)
        finally:
            getattr(self.xl, f"libxl_device_{kind}_dispose")(struct)
            self.xlu.xlu_cfg_destroy(cfg)
            self.libc.fclose(stream)            # flushes into buf/size
        report = ctypes.string_at(buf, size.value).decode("utf-8", "surrogateescape")
        self.libc.free(buf)
        return {"rc": rc, "json": text, "report": report}


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _serve() -> None:
    libs = _Libs()
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "disk":
            specs = [_enc(s) for s in req["specs"]]
            arr = (ctypes.c_char_p * max(1, len(specs)))(*specs)
            resp = libs.call("disk", req["source"], lambda cfg, d: libs.xlu.xlu_disk_parse(
                cfg, len(specs), arr, d))
        elif req["op"] == "rate":
            rate = _enc(req["rate"])
            resp = libs.call("nic", req["source"], lambda cfg, n: libs.xlu.xlu_vif_parse_rate(
                cfg, rate, n))
        else:
            resp = {"error": f"unknown op {req['op']!r}"}
        sys.stdout.write(json.dumps(resp) + "\n")
        sys.stdout.flush()


# ------------------------------------------------------------- parent side

class _Worker:
    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.calls = 0

    def _start(self) -> subprocess.Popen:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8")
        return self.proc

    def request(self, req: dict) -> Tuple[Optional[dict], Optional[str]]:
        proc = self.proc if self.proc and self.proc.poll() is None else self._start()
        self.calls += 1
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if line:
            return json.loads(line), None
        status = proc.wait()
        err = proc.stderr.read()
        self.proc = None
        return None, f"exit status {status}: {err.strip()}"

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        self.proc = None


_worker = _Worker()
atexit.register(_worker.close)


def available() -> Tuple[bool, str]:
    """Whether the real libraries load here (checked in the worker)."""
    probe = subprocess.run(
        [sys.executable, "-c",
         "import ctypes\n"
         f"for n in {[LIBXENLIGHT, LIBXLUTIL, LIBYAJL]!r}: ctypes.CDLL(n)\n"],
        capture_output=True, text=True)
    if probe.returncode:
        return False, ("cannot load libxlutil/libxenlight/libyajl "
                       f"({probe.stderr.strip().splitlines()[-1:]})")
    return True, ""


def _result(resp: Optional[dict], fatal: Optional[str]) -> OracleResult:
    if resp is None:
        return OracleResult(rc=-1, fields={}, report="", fatal=fatal)
    if "error" in resp:
        raise RuntimeError(resp["error"])
    return OracleResult(rc=resp["rc"], fields=json.loads(resp["json"]),
                        report=resp["report"])


def disk_parse(specs: Union[str, Sequence[str]], *, source: str = SOURCE) -> OracleResult:
    """``xlu_disk_parse(cfg, n, specs, &disk)`` on a fresh disk."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    return _result(*_worker.request({"op": "disk", "specs": specs, "source": source}))


def vif_parse_rate(rate: str, *, source: str = SOURCE) -> OracleResult:
    """``xlu_vif_parse_rate(cfg, rate, &nic)`` on a fresh nic."""
    return _result(*_worker.request({"op": "rate", "rate": rate, "source": source}))


def calls() -> int:
    """How many calls went to the real library in this process."""
    return _worker.calls


def struct_sizes() -> Optional[Dict[str, int]]:
    """sizeof(libxl_device_disk/nic) from the installed headers, compiled
    with the system C compiler; None when there is no compiler."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if not cc:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "sz.c")
        exe = os.path.join(tmp, "sz")
        with open(src, "w") as fh:
            fh.write("#include <stdio.h>\n#include <libxl.h>\n"
                     "int main(void){printf(\"%zu %zu\\n\","
                     "sizeof(libxl_device_disk),sizeof(libxl_device_nic));"
                     "return 0;}\n")
        subprocess.run([cc, "-o", exe, src], check=True, capture_output=True)
        disk, nic = subprocess.run([exe], check=True, capture_output=True,
                                   text=True).stdout.split()
    return {"disk": int(disk), "nic": int(nic)}


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
