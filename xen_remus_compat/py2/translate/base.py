"""The base of our fixers."""
from __future__ import annotations

from fissix import fixer_base

from . import HELPER


class Py2Fix(fixer_base.BaseFix):
    """A fixer of ours: matched by pattern only (no bottom-matcher), told
    the runtime's name by the tool, and able to leave a whole script alone
    (:meth:`leaves_alone`), decided once per script."""

    BM_compatible = False
    helper = HELPER
    skip = False

    def leaves_alone(self, tree) -> bool:
        """Whether this script keeps what the fixer would rewrite."""
        return False

    def start_tree(self, tree, filename):
        super().start_tree(tree, filename)
        self.skip = self.leaves_alone(tree)

    def match(self, node):
        return not self.skip and super().match(node)
