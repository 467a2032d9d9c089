"""The xend S-expression dialect, ``xen.xend.sxp`` (legacy-api.md section 11).

One package, one reader: every caller, the incremental legacy
:class:`Parser` as much as the modern :func:`loads`, goes through
:mod:`.reader`, so they cannot disagree, and errors (and, on request, list
positions) come from the parse itself.  The modules, one concern each:

* :mod:`.syntax` -- the constants and character classes of section 11.1-11.2;
* :mod:`.unescape` -- backslash escapes, with the legacy quirks;
* :mod:`.reader` -- the state machine (section 11.2), positions, errors;
* :mod:`.parser` -- the legacy ``Parser`` API and ``parse``/``from_string``;
* :mod:`.load` -- :func:`loads`, :func:`load_file`, :func:`loads_located`;
* :mod:`.printer` -- section 11.3 (Python 2 ``repr`` quoting, single spaces);
* :mod:`.accessors` -- section 11.4, iterative, tolerant of non-list input.

Modes of the reader (modern, lenient, legacy) are described in
:mod:`.reader` and docs/decisions.d/sxp.md.  Everything that was public in
the former single module is importable from here unchanged.
"""
from __future__ import annotations

# Every name the former single module had, and the reader's position API.
from .accessors import (  # noqa: F401  (re-exported)
    attribute, attributes, child, child0, child1, child2, child3, child4,
    child_at, child_map, child_value, child_with_id, children, elementp,
    elements, has_id, merge, merge_list, name, with_id,
)
from .load import Located, gc_paused, load_file, loads, loads_located  # noqa: F401
from .parser import Parser, all_from_string, from_string, parse  # noqa: F401
from .printer import atom_to_string, atomp, show, show_xml, to_string  # noqa: F401
from .reader import (  # noqa: F401
    LegacyHexEscapeError, ParseError, Position, Reader, log, position_at,
)
from .syntax import (  # noqa: F401
    COMMENT_START, EOT, PRINTABLE, QUOTES, SEPARATORS, WHITESPACE, escapes,
    escapes_rev, k_attr_open, k_eval, k_list_close, k_list_open, mime_type,
)

__all__ = [
    "mime_type", "ParseError", "Parser", "atomp", "show", "show_xml",
    "elementp", "name", "attributes", "attribute", "children", "child",
    "child_at", "child0", "child1", "child2", "child3", "child4",
    "child_value", "has_id", "with_id", "child_with_id", "elements",
    "child_map", "merge", "merge_list", "to_string", "from_string",
    "all_from_string", "parse", "loads", "load_file",
]
