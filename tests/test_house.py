"""The house rules, checked with `ast` on the package itself (docs/design.md, "Rooms"): function size and
parameter counts, and imports that only run downwards."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "swapjax"
MAX_LINES, MAX_PARAMS = 80, 10
TRAIN_MAX_LINES, TRAIN_MAX_PARAMS = 60, 8
# Rooms from the ground up: a module may import its own room or a lower one. The ground floor's modules import
# nothing of swapjax but `errors`, which imports nothing of swapjax at all.
GROUND = ("errors", "atomic", "entry", "cli_parser", "python_file", "compile_options")
RANK = {**{name: 0 for name in GROUND}, "parallel": 1, "flow": 1, "loss_maps": 1, "models": 2, "losses": 3,
        "config": 4, "convert": 5, "encoding": 6, "data": 6, "metrics": 7, "train": 8, "sample": 8, "aot": 9,
        "scaling": 9, "evaluate": 10, "demo": 11}


def _modules() -> list[tuple[pathlib.Path, ast.Module]]:
    return [(f, ast.parse(f.read_text())) for f in sorted(PACKAGE.rglob("*.py"))]


def _room(path: pathlib.Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
    return n - (1 if a.args and a.args[0].arg in ("self", "cls") else 0)


def _imports(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "swapjax":  # from swapjax import flow
            found += [(node.lineno, f"swapjax.{a.name}") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "swapjax":
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "swapjax"]
    return found


def _size_violations(modules, max_lines: int, max_params: int, rooms: tuple[str, ...] = ()) -> list[str]:
    bad = []
    for path, tree in modules:
        if rooms and _room(path) not in rooms:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > max_lines or _params(node) > max_params:
                    bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {lines} lines, "
                               f"{_params(node)} parameters")
    return bad


def _import_violations(modules) -> list[str]:
    bad = []
    for path, tree in modules:
        me = _room(path)
        for line, module in _imports(tree):
            parts = module.split(".")
            if len(parts) < 2:
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports the package root {module}")
                continue
            other = parts[1]
            if me == "errors" or (me in GROUND and other != "errors"):
                bad.append(f"{path.relative_to(PACKAGE)}:{line} ground floor {me} imports {module}")
            elif me in RANK and other in RANK and RANK[other] > RANK[me]:
                if module.endswith("config") and module != "swapjax.config":
                    continue  # a section's config dataclass is a leaf any room may read (house_metrics agrees)
                bad.append(f"{path.relative_to(PACKAGE)}:{line} {me} imports higher room {module}")
    return bad


def test_every_room_is_ranked():
    assert sorted({_room(p) for p, _ in _modules()} - set(RANK) - {"__init__"}) == []


def test_no_function_over_80_lines_or_10_parameters():
    assert _size_violations(_modules(), MAX_LINES, MAX_PARAMS) == []


def test_train_functions_are_short():
    assert _size_violations(_modules(), TRAIN_MAX_LINES, TRAIN_MAX_PARAMS, rooms=("train",)) == []


def test_imports_run_downwards():
    assert _import_violations(_modules()) == []


@pytest.mark.parametrize("source, expect", [
    ("def f(a, b, c, d, e, f, g, h, i, j, k):\n    pass\n", "11 parameters"),
    ("def f():\n" + "    x = 1\n" * 80, "81 lines"),
])
def test_size_check_catches_a_breach(tmp_path, source, expect):
    path = PACKAGE / "models" / "x.py"  # a path inside the package, never written
    assert any(expect in v for v in _size_violations([(path, ast.parse(source))], MAX_LINES, MAX_PARAMS))


@pytest.mark.parametrize("room, source", [
    ("atomic.py", "from swapjax.data.validate import InputError\n"),
    ("errors.py", "import swapjax.atomic\n"),
    ("models/x.py", "from swapjax.train import loop\n"),
    ("metrics.py", "from swapjax.sample.windows import plan_windows\n"),
    ("data/x.py", "from swapjax import train\n"),
])
def test_import_check_catches_an_upward_import(room, source):
    assert _import_violations([(PACKAGE / room, ast.parse(source))])
