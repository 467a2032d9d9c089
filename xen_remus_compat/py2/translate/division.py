"""Python 2's ``/``: ``a / b`` -> ``_py2.div(a, b)``, which floors two ints.

Whether both operands are ints is known only at run time, so every ``/``
goes through the helper, except where a float literal or ``float(...)``
operand proves true division, and in scripts with ``from __future__
import division``.
"""
from __future__ import annotations

from fissix import pytree
from fissix.fixer_util import ArgList, Attr, Comma, Name
from fissix.pgen2 import token
from fissix.pygram import python_symbols as syms

from .base import Py2Fix


def helper_call(helper: str, func: str, args: list, prefix: str = ""):
    """``helper.func(args)`` as a tree."""
    return pytree.Node(syms.power,
                       Attr(Name(helper, prefix=prefix), Name(func))
                       + [ArgList(args)])


def bare(node):
    """Drop redundant parentheses around a non-tuple expression."""
    if (node.type == syms.atom and len(node.children) == 3
            and node.children[0].value == "(" and node.children[2].value == ")"
            and node.children[1].type not in (syms.testlist_gexp, syms.yield_expr)):
        inner = node.children[1].clone()
        inner.prefix = ""
        return inner
    return node


def proves_float(node) -> bool:
    """A float/complex literal, or a ``float(...)`` call."""
    while node.type == syms.factor:          # unary minus/plus
        node = node.children[-1]
    if node.type == token.NUMBER:
        v = node.value.lower()
        return not v.startswith("0x") and any(c in v for c in ".ej")
    if node.type == syms.power and len(node.children) == 2:
        head, trailer = node.children
        return (head.type == token.NAME and head.value == "float"
                and trailer.children[0].value == "(")
    return False


class FixOldDiv(Py2Fix):
    """``a / b`` -> ``_py2.div(a, b)``; ``x /= y`` -> ``x = _py2.div(x, y)``."""

    PATTERN = "term< any+ > | expr_stmt< any '/=' any >"

    def leaves_alone(self, tree) -> bool:
        return "division" in getattr(tree, "future_features", ())

    def transform(self, node, results):
        if node.type == syms.expr_stmt:
            target, op, value = node.children
            lhs, rhs = bare(target.clone()), bare(value.clone())
            lhs.prefix, rhs.prefix = "", " "
            call = helper_call(self.helper, "div", [lhs, Comma(), rhs],
                               prefix=value.prefix)
            op.replace(pytree.Leaf(token.EQUAL, "=", prefix=op.prefix))
            value.replace(call)
            return None
        kids = node.children
        if not any(k.type == token.SLASH for k in kids[1::2]):
            return None
        prefix = node.prefix
        acc = [kids[0].clone()]
        acc[0].prefix = ""
        changed = False
        for op, operand in zip(kids[1::2], kids[2::2]):
            operand = operand.clone()
            left = acc[0] if len(acc) == 1 else pytree.Node(syms.term, acc)
            if op.type == token.SLASH and not (proves_float(left) or proves_float(operand)):
                rhs = bare(operand)
                rhs.prefix = " "
                lhs = bare(left)
                lhs.prefix = ""
                acc = [helper_call(self.helper, "div", [lhs, Comma(), rhs])]
                changed = True
            else:
                acc = acc + [op.clone(), operand]
        if not changed:
            return None
        new = acc[0] if len(acc) == 1 else pytree.Node(syms.term, acc)
        new.prefix = prefix
        return new
