"""``xl list -l``: the fallback source when libxenlight cannot be loaded.

xl prints a JSON array of ``{"domid": N, "config": libxl_domain_config}``
(xl-side.md section 4.1), or, with ``output_format="sxp"`` in xl.conf, an
sxp dump of a different schema than xend's (legacy-api.md section 15):
``(domain (domid N) (create_info) ... (device (vbd ...)))``.  Both are read.

Debian installs ``/usr/sbin/xl`` as a wrapper that asks the hypervisor which
version to run; the real binary lives in ``/usr/lib/xen-<version>/bin/xl``.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from typing import Callable, List, Optional, Sequence

from .. import errors
from ..log import logger
from .base import DomainRecord, Source

XEND_SOCKET = "/var/run/xend/xmlrpc.sock"


def find_xl(candidates: Optional[Sequence[str]] = None) -> str:
    """The real xl binary: ``$XL``, then Debian's versioned path, then PATH."""
    env = os.environ.get("XL")
    if env:
        return env
    paths = list(candidates) if candidates is not None else \
        sorted(glob.glob("/usr/lib/xen-*/bin/xl"), reverse=True)
    for p in paths:
        if os.access(p, os.X_OK):
            return p
    found = shutil.which("xl")
    if found:
        return found
    raise errors.EnvironmentProblem(
        "the xl binary was not found (install Debian's xen-utils-4.17, or set $XL)")


def host_toolstack(xend_socket: str = XEND_SOCKET) -> str:
    """``"xend"`` when a xend socket exists, ``"xl"`` otherwise."""
    return "xend" if os.path.exists(xend_socket) else "xl"


def _run_xl(argv: List[str], timeout: float = 30.0) -> str:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout)
    except OSError as e:
        raise errors.XenError(f"cannot run {argv[0]}", errno=e.errno) from e
    except subprocess.TimeoutExpired as e:
        raise errors.XenError(f"{' '.join(argv)} timed out after {timeout}s") from e
    if proc.returncode:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise errors.XenError(f"{' '.join(argv)} failed (exit {proc.returncode})"
                              + (f": {err[-1]}" if err else ""),
                              code=proc.returncode)
    return proc.stdout.decode("utf-8", "replace")


def parse_list_output(text: str, *, source: str = "xl list -l") -> List[DomainRecord]:
    """Records from ``xl list -l`` output, JSON or sxp."""
    from ..config import libxl_json
    stripped = text.lstrip()
    if not stripped:
        return []
    if stripped.startswith("[") or stripped.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise errors.ConfigError(f"malformed JSON from xl: {e.msg}",
                                     source=source, line=e.lineno, col=e.colno) from e
        items = data if isinstance(data, list) else [data]
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise errors.ConfigError(f"entry {i} is not an object", source=source)
            if "config" in item:
                domid, cfg = item.get("domid"), item["config"]
            else:
                domid, cfg = None, item
            dom = libxl_json.domain_from_libxl(cfg, domid=domid, source=source)
            out.append(DomainRecord(dom, domid, source="xl", libxl_config=cfg))
        return out
    return _parse_sxp_dump(text, source)


def _parse_sxp_dump(text: str, source: str) -> List[DomainRecord]:
    """xl's ``output_format="sxp"`` dump (not xend's schema)."""
    from .. import sxp
    from ..config import sxpr as sxprmod
    out = []
    for value in sxp.loads(text, source=source):
        dom = sxprmod.domain_from_sxpr(value, source=source)
        out.append(DomainRecord(dom, dom.domid, source="xl", sxpr=value))
    return out


class XlSource(Source):
    name = "xl"

    def __init__(self, xl: Optional[str] = None,
                 run: Callable[[List[str]], str] = _run_xl) -> None:
        self.xl = xl
        self.run = run

    def records(self) -> List[DomainRecord]:
        xl = self.xl or find_xl()
        text = self.run([xl, "list", "-l"])
        return parse_list_output(text, source=f"{xl} list -l")

    def open_domain(self, ref) -> DomainRecord:
        rec = super().open_domain(ref)
        logger.debug("xl source: %s is domid %s", ref, rec.domid)
        return rec
