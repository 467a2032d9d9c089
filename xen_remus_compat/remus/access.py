"""Who may hand a domain to ``remus-receiver``: peers and TLS.

xend's relocation server (``xen/xend/server/relocate.py`` and
``xen/web/connection.py: hostAllowed``) bound ``xend-relocation-address``
('' = every address) and, when ``xend-relocation-hosts-allow`` was not
empty, split it into regular expressions and let a peer in when one of them
*matched* (``re.match``: anchored at the start only) its address or the name
``socket.getfqdn`` gave for it; others were logged
("Rejected connection from ...") and closed.  Its SSL server
(``xend-relocation-ssl-server``) used ``xend-relocation-server-ssl-key-file``
and ``-cert-file`` and asked nothing of the client.

Here the same rules, with three deliberate differences (docs/decisions.md,
"Hardening the receiver"): the list is split on any run of whitespace (xend
split on single spaces, so two spaces made an empty pattern that matched
everyone); the reverse lookup is only made when no pattern matches the
address (the answer is the same); IPv4-mapped IPv6 peers are matched by
their IPv4 address.  TLS goes further than xend: with a CA, the client must
present a certificate it signed (``--tls-ca``), and only then does TLS count
as restricting who may connect.
"""
from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Callable, List, Optional, Pattern, Tuple

from .. import errors


def parse_hosts_allow(text: Optional[str], *, source: str = "hosts-allow"
                      ) -> Optional[List[Pattern]]:
    """The compiled patterns; ``None`` (everyone) for an empty list."""
    words = (text or "").split()
    if not words:
        return None
    out = []
    for w in words:
        try:
            out.append(re.compile(w))
        except re.error as e:
            raise errors.InputError(f"invalid regular expression {w!r} in "
                                    f"{source}: {e}") from None
    return out


def peer_address(addr: str) -> str:
    """``::ffff:10.0.0.1`` -> ``10.0.0.1``; other addresses unchanged."""
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return addr


def peer_allowed(addr: str, patterns: Optional[List[Pattern]], *,
                 resolve: Callable[[str], str] = socket.getfqdn
                 ) -> Tuple[bool, Optional[str]]:
    """(allowed, the reverse name when one was looked up)."""
    if patterns is None:
        return True, None
    addr = peer_address(addr)
    if any(p.match(addr) for p in patterns):
        return True, None
    try:
        name = resolve(addr)
    except (OSError, UnicodeError):
        name = addr
    return any(p.match(name) for p in patterns), name


def all_addresses(listen: str) -> bool:
    """Whether binding ``listen`` accepts connections on every address."""
    if listen in ("", "*"):
        return True
    try:
        return ipaddress.ip_address(listen).is_unspecified
    except ValueError:
        return False


def _load(what: str, fn, *args) -> None:
    try:
        fn(*args)
    except FileNotFoundError as e:
        raise errors.InputError(f"cannot load the TLS {what} "
                                f"{e.filename or args[0]}: no such file") from e
    except (ssl.SSLError, OSError, ValueError) as e:
        raise errors.InputError(f"cannot load the TLS {what} {args[0]}: "
                                f"{getattr(e, 'reason', None) or e}") from e


def server_context(cert: str, key: Optional[str] = None,
                   ca: Optional[str] = None) -> ssl.SSLContext:
    """TLS 1.2+ server; with ``ca`` a client certificate it signed is required."""
    if not cert:
        raise errors.InputError("TLS needs a certificate (--tls-cert, or "
                                "xend-relocation-server-ssl-cert-file)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load("certificate/key", ctx.load_cert_chain, cert, key or None)
    if ca:
        _load("CA", ctx.load_verify_locations, ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca: Optional[str] = None, cert: Optional[str] = None,
                   key: Optional[str] = None) -> ssl.SSLContext:
    """TLS 1.2+ client checking the receiver's certificate and name against
    ``ca`` (default: the system's CAs); ``cert``/``key``: our certificate."""
    if ca:      # only that CA (PROTOCOL_TLS_CLIENT checks the name too)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load("CA", ctx.load_verify_locations, ca)
    else:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        _load("certificate/key", ctx.load_cert_chain, cert, key or None)
    elif key:
        raise errors.InputError("--tls-key needs --tls-cert")
    return ctx


@dataclass
class Policy:
    """Who may connect: ``patterns`` (None: any address), ``tls`` (None:
    plain TCP) and whether TLS demands a client certificate."""

    patterns: Optional[List[Pattern]] = None
    tls: Optional[ssl.SSLContext] = None
    client_certs: bool = False
    hosts_allow_source: str = "hosts-allow"

    def exposure(self, listen: str) -> Optional[str]:
        """Why listening on ``listen`` would let anyone start a domain here
        (None when something restricts who may connect)."""
        if not all_addresses(listen) or self.patterns is not None:
            return None
        if self.tls is not None and self.client_certs:
            return None
        tls = (" (TLS without --tls-ca encrypts but accepts any client)"
               if self.tls is not None else "")
        return ("every address, no hosts-allow list and no client "
                f"certificates{tls}: anyone who can connect could start a "
                "domain on this host")
