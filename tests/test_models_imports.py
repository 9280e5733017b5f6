"""The import graph of ``fnc.models``: acyclic, and no module imports an ancestor package.

Read from the source with ``ast``, so imports inside functions count too: a cycle dodged by a
function-level import is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "fnc.models"
ROOT = Path(__file__).resolve().parents[1] / "fnc" / "models"
MODULES = sorted(ROOT.glob("*.py"))


def _module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def _imports(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (``from . import x`` gives ``pkg.x`` and ``pkg``)."""
    module = _module_name(path)
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from pkg import name`` may name a submodule.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    names = {_module_name(p) for p in MODULES}
    return {_module_name(p): {n for n in _imports(p) if n in names and n != PACKAGE} for p in MODULES}


def test_the_walk_sees_relative_and_function_level_imports(tmp_path):
    src = tmp_path / "_probe.py"
    src.write_text("from ._hub import download\nfrom . import fnc as f\n\ndef g():\n    from .. import models\n")
    found = _imports(src)
    assert {"fnc.models._hub", "fnc.models.fnc", "fnc", "fnc.models"} <= found


def test_fnc_models_import_graph_is_acyclic():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                pytest.fail("import cycle in fnc.models: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_module_imports_an_ancestor_package(path):
    parts = _module_name(path).split(".")
    ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}  # fnc.models._hub: fnc, fnc.models
    bad = sorted(_imports(path) & ancestors)
    assert not bad, f"{path.name} imports its ancestor package(s) {bad}; import the defining submodule instead"


def test_the_layers_are_as_documented():
    # The Hub I/O layer builds nothing; the builder knows no mixin; only the mixin knows the factory.
    graph = _graph()
    assert not graph[f"{PACKAGE}._pretrained"]
    assert graph[f"{PACKAGE}._hub"] <= {f"{PACKAGE}._loader", f"{PACKAGE}._pretrained"}
    for low in ("_pretrained", "_registry", "_loader", "_hub", "_builder", "_factory"):
        assert f"{PACKAGE}._mixin" not in graph[f"{PACKAGE}.{low}"], low
        assert f"{PACKAGE}._base" not in graph[f"{PACKAGE}.{low}"], low
    assert not any(f"{PACKAGE}.heads" in graph[f"{PACKAGE}.{m}"] for m in ("_loader", "_hub", "_builder"))
