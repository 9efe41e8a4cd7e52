"""``data/`` has no import circle: no module of it reaches itself through the imports of other ``data`` modules.

Every import statement counts, also those inside functions (the circle between ``data.folders`` and
``data.tables`` was one), so moving an import into a function does not hide a circle from this test.
"""
import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "data"


def module_names(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """``{dotted module name: file}`` of every ``.py`` file of ``package`` (``__init__`` as the package)."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imported(node: ast.AST, module: str, is_package: bool, names: dict) -> list[str]:
    """The dotted names one import statement of ``module`` asks for: ``from X import y`` is ``X.y`` where
    that is a module of the package, else ``X`` (y is then a name defined in X)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        here = module.split(".") if is_package else module.split(".")[:-1]
        here = here[:len(here) - (node.level - 1)]
        base = ".".join(here + ([base] if base else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]


def import_graph(names: dict[str, Path]) -> dict[str, set[str]]:
    """``{module: the modules of the package it imports}``; an import of ``data.x.y`` is an edge to
    ``data.x.y`` (its longest prefix that is a module), not to its parent packages."""
    graph = {}
    for module, path in names.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for name in _imported(node, module, is_package, names):
                parts = name.split(".")
                hit = next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in names),
                           None)
                if hit is not None and hit != module:
                    edges.add(hit)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle ``[a, b, ..., a]`` of ``graph``, or None (depth-first search, grey / black marks)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "black"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself: a circle closed by an import inside a function, and one by a relative import."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.errors import E\n\ndef f():\n    from pkg.b import g\n    return g\n")
    (pkg / "b.py").write_text("import os\nfrom pkg.a import f\n")
    (pkg / "errors.py").write_text("class E(ValueError):\n    pass\n")
    names = module_names(tmp_path, "pkg")
    assert find_cycle(import_graph(names)) == ["pkg.a", "pkg.b", "pkg.a"]
    (pkg / "b.py").write_text("from .errors import E\n")
    assert find_cycle(import_graph(names)) is None
    (pkg / "errors.py").write_text("from . import a\n")  # relative: pkg.errors -> pkg.a -> pkg.b -> pkg.errors
    assert find_cycle(import_graph(names)) == ["pkg.a", "pkg.b", "pkg.errors", "pkg.a"]
    (pkg / "errors.py").write_text("")
    (pkg / "__init__.py").write_text("from pkg.a import f\nNAME = 1\n")
    (pkg / "b.py").write_text("from pkg import errors\n")  # a submodule: an edge to pkg.errors, not to pkg
    assert find_cycle(import_graph(names)) is None
    (pkg / "b.py").write_text("from pkg import NAME\n")  # a name of pkg/__init__.py: pkg -> pkg.a -> pkg.b -> pkg
    assert find_cycle(import_graph(names)) == ["pkg", "pkg.a", "pkg.b", "pkg"]


def test_data_has_no_import_cycle():
    names = module_names()
    assert {"data", "data.folders", "data.tables", "data.errors", "data.synthetic"} <= set(names)
    graph = import_graph(names)
    assert "data.errors" in graph["data.tables"] and "data.tables" in graph["data.folders"]
    cycle = find_cycle(graph)
    assert cycle is None, "import circle in data/: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(module_names()))
def test_every_data_module_imports(module):
    importlib.import_module(module)
