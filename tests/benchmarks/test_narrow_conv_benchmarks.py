"""pytest-benchmark microbenchmarks: the narrow convolutions vs torch's, at an image layer.

Left out of the default run (see conftest.py). Run with::

    pytest tests/benchmarks --benchmark-only

On a CPU the Triton kernels run through the interpreter (a small batch), and the numbers
time the interpreter; GPU numbers come from ``gan-bench kernels --convs``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels import narrow_conv2d, narrow_conv_transpose2d

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16 if DEVICE == "cuda" else torch.float32
BATCH = 128 if DEVICE == "cuda" else 2

LAYERS = {
    # D's first layer: conv 3 -> 64 over 64x64 images, then LeakyReLU(0.2)
    ("image-in", "triton"): lambda x, w: narrow_conv2d(x, w, None, 2, 1, 0.2),
    ("image-in", "torch"): lambda x, w: F.leaky_relu(F.conv2d(x, w, None, 2, 1), 0.2),
    # G's last layer: transposed conv 64 -> 3, 32x32 -> 64x64
    ("image-out", "triton"): lambda x, w: narrow_conv_transpose2d(x, w, None, 2, 1),
    ("image-out", "torch"): lambda x, w: F.conv_transpose2d(x, w, None, 2, 1),
}


def _tensors(layer: str):
    shape = (BATCH, 3, 64, 64) if layer == "image-in" else (BATCH, 64, 32, 32)
    x = torch.randn(shape, device=DEVICE, dtype=DTYPE)
    w = torch.randn(64, 3, 4, 4, device=DEVICE, dtype=DTYPE) * 0.02
    return (
        x.contiguous(memory_format=torch.channels_last).requires_grad_(),
        w.contiguous(memory_format=torch.channels_last).requires_grad_(),
    )


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("impl", ["triton", "torch"])
@pytest.mark.parametrize("layer", ["image-in", "image-out"])
def test_forward_backward(benchmark, layer, impl):
    x, w = _tensors(layer)
    fn = LAYERS[layer, impl]
    dy = torch.randn_like(fn(x, w))

    def run():
        grads = torch.autograd.grad(fn(x, w), (x, w), dy)
        _sync()
        return grads

    benchmark.group = f"{layer}-forward+backward"
    dx, dw = benchmark(run)
    assert dx.shape == x.shape and dw.shape == w.shape
