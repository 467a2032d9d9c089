"""Is a script Python 2 or Python 3?

A Python 3 script runs untouched, so only positive evidence makes one: the
``#!`` line, or a Python 3-only construct in code that compiles as Python
3 and uses no Python 2-only name.  Anything else is a legacy script and is
translated (docs/decisions.md, "Python 2 or Python 3?").
"""
from __future__ import annotations

import ast
import re
from typing import Optional, Tuple

#: names that exist only in Python 2 (builtins, attributes, modules)
PY2_BUILTINS = frozenset({
    "xrange", "unicode", "basestring", "long", "raw_input", "unichr",
    "execfile", "file", "reduce", "cmp", "apply", "buffer", "intern",
    "coerce", "reload"})
PY2_ATTRIBUTES = frozenset({
    "iteritems", "itervalues", "iterkeys", "has_key", "viewitems",
    "viewkeys", "viewvalues", "maxint", "getcwdu", "im_func", "im_self",
    "func_name", "func_code", "exc_type", "exc_value", "xreadlines"})
PY2_MODULES = frozenset({
    "xmlrpclib", "httplib", "urllib2", "urlparse", "ConfigParser", "Queue",
    "SocketServer", "StringIO", "cStringIO", "cPickle", "commands",
    "__builtin__", "copy_reg", "thread", "dummy_thread", "HTMLParser",
    "htmlentitydefs", "Cookie", "cookielib", "SimpleXMLRPCServer",
    "DocXMLRPCServer", "SimpleHTTPServer", "BaseHTTPServer", "CGIHTTPServer",
    "UserDict", "UserList", "UserString", "anydbm", "whichdb", "dbhash",
    "robotparser", "markupbase", "repr", "Tkinter", "sets", "md5", "sha"})
#: module names that exist only in Python 3
PY3_MODULES = frozenset({
    "xmlrpc", "http", "configparser", "queue", "socketserver", "reprlib",
    "builtins", "copyreg", "_thread", "tkinter", "html", "urllib.request",
    "urllib.parse", "urllib.error"})
SHEBANG_RE = re.compile(rb"^#!.*\bpython(\d)?")


def _py2_evidence(tree: ast.AST) -> Optional[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in PY2_BUILTINS \
                and isinstance(node.ctx, ast.Load):
            return f"line {node.lineno}: Python 2 builtin {node.id!r}"
        if isinstance(node, ast.Attribute) and node.attr in PY2_ATTRIBUTES:
            return f"line {node.lineno}: Python 2 attribute {node.attr!r}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PY2_MODULES:
                    return f"line {node.lineno}: Python 2 module {alias.name!r}"
        if isinstance(node, ast.ImportFrom) and node.module \
                and node.module.split(".")[0] in PY2_MODULES:
            return f"line {node.lineno}: Python 2 module {node.module!r}"
    return None


def _py3_evidence(tree: ast.AST, print_function: bool) -> Optional[str]:
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.JoinedStr):
            return f"line {line}: f-string"
        if isinstance(node, (ast.Nonlocal, ast.AsyncFunctionDef, ast.Await,
                             ast.YieldFrom, ast.NamedExpr, ast.Starred)):
            return f"line {line}: {type(node).__name__}"
        if isinstance(node, ast.FunctionDef) and (
                node.returns is not None or node.args.kwonlyargs
                or any(a.annotation is not None for a in node.args.args)):
            return f"line {line}: annotations or keyword-only arguments"
        if isinstance(node, ast.AnnAssign):
            return f"line {line}: annotated assignment"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in PY3_MODULES or alias.name.split(".")[0] in PY3_MODULES:
                    return f"line {line}: Python 3 module {alias.name!r}"
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module in PY3_MODULES or node.module.split(".")[0] in PY3_MODULES):
            return f"line {line}: Python 3 module {node.module!r}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "print" and not print_function:
            if node.keywords:
                return f"line {line}: print() with keyword arguments"
            if len(node.args) > 1:
                return f"line {line}: print() with several arguments"
    return None


def _future_features(tree: ast.AST) -> set:
    out = set()
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            out.update(a.name for a in node.names)
    return out


def detect(text: str, *, path: str = "<script>") -> Tuple[str, str]:
    """``("2" | "3", reason)``: is ``text`` a Python 2 or a Python 3 script?"""
    m = SHEBANG_RE.match(text.encode("utf-8", "replace").split(b"\n", 1)[0])
    if m and m.group(1) in (b"2", b"3"):
        return m.group(1).decode(), f"#! line names python{m.group(1).decode()}"
    try:
        tree = ast.parse(text, path)
    except SyntaxError as e:
        return "2", f"not valid Python 3 (line {e.lineno}: {e.msg})"
    py2 = _py2_evidence(tree)
    if py2:
        return "2", py2
    py3 = _py3_evidence(tree, "print_function" in _future_features(tree))
    if py3:
        return "3", py3
    return "2", "valid in both and nothing Python 3-only: treated as a legacy (Python 2) script"
