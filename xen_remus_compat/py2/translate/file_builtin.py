"""Python 2's ``file(...)`` builtin is gone: it becomes ``open(...)``.

Left alone when the script binds or otherwise uses the name ``file`` (a
loop variable, a parameter): then ``file`` is the script's own.
"""
from __future__ import annotations

from fissix.fixer_util import Name
from fissix.pgen2 import token
from fissix.pygram import python_symbols as syms

from .base import Py2Fix


class FixFileBuiltin(Py2Fix):
    """``file(...)`` -> ``open(...)`` unless the script binds ``file``."""

    PATTERN = "power< name='file' trailer< '(' [any] ')' > any* >"

    def leaves_alone(self, tree) -> bool:
        for leaf in tree.leaves():
            if leaf.type != token.NAME or leaf.value != "file":
                continue
            prev = leaf.prev_sibling
            nxt = leaf.next_sibling
            if prev is not None and prev.type == token.DOT:
                continue                      # x.file
            if leaf.parent.type == syms.argument and nxt is not None \
                    and nxt.type == token.EQUAL:
                continue                      # f(file=...)
            if leaf.parent.type == syms.power and prev is None and nxt is not None \
                    and nxt.type == syms.trailer and nxt.children[0].value == "(":
                continue                      # file(...)
            return True                       # a binding or other use
        return False

    def transform(self, node, results):
        name = results["name"]
        name.replace(Name("open", prefix=name.prefix))
        return None
