"""The dependency rule of docs/design.md, checked on the package's own imports.

Every import counts: module level and inside functions (a late import is
still a dependency).  The rules:

* no import cycle anywhere;
* the layers stack as core < ``legacy`` < ``py2`` < ``cli``: a module may
  import its own layer and those below, never one above (so the engine,
  the formats and the devices never import the facade, the Python 2 runner
  or the CLIs);
* no module over 600 lines (a longer one is two modules);
* at most six modules loose at the top of the package.
"""
from __future__ import annotations

import ast
import pathlib
from typing import Dict, List, Set

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PKG = "xen_remus_compat"
MAX_LINES = 600
MAX_LOOSE = 6
#: layer rank by first package component below the package; everything else is core (0)
LAYERS = {"legacy": 1, "py2": 2, "cli": 3}


def _modules() -> Dict[str, pathlib.Path]:
    out = {}
    for path in sorted((ROOT / PKG).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, path: pathlib.Path, node: ast.AST) -> List[str]:
    """The package modules an import statement depends on."""
    targets = []
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".")
            if path.name != "__init__.py":
                base = base[:-1]
            base = base[:len(base) - (node.level - 1)]
            frm = ".".join(base + ([node.module] if node.module else []))
        else:
            frm = node.module or ""
        for alias in node.names:
            sub = f"{frm}.{alias.name}"
            targets.append(sub if sub in MODULES else frm)
    found = []
    for t in targets:
        if not (t == PKG or t.startswith(PKG + ".")):
            continue
        while t not in MODULES and "." in t:
            t = t.rsplit(".", 1)[0]
        found.append(t)
    return found


def _graph() -> Dict[str, Set[str]]:
    graph = {}
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(d for d in _resolve(mod, path, node) if d != mod)
        graph[mod] = deps
    return graph


GRAPH = _graph()


def _layer(mod: str) -> int:
    parts = mod.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def test_the_walk_sees_the_package():
    # the rules below would pass vacuously on an empty walk
    assert len(MODULES) > 50
    # Saver.start imports the engine inside the function: late imports count
    assert f"{PKG}.remus.engine" in GRAPH[f"{PKG}.legacy.save"]
    assert _layer(f"{PKG}.cli.remus") > _layer(f"{PKG}.py2.run") > \
        _layer(f"{PKG}.legacy.vm") > _layer(f"{PKG}.remus.engine")


def test_no_import_cycle():
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles = []
    counter = [0]

    def strongconnect(v: str) -> None:     # Tarjan, iterative enough for this size
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            strongconnect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_layers_only_import_downwards():
    bad = sorted((m, d) for m, deps in GRAPH.items() for d in deps
                 if _layer(d) > _layer(m))
    assert not bad, "imports of a higher layer (legacy < py2 < cli): " + ", ".join(
        f"{m} -> {d}" for m, d in bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)}: {lines} lines; split it"


def test_few_loose_modules():
    loose = sorted(p.name for p in (ROOT / PKG).glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= MAX_LOOSE, loose
