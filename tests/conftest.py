"""Test-wide setup: Triton's CPU interpreter when there is no GPU; skip ``gpu`` tests there.

Triton decides between compiling and interpreting when a ``@triton.jit`` function is
defined, from ``TRITON_INTERPRET`` at that moment, so the variable is set here, at
conftest import, before any test module imports ``kernels`` (or triton).
``torch.cuda.is_available()`` does not import triton.
"""

from __future__ import annotations

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when no CUDA GPU is present."""
    if HAS_CUDA:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
