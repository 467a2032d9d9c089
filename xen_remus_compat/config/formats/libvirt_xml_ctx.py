"""Reader state of the libvirt domain XML reader (``libvirt_xml.py``):
where errors point (source and line) and how an element the model does not
name is kept (``(xpath, xml text)`` in the nearest ``extra``).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from lxml import etree

from ...errors import ConfigError
from ..model import Domain, HvmSettings

log = logging.getLogger("xen_remus_compat")

__all__ = ["Ctx", "element_children", "relpath"]


@dataclass
class Ctx:
    """One document being read: its source name, tree and domain, plus the
    serial ports seen so far (merged with console aliases at the end)."""

    source: str
    tree: etree._ElementTree
    dom: Domain
    serial_ports: Dict[int, str] = field(default_factory=dict)
    console_serials: List[Tuple[int, str]] = field(default_factory=list)

    # ---- helpers --------------------------------------------------------
    def error(self, el: Optional[etree._Element], message: str,
              cls=ConfigError) -> Exception:
        line = el.sourceline if el is not None else None
        return cls(message, source=self.source, line=line)

    def keep(self, el: etree._Element, extra: list) -> None:
        """Record an element the model does not name (``extra``)."""
        path = self.tree.getpath(el)
        extra.append((path, etree.tostring(el, with_tail=False,
                                           encoding="unicode")))
        log.debug("%s: kept %s in extra", self.source, path)

    def integer(self, el: etree._Element, text: Optional[str], what: str,
                base: int = 10) -> int:
        try:
            return int((text or "").strip(), base)
        except ValueError:
            raise self.error(el, f"{what}: not an integer: {text!r}") from None

    @property
    def hvm(self) -> HvmSettings:
        if self.dom.hvm is None:
            self.dom.hvm = HvmSettings()
        return self.dom.hvm


def element_children(el: etree._Element):
    """Element children only (comments and processing instructions skipped)."""
    return [c for c in el if isinstance(c.tag, str)]


def relpath(ctx: Ctx, el: etree._Element) -> str:
    path = re.sub(r"\[\d+\]", "", ctx.tree.getpath(el))
    return path[len("/domain/"):] if path.startswith("/domain/") else path

