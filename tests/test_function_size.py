"""No function in the repository is longer than MAX_LINES: a function that long does several things, and each
should have a name. Every .py in engine/, space/, bench/, tests/ and app.py is read with ``ast``; a function
(``def`` or ``async def``, methods and nested functions included) is measured from its ``def`` line to the last
line of its body, decorators left out."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("engine", "space", "bench", "tests", "app.py")
MAX_LINES = 80


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """(dotted name, first line, length) of each function in ``source`` longer than ``limit`` lines."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}."
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = child.end_lineno - child.lineno + 1
                if length > limit:
                    found.append((name[:-1], child.lineno, length))
            visit(child, name)

    visit(ast.parse(source), "")
    return found


def python_files() -> list[Path]:
    paths = []
    for name in SOURCES:
        path = ROOT / name
        paths += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return paths


def test_the_measure_counts_from_def_to_the_end_of_the_body_without_decorators():
    body = "\n".join(f"    x{i} = {i}" for i in range(79))
    fits = f"@decorator\n@another(1)\ndef f():\n{body}\n"  # def + 79 lines = 80
    assert long_functions(fits) == []
    deeper = body.replace("    ", "            ")
    over = f"class C:\n    async def g(self):\n        def inner():\n{deeper}\n        return 1\n"
    assert long_functions(over) == [("C.g", 2, 82)]  # inner: its def + 79 lines, 80
    assert long_functions(over, limit=79) == [("C.g", 2, 82), ("C.g.inner", 3, 80)]


def test_no_function_is_longer_than_80_lines():
    files = python_files()
    assert len(files) > 50 and ROOT / "app.py" in files
    too_long = [f"{path.relative_to(ROOT)}:{line} {name} ({length} lines)"
                for path in files for name, line, length in long_functions(path.read_text())]
    assert not too_long, f"functions over {MAX_LINES} lines (split them into named steps):\n" + "\n".join(too_long)
