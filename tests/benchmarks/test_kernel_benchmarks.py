"""pytest-benchmark microbenchmarks: the fused op vs the eager reference.

Left out of the default run (see conftest.py). Run with::

    pytest tests/benchmarks --benchmark-only

On a CPU the fused op runs through Triton's interpreter: tiny shapes, and the numbers
time the interpreter, not a GPU. GPU bandwidth numbers come from ``gan-bench kernels``.
"""

from __future__ import annotations

import pytest
import torch

from kernels import batch_norm_leaky_relu, batch_norm_leaky_relu_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPE = (4, 16, 8, 8) if DEVICE == "cpu" else (128, 256, 8, 8)
IMPLS = {"fused": batch_norm_leaky_relu, "eager": batch_norm_leaky_relu_reference}


def _tensors(channels_last: bool):
    x = torch.randn(SHAPE, device=DEVICE)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    c = SHAPE[1]
    w = torch.ones(c, device=DEVICE, requires_grad=True)
    b = torch.zeros(c, device=DEVICE, requires_grad=True)
    return x.requires_grad_(True), w, b, torch.zeros(c, device=DEVICE), torch.ones(c, device=DEVICE)


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward(benchmark, impl, channels_last):
    x, w, b, rm, rv = _tensors(channels_last)
    fn = IMPLS[impl]

    def run():
        y = fn(x, rm, rv, w, b, True, 0.1, 1e-5, 0.2)
        _sync()
        return y

    benchmark.group = f"forward-{'cl' if channels_last else 'nchw'}"
    assert benchmark(run).shape == x.shape


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward_backward(benchmark, impl, channels_last):
    x, w, b, rm, rv = _tensors(channels_last)
    fn = IMPLS[impl]
    dy = torch.randn(SHAPE, device=DEVICE)

    def run():
        grads = torch.autograd.grad(fn(x, rm, rv, w, b, True, 0.1, 1e-5, 0.2), (x, w, b), dy)
        _sync()
        return grads

    benchmark.group = f"forward+backward-{'cl' if channels_last else 'nchw'}"
    dx, _, _ = benchmark(run)
    assert dx.shape == x.shape
