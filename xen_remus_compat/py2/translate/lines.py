"""Line bookkeeping: errors and tracebacks name the script's own lines.

A few fixers add lines (``fix_reduce`` inserts an import), so the
translated text is diffed against the original and its AST given the
original line numbers before it is compiled.
"""
from __future__ import annotations

import ast
import difflib
import io
import tokenize
from typing import List, Optional, Tuple


def source_line(text: str, line: Optional[int]) -> str:
    """The script's own ``line``, to follow an error message."""
    lines = text.splitlines()
    if line and 1 <= line <= len(lines):
        return f"\n    {lines[line - 1].strip()}"
    return ""


def first_statement_line(text: str) -> int:
    """Where an import may go: after the docstring and ``__future__`` imports,
    which must stay first."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return 1
    for i, node in enumerate(tree.body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            continue                                # docstring
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        decorators = getattr(node, "decorator_list", None)
        return decorators[0].lineno if decorators else node.lineno
    return len(text.splitlines()) + 1


def line_map(old: str, new: str) -> Tuple[List[int], frozenset]:
    """Translated line -> original line, and the translated lines that differ."""
    a, b = old.splitlines(), new.splitlines()
    out = [0] * len(b)
    changed = set()
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        for k, j in enumerate(range(j1, j2)):
            if op == "equal":
                out[j] = i1 + k + 1
            else:
                changed.add(j + 1)
                span = max(i2 - i1, 1)
                out[j] = min(i1 + (k * span) // max(j2 - j1, 1), max(len(a) - 1, 0)) + 1
    return out or [1], frozenset(changed)


def remap_lines(tree: ast.AST, line_map: List[int], changed: frozenset) -> None:
    """Give every node its original line; on lines the translation changed,
    positions span the whole original line (no misleading carets)."""
    n = len(line_map)
    for node in ast.walk(tree):
        lineno = getattr(node, "lineno", None)
        if lineno is None:
            continue
        end = getattr(node, "end_lineno", None) or lineno
        touched = lineno in changed or end in changed
        node.lineno = line_map[min(lineno, n) - 1]
        node.end_lineno = max(line_map[min(end, n) - 1], node.lineno)
        if touched:
            node.col_offset = 0
            node.end_col_offset = 10 ** 4


def expand_indent_tabs(text: str) -> str:
    """Python 2 read a tab in indentation as 'to the next multiple of 8';
    Python 3 refuses inconsistent mixes (TabError).  Expand tabs in the
    indentation of code lines, never inside strings."""
    in_string = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                in_string.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        return text
    out = []
    for no, line in enumerate(text.splitlines(keepends=True), 1):
        if no not in in_string:
            body = line.lstrip(" \t")
            indent = line[:len(line) - len(body)]
            line = indent.expandtabs(8) + body
        out.append(line)
    return "".join(out)
