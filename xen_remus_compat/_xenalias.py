"""Make the legacy import names work next to Debian's own ``xen`` package.

Legacy scripts do ``from xen.remus import vm`` and ``import
xen.lowlevel.checkpoint``.  Debian's xen-utils ships a *regular* ``xen``
package (``/usr/lib/xen-4.17/lib/python/xen/__init__.py``, with
``xen.lowlevel.xc``, ``xs`` and ``xen.migration``), so a second ``xen``
directory on ``sys.path`` would either shadow it or be shadowed by it.

Instead of a second ``xen`` package we install one meta-path finder (from a
``.pth`` file, so it is active in every interpreter of the environment):

* names we provide (``xen.remus``, ``xen.remus.*``, ``xen.lowlevel.checkpoint``,
  ``xen.lowlevel.netlink``, ``xen.xend`` shims) are *aliases* of our modules:
  ``sys.modules["xen.remus.vm"] is xen_remus_compat.legacy.vm``;
* the parents ``xen`` and ``xen.lowlevel`` come from Debian when its
  directory is on ``sys.path`` (whatever the order); only when nobody else
  provides them do we create them as namespace-like packages whose
  ``__path__`` is recomputed from ``sys.path`` on every lookup, so adding
  Debian's directory later still exposes ``xen.lowlevel.xc``.

See docs/decisions.md ("Imports under the legacy names").
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from typing import Dict, Optional

#: legacy name -> our module.  Packages map to packages.
ALIASES: Dict[str, str] = {
    "xen.remus": "xen_remus_compat.legacy",
    "xen.lowlevel.checkpoint": "xen_remus_compat.legacy.checkpoint",
    "xen.lowlevel.netlink": "xen_remus_compat.legacy.lowlevel_netlink",
    "xen.xend": "xen_remus_compat.legacy.xend",
}
#: parents we create only when nobody else provides them.
PARENTS = ("xen", "xen.lowlevel")


def _target(fullname: str) -> Optional[str]:
    if fullname in ALIASES:
        return ALIASES[fullname]
    for prefix, target in ALIASES.items():
        if fullname.startswith(prefix + "."):
            return target + fullname[len(prefix):]
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self._own_spec = getattr(module, "__spec__", None)
        return module

    def exec_module(self, module) -> None:
        # The import system stamped the alias spec on the shared module;
        # give it back its own so reload() and pickling keep working.
        if self._own_spec is not None:
            module.__spec__ = self._own_spec


class _DynamicPath:
    """``__path__`` of a parent we created: every ``<entry>/xen[/lowlevel]``
    directory currently on sys.path, recomputed on each use."""

    def __init__(self, parts) -> None:
        self.parts = parts

    def _dirs(self):
        out = []
        for entry in sys.path:
            d = os.path.join(entry or ".", *self.parts)
            if os.path.isdir(d):
                out.append(d)
        return out

    def __iter__(self):
        return iter(self._dirs())

    def __len__(self) -> int:
        return len(self._dirs())

    def __getitem__(self, i):
        return self._dirs()[i]

    def __contains__(self, item) -> bool:
        return item in self._dirs()

    def append(self, item) -> None:   # pkgutil.extend_path and friends
        pass

    def __repr__(self) -> str:
        return f"_DynamicPath({self._dirs()!r})"


class AliasFinder(importlib.abc.MetaPathFinder):
    """Front of sys.meta_path: our legacy names, nothing else."""

    def find_spec(self, fullname, path=None, target=None):
        tgt = _target(fullname)
        if tgt is None:
            return None
        try:
            real = importlib.util.find_spec(tgt)
        except (ImportError, ValueError):
            real = None
        if real is None:
            return None
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(tgt),
            is_package=real.submodule_search_locations is not None)


class _NamespaceLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        module.__path__ = _DynamicPath(module.__name__.split("."))


class ParentFinder(importlib.abc.MetaPathFinder):
    """End of sys.meta_path: ``xen`` / ``xen.lowlevel`` when nobody has them."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in PARENTS:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, _NamespaceLoader(),
                                              is_package=True)
        spec.submodule_search_locations = _DynamicPath(fullname.split("."))
        return spec


def install() -> None:
    """Idempotent: put the finders in place (called from the .pth file)."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
    if not any(isinstance(f, ParentFinder) for f in sys.meta_path):
        sys.meta_path.append(ParentFinder())


import importlib.util  # noqa: E402  (used above; kept explicit)

PTH_NAME = "xen_remus_compat-xen.pth"
PTH_LINE = "import xen_remus_compat._xenalias as _x; _x.install()\n"


def install_pth(site_dir: Optional[str] = None) -> str:
    """Write the .pth hook into ``site_dir`` (default: this environment's
    purelib).  ``pip install .`` installs it through setup.py; an editable
    install (``make test``'s venv) gets it from here."""
    import sysconfig
    site_dir = site_dir or sysconfig.get_paths()["purelib"]
    path = os.path.join(site_dir, PTH_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(PTH_LINE)
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    print(install_pth(sys.argv[1] if len(sys.argv) > 1 else None))
