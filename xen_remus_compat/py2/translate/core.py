"""A script and the Python 3 code that runs for it.

Nothing is written next to the script (no ``.bak``, no ``__pycache__``):
the translation lives in memory, and the code is compiled with the
script's own line numbers.  fissix is loaded only when a Python 2 script
is translated.
"""
from __future__ import annotations

import ast
import io
import os
import re
import tokenize
import types
from dataclasses import dataclass
from typing import List, Optional

from ... import errors
from ...errors import TranslationError
from .. import runtime
from ..detect import detect
from . import HELPER
from .lines import expand_indent_tabs, first_statement_line, line_map, remap_lines, source_line


@dataclass
class Translation:
    """A script and the Python 3 code that runs for it."""

    path: str
    source: str
    text: str
    dialect: str
    reason: str
    helper: Optional[str] = None
    #: translated line (1-based) -> original line, when they differ
    line_map: Optional[List[int]] = None
    changed_lines: frozenset = frozenset()

    @property
    def changed(self) -> bool:
        return self.text != self.source

    def show_text(self) -> str:
        """The translated text as a standalone Python 3 script: the helper
        import is added before the first statement when the text uses it."""
        if not self.helper or not re.search(r"\b%s\." % re.escape(self.helper), self.text):
            return self.text
        lines = self.text.splitlines(keepends=True)
        at = first_statement_line(self.text)
        line = f"import {runtime.__name__} as {self.helper}  # added by run-legacy\n"
        return "".join(lines[:at - 1] + [line] + lines[at - 1:])

    def code(self) -> types.CodeType:
        """Compiled code, with line numbers of the original script."""
        try:
            tree = ast.parse(self.text, self.path)
        except SyntaxError as e:
            raise self._syntax_error(e) from None
        if self.line_map is not None:
            remap_lines(tree, self.line_map, self.changed_lines)
        try:
            return compile(tree, self.path, "exec", dont_inherit=True)
        except SyntaxError as e:
            raise self._syntax_error(e) from None

    def original_line(self, lineno: Optional[int]) -> Optional[int]:
        if lineno is None or self.line_map is None:
            return lineno
        return self.line_map[min(max(lineno, 1), len(self.line_map)) - 1]

    def _syntax_error(self, e: SyntaxError) -> TranslationError:
        line = self.original_line(e.lineno)
        what = ("not valid Python 3" if self.dialect == "3" else
                "translated from Python 2 but not valid Python 3")
        src = source_line(self.source, line)
        return TranslationError(f"{what}: {type(e).__name__}: {e.msg}{src}",
                                source=self.path, line=line,
                                col=e.offset if line == e.lineno else None)


def _helper_name(text: str) -> str:
    name = HELPER
    while re.search(r"\b%s\b" % re.escape(name), text):
        name += "_"
    return name


def translate(text: str, *, path: str = "<script>", dialect: str = "auto") -> Translation:
    """Translate a script (in memory).  ``dialect``: ``auto``, ``2`` or ``3``."""
    if dialect not in ("auto", "2", "3"):
        raise errors.InputError(f"unknown Python dialect {dialect!r} (auto, 2 or 3)")
    reason = f"--python {dialect}"
    if dialect == "auto":
        dialect, reason = detect(text, path=path)
    if dialect == "3":
        return Translation(path, text, text, "3", reason)
    helper = _helper_name(text)
    from .tool import refactor_text     # fissix: only for Python 2 scripts
    new = refactor_text(text, path, helper)
    lmap, changed = line_map(text, new)
    t = Translation(path, text, new, "2", reason, helper=helper,
                    line_map=lmap, changed_lines=changed)
    try:
        compile(new, path, "exec", dont_inherit=True, flags=ast.PyCF_ONLY_AST)
    except TabError:
        t.text = expand_indent_tabs(new)
    except SyntaxError:
        pass                        # reported by code() with the original line
    return t


def read_script(path: str) -> str:
    """The script's text, decoded as Python decodes source (PEP 263)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise errors.InputError(f"cannot read script: {os.strerror(e.errno)}",
                                source=path) from e
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as e:
        raise TranslationError(str(e), source=path, line=1) from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise TranslationError(f"not valid {encoding}: byte {data[e.start]:#04x} "
                               f"(declare the encoding with a coding: line)",
                               source=path, line=line) from None


def translate_file(path: str, *, dialect: str = "auto") -> Translation:
    return translate(read_script(path), path=path, dialect=dialect)
