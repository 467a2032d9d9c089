"""Where a running domain's configuration comes from: one interface.

``open_domain(ref)`` takes a name, a numeric domid or a UUID and returns a
:class:`DomainRecord`: the model plus the runtime facts a source knows
(domid, state) and the raw data it read (sxpr or libxl JSON), so the legacy
view can be built from the most faithful form.  Implementations:

* ``libxl``  - libxenlight through ctypes (``sources/libxl.py``)
* ``xl``     - ``xl list -l`` (``sources/xlcli.py``)
* ``xend``   - xend's XML-RPC server, for hosts that still run it
* ``files``  - recorded sxpr / JSON files, for tests and offline work

``source="auto"`` picks xend when its socket answers, else libxl, else xl.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import errors
from ..config.model import Domain

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                     r"[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


@dataclass
class DomainRecord:
    domain: Domain
    domid: Optional[int]
    state: Optional[str] = None
    source: str = ""
    #: the raw sxpr when the source speaks sxpr (xend, files), else None
    sxpr: Optional[list] = None
    #: the raw libxl_domain_config when the source speaks libxl JSON
    libxl_config: Optional[dict] = None
    notes: List[str] = field(default_factory=list)


class Source:
    """A domain source: list the domains it knows, then pick one."""

    name = "abstract"

    def records(self) -> List[DomainRecord]:  # pragma: no cover - interface
        raise NotImplementedError

    def open_domain(self, ref: Any) -> DomainRecord:
        return resolve(ref, self.records(), self.name)


def canonical_uuid(text: str) -> str:
    h = text.replace("-", "").lower()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def classify_ref(ref: Any) -> tuple:
    """``("domid", int) | ("uuid", str) | ("name", str)``."""
    if isinstance(ref, bool):
        raise errors.DomainLookupError(f"invalid domain reference {ref!r}")
    if isinstance(ref, int):
        return ("domid", ref)
    text = str(ref).strip()
    if not text:
        raise errors.DomainLookupError("empty domain reference")
    if text.isdigit():
        return ("domid", int(text))
    if UUID_RE.match(text):
        return ("uuid", canonical_uuid(text))
    return ("name", text)


def resolve(ref: Any, records: Sequence[DomainRecord], where: str) -> DomainRecord:
    """Pick one record by domid, UUID or name; ambiguity is an error."""
    kind, key = classify_ref(ref)
    if kind == "domid":
        hits = [r for r in records if r.domid == key]
    elif kind == "uuid":
        hits = [r for r in records
                if r.domain.uuid and canonical_uuid(r.domain.uuid) == key]
    else:
        hits = [r for r in records if r.domain.name == key]
        if not hits:
            # a Remus backup carries "<name>--incoming" until failover
            hits = [r for r in records if r.domain.name == key + "--incoming"]
    if not hits:
        known = ", ".join(sorted({f"{r.domain.name}({r.domid})" for r in records}))
        raise errors.DomainLookupError(
            f"no domain {ref!r} in {where}" + (f" (known: {known})" if known else ""))
    if len(hits) > 1:
        ids = ", ".join(str(r.domid) for r in hits)
        raise errors.DomainLookupError(
            f"domain reference {ref!r} is ambiguous in {where}: "
            f"{len(hits)} domains match (domids {ids}); use the domid or UUID")
    return hits[0]


#: name -> factory(**options) -> Source; filled by sources/__init__.py
REGISTRY: Dict[str, Callable[..., Source]] = {}
