"""Code tier: the library's shape: no import cycles, and ARCHITECTURE.md names only what exists."""

from __future__ import annotations

import ast
import re

from conftest import ROOT

SRC = ROOT / "src"


def module_name(path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """coronet module -> the coronet modules it imports, at the top or inside functions alike."""
    modules = {module_name(p): p for p in (SRC / "coronet").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name and t != "coronet"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*trail, nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_cycles_in_the_library():
    graph = import_graph()
    assert "coronet.images" in graph and "coronet.predict" in graph  # the walk found the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_architecture_names_only_modules_and_files_that_exist():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`((?:src|stages|tests|benchmarks)/[\w/.-]+)`", text))
    modules = set(re.findall(r"`coronet\.(\w+)`", text))
    assert len(named) > 10 and len(modules) > 20
    missing = sorted(p for p in named if not (ROOT / p).exists())
    missing += sorted(f"coronet.{m}" for m in modules if not (SRC / "coronet" / f"{m}.py").is_file()
                      and not (SRC / "coronet" / m / "__init__.py").is_file())
    assert not missing, f"ARCHITECTURE.md names {missing}, which do not exist"
    stages = {p.stem for p in (ROOT / "stages").glob("*.py")}
    assert all(f"stages/{s}.py" in text for s in stages), "every stage script is described"
