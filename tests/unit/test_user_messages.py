"""What users read cites only what is installed (issue 14 item 10): error
messages, help and log lines never point at the project's design notes
(``xl-side.md``, ``legacy-api.md``, ``design.md``: not shipped); such
references live in code comments and docstrings.  And ``remus``'s ``-p``
says it is the legacy relocation port, not xl remus's COLO proxy."""
from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

from tests.conftest import ROOT

PACKAGE = ROOT / "xen_remus_compat"
#: a file name ending in .md, or the section sign our notes are cited with
NOTES_REF = re.compile(r"[\w./-]+\.md\b|§")


def _docstrings(tree: ast.AST) -> set:
    """ids of the docstring constants (comments, not messages), except a
    module docstring that its code reads (``__doc__`` as --help text)."""
    uses_doc = any(isinstance(n, ast.Name) and n.id == "__doc__" for n in ast.walk(tree))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)):
            if isinstance(node, ast.Module) and uses_doc:
                continue
            body = node.body
            if body and isinstance(body[0], ast.Expr) and \
                    isinstance(body[0].value, ast.Constant) and \
                    isinstance(body[0].value.value, str):
                out.add(id(body[0].value))
    return out


def notes_references(path: pathlib.Path) -> list:
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    docs = _docstrings(tree)
    first_line_only = source.count("__doc__") == source.count("__doc__.splitlines()[0]")
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) \
                or id(node) in docs:
            continue
        text = node.value
        if first_line_only and isinstance(tree, ast.Module) and tree.body and \
                getattr(tree.body[0], "value", None) is node:
            text = text.splitlines()[0] if text else ""   # the --help line only
        if NOTES_REF.search(text):
            found.append((node.lineno, text))
    return found


def test_no_message_cites_a_file_that_is_not_installed():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, text in notes_references(path):
            found.append(f"{path.relative_to(ROOT)}:{line}: {text[:100]!r}")
    assert not found, "\n".join(found)


def test_the_scan_sees_messages_and_skips_docstrings(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('"""see xl-side.md"""\n'
                   'def f():\n    """legacy-api.md §3"""\n'
                   '    raise ValueError(f"bad {1} (xl-side.md §1.8)")\n'
                   'HELP = "see design.md"\n')
    assert sorted(line for line, _ in notes_references(src)) == [4, 5]
    src.write_text('"""usage: see xl-side.md"""\nDESC = __doc__\n')
    assert [line for line, _ in notes_references(src)] == [1]
    src.write_text('"""A tool.\n\nsee xl-side.md"""\nDESC = __doc__.splitlines()[0]\n')
    assert notes_references(src) == []


def test_remus_help_says_p_is_not_xl_colo_proxy():
    run = subprocess.run([sys.executable, "-m", "xen_remus_compat.cli.remus", "--help"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    text = " ".join(run.stdout.split())
    assert run.returncode == 0, run
    assert "-p PORT" in text and "COLO proxy" in text and "relocation port" in text
    page = (ROOT / "docs" / "remus.1").read_text()
    assert "COLO proxy" in page
