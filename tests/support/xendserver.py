"""A stand-in for xend's XML-RPC server, on a unix socket, for tests.

Why: the ``xend`` domain source talks to ``httpu://<socket>`` the way the
legacy ``xen.xend.XendClient`` did (legacy-api.md section 11.5); the tests
serve recorded sxpr fixtures through the stdlib XML-RPC server instead of a
real xend.  Only ``xend.domain(ref, detail)`` is served: it answers from a
dict the caller fills, and anything else gets xend's fault 3.
"""
from __future__ import annotations

import contextlib
import re
import socketserver
import threading
import xmlrpc.client
import xmlrpc.server
from typing import Any, Iterator, MutableMapping

#: XML-RPC ints are 32-bit signed (section 11.5).
_INT_RE = re.compile(r"-?\d+")


def wire_ints(sx: Any) -> Any:
    """What XML-RPC delivered: integer-looking atoms as ints (section 11.5)."""
    if isinstance(sx, list):
        return [wire_ints(x) for x in sx]
    if isinstance(sx, str) and _INT_RE.fullmatch(sx) and -2**31 <= int(sx) < 2**31:
        return int(sx)
    return sx


class _Handler(xmlrpc.server.SimpleXMLRPCRequestHandler):
    disable_nagle_algorithm = False      # no TCP_NODELAY on a unix socket

    def setup(self) -> None:
        self.client_address = ("unix", 0)  # http.server wants (host, port)
        super().setup()

    def log_message(self, *args) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer,
              xmlrpc.server.SimpleXMLRPCDispatcher):
    daemon_threads = True
    logRequests = False

    def __init__(self, addr: str) -> None:
        xmlrpc.server.SimpleXMLRPCDispatcher.__init__(self, allow_none=True)
        socketserver.UnixStreamServer.__init__(self, addr, _Handler)


@contextlib.contextmanager
def serve_xend(path: str, doms: MutableMapping[str, Any]) -> Iterator[str]:
    """Serve ``xend.domain`` on the unix socket *path* while the block runs.

    *doms* maps ``str(ref)`` to the sxpr sent back; it is read per call, so
    the caller may add domains while the server runs.  Yields the
    ``httpu://`` URL of the socket.
    """
    def domain(ref, detail):
        if str(ref) not in doms:
            raise xmlrpc.client.Fault(3, f"Domain '{ref}' does not exist.")
        return doms[str(ref)]

    srv = _Server(path)
    srv.register_function(domain, "xend.domain")
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield "httpu://" + path
    finally:
        srv.shutdown()
        srv.server_close()
