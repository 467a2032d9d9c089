"""``xen.xend.sxp`` (legacy-api.md §11): the xend S-expression module.

Everything is :mod:`xen_remus_compat.sxp`, with one difference: code that
imports the *legacy* name gets the *legacy* reader by default, quirks
included (§11.2), because that is what it was written against.
``Parser()``, ``parse(io)``, ``from_string(s)`` and ``all_from_string(s)``
therefore default to ``legacy=True``; pass ``legacy=False`` for the strict
modern reader.  The printer and accessors are shared (they have no modes).
"""
from __future__ import annotations

from typing import Optional

from ... import sxp as _sxp
from ...sxp import (  # noqa: F401  (the legacy names, re-exported)
    ParseError, atomp, attribute, attributes, child, child0, child1, child2,
    child3, child4, child_at, child_map, child_value, child_with_id, children,
    elementp, elements, escapes, escapes_rev, has_id, k_attr_open, k_eval,
    k_list_close, k_list_open, merge, merge_list, mime_type, name, show,
    show_xml, to_string, with_id,
)

__all__ = list(_sxp.__all__)


class Parser(_sxp.Parser):
    """The incremental reader; legacy semantics unless ``legacy=False``."""

    def __init__(self, *, legacy: bool = True, **kw) -> None:
        super().__init__(legacy=legacy, **kw)


def parse(io, *, legacy: bool = True) -> Optional[list]:
    """Every value read from ``io`` until EOF, or ``None``."""
    return _sxp.parse(io, legacy=legacy)


def from_string(s, *, legacy: bool = True):
    """The first value of ``s`` (``''`` gives ``[]``)."""
    return _sxp.from_string(s, legacy=legacy)


def all_from_string(s, *, legacy: bool = True) -> Optional[list]:
    """Every value of ``s``, or ``None``."""
    return _sxp.all_from_string(s, legacy=legacy)


def __getattr__(name: str):
    # anything else the reader module offers (loads, load_file, ...)
    return getattr(_sxp, name)
