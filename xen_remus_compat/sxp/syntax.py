"""The lexical facts of the xend S-expression dialect (legacy-api.md section
11.1-11.2): the legacy constants and the character classes the reader,
printer and accessors share, so each is written down once."""
from __future__ import annotations

import string

# -- constants (section 11.1) -------------------------------------------------

mime_type = "application/sxp"
k_list_open = "("
k_list_close = ")"
k_attr_open = "@"
k_eval = "!"

#: Escapes with their C meaning (section 11.2).
escapes = {"a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v",
           "f": "\f", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
escapes_rev = {v: k for k, v in escapes.items()}

# Character classes of section 11.2.
WHITESPACE = " \t\n\v\f\r"
SEPARATORS = "{}()<>[];"
COMMENT_START = "#"
QUOTES = "\"'"
PRINTABLE = string.printable
EOT = "\x04"            # Ctrl-D: end of input outside strings

#: What counts as a list everywhere (the legacy code accepted tuples too).
LIST_TYPES = (list, tuple)
