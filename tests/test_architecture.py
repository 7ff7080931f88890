"""The house rules of the package, read from its source (docs/architecture.md explains them).

Every import between ruralcov's modules — at the top of a file or inside a function — is parsed
and held against the layers below. A module imports only from its own layer or lower ones,
so data flows one way and there is no import circle; no module takes another's private name;
no function is longer than 80 lines or nests deeper than 4 blocks (numba kernels excepted).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "coverage" / "ruralcov"

#: Layers, bottom to top. A subpackage is one entry (its modules share the layer).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "schema", "presets", "config", "template", "units", "_kernels", "xlsxrows",
     "memory"),
    ("io", "postgis", "crs", "sampling", "periods", "checks", "validate", "join", "classify",
     "aggregate", "areas"),
    ("loaders", "capability", "ookla", "corrections", "stream", "distributed"),
    ("measure", "cells", "trends", "pipeline"),
    ("report", "maps", "runfolder", "outdir"),
    ("audit", "diff", "verify", "planner", "plan", "demo", "national"),
    ("cli",),
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
#: The package's front door imports the entry points lazily (PEP 562), from any layer.
FRONT = "__init__"
#: Kernels compiled by numba are written as flat loops on purpose.
KERNEL_FILES = ("_kernels.py",)
MAX_LINES = 80
MAX_DEPTH = 4


def _modules() -> dict[str, Path]:
    """Dotted name below ``ruralcov`` -> file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts)] = path
    return out


def _unit(module: str) -> str:
    """The layer entry a module belongs to: its top-level name (``stream.driver`` -> stream)."""
    return module.split(".")[0]


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported ruralcov module, names taken from it, line) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ruralcov."):
                    found.append((alias.name[len("ruralcov."):], [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and (node.module == "ruralcov" or node.module.startswith("ruralcov.")):
                target = node.module[len("ruralcov."):] if node.module != "ruralcov" else ""
            else:
                continue
            names = [a.name for a in node.names]
            if target == "":  # from ruralcov import a, b: each is a module of the package
                found += [(name, [], node.lineno) for name in names if not name.startswith("__")]
            else:
                found.append((target, names, node.lineno))
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {t for t, _, _ in _imports(m, p) if t in mods or t.split(".")[0] in LAYER}
            for m, p in mods.items()}


def test_every_module_has_a_layer():
    missing = sorted({_unit(m) for m in _modules()} - set(LAYER) - {FRONT})
    assert not missing, f"modules without a layer in LAYERS: {missing}"


def test_no_module_imports_one_above_it():
    upward = []
    for module, path in _modules().items():
        unit = _unit(module)
        if unit == FRONT:
            continue
        for target, _, line in _imports(module, path):
            if LAYER.get(_unit(target), -1) > LAYER[unit]:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_private_name_is_taken_from_another_module():
    taken = []
    for module, path in _modules().items():
        for target, names, line in _imports(module, path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target.split(".")[-1] != "_kernels":
                taken.append(f"{path.relative_to(PACKAGE)}:{line} takes {private} from {target}")
            if target.split(".")[-1].startswith("_") and target not in ("_kernels", "__init__"):
                taken.append(f"{path.relative_to(PACKAGE)}:{line} imports private {target}")
    assert not taken, "private names used across modules:\n" + "\n".join(taken)


def _depth(node: ast.AST, level: int = 0) -> int:
    blocks = (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.AsyncFor, ast.AsyncWith,
              ast.Match)
    deepest = level
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue  # measured on their own
        # an elif is the same level as its if
        inner = level + 1 if isinstance(child, blocks) and not _is_elif(node, child) else level
        deepest = max(deepest, _depth(child, inner))
    return deepest


def _is_elif(parent: ast.AST, child: ast.AST) -> bool:
    return (isinstance(parent, ast.If) and isinstance(child, ast.If)
            and len(parent.orelse) == 1 and parent.orelse[0] is child)


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in KERNEL_FILES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}", node))
    return out


@pytest.mark.parametrize("rule", ["length", "nesting"])
def test_functions_are_readable_steps(rule):
    bad = []
    for where, fn in _functions():
        if rule == "length":
            body_start = fn.body[0].lineno
            if (isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant)
                    and len(fn.body) > 1):
                body_start = fn.body[1].lineno  # the docstring does not count
            lines = fn.end_lineno - body_start + 1
            if lines > MAX_LINES:
                bad.append(f"{where}: {lines} lines")
        elif (depth := _depth(fn)) > MAX_DEPTH:
            bad.append(f"{where}: nesting {depth}")
    assert not bad, "\n".join(bad)


def test_the_layers_see_a_real_import():
    """The parser finds imports at all (a guard: an empty graph would pass every rule)."""
    graph = _graph()
    assert "io" in graph["loaders"] and "pipeline" in graph["report.writer"]
    assert any("stream" in targets for targets in graph.values())
