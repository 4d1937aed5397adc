"""Code tier: the library's shape: layers that import only downwards, no import cycles, the data stages free
of TensorFlow, and ARCHITECTURE.md naming every module and only what exists."""

from __future__ import annotations

import ast
import re

from conftest import ROOT

SRC = ROOT / "src"


def module_name(path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Coronet module -> the coronet modules it imports, at the top or inside functions alike."""
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
    assert "coronet.imaging.decode" in graph and "coronet.serving.predict" in graph  # the walk found the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_top_level_holds_at_most_eight_modules():
    """13 flat modules held a third of the library; each part that holds several has its folder."""
    top = sorted(p.stem for p in (SRC / "coronet").glob("*.py") if p.stem != "__init__")
    assert 0 < len(top) <= 8, top


# The pipeline's parts, bottom to top: a part imports only from its own or lower ones (the foundation is
# the package's top-level modules and its imaging/ and tracking/ folders).
LAYERS = ["foundation", "data", "model", "evaluation", "serving", "experiments"]


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 2 and parts[1] in LAYERS else 0


def test_each_part_imports_only_from_itself_or_below():
    """So evaluation never imports serving, the data stages never import the model, and so on."""
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                    if m != "coronet.cli" and layer(t) > layer(m))
    assert not upward, upward


def test_the_layer_check_finds_an_upward_import():
    assert layer("coronet.evaluation.steps") < layer("coronet.serving.predict")
    assert layer("coronet.params") == 0 and layer("coronet.data.sources.covid") == 1


def tensorflow_imports(module: str, graph: dict[str, set[str]]) -> list[str]:
    """The chain by which ``module`` (through coronet modules it imports) reaches TensorFlow or Keras."""
    seen, todo = set(), [(module, [module])]
    while todo:
        name, chain = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = SRC / (name.replace(".", "/") + ".py")
        path = path if path.is_file() else SRC / name.replace(".", "/") / "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            if any(n.split(".")[0] in {"tensorflow", "keras"} for n in names):
                return chain
        todo += [(t, [*chain, t]) for t in graph[name]]
    return []


def test_the_data_stages_never_import_tensorflow():
    graph = import_graph()
    data = [m for m in graph if m.startswith("coronet.data")]
    assert len(data) > 8
    reaching = {m: tensorflow_imports(m, graph) for m in data}
    assert not any(reaching.values()), {m: " -> ".join(c) for m, c in reaching.items() if c}
    # and at run time: importing all of them (and the sources the registry finds) loads no TensorFlow
    import subprocess
    import sys

    script = ("import sys, importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in data)
              + "from coronet.data import sources; sources.registered()\n"
              + "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_tensorflow_finder_finds_tensorflow():
    graph = import_graph()
    assert tensorflow_imports("coronet.model.fit", graph)  # the check can fail: training does import it


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_architecture_names_every_module_and_only_what_exists():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`((?:src|stages|tests|benchmarks)/[\w/.-]+)`", text))
    modules = set(re.findall(r"`(coronet(?:\.\w+)+)`", text))
    assert len(named) > 10 and len(modules) > 30
    missing = sorted(p for p in named if not (ROOT / p).exists())
    missing += sorted(m for m in modules if not (SRC / (m.replace(".", "/") + ".py")).is_file()
                      and not (SRC / m.replace(".", "/") / "__init__.py").is_file())
    assert not missing, f"ARCHITECTURE.md names {missing}, which do not exist"
    # A source's module need not be named: the registry finds it (adding a source is its module and params).
    unnamed = sorted(m for m in import_graph() if m != "coronet" and m not in modules
                     and not (m.startswith("coronet.data.sources.") and m != "coronet.data.sources.base"))
    assert not unnamed, f"ARCHITECTURE.md does not name {unnamed}"
    stages = {p.stem for p in (ROOT / "stages").glob("*.py")}
    assert all(f"stages/{s}.py" in text for s in stages), "every stage script is described"
