"""Packages depend one way: no import cycle between ofakit's packages, lazy imports inside functions included."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import ofakit

ROOT = Path(ofakit.__file__).parent


def _package(module: str) -> str:
    """'ofakit.latency.table' -> 'latency'; 'ofakit.arch' -> 'arch' (a top-level module is its own package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ofakit"


def import_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> ['file:line', ...] for every `import ofakit.x` / `from ofakit.x import`."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        src = _package(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.startswith("ofakit.") and _package(name) != src:
                    graph[src][_package(name)].append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_packages():
    graph = import_graph()
    found = cycles(graph)
    detail = [f"{a} -> {b}: {', '.join(graph[a][b][:3])}" for c in found for a in c for b in c if b in graph[a]]
    assert not found, "import cycles between packages:\n" + "\n".join(detail)


def test_the_pipeline_order_holds_for_the_stages():
    """latency measures and estimates, predict learns from it, search chooses: never the other way round."""
    graph = import_graph()
    for stage, later in (("space", ("supernet", "train", "latency", "predict", "search", "export", "cli")),
                         ("latency", ("predict", "search", "export", "cli", "train")),
                         ("predict", ("search", "export", "cli")),
                         ("search", ("export", "cli"))):
        wrong = {b: graph[stage][b] for b in later if b in graph.get(stage, {})}
        assert not wrong, f"{stage} imports later stages: {wrong}"


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b": ["x"]}, "b": {"a": ["y"]}, "c": {"a": ["z"]}}) == [["a", "b"]]
    assert cycles({"a": {"b": ["x"]}, "b": {}}) == []
