"""xend's XML-RPC server, for hosts that still run xend during migration.

legacy-api.md sections 11.5 and 12.1: XML-RPC over HTTP on the Unix socket
``/var/run/xend/xmlrpc.sock`` (URL ``httpu:///var/run/xend/xmlrpc.sock``,
or ``$XM_SERVER``), or plain ``http://host:8006/``.  ``xend.domain(dom,
'all')`` returns the runtime domain sxpr with numbers as ints; faults carry
code 3 for an unknown domain.  Stdlib ``xmlrpc.client`` only.
"""
from __future__ import annotations

import http.client
import os
import socket
import xmlrpc.client
from typing import Any, List, Optional

from .. import errors
from .base import DomainRecord, Source

DEFAULT_URL = "httpu:///var/run/xend/xmlrpc.sock"
ERROR_INVALID_DOMAIN = 3


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over HTTP on a Unix socket (xend's ``httpu://``)."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__()
        self.unix_path = path
        self.timeout = timeout

    def make_connection(self, host):
        return _UnixHTTPConnection(self.unix_path, self.timeout)


def server_proxy(url: Optional[str] = None, timeout: float = 30.0) -> xmlrpc.client.ServerProxy:
    """A proxy for ``url`` (default ``$XM_SERVER`` or the xend socket)."""
    url = url or os.environ.get("XM_SERVER") or DEFAULT_URL
    if url.startswith("httpu://"):
        path = url[len("httpu://"):]
        return xmlrpc.client.ServerProxy("http://localhost/", allow_none=True,
                                         transport=UnixTransport(path, timeout))
    return xmlrpc.client.ServerProxy(url, allow_none=True)


def _describe(url: str) -> str:
    return url[len("httpu://"):] if url.startswith("httpu://") else url


class XendSource(Source):
    name = "xend"

    def __init__(self, url: Optional[str] = None, timeout: float = 30.0) -> None:
        self.url = url or os.environ.get("XM_SERVER") or DEFAULT_URL
        self.proxy = server_proxy(self.url, timeout)

    def _call(self, what: str, fn, *args) -> Any:
        try:
            return fn(*args)
        except xmlrpc.client.Fault as f:
            if f.faultCode == ERROR_INVALID_DOMAIN:
                raise errors.DomainLookupError(
                    f"xend: {f.faultString}",
                    source=f"xend {_describe(self.url)}") from f
            raise errors.XenError(f"xend {what} failed: {f.faultString}",
                                  code=f.faultCode) from f
        except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError) as e:
            raise errors.XenError(
                f"cannot reach xend at {_describe(self.url)}: {e}",
                errno=getattr(e, "errno", None)) from e

    def domain_sxpr(self, ref: Any) -> list:
        """``xend.domain(ref, 'all')``: the raw runtime sxpr."""
        return self._call("domain", self.proxy.xend.domain, str(ref), "all")

    def record_from_sxpr(self, sx: list) -> DomainRecord:
        from ..config.formats import sxpr as sxprmod
        dom = sxprmod.domain_from_sxpr(sx, source=f"xend {_describe(self.url)}")
        return DomainRecord(dom, dom.domid, state=dom.state, source="xend", sxpr=sx)

    def open_domain(self, ref: Any) -> DomainRecord:
        return self.record_from_sxpr(self.domain_sxpr(ref))

    def records(self) -> List[DomainRecord]:
        sxs = self._call("domains", self.proxy.xend.domains, 1)
        return [self.record_from_sxpr(sx) for sx in sxs or []]

    def set_memory_target(self, domid: int, mib: int) -> None:
        self._call("domain.setMemoryTarget", self.proxy.xend.domain.setMemoryTarget,
                   domid, mib)
