"""The package's layout holds: neither op family imports the other, nothing in ``kernels``
imports the harness or the models, and no imports go round in a circle (imports inside
functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROJECT = ("kernels", "bench", "gan_models")
FAMILIES = ("kernels.batchnorm", "kernels.narrow_conv")


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports() -> dict[str, set[str]]:
    """Every module of ``kernels`` and the project modules it imports."""
    graph = {}
    for path in sorted((REPO / "kernels").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[module] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module}: relative import"
                names = [
                    f"{node.module}.{a.name}"
                    if _is_module(f"{node.module}.{a.name}")
                    else node.module
                    for a in node.names
                ]
            else:
                continue
            graph[module] |= {name for name in names if name.split(".")[0] in PROJECT}
    return graph


def test_families_import_only_the_shared_modules_and_their_own():
    graph = _imports()
    for module, imported in graph.items():
        assert not {i for i in imported if i.split(".")[0] != "kernels"}, module
        for family in FAMILIES:
            if module.startswith(family):
                others = [f for f in FAMILIES if f != family]
                assert not {i for i in imported if i.startswith(tuple(others))}, module


def test_no_import_circles():
    graph = _imports()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
