"""The legacy accessors of section 11.4: reading children and attributes
of xend values the way legacy code does, defaults and quirks included.

They all tolerate non-list input, and none recurses (values nest as deep as
their input).
"""
from __future__ import annotations

from typing import Any

from .syntax import LIST_TYPES as _LIST, k_attr_open


def elementp(sxpr, elt=None):
    """A non-empty list/tuple, named ``elt`` if that is given.

    The value is the legacy ``and`` chain's: ``False`` for a non-list, ``0``
    for an empty list, else the name test (``True``/``False``)."""
    return (isinstance(sxpr, _LIST) and len(sxpr)
            and (elt is None or sxpr[0] == elt))


def name(sxpr):
    """A string is its own name; an element's name is item 0; else ``None``."""
    if isinstance(sxpr, (str, bytes)):
        return sxpr
    if isinstance(sxpr, _LIST) and len(sxpr):
        return sxpr[0]
    return None


def attributes(sxpr) -> list:
    """The ``[k, v]`` pairs of the ``(@ ...)`` list in item 1, or ``[]``."""
    if isinstance(sxpr, _LIST) and len(sxpr) > 1:
        attr = sxpr[1]
        if elementp(attr, k_attr_open):
            return attr[1:]
    return []


def attribute(sxpr, key, val=None):
    """The value of the first attribute pair named ``key``, or ``val``."""
    for x in attributes(sxpr):
        if isinstance(x, _LIST) and len(x) > 1 and x[0] == key:
            return x[1]
    return val


def children(sxpr, elt=None):
    """Items after the name and any attribute list; only elements named
    ``elt`` if that is given (and truthy, as in the legacy code)."""
    val: Any = []
    if isinstance(sxpr, _LIST) and len(sxpr) > 1:
        i = 2 if elementp(sxpr[1], k_attr_open) else 1
        val = sxpr[i:]
    if elt:
        kept = [x for x in val if elementp(x, elt)]
        val = tuple(kept) if isinstance(val, tuple) else kept
    return val


def child(sxpr, elt, val=None):
    """The first child element named ``elt``, or ``val``."""
    for x in children(sxpr):
        if elementp(x, elt):
            return x
    return val


def child_at(sxpr, index, val=None):
    """``children(sxpr)[index]``, or ``val``."""
    kids = children(sxpr)
    if len(kids) > index:
        return kids[index]
    return val


def child0(sxpr, val=None):
    return child_at(sxpr, 0, val)


def child1(sxpr, val=None):
    return child_at(sxpr, 1, val)


def child2(sxpr, val=None):
    return child_at(sxpr, 2, val)


def child3(sxpr, val=None):
    return child_at(sxpr, 3, val)


def child4(sxpr, val=None):
    return child_at(sxpr, 4, val)


def child_value(sxpr, elt, val=None):
    """The first child of the first ``elt`` child; ``(elt)`` gives ``val``."""
    kid = child(sxpr, elt)
    if kid:
        val = child_at(kid, 0, val)
    return val


def has_id(sxpr, id) -> bool:
    return attribute(sxpr, "id") == id


def with_id(sxpr, id, val=None):
    """The first item with attribute ``id`` at any depth (depth-first)."""
    if not isinstance(sxpr, _LIST):
        return val
    stack = [iter(sxpr)]
    while stack:
        for n in stack[-1]:
            if has_id(n, id):
                return n
            if isinstance(n, _LIST):
                stack.append(iter(n))
                break
        else:
            stack.pop()
    return val


def child_with_id(sxpr, id, val=None):
    """The first direct item with attribute ``id``."""
    if isinstance(sxpr, _LIST):
        for n in sxpr:
            if has_id(n, id):
                return n
    return val


def elements(sxpr, ctxt=None):
    """Pre-order ``(node, ctxt)``; ``ctxt`` is ``(index, parent, parent_ctxt)``."""
    yield (sxpr, ctxt)
    stack = [(sxpr, ctxt, enumerate(children(sxpr)))]
    while stack:
        parent, pctxt, it = stack[-1]
        for i, n in it:
            if isinstance(n, _LIST):
                c = (i, parent, pctxt)
                yield (n, c)
                stack.append((n, c, enumerate(children(n))))
                break
        else:
            stack.pop()


def child_map(sxpr):
    """``({name: [elements...]}, [non-element children])``.

    Groups are in first-seen order (the legacy dict order was arbitrary).
    An element whose name is itself a list (``((0 1) (2 3))``) cannot be a
    key; it is counted as a non-element child (the legacy code crashed).
    """
    m: dict = {}
    v: list = []
    for x in children(sxpr):
        if elementp(x):
            try:
                m.setdefault(x[0], []).append(x)
                continue
            except TypeError:
                pass
        v.append(x)
    return (m, v)


def merge(s1, s2):
    """Merge ``s2`` into ``s1`` by child name, ``s1`` winning (section 11.4)."""
    root = [None]
    todo = [(root, 0, s1, s2)]
    while todo:
        target, index, a, b = todo.pop()
        target[index] = _merge_step(a, b, todo)
    return root[0]


def _merge_step(s1, s2, todo):
    if s1 is None:
        return s2
    if s2 is None:
        return s1
    if not elementp(s1):
        return s1
    m1, v1 = child_map(s1)
    m2, v2 = child_map(s2)
    val = [name(s1)]
    for k1, f1 in m1.items():
        _merge_list_into(val, f1, m2.get(k1, []), todo)
    for k2, f2 in m2.items():
        if k2 not in m1:
            val.extend(f2)
    val.extend(v1)
    return val


def _merge_list_into(sxpr, l1, l2, todo) -> None:
    nmin = min(len(l1), len(l2))
    for i in range(nmin):
        sxpr.append(None)
        todo.append((sxpr, len(sxpr) - 1, l1[i], l2[i]))
    sxpr.extend(l1[nmin:])
    sxpr.extend(l2[nmin:])


def merge_list(sxpr, l1, l2):
    """Append to ``sxpr`` the pairwise merges of ``l1`` and ``l2``, then the
    excess of the longer list; returns ``sxpr``."""
    nmin = min(len(l1), len(l2))
    for i in range(nmin):
        sxpr.append(merge(l1[i], l2[i]))
    for i in range(nmin, len(l1)):
        sxpr.append(l1[i])
    for i in range(nmin, len(l2)):
        sxpr.append(l2[i])
    return sxpr
