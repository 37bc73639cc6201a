"""The engine's modules form layers without an import cycle:

    networks (unet, mlp, embedding) → parameterisation (models) → checkpoints → serving

Each layer may import the ones to its left, never one to its right. Imports are read from the source with ``ast``
(at module level and inside functions; ``from .x``, ``from . import x``, ``import engine.x``, ``from engine import
x``), so an import hidden in a function to dodge a cycle counts too."""
import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"
NETWORKS = {"unet", "mlp", "embedding"}
LAYERS = [NETWORKS, {"models"}, {"checkpoints"}, {"serving"}]


def engine_imports(source: str, module: str) -> set[str]:
    """The engine modules (names under engine/, e.g. "models") that the source of engine/``module``.py imports."""
    package = module == "__init__"
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("engine.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module == "engine" or node.level == 1 and node.module is None:
                found |= {a.name for a in node.names}  # from engine import x / from . import x
            elif node.level == 0 and (node.module or "").startswith("engine."):
                found.add(node.module.split(".")[1])
            elif node.level == 1:
                found.add(node.module.split(".")[0])
            elif node.level > 1 and not package:
                raise AssertionError(f"engine/{module}.py imports from outside the package: {ast.unparse(node)}")
    return {m for m in found if (ENGINE / f"{m}.py").is_file() or (ENGINE / m).is_dir()} - {module}


def import_graph() -> dict[str, set[str]]:
    return {p.stem: engine_imports(p.read_text(), p.stem) for p in sorted(ENGINE.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or None (depth-first search, colouring modules on the current path)."""
    on_path: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in on_path:
            return on_path[on_path.index(node):] + [node]
        if node in done:
            return None
        on_path.append(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        on_path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_the_parser_sees_every_form_of_import():
    source = """
from . import checkpoints
from .models import EpsModel
import engine.serving as served
from engine import unet
from engine.mlp import MLPConfig
import torch

def later():
    from .embedding import noise_level_embedding
    from . import not_a_module
"""
    assert engine_imports(source, "cli") == {"checkpoints", "models", "serving", "unet", "mlp", "embedding"}


def test_find_cycle_names_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_engine_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(f"engine/{m}.py" for m in cycle)


@pytest.mark.parametrize("layer", range(len(LAYERS) - 1))
def test_a_layer_never_imports_a_layer_above_it(layer):
    graph = import_graph()
    above = set().union(*LAYERS[layer + 1:])
    for module in sorted(LAYERS[layer]):
        assert module in graph, f"engine/{module}.py is missing"
        wrong = graph[module] & above
        assert not wrong, f"engine/{module}.py imports {', '.join(sorted(wrong))}, a layer above it"


def test_only_the_serving_layer_knows_about_compiling_and_memory_formats():
    for path in sorted(ENGINE.glob("*.py")):
        if path.stem != "serving":
            text = path.read_text()
            for word in ("torch.compile", "channels_last", "BackgroundCompiled"):
                assert word not in text, f"engine/{path.name} mentions {word}: that belongs to engine/serving.py"
