"""Keep the kernel microbenchmarks out of the default ``pytest`` run.

They are collected only when asked for, in either of these ways::

    pytest tests/benchmarks --benchmark-only      # the documented command
    pytest tests/benchmarks                       # naming the folder (or a file in it)

A plain ``pytest`` (``testpaths = ["tests"]``) or ``pytest tests`` skips this folder.
On a CPU the kernels run through Triton's interpreter (tiny shapes): those benchmarks then
measure the harness, not the GPU kernels; GPU numbers come from ``gan-bench kernels``. The
host-path ones launch nothing and mean the same on any machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def _named_explicitly(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(str(arg).split("::", 1)[0])
        if not path.is_absolute():
            path = Path(config.invocation_params.dir) / path
        path = path.resolve()
        if path == _HERE or _HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Ignore this folder's test files unless --benchmark-only or the folder is named."""
    if config.getoption("benchmark_only", default=False) or _named_explicitly(config):
        return None
    return True if collection_path.resolve() != _HERE else None
