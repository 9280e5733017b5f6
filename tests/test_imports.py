"""The package's import graph: no module imports an ancestor package, no cycles, nothing imports the CLI.

Read from the source with ``ast`` (function-level imports included), so a cycle that only closes
when some function runs is caught as well.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "fnc"


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The fnc modules ``name`` imports anywhere in its source (``from a import b`` counts a.b if a module)."""
    path, is_package = MODULES[name]
    package = name if is_package else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {t for t in targets if t in MODULES and t != name}
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles(nodes: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in nodes:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_an_ancestor_package():
    # Importing a package's __init__ from inside it is what closes cycles through re-exports.
    bad = sorted((name, t) for name, targets in GRAPH.items() for t in targets if name.startswith(t + "."))
    assert not bad, bad


def test_subpackages_form_a_dag_and_nothing_imports_the_cli():
    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    edges: dict[str, set[str]] = defaultdict(set)
    for name, targets in GRAPH.items():
        if name == "fnc":
            continue
        for t in targets:
            if top(t) != top(name):
                edges[top(name)].add(top(t))
    assert not _cycles(set(edges) | {t for ts in edges.values() for t in ts}, edges)
    assert not [n for n, ts in edges.items() if "fnc.cli" in ts]
    # The leaves import nothing of fnc but shared constants.
    for leaf in ("fnc.data", "fnc.losses", "fnc.optim", "fnc.rerank"):
        assert edges.get(leaf, set()) <= {"fnc.data"}, (leaf, edges[leaf])
    assert GRAPH["fnc.evaluation.rank"] == set()


def test_no_module_cycles():
    assert not _cycles(set(MODULES), GRAPH)


def test_the_cycle_finder_can_fail():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(set(edges), edges) == [["a", "b", "c"]]
    assert _cycles({"a", "b"}, {"a": {"b"}}) == []
