"""Line and column for input errors found after parsing.

The domain readers work on plain values (``sxp.loads`` gives lists,
``json.loads`` dicts), so an error found in a value (negative memory, a vbd
without dev, ``b_info.max_memkb`` out of range) names a key path but not a
line, and the operator needs the line.  The positions come from the readers
that parsed the input, never from a second scan of the text:

* sxpr: :func:`xen_remus_compat.sxp.loads_located`, the one sxp reader
  keeping where each list starts;
* JSON: :class:`JsonLocated`, :mod:`json`'s own decoder with hooks that note
  where each value starts.

Which element an error is about is found by re-running the domain reader on
each candidate alone (the candidate that raises the same error is the
culprit), then following the key path the message starts with.
"""
from __future__ import annotations

import json
import re
from json import decoder as _json_decoder, scanner as _json_scanner
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .. import errors, sxp

#: Nesting depth reported as "too deep" when a reader ran out of stack
#: (real configurations nest less than ten levels).
DEEP_NESTING = 100

#: (line, col) of an error; (None, None) when it cannot be found.
Where = Tuple[Optional[int], Optional[int]]


def _set_position(exc: errors.CompatError, where: Optional[sxp.Position]) -> None:
    if where:
        exc.line, exc.col = where.line, where.col


def _line_col(where: Optional[sxp.Position]) -> Where:
    return (where.line, where.col) if where else (None, None)


# ------------------------------------------------------------------- JSON

class _TooDeep(Exception):
    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


class JsonLocated:
    """A JSON text decoded as :func:`json.loads` decodes it, with the offset
    where each value starts, for containers up to ``DEEP_NESTING - 1`` deep.

    It is json's own decoder: the pure-Python scanner of :mod:`json.scanner`
    (same grammar as the C one, but it calls the object and array parsers
    through hooks, which note the offset of every member).  Deeper
    containers are decoded whole by the C scanner, as ``json.loads`` would.
    With ``stop_too_deep`` the first container ``DEEP_NESTING`` deep raises
    instead, giving its offset (:func:`too_deep`).
    """

    def __init__(self, text: str, *, stop_too_deep: bool = False) -> None:
        self.text = text
        # id(container) -> (container, where each member starts); keeping the
        # container keeps its id from being reused by a later one
        self._starts: Dict[int, Tuple[Any, Union[Dict[Any, int], List[int]]]] = {}
        self._depth = 0
        self._stop = stop_too_deep
        self._whole = json.JSONDecoder().scan_once
        decoder = json.JSONDecoder()
        decoder.parse_object = self._object
        decoder.parse_array = self._array
        decoder.scan_once = _json_scanner.py_make_scanner(decoder)
        self._root = _json_decoder.WHITESPACE.match(text, 0).end()
        self.value = decoder.decode(text)

    def _deep(self, start: int) -> bool:
        if self._depth < DEEP_NESTING - 1:
            return False
        if self._stop:
            raise _TooDeep(start)
        return True

    def _members(self, scan_once, parse) -> Tuple[Any, int, List[int]]:
        """``parse(noting)`` one level deeper, noting where each member starts."""
        offsets: List[int] = []

        def noting(s: str, idx: int):
            offsets.append(idx)
            return scan_once(s, idx)

        self._depth += 1
        try:
            value, end = parse(noting)
        finally:
            self._depth -= 1
        return value, end, offsets

    def _object(self, s_and_end, strict, scan_once, object_hook, pairs_hook, memo):
        s, end = s_and_end
        if self._deep(end - 1):
            return self._whole(s, end - 1)
        pairs, end, offsets = self._members(scan_once, lambda noting: _json_decoder.JSONObject(
            s_and_end, strict, noting, None, list, memo))
        value = dict(pairs)         # the last of duplicate keys wins, as in json.loads
        self._starts[id(value)] = (value, {key: at for (key, _), at in zip(pairs, offsets)})
        return value, end

    def _array(self, s_and_end, scan_once):
        s, end = s_and_end
        if self._deep(end - 1):
            return self._whole(s, end - 1)
        value, end, offsets = self._members(scan_once, lambda noting: _json_decoder.JSONArray(
            s_and_end, noting))
        self._starts[id(value)] = (value, offsets)
        return value, end

    def position(self, path: Sequence) -> Optional[sxp.Position]:
        """Where the value at ``path`` (keys and indexes) starts."""
        node, offset = self.value, self._root
        for key in path:
            container, starts = self._starts.get(id(node), (None, None))
            if container is not node:
                return None             # decoded whole (deeper than we note)
            try:
                offset, node = starts[key], node[key]   # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                return None
        return sxp.position_at(self.text, offset)


def _json_located(text: str) -> Optional[JsonLocated]:
    try:
        return JsonLocated(text)
    except (ValueError, RecursionError):
        return None


_JSON_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def _resolve_json_path(data, text_path: str) -> List:
    """Keys/indexes of ``text_path`` that exist in ``data`` (a prefix when
    the last ones are missing)."""
    parts: List = []
    for m in _JSON_PATH_PART.finditer(text_path):
        parts.append(int(m.group(1)) if m.group(1) is not None else m.group(2))
    out: List = []
    node, i = data, 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, int):
            if not (isinstance(node, list) and part < len(node)):
                break
            node, i = node[part], i + 1
            out.append(part)
            continue
        if not isinstance(node, dict):
            break
        for j in range(len(parts), i, -1):   # longest key first: "type.hvm"
            if not all(isinstance(x, str) for x in parts[i:j]):
                continue
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                out.append(key)
                break
        else:
            break
    return out


def locate_json_error(exc: errors.CompatError, text: str) -> None:
    """Give ``exc`` (raised by config/libxl_json.py for ``text``) the line
    and column of the value it is about, when that can be found.

    config/libxl_json.py names the failing field as a path relative to one
    libxl_domain_config ("b_info.max_memkb", "disks[0].vdev"): find which
    domain of an array it is about, then resolve the path against the data
    (keys may contain dots: "type.hvm")."""
    from ..config.formats import libxl_json
    located = _json_located(text)
    if located is None:
        return
    data = located.value
    head = exc.message.split(": ", 1)[0]
    prefix: List = []
    config = data
    if isinstance(data, list):
        m = re.match(r"\[(\d+)\]", head)
        index = int(m.group(1)) if m else None
        if index is None:
            for i, item in enumerate(data):
                try:
                    libxl_json.loads(json.dumps([item]), source=exc.source or "")
                except errors.CompatError as other:
                    if other.message == exc.message:
                        index = i
                        break
        if index is None or index >= len(data):
            return
        prefix, config = [index], data[index]
        if m:
            head = head[m.end():].lstrip(".")
    if isinstance(config, dict) and "config" in config and not head.startswith(("domid", "config")):
        prefix, config = prefix + ["config"], config["config"]
    _set_position(exc, located.position(prefix + _resolve_json_path(config, head)))


# ------------------------------------------------------------------- sxpr

def _sxpr_located(text: str, source: str, lenient: bool,
                  quiet: bool = False) -> Optional[sxp.Located]:
    try:
        return sxp.loads_located(text, source=source, lenient=lenient,
                                 warnings=[] if quiet else None)
    except errors.CompatError:
        return None


def locate_sxpr_error(exc: errors.CompatError, text: str, *,
                      lenient: bool = False) -> None:
    """Give ``exc`` (raised by config/sxpr.py for ``text``) the line and
    column of the element it is about, when that can be found."""
    from ..config.formats import sxpr
    located = _sxpr_located(text, exc.source or "<sxpr>", lenient)
    if located is None:
        return
    values = located.values
    wanted = (type(exc), exc.message)

    def same(candidate) -> bool:
        try:
            sxpr.domain_from_sxpr(candidate, source=exc.source)
        except errors.CompatError as other:
            return (type(other), other.message) == wanted
        return False

    for vi, value in enumerate(values):
        if not isinstance(value, (list, tuple)):
            continue
        if not (value and value[0] in sxpr.ROOT_NAMES):
            if f"top-level value {vi + 1} " in exc.message:   # "... is (foo ...)"
                _set_position(exc, located.position(value))
                return
            continue
        if not same(value):
            continue
        found = value
        for ci in range(1, len(value)):
            child = value[ci]
            if isinstance(child, (list, tuple)) and same([value[0], child]):
                found = _follow_path(exc.message, value[0], child)
                break
        _set_position(exc, located.position(found))
        return


def _follow_path(message: str, root: str, child: Sequence) -> Sequence:
    """Descend ``child`` along the ``root/a/b/c:`` path that starts the
    message, as far as the elements exist."""
    head = message.split(": ", 1)[0]
    parts = head.split("/")
    if len(parts) < 3 or parts[0] != root or not child or parts[1] != child[0]:
        return child
    node = child
    for name in parts[2:]:
        for i in range(1, len(node)):
            sub = node[i]
            if isinstance(sub, (list, tuple)) and sub and sub[0] == name:
                node = sub
                break
        else:
            return node
    return node


def _nested(values: list, depth: int) -> Optional[list]:
    """The first list, in input order, that is ``depth`` lists deep."""
    stack = [iter(values)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                if len(stack) >= depth:
                    return x
                stack.append(iter(x))
                break
        else:
            stack.pop()
    return None


# ------------------------------------------------------------ both formats

def too_deep(text: str, fmt: str, source: str, *,
             lenient: bool = False) -> errors.ConfigError:
    """The error for input nested beyond what a reader could follow, at the
    first bracket that is :data:`DEEP_NESTING` levels deep.  (Deep nesting is
    a property of the input, not a bug of ours: exit status 1.)"""
    where: Where = (None, None)
    if fmt == "sxpr":
        located = _sxpr_located(text, source, lenient, quiet=True)
        node = located and _nested(located.values, DEEP_NESTING)
        if node is not None:
            where = _line_col(located.position(node))
    elif fmt == "json":
        try:
            JsonLocated(text, stop_too_deep=True)
        except _TooDeep as deep:
            where = _line_col(sxp.position_at(text, deep.offset))
        except (ValueError, RecursionError):
            pass
    return errors.ConfigError(
        f"input nested too deeply (more than {DEEP_NESTING - 1} levels)",
        source=source, line=where[0], col=where[1])


def start_position(text: str, fmt: str, index: int) -> Where:
    """Line and column where the ``index``-th domain of ``text`` starts (its
    ``(domain``, or its JSON object); (None, None) when unknown (XML)."""
    if fmt == "json":
        located = _json_located(text)
        if located is None:
            return None, None
        path = [index] if isinstance(located.value, list) else []
        return _line_col(located.position(path))
    if fmt != "sxpr":
        return None, None
    # lenient: what the strict reader accepts it reads the same, and an
    # input converted with --lenient must be found too
    located = _sxpr_located(text, "<sxpr>", lenient=True, quiet=True)
    lists = [v for v in located.values if isinstance(v, list)] if located else []
    if index >= len(lists):
        return None, None
    return _line_col(located.position(lists[index]))
