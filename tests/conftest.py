"""Test-wide setup: Triton's CPU interpreter when there is no GPU; skip ``gpu`` tests there.

Triton decides between compiling and interpreting when a ``@triton.jit`` function is
defined, from ``TRITON_INTERPRET`` at that moment, so the variable is set here, at
conftest import, before any test module imports ``kernels`` (or triton).
``torch.cuda.is_available()`` does not import triton.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Quality extractors trained by tests go to one throw-away folder per session (shared by
# the subprocesses the tests start, so each data set's classifier trains once), never to
# the user's ~/.cache.
os.environ["GAN_BENCH_CACHE"] = tempfile.mkdtemp(prefix="gan-bench-test-cache-")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when no CUDA GPU is present."""
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(os.environ["GAN_BENCH_CACHE"], ignore_errors=True)
