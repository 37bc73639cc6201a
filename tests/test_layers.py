"""The engine's modules form layers without an import cycle:

    networks (unet, mlp, embedding) → parameterisation (models) → checkpoints → serving

Each layer may import the ones to its left, never one to its right. The app's modules (space/) have no import cycle
either; a tab (space/tabs/<tab>, a module or a small package) imports only the shared modules, never another tab nor
``space.ui``; and ``engine`` never imports ``space``. Imports are read from the source with ``ast``
(at module level and inside functions; ``from .x``, ``from . import x``, ``from ..x`` in a subpackage, ``import
engine.x``, ``from engine import x``), so an import hidden in a function to dodge a cycle counts too."""
import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"
SPACE = ENGINE.parent / "space"
NETWORKS = {"unet", "mlp", "embedding"}
LAYERS = [NETWORKS, {"models"}, {"checkpoints"}, {"serving"}]


def module_name(path: Path, root: Path = ENGINE) -> str:
    """The dotted name below the package: engine/models.py → "models", engine/report/__init__.py → "report"."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_imports(source: str, module: str, is_package: bool, known: set[str], top: str = "engine") -> set[str]:
    """The modules of package ``top`` (dotted names below it, out of ``known``) that ``source`` imports; ``module``
    is its own dotted name ("" for the package's __init__.py) and ``is_package`` whether it is a package's
    __init__.py."""
    own = module.split(".") if module else []
    package = own if is_package else own[:-1]

    def resolve(parts: list[str], name: str | None) -> str | None:
        dotted = ".".join(parts + ([name] if name else []))
        return dotted if dotted in known else None

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == top:
                    found.add(resolve(parts[1:], None))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.level - 1 <= len(package), f"{module}: {ast.unparse(node)} leaves the {top} package"
                target = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module.split(".")[0] == top:
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # a name may be a submodule (from . import x) or a name in the module
                found.add(resolve(target, alias.name) or resolve(target, None))
    return found - {None, module}


def import_graph(root: Path = ENGINE) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    known = {module_name(p, root) for p in paths}
    return {module_name(p, root): engine_imports(p.read_text(), module_name(p, root), p.stem == "__init__", known,
                                                 root.name) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or None (depth-first search, marking the modules on the current path)."""
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
    known = {"", "checkpoints", "models", "serving", "unet", "mlp", "embedding", "report", "report.tables"}
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
    assert engine_imports(source, "cli", False, known) == {"checkpoints", "models", "serving", "unet", "mlp",
                                                           "embedding", ""}
    in_subpackage = "from .. import checkpoints\nfrom ..models import EpsModel\nfrom . import tables\nfrom .tables import x\n"
    assert engine_imports(in_subpackage, "report.figures", False, known) == {"checkpoints", "models", "report.tables"}
    assert engine_imports("from . import tables\nfrom .. import serving\n", "report", True, known) == {
        "report.tables", "serving"}


def test_find_cycle_names_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_engine_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(f"engine.{m}" if m else "engine" for m in cycle)


@pytest.mark.parametrize("layer", range(len(LAYERS) - 1))
def test_a_layer_never_imports_a_layer_above_it(layer):
    graph = import_graph()
    above = set().union(*LAYERS[layer + 1:])
    for module in sorted(LAYERS[layer]):
        assert module in graph, f"engine/{module}.py is missing"
        wrong = {m.split(".")[0] for m in graph[module]} & above
        assert not wrong, f"engine/{module}.py imports {', '.join(sorted(wrong))}, a layer above it"


def test_only_the_serving_layer_knows_about_compiling_and_memory_formats():
    for path in sorted(ENGINE.rglob("*.py")):
        if path != ENGINE / "serving.py":
            text = path.read_text()
            for word in ("torch.compile", "channels_last", "BackgroundCompiled"):
                assert word not in text, f"{path.relative_to(ENGINE.parent)} mentions {word}: that is engine/serving.py's"


def tab_of(module: str) -> str | None:
    """The tab a space module belongs to ("tabs.edit.endpoint" → "edit"), or None for a shared module."""
    parts = module.split(".")
    return parts[1] if parts[0] == "tabs" and len(parts) > 1 else None


def test_the_parser_sees_the_apps_imports():
    known = {"", "ui", "links", "tabs", "tabs.generate", "tabs.edit", "tabs.edit.endpoint"}
    source = "from ...links import Link\nfrom .endpoint import Edit\n\ndef f():\n    from ... import ui\n"
    assert engine_imports(source, "tabs.edit", True, known, "space") == {"links", "tabs.edit.endpoint", "ui"}
    assert engine_imports("import space.tabs.generate\n", "ui", False, known, "space") == {"tabs.generate"}


def test_the_app_has_no_import_cycle():
    cycle = find_cycle(import_graph(SPACE))
    assert cycle is None, "import cycle: " + " → ".join(f"space.{m}" if m else "space" for m in cycle)


def test_a_tab_imports_no_other_tab_nor_the_page():
    graph = import_graph(SPACE)
    tabs = {tab_of(m) for m in graph} - {None}
    assert {"generate", "compare", "forward", "field", "edit", "train", "likelihood", "about"} <= tabs
    for module, imported in sorted(graph.items()):
        if tab_of(module) is None:
            continue
        for other in imported:
            assert other != "ui", f"space/{module} imports space.ui: the page assembles the tabs, not the reverse"
            assert tab_of(other) in (None, tab_of(module)), f"space.{module} imports space.{other}, another tab"


def test_the_engine_never_imports_the_app():
    for path in sorted(ENGINE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            assert not any(n.split(".")[0] == "space" for n in names), \
                f"{path.relative_to(ENGINE.parent)} imports space: {ast.unparse(node)}"
