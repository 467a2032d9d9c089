"""Run a legacy Python 2 remus script, unchanged, on Python 3.

Remus-era scripts (legacy-api.md §1 is the model: optparse, ``vm.VM``,
``ReplicatedDisk``/``BufferedNIC``, ``Saver`` with three callbacks, print
statements, ``except X, e``) are Python 2.  :func:`translate` turns a
script into Python 3 in memory with fissix (the maintained lib2to3 fork:
its standard fixers, minus ``fix_import``, which would make a script's
sibling imports relative) plus four of ours, and :func:`run_main` runs it
as ``__main__`` with ``sys.argv`` set, under our modules at the legacy
names (the alias finder of ``_xenalias.py``, installed explicitly here
too).  Nothing is written next to the script: no ``.bak``, no
``__pycache__``.  Choices (docs/decisions.d/run-legacy.md):

* **Dialect.** A script runs as Python 3, untouched, when its ``#!`` line
  names python3, or when it compiles as Python 3, uses no Python 2-only
  name or module and shows a Python 3-only construct (:func:`detect`).
  Everything else is a legacy script and is translated.
* **Division.** ``/`` keeps Python 2 semantics: ``a / b`` becomes
  ``_py2.div(a, b)``, floor division when both operands are ints at run
  time, true division otherwise (``(interval - elapsed)/1000`` stays a
  float, ``needed/1024`` stays an int).  A float literal or ``float(...)``
  operand proves true division, so that ``/`` is left alone; a script with
  ``from __future__ import division`` is left alone entirely.
* **Bytes at fds and sockets.** Python 2's ``str`` was bytes.
  ``os.write``/``os.read`` and sockets made with ``socket.socket``,
  ``socket.create_connection``, ``socket.fromfd`` and ``socket.socketpair``
  are routed through :data:`py2` helpers that accept ``str`` (encoded
  Latin-1, the byte-for-byte image of a Python 2 byte string) and hand
  back :class:`Py2Bytes`, bytes that compare equal to the same text, so
  ``os.read(fd, 4) == 'done'`` is true as it was.
* **``file(...)``** becomes ``open(...)`` when the script never binds the
  name ``file``.
* **Line numbers.** Errors and tracebacks name the script's own lines:
  the translated code is compiled with its line numbers mapped back to the
  original text (a few fixers add lines).
"""
from __future__ import annotations

import ast
import builtins
import difflib
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import io
import os
import re
import socket as _socket
import sys
import threading
import tokenize
import traceback
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from .. import errors
from ..log import logger
from ..errors import TranslationError

#: the name translated code uses for the runtime helpers (this module)
HELPER = "_py2"
HELPER_MODULE = "xen_remus_compat.py2.pyrun"

# =============================================================================
# Runtime helpers: what translated scripts call as ``_py2.<name>``
# =============================================================================


def to_bytes(data: Any) -> Any:
    """Python 2 ``str`` at a byte boundary: ``str`` -> Latin-1 bytes (UTF-8
    when it holds characters above U+00FF, which only ``u''`` text can)."""
    if isinstance(data, str):
        try:
            return data.encode("latin-1")
        except UnicodeEncodeError:
            return data.encode("utf-8")
    return data


def _wrap(value: Any) -> Any:
    if isinstance(value, bytes) and not isinstance(value, Py2Bytes):
        return Py2Bytes(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


class Py2Bytes(bytes):
    """Bytes read from an fd or socket by a translated script: they behave
    like Python 2's ``str`` next to text.  Equal to the same text
    (``Py2Bytes(b'done') == 'done'``, same hash), printable as text
    (``str()``, ``%s``), concatenable with ``str``, and their methods accept
    ``str`` arguments.  Still ``bytes``: ``struct.unpack`` and binary files
    take them as they are."""

    __slots__ = ()

    def __eq__(self, other):
        if isinstance(other, str):
            other = to_bytes(other)
        return bytes.__eq__(self, other)

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = bytes.__hash__

    def __str__(self) -> str:
        return self.decode("latin-1")

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return bytes.__repr__(self)[1:]      # Python 2 repr: no b prefix

    def __add__(self, other):
        return Py2Bytes(bytes.__add__(self, to_bytes(other)))

    def __radd__(self, other):
        if isinstance(other, (str, bytes, bytearray)):
            return Py2Bytes(bytes(to_bytes(other)) + bytes(self))
        return NotImplemented

    def __contains__(self, item) -> bool:
        return bytes.__contains__(self, to_bytes(item))

    def __getitem__(self, index):
        value = bytes.__getitem__(self, index)
        if isinstance(value, int):
            return Py2Bytes(bytes((value,)))   # Python 2: a 1-character str
        return Py2Bytes(value)

    def __iter__(self):
        for b in bytes.__iter__(self):
            yield Py2Bytes(bytes((b,)))


def _bytes_method(name: str) -> Callable:
    base = getattr(bytes, name)

    def method(self, *args, **kw):
        args = tuple(to_bytes(a) if isinstance(a, str) else
                     tuple(to_bytes(x) for x in a) if isinstance(a, tuple) else a
                     for a in args)
        return _wrap(base(self, *args, **kw))
    method.__name__ = name
    method.__doc__ = base.__doc__
    return method


#: bytes methods that take text arguments in Python 2 code
_STR_METHODS = ("startswith", "endswith", "split", "rsplit", "strip", "lstrip",
                "rstrip", "find", "rfind", "index", "rindex", "count", "replace",
                "partition", "rpartition", "splitlines", "lower", "upper",
                "join", "ljust", "rjust", "center", "zfill", "expandtabs")
for _name in _STR_METHODS:
    setattr(Py2Bytes, _name, _bytes_method(_name))
del _name


_NUMBERS = (int, float, complex)


def div(a: Any, b: Any) -> Any:
    """Python 2's ``a / b``: floor division of two ints, else ``__div__``
    where a class still defines it, else true division."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    if isinstance(a, _NUMBERS) and isinstance(b, _NUMBERS):
        return a / b
    for obj, other, name in ((a, b, "__div__"), (b, a, "__rdiv__")):
        meth = getattr(type(obj), name, None)
        if meth is not None:
            result = meth(obj, other)
            if result is not NotImplemented:
                return result
    return a / b


def os_write(fd: int, data: Any) -> int:
    """``os.write`` that takes Python 2 ``str`` (e.g. ``'flush'`` to a fifo)."""
    return os.write(fd, to_bytes(data))


def os_read(fd: int, n: int) -> Py2Bytes:
    """``os.read`` whose result compares equal to text (``== 'done'``)."""
    return Py2Bytes(os.read(fd, n))


class socket(_socket.socket):
    """``socket.socket`` for translated scripts: sends ``str``, receives
    :class:`Py2Bytes`; ``accept`` and ``dup`` keep the class."""

    __slots__ = ()

    def send(self, data, *args):
        return super().send(to_bytes(data), *args)

    def sendall(self, data, *args):
        return super().sendall(to_bytes(data), *args)

    def sendto(self, data, *args):
        return super().sendto(to_bytes(data), *args)

    def recv(self, *args):
        return Py2Bytes(super().recv(*args))

    def recvfrom(self, *args):
        data, addr = super().recvfrom(*args)
        return Py2Bytes(data), addr

    def accept(self):
        fd, addr = self._accept()
        sock = socket(self.family, self.type, self.proto, fileno=fd)
        if _socket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        return sock, addr

    def dup(self):
        sock = socket(self.family, self.type, self.proto, fileno=os.dup(self.fileno()))
        sock.settimeout(self.gettimeout())
        return sock


def _adopt(sock: _socket.socket) -> socket:
    timeout = sock.gettimeout()
    ours = socket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    ours.settimeout(timeout)
    return ours


def create_connection(*args, **kw) -> socket:
    return _adopt(_socket.create_connection(*args, **kw))


def fromfd(fd, family, type, proto=0) -> socket:
    return socket(family, type, proto, fileno=os.dup(fd))


def socketpair(*args) -> Tuple[socket, socket]:
    a, b = _socket.socketpair(*args)
    return _adopt(a), _adopt(b)


# =============================================================================
# Our fixers (fissix BaseFix subclasses)
# =============================================================================

def _fixers():
    """Build the fixer classes on first use (fissix is imported lazily)."""
    from fissix import fixer_base, pytree
    from fissix.fixer_util import ArgList, Attr, Comma, Name
    from fissix.pgen2 import token
    from fissix.pygram import python_symbols as syms

    def helper_call(helper: str, func: str, args: list, prefix: str = ""):
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

    class FixOldDiv(fixer_base.BaseFix):
        """``a / b`` -> ``_py2.div(a, b)``; ``x /= y`` -> ``x = _py2.div(x, y)``."""

        BM_compatible = False
        PATTERN = "term< any+ > | expr_stmt< any '/=' any >"
        helper = HELPER

        def start_tree(self, tree, filename):
            super().start_tree(tree, filename)
            self.skip = "division" in getattr(tree, "future_features", ())

        def transform(self, node, results):
            if self.skip:
                return None
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

    class _Redirect(fixer_base.BaseFix):
        """``MODULE.NAME(...)`` -> ``_py2.<NEW>(...)`` for the names in TABLE."""

        BM_compatible = False
        MODULE = ""
        TABLE: Dict[str, str] = {}
        helper = HELPER

        def transform(self, node, results):
            head, first = node.children[0], node.children[1]
            attr = first.children[1]
            if attr.value not in self.TABLE:
                return None
            head.replace(Name(self.helper, prefix=head.prefix))
            attr.replace(Name(self.TABLE[attr.value]))
            return None

    class FixOsIo(_Redirect):
        """``os.write``/``os.read`` -> str-tolerant helpers."""

        PATTERN = "power< 'os' trailer< '.' ('write' | 'read') > trailer< '(' [any] ')' > any* >"
        TABLE = {"write": "os_write", "read": "os_read"}

    class FixSocket(_Redirect):
        """``socket.socket`` and friends -> str-tolerant sockets."""

        PATTERN = ("power< 'socket' trailer< '.' ('socket' | 'create_connection' "
                   "| 'fromfd' | 'socketpair') > trailer< '(' [any] ')' > any* >")
        TABLE = {"socket": "socket", "create_connection": "create_connection",
                 "fromfd": "fromfd", "socketpair": "socketpair"}

    class FixFileBuiltin(fixer_base.BaseFix):
        """``file(...)`` -> ``open(...)`` unless the script binds ``file``."""

        BM_compatible = False
        PATTERN = "power< name='file' trailer< '(' [any] ')' > any* >"

        def start_tree(self, tree, filename):
            super().start_tree(tree, filename)
            self.skip = False
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
                self.skip = True                  # a binding or other use
                return

        def transform(self, node, results):
            if self.skip:
                return None
            name = results["name"]
            name.replace(Name("open", prefix=name.prefix))
            return None

    return [FixOldDiv, FixOsIo, FixSocket, FixFileBuiltin]


#: fissix standard fixers we do not run, and why
EXCLUDED_FIXERS = {
    "fissix.fixes.fix_import": "would turn a script's sibling imports into "
                               "relative ones, which fail in __main__",
}


_TOOL_LOCK = threading.Lock()


@functools.lru_cache(maxsize=4)
def _tool(helper: str):
    """A RefactoringTool with the standard fixers and ours (built once:
    compiling the fixers' patterns is the slow part)."""
    from fissix import refactor

    ours = _fixers()

    class Tool(refactor.RefactoringTool):
        def get_fixers(self):
            pre, post = super().get_fixers()
            for cls in ours:
                fixer = cls(self.options, self.fixer_log)
                fixer.helper = helper
                (pre if fixer.order == "pre" else post).append(fixer)
            return pre, post

    names = [n for n in refactor.get_fixers_from_package("fissix.fixes")
             if n not in EXCLUDED_FIXERS]
    return Tool(names)


# =============================================================================
# Dialect detection
# =============================================================================

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


# =============================================================================
# Translation
# =============================================================================


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
        at = _first_statement_line(self.text)
        line = f"import {HELPER_MODULE} as {self.helper}  # added by run-legacy\n"
        return "".join(lines[:at - 1] + [line] + lines[at - 1:])

    def code(self) -> types.CodeType:
        """Compiled code, with line numbers of the original script."""
        try:
            tree = ast.parse(self.text, self.path)
        except SyntaxError as e:
            raise self._syntax_error(e) from None
        if self.line_map is not None:
            _remap_lines(tree, self.line_map, self.changed_lines)
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
        src = _source_line(self.source, line)
        return TranslationError(f"{what}: {type(e).__name__}: {e.msg}{src}",
                                source=self.path, line=line,
                                col=e.offset if line == e.lineno else None)


def _source_line(text: str, line: Optional[int]) -> str:
    lines = text.splitlines()
    if line and 1 <= line <= len(lines):
        return f"\n    {lines[line - 1].strip()}"
    return ""


def _first_statement_line(text: str) -> int:
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


def _line_map(old: str, new: str) -> Tuple[List[int], frozenset]:
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


def _remap_lines(tree: ast.AST, line_map: List[int], changed: frozenset) -> None:
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


def _expand_indent_tabs(text: str) -> str:
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


def _fissix_error(e: Exception, path: str, text: str) -> TranslationError:
    """A fissix parse/tokenize error as ``path:line:col: message``."""
    from fissix.pgen2 import token as ftoken
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
    return TranslationError(f"not valid Python 2: {detail}{_source_line(text, line)}",
                            source=path, line=line, col=col)


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
    src = text if text.endswith("\n") else text + "\n"
    try:
        tool = _tool(helper)
        with _TOOL_LOCK:                # a RefactoringTool is not re-entrant
            tree = tool.refactor_string(src, path)
    except Exception as e:  # fissix raises ParseError / TokenError / IndentationError
        if type(e).__module__.startswith("fissix") or isinstance(e, (SyntaxError,)):
            raise _fissix_error(e, path, text) from None
        raise
    new = str(tree)
    if not text.endswith("\n") and new.endswith("\n"):
        new = new[:-1]
    line_map, changed = _line_map(text, new)
    t = Translation(path, text, new, "2", reason, helper=helper,
                    line_map=line_map, changed_lines=changed)
    try:
        compile(new, path, "exec", dont_inherit=True, flags=ast.PyCF_ONLY_AST)
    except TabError:
        t.text = _expand_indent_tabs(new)
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


# =============================================================================
# Running as __main__
# =============================================================================


class LegacyModuleFinder(importlib.abc.MetaPathFinder):
    """Modules next to the script are translated as they are imported
    (a legacy script's helpers are Python 2 too).  Nothing is written."""

    def __init__(self, directory: str, dialect: str = "auto") -> None:
        self.directory = os.path.realpath(directory)
        self.dialect = dialect

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self.directory or real.startswith(self.directory + os.sep)

    def find_spec(self, fullname, path=None, target=None):
        tail = fullname.rpartition(".")[2]
        dirs = [self.directory] if path is None else [p for p in path if self._inside(p)]
        for d in dirs:
            pkg = os.path.join(d, tail, "__init__.py")
            mod = os.path.join(d, tail + ".py")
            for filename, is_pkg in ((pkg, True), (mod, False)):
                if os.path.isfile(filename):
                    loader = LegacySourceLoader(fullname, filename, self.dialect)
                    return importlib.util.spec_from_file_location(
                        fullname, filename, loader=loader,
                        submodule_search_locations=[os.path.dirname(filename)] if is_pkg else None)
        return None


class LegacySourceLoader(importlib.abc.Loader):
    def __init__(self, fullname: str, path: str, dialect: str) -> None:
        self.fullname = fullname
        self.path = path
        self.dialect = dialect

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        t = translate_file(self.path, dialect=self.dialect)
        if t.helper:
            module.__dict__[t.helper] = sys.modules[__name__]
        exec(t.code(), module.__dict__)

    def get_filename(self, fullname=None) -> str:
        return self.path

    def get_source(self, fullname=None) -> str:
        return read_script(self.path)


@dataclass
class _Saved:
    argv: List[str]
    path: List[str]
    main: Any
    meta_path: List[Any]
    streams: Tuple[Any, Any, Any]
    dont_write_bytecode: bool


def _install_aliases() -> None:
    """The ``xen.remus``/``xen.xend`` names, even without the .pth hook."""
    from .. import _xenalias
    _xenalias.install()
    from ..legacy import xend    # noqa: F401  (clear errors for absent xend modules)
    xend.install_missing_finder()


def _trim_traceback(tb, path: str):
    """Drop our own frames: the traceback starts in the script, and ends
    before the Python 2 helpers of this module (``_py2.div`` and friends)
    and the finder that refuses absent xend modules."""
    real = os.path.realpath(path)
    from ..legacy import xend
    plumbing = {os.path.realpath(__file__), os.path.realpath(xend.__file__)}
    t = tb
    while t is not None and os.path.realpath(t.tb_frame.f_code.co_filename) != real:
        t = t.tb_next
    start = t or tb
    last_other = None
    t = start
    while t is not None:
        if os.path.realpath(t.tb_frame.f_code.co_filename) not in plumbing:
            last_other = t
        t = t.tb_next
    if last_other is not None:
        last_other.tb_next = None
    return start


def _exit_status(exc: SystemExit, err: TextIO) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        err.write(f"{code}\n")
    except Exception:
        pass
    return 1


def run_main(t: Translation, argv: Sequence[str] = (), *,
             stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None,
             stdin: Optional[TextIO] = None, translate_siblings: bool = True) -> int:
    """Run a translated script as ``__main__`` with ``sys.argv = [path] +
    argv``; returns the exit status Python would give it (0, ``sys.exit``'s
    code, 1 after an uncaught exception with its traceback on stderr, 130
    after Ctrl-C)."""
    code = t.code()
    _install_aliases()
    saved = _Saved(list(sys.argv), list(sys.path), sys.modules.get("__main__"),
                   list(sys.meta_path), (sys.stdout, sys.stderr, sys.stdin),
                   sys.dont_write_bytecode)
    module = types.ModuleType("__main__")
    module.__dict__.update({"__file__": t.path, "__builtins__": builtins,
                            "__cached__": None, "__package__": None,
                            "__loader__": None, "__spec__": None})
    if t.helper:
        module.__dict__[t.helper] = sys.modules[__name__]
    script_dir = os.path.dirname(os.path.abspath(t.path))
    if stdout is not None:
        sys.stdout = stdout
    if stderr is not None:
        sys.stderr = stderr
    if stdin is not None:
        sys.stdin = stdin
    err = sys.stderr
    sys.argv = [t.path] + list(argv)
    sys.path.insert(0, script_dir)
    sys.modules["__main__"] = module
    sys.dont_write_bytecode = True
    if translate_siblings:
        finder = LegacyModuleFinder(script_dir, "auto" if t.dialect == "2" else "3")
        pos = next((i for i, f in enumerate(sys.meta_path)
                    if f is importlib.machinery.PathFinder), len(sys.meta_path))
        sys.meta_path.insert(pos, finder)
    try:
        exec(code, module.__dict__)
        return 0
    except SystemExit as e:
        return _exit_status(e, err)
    except KeyboardInterrupt as e:
        traceback.print_exception(type(e), e, _trim_traceback(e.__traceback__, t.path),
                                  file=err)
        return 130
    except BaseException as e:  # noqa: BLE001 - Python's own top level
        traceback.print_exception(type(e), e, _trim_traceback(e.__traceback__, t.path),
                                  file=err)
        return 1
    finally:
        try:
            sys.stdout.flush()
        except Exception:
            pass
        sys.argv = saved.argv
        sys.path[:] = saved.path
        if saved.main is not None:
            sys.modules["__main__"] = saved.main
        sys.meta_path[:] = [f for f in sys.meta_path
                            if not isinstance(f, LegacyModuleFinder)]
        for name in [n for n, m in list(sys.modules.items())
                     if isinstance(getattr(getattr(m, "__spec__", None), "loader", None),
                                   LegacySourceLoader)]:
            del sys.modules[name]       # the script's own modules go with it
        sys.stdout, sys.stderr, sys.stdin = saved.streams
        sys.dont_write_bytecode = saved.dont_write_bytecode


def run_file(path: str, argv: Sequence[str] = (), *, dialect: str = "auto",
             **kw) -> int:
    """Translate and run the script at ``path``."""
    return run_main(translate_file(path, dialect=dialect), argv, **kw)


# =============================================================================
# Commands legacy scripts run (xen.remus.util.runcmd)
# =============================================================================

#: xm subcommands xl accepts with the same arguments (xl was made as xm's
#: drop-in); others keep 'xm' and fail as they would on an xl host.
XM_TO_XL = frozenset({
    "destroy", "shutdown", "reboot", "pause", "unpause", "list", "info",
    "dmesg", "mem-set", "mem-max", "vcpu-set", "vcpu-pin", "vcpu-list",
    "console", "create", "save", "restore", "sysrq", "rename", "domid",
    "domname", "uptime", "block-list", "network-list"})
#: commands a simulated run never executes (they would touch the host's network)
SIM_NOOP = frozenset({"ifdown", "ifup"})


class LegacyCommands:
    """The ``util.runcmd`` runner for legacy scripts (legacy-api.md §1.4, §15).

    ``xm SUB ...`` becomes ``xl SUB ...`` for the subcommands in
    :data:`XM_TO_XL` (after an optional ``sudo``).  With ``sim=True``,
    ``xm|xl destroy DOM`` destroys the simulated guest and
    ``ifdown``/``ifup`` are not run (the legacy ``die()`` runs ``sudo
    ifdown eth2``); both are logged.  Everything else runs for real.
    """

    def __init__(self, *, sim: bool = False, run: Optional[Callable] = None,
                 destroy: Optional[Callable[[Any], None]] = None,
                 xl: Optional[str] = None) -> None:
        from .. import runner
        self.sim = sim
        self.run = run or runner.run
        self.destroy = destroy
        self.xl = xl
        self.log: List[List[str]] = []

    def _xl(self) -> str:
        if self.xl is None:
            from ..sources.xlcli import find_xl
            try:
                self.xl = find_xl()
            except errors.CompatError:
                self.xl = "xl"
        return self.xl

    def __call__(self, argv, *, cwd=None, **kw):
        from ..runner import Result
        args = list(argv)
        i = 1 if args[:1] == ["sudo"] else 0
        cmd = args[i] if i < len(args) else ""
        if cmd == "xm" and i + 1 < len(args) and args[i + 1] in XM_TO_XL:
            args[i] = self._xl()
            cmd = "xl"
            logger.info("run-legacy: %s -> %s", " ".join(argv), " ".join(args))
        if self.sim:
            sub = args[i + 1] if i + 1 < len(args) else ""
            if cmd in SIM_NOOP:
                logger.info("run-legacy --sim: not running %s", " ".join(argv))
                self.log.append(list(argv))
                return Result(list(argv), 0, "", "")
            if cmd in ("xl", "xm") or os.path.basename(cmd) == "xl":
                if sub == "destroy" and i + 2 < len(args):
                    (self.destroy or _sim_destroy)(args[i + 2])
                    self.log.append(list(argv))
                    return Result(list(argv), 0, "", "")
        self.log.append(args)
        return self.run(args, cwd=cwd, **kw)


def _sim_destroy(ref: Any) -> None:
    from ..sim import simxen
    from .. import sources
    domid = sources.open_domain(ref, "sim").domid
    simxen.destroy(int(domid))


# the helpers module is this module: keep a name for it
py2 = sys.modules[__name__]
