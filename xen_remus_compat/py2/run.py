"""Run a legacy Python 2 remus script, unchanged, on Python 3: what
``xen-remus-compat run-legacy`` (cli/run_legacy.py) calls.

The script is translated in memory (:mod:`.translate`), then run as
``__main__`` with ``sys.argv`` set, its runtime support (:mod:`.runtime`)
in its globals as ``_py2``, under our modules at the legacy names (the
alias finder of ``_xenalias.py``, installed here too), and its sibling
modules translated as they are imported.  Nothing is written next to it.
Choices: docs/decisions.md, "Running legacy Python 2 scripts unchanged".
"""
from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import traceback
import types
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, TextIO, Tuple

from ..errors import TranslationError
from . import runtime
from .detect import detect
from .translate.core import Translation, read_script, translate, translate_file
from .xmxl import XM_TO_XL, LegacyCommands

#: what callers use (cli/run_legacy.py, the tests): one import for the runner
__all__ = ["detect", "translate", "translate_file", "Translation", "TranslationError",
           "run_main", "run_file", "LegacyCommands", "XM_TO_XL"]

#: our frames, cut from the end of a script's traceback: this package's modules
_PLUMBING_DIR = os.path.dirname(os.path.realpath(__file__)) + os.sep


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
            module.__dict__[t.helper] = runtime
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


def _is_plumbing(filename: str, xend_file: str) -> bool:
    real = os.path.realpath(filename)
    return real == xend_file or real.startswith(_PLUMBING_DIR)


def _trim_traceback(tb, path: str):
    """Drop our own frames: the traceback starts in the script, and ends
    before the Python 2 helpers of this package (``_py2.div`` and friends)
    and the finder that refuses absent xend modules."""
    real = os.path.realpath(path)
    from ..legacy import xend
    xend_file = os.path.realpath(xend.__file__)
    t = tb
    while t is not None and os.path.realpath(t.tb_frame.f_code.co_filename) != real:
        t = t.tb_next
    start = t or tb
    last_other = None
    t = start
    while t is not None:
        if not _is_plumbing(t.tb_frame.f_code.co_filename, xend_file):
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
        module.__dict__[t.helper] = runtime
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
