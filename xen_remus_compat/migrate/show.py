"""What ``show`` prints: an input re-indented as a readable sxpr in the
layout of ``xm list -l``, or translated to libxl JSON or an xl config.

An sxpr shown as sxpr never goes through the model, so nothing is lost;
atoms are written by the sxp printer, so the output reads back to the same
value.
"""
from __future__ import annotations

import json
import logging
from typing import Callable, List, Optional, Sequence

from .. import errors, sxp
from ..config.model import Domain
from .inputs import (LoadedDomain, attributed, decode_input, discover,
                     load_domains, read_input, sniff_format)
from .locate import too_deep

log = logging.getLogger("xen_remus_compat")

#: ``show --format`` choices.
SHOW_FORMATS = ("sxpr", "json", "xl")

# Indentation stops growing past this depth, so printing a pathologically
# deep (but parseable) input stays linear in its size.
_MAX_INDENT_DEPTH = 32

#: One atom as xend's printer wrote it (legacy-api.md 11.3): bare when it
#: is only ASCII letters, digits and . - _ : / ~, quoted otherwise.
_atom_text = sxp.atom_to_string


def _flat_sxpr(node, limit: int) -> Optional[str]:
    """``node`` on one line, or None as soon as it exceeds ``limit``
    characters (iterative: nesting depth is the input's, not ours)."""
    out: List[str] = []
    size = 0
    stack = [iter([node])]
    first = [True]
    while stack:
        try:
            item = next(stack[-1])
        except StopIteration:
            stack.pop()
            first.pop()
            if stack:
                out.append(")")
                size += 1
                if size > limit:
                    return None
            continue
        sep = "" if first[-1] else " "
        first[-1] = False
        if isinstance(item, (list, tuple)):
            piece = sep + "("
            stack.append(iter(item))
            first.append(True)
        else:
            piece = sep + _atom_text(item)
        out.append(piece)
        size += len(piece)
        if size > limit:
            return None
    return "".join(out)


def pretty_sxpr(node, *, indent: int = 4, width: int = 78) -> str:
    """An indented, readable sxpr in the layout of ``xm list -l``: an element
    that fits on the rest of the line stays on it; otherwise its name opens
    the line, its children follow, indented, one list per line and runs of
    atoms filled up to the width, and ``)`` closes on a line of its own.
    Atoms are quoted as xend's printer did (legacy-api.md §11.3), so the
    output reads back to the same value.  Iterative, and linear in the size
    of ``node`` (a flat attempt stops at the width)."""
    lines: List[str] = []
    # frames: (iterator over the remaining children, depth of the children)
    stack: List[tuple] = []
    fill: List[str] = []            # atoms waiting to be packed on a line
    fill_len = 0

    def pad(depth: int) -> str:
        return " " * (indent * min(depth, _MAX_INDENT_DEPTH))

    def flush(depth: int) -> None:
        nonlocal fill_len
        if fill:
            lines.append(pad(depth) + " ".join(fill))
            fill.clear()
            fill_len = 0

    def emit(value, depth: int) -> None:
        """Place ``value`` at ``depth``: flat, or open it (push a frame)."""
        nonlocal fill_len
        prefix = pad(depth)
        if not isinstance(value, (list, tuple)):
            text = _atom_text(value)
            if fill and len(prefix) + fill_len + 1 + len(text) > width:
                flush(depth)
            fill.append(text)
            fill_len += len(text) + (1 if fill_len else 0)
            return
        flush(depth)
        flat = _flat_sxpr(value, max(width - len(prefix), 20))
        if flat is None and len(value) == 2 and not any(
                isinstance(x, (list, tuple)) for x in value):
            # (key value) stays on one line, however long the value
            flat = f"({_atom_text(value[0])} {_atom_text(value[1])})"
        if flat is not None:
            lines.append(prefix + flat)
            return
        head, start = "(", 0
        if value and not isinstance(value[0], (list, tuple)):
            head, start = "(" + _atom_text(value[0]), 1
        lines.append(prefix + head)
        stack.append((iter(value[start:]) if start else iter(value), depth + 1))

    emit(node, 0)
    while stack:
        children, depth = stack[-1]
        room = width - len(pad(depth))
        for child in children:
            if type(child) is str:
                # the hot path of long atom lists, inlined
                text = _atom_text(child)
                if fill and fill_len + 1 + len(text) > room:
                    flush(depth)
                fill.append(text)
                fill_len += len(text) + (1 if fill_len else 0)
                continue
            before = len(stack)
            emit(child, depth)
            if len(stack) != before:
                break               # descend into the child just opened
        else:
            stack.pop()
            flush(depth)
            lines.append(pad(depth - 1) + ")")
    flush(0)
    return "\n".join(lines) + "\n"


def _domain_sxpr(dom: Domain):
    from ..config.formats import sxpr
    form = "runtime" if dom.domid is not None else "config"
    return sxpr.domain_to_sxpr(dom, form=form)


def render(paths: Sequence[str], fmt: str = "sxpr", *, lenient: bool = False,
           remus: str = "script",
           reader: Callable[[str], bytes] = read_input) -> str:
    """What ``show`` prints.  An sxpr shown as sxpr is re-indented as parsed
    (nothing goes through the model, so nothing is lost, Domain-0 included);
    every other combination goes through the model, and skips Domain-0 as
    ``convert`` does (logged).  Several domains in JSON become an
    ``xl list -l`` style array of ``{"domid", "config"}`` wrappers."""
    if fmt not in SHOW_FORMATS:
        raise errors.InputError(f"--format must be one of {', '.join(SHOW_FORMATS)}")
    chunks: List[str] = []
    domains: List[LoadedDomain] = []
    for path in discover(paths):
        data = reader(path)
        if fmt == "sxpr":
            text = decode_input(data, path)
            if sniff_format(text, path) == "sxpr":
                try:
                    values = sxp.loads(text, source=path, lenient=lenient)
                except RecursionError:
                    raise too_deep(text, "sxpr", path, lenient=lenient) from None
                chunks.extend(pretty_sxpr(v) for v in values)
                continue
        loaded, skipped = load_domains([path], lenient=lenient,
                                       reader=lambda _p, d=data: d)
        for what, why in skipped:
            log.warning("skipped %s: %s", what, why)
        if fmt == "sxpr":
            for item in loaded:
                with attributed(item):
                    chunks.append(pretty_sxpr(_domain_sxpr(item.domain)))
        else:
            domains.extend(loaded)
    if fmt == "json":
        from ..config.formats import libxl_json
        texts = []
        for item in domains:
            with attributed(item):
                texts.append(libxl_json.dumps(item.domain, wrapper=len(domains) > 1))
        if len(texts) == 1:
            chunks.append(texts[0].rstrip("\n") + "\n")
        elif texts:
            array = [json.loads(t) for t in texts]
            chunks.append(json.dumps(array, indent=4) + "\n")
    elif fmt == "xl":
        from ..config.formats import xlcfg
        for item in domains:
            header = ""
            if len(domains) > 1:
                header = f"# ---- domain {item.domain.name} (from {item.source}) ----\n"
            with attributed(item):
                chunks.append(header + xlcfg.to_xlcfg(item.domain, remus=remus).text)
    return "".join(chunks)
