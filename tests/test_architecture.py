"""The package's shape: no import cycles, small modules, placement decided by the targets only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "radas_flows"
MAX_LINES = 420


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every package module ``name`` imports, at top level or inside functions."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    type_only = {  # `if TYPE_CHECKING:` imports never run
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges = {name: imports_of(name, path, known) for name, path in mods.items()}
    for name in known:  # importing a.b.c imports the packages a and a.b first
        for parent in (name.rpartition(".")[0],):
            if parent in edges[name]:
                edges[name].discard(parent)  # a module's own package: not a dependency edge
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    edges = graph()
    # Package __init__ modules that only re-export may import their children.
    for name in edges:
        edges[name] = {t for t in edges[name] if not t.startswith(name + ".")}
    assert cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_modules_stay_small() -> None:
    sizes = {name: len(p.read_text().splitlines()) for name, p in modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_only_the_targets_ask_where_a_run_goes() -> None:
    # run_with is parsed in inputs.rules; everything else asks the target, never the kind.
    placement = re.compile(r"is_local\b|kind\s*==\s*[\"'](local|cluster)[\"']|\.target\.cluster\b")
    offenders = [
        f"{name}:{number}: {line.strip()}"
        for name, path in modules().items()
        if not name.startswith("radas_flows.targets") and name != "radas_flows.inputs.rules"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if placement.search(line)
    ]
    assert offenders == []
