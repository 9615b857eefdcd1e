"""Import structure of ``src/unetkit``, read with ``ast`` (nothing is imported or run).

Layers point one way: no two folders import each other, no modules import each other in a
circle (imports inside functions count too), ``inference/`` never reaches into ``training/`` and
``models/`` never into the data, training or inference code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def module_files(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name → file, for every module of the package (``pkg/__init__.py`` is ``pkg``)."""
    out = {}
    for path in sorted((src / "unetkit").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module → the unetkit modules it imports, anywhere in the file (``from pkg import sub`` names ``pkg.sub``)."""
    files = module_files(src)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                base = base[: len(base) - node.level + 1] if node.level else []
                stem = ".".join(base + ([node.module] if node.module else []))
                targets = [
                    f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names
                ]
            else:
                continue
            for target in targets:
                while (
                    target and target not in files
                ):  # `import unetkit.io.readers.x` → the deepest module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def folder(module: str) -> str | None:
    """The sub-package (``unetkit.inference.large`` → ``inference``); ``None`` for top-level modules."""
    parts = module.split(".")
    return (
        parts[1]
        if len(parts) > 2 or (len(parts) == 2 and (SRC / "unetkit" / parts[1]).is_dir())
        else None
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted.

    A package and its own submodules alone (its ``__init__`` re-exports a submodule that reads a
    name back from the ``__init__``, as ``losses/compound.py`` reads the ``LOSSES`` registry) are
    not counted: the package is that one unit.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
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
            top = min(component, key=len)
            if any(not (m == top or m.startswith(top + ".")) for m in component):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def folder_edges(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (folder(m), folder(t))
        for m, ts in graph.items()
        for t in ts
        if folder(m) and folder(t) and folder(m) != folder(t)
    }


def imports_between(graph: dict[str, set[str]], source: str, targets: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{m} -> {t}"
        for m, ts in graph.items()
        if folder(m) == source
        for t in ts
        if folder(t) in targets
    )


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_relative_lazy_and_absolute_imports(graph):
    assert (
        "unetkit.io.memmap" in graph["unetkit.inference.large"]
    )  # from ..io.memmap import release_pages
    assert "unetkit.checkpoint" in graph["unetkit.inference.predictor"]  # inside a method
    assert (
        "unetkit.training.trainer" in graph["unetkit.training"]
    )  # from . import trainer, inside a function
    assert "unetkit" in graph["unetkit.checkpoint"]  # import unetkit


def test_no_two_folders_import_each_other(graph):
    edges = folder_edges(graph)
    assert sorted({tuple(sorted(e)) for e in edges if e[::-1] in edges}) == []


def test_no_module_import_cycle(graph):
    assert cycles(graph) == []


def test_inference_never_imports_training(graph):
    assert imports_between(graph, "inference", ("training",)) == []


def test_models_import_no_data_training_or_inference(graph):
    assert imports_between(graph, "models", ("data", "training", "inference")) == []


def test_the_checks_catch_a_cycle():
    graph = {"unetkit.a.x": {"unetkit.b.y"}, "unetkit.b.y": {"unetkit.a.x"}, "unetkit.c": set()}
    assert cycles(graph) == [["unetkit.a.x", "unetkit.b.y"]]
    assert (
        cycles({"unetkit.a": {"unetkit.a.x"}, "unetkit.a.x": {"unetkit.a"}}) == []
    )  # a package and its child
    assert folder_edges(
        {
            "unetkit.inference.x": {"unetkit.training.y"},
            "unetkit.training.y": {"unetkit.checkpoint"},
            "unetkit.checkpoint": set(),
        }
    ) == {("inference", "training")}


def test_checkpoint_names_resolve_to_their_one_home():
    import unetkit
    import unetkit.checkpoint
    import unetkit.training

    assert unetkit.load_checkpoint is unetkit.checkpoint.load_checkpoint
    for name in ("build_model", "load_checkpoint", "save_checkpoint"):
        assert getattr(unetkit.training, name) is getattr(unetkit.checkpoint, name)


def test_planning_sits_above_training_and_below_the_commands(graph):
    # the probe times the trainer's own step; nothing the plan configures may import the planner
    below = ("io", "data", "models", "losses", "training", "inference", "evaluation")
    assert [e for f in below for e in imports_between(graph, f, ("planning",))] == []
    assert imports_between(graph, "planning", ("training",))  # the arrow that exists points down
