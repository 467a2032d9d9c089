"""The fissix RefactoringTool: its standard fixers and ours, run on a script.

Built once per process and runtime name (``lru_cache``): compiling the
fixers' patterns is the slow part (about 80 ms, docs/decisions.md).  A
RefactoringTool is not re-entrant, hence the lock.
"""
from __future__ import annotations

import functools
import threading

from fissix import refactor
from fissix.pgen2 import token as ftoken

from ...errors import TranslationError
from .division import FixOldDiv
from .byteio import FixOsIo, FixSocket
from .file_builtin import FixFileBuiltin
from .lines import source_line

#: our fixers, after fissix's standard ones of the same order
FIXERS = (FixOldDiv, FixOsIo, FixSocket, FixFileBuiltin)

#: fissix standard fixers we do not run, and why
EXCLUDED_FIXERS = {
    "fissix.fixes.fix_import": "would turn a script's sibling imports into "
                               "relative ones, which fail in __main__",
}

_TOOL_LOCK = threading.Lock()


class Tool(refactor.RefactoringTool):
    """The standard fixers minus :data:`EXCLUDED_FIXERS`, plus :data:`FIXERS`
    calling the runtime as ``helper``."""

    def __init__(self, helper: str) -> None:
        self.helper = helper          # read by get_fixers, which __init__ calls
        super().__init__([n for n in refactor.get_fixers_from_package("fissix.fixes")
                          if n not in EXCLUDED_FIXERS])

    def get_fixers(self):
        pre, post = super().get_fixers()
        for cls in FIXERS:
            fixer = cls(self.options, self.fixer_log)
            fixer.helper = self.helper
            (pre if fixer.order == "pre" else post).append(fixer)
        return pre, post


@functools.lru_cache(maxsize=4)
def tool_for(helper: str) -> Tool:
    return Tool(helper)


def refactor_text(text: str, path: str, helper: str) -> str:
    """``text`` translated; a parse error is a :class:`TranslationError`
    naming the script's line."""
    src = text if text.endswith("\n") else text + "\n"
    try:
        t = tool_for(helper)
        with _TOOL_LOCK:
            tree = t.refactor_string(src, path)
    except Exception as e:  # fissix raises ParseError / TokenError / IndentationError
        if type(e).__module__.startswith("fissix") or isinstance(e, (SyntaxError,)):
            raise _fissix_error(e, path, text) from None
        raise
    new = str(tree)
    if not text.endswith("\n") and new.endswith("\n"):
        new = new[:-1]
    return new


def _fissix_error(e: Exception, path: str, text: str) -> TranslationError:
    """A fissix parse/tokenize error as ``path:line:col: message``."""
    line = col = None
    detail = str(e)
    context = getattr(e, "context", None)
    if isinstance(e, SyntaxError):          # fissix's IndentationError
        line, col, detail = e.lineno, (e.offset or 1) - 1, f"{type(e).__name__}: {e.msg}"
    elif context and len(context) == 2 and isinstance(context[1], tuple):
        line, col = context[1]
        value = getattr(e, "value", "")
        kind = ftoken.tok_name.get(getattr(e, "type", None), "token")
        if kind == "ERRORTOKEN":
            detail = "invalid token (an unterminated string or a stray character?)"
        else:
            detail = (f"invalid syntax (unexpected {kind.lower()} {value!r})"
                      if value.strip() else f"invalid syntax (unexpected {kind.lower()})")
    elif len(getattr(e, "args", ())) == 2 and isinstance(e.args[1], tuple) \
            and len(e.args[1]) == 2:
        detail, (line, col) = e.args[0], e.args[1]
    col = col + 1 if col is not None else None
    return TranslationError(f"not valid Python 2: {detail}{source_line(text, line)}",
                            source=path, line=line, col=col)
