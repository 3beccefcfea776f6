"""The shape of the tree (ARCHITECTURE.md): packages by layer, nothing importing a higher
layer, no import circle (imports inside functions count too), and no module over 600
lines but files of `@triton.jit` kernels alone. Read from the source with `ast`: nothing
is imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "kernels", "gan_models")

# Top to bottom; a module belongs to the longest prefix listed. The libraries know nothing
# of the harness; `bench` itself (its package module: when the process started) is below
# everything that reads it.
LAYERS = (
    ("bench.cli", "bench.run", "bench.precompile", "bench.torchrun", "bench.__main__"),
    ("bench.sweep",),
    ("bench.analysis", "bench.kernelbench", "bench.commbench"),
    ("bench.runtime",),
    ("bench.config",),
    ("bench.speedups",),
    ("bench.training", "bench.quality"),
    ("bench.telemetry", "bench.data"),
    ("bench",),
    ("gan_models", "kernels"),
)
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer(name: str) -> int:
    """The layer of a module: 0 at the top."""
    best, depth = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = index, prefix.count(".")
    assert best is not None, f"{name} is in no layer of LAYERS"
    return best


def test_nothing_imports_a_higher_layer():
    upward = [
        f"{name} ({layer(name)}) imports {target} ({layer(target)})"
        for name, targets in GRAPH.items()
        for target in targets
        if layer(target) < layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_the_libraries_import_nothing_of_the_harness():
    for name, targets in GRAPH.items():
        if name.startswith(("kernels", "gan_models")):
            assert not {t for t in targets if t.split(".")[0] == "bench"}, name
        if name.startswith("gan_models"):
            assert not {t for t in targets if t.split(".")[0] == "kernels"}, name


def test_no_import_circle():
    seen: dict[str, int] = {}
    stack: list[str] = []
    circles: list[str] = []

    def visit(name: str) -> None:
        seen[name] = 1
        stack.append(name)
        for target in sorted(GRAPH[name]):
            if seen.get(target) == 1:
                circles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in seen:
                visit(target)
        stack.pop()
        seen[name] = 2

    for name in sorted(GRAPH):
        if name not in seen:
            visit(name)
    assert not circles, "\n".join(circles)


def _only_kernels(tree: ast.Module) -> bool:
    """Every function in the file is a @triton.jit kernel (imports and constants aside)."""
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    return (
        bool(functions)
        and all(
            any(ast.unparse(d).startswith("triton.jit") for d in f.decorator_list)
            for f in functions
        )
        and not any(isinstance(n, ast.ClassDef) for n in tree.body)
    )


def test_modules_stay_readable():
    long = []
    for path in MODULES.values():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_LINES and not _only_kernels(ast.parse(text)):
            long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not long, "\n".join(long)
