"""The measurement helpers that need no GPU."""

from __future__ import annotations

import pytest
import torch

import kernels
from bench.kernelbench.measure import launches_stubbed
from kernels.batchnorm import ops


@pytest.mark.parametrize("split", [1, 4])
def test_stubbed_launches_are_counted_per_forward_backward(split):
    """One launch each way on the one-kernel path; the split path (forced) takes more."""
    x = torch.randn((4, 6, 3, 3), requires_grad=True)
    with launches_stubbed(ops) as count:
        y = kernels.batch_norm_leaky_relu(
            x, torch.zeros(6), torch.ones(6), None, None, True, 0.1, 1e-5, 0.2, _split=split
        )
        forward = count.launches
        torch.autograd.grad(y.sum(), x)
    if split == 1:
        assert (forward, count.launches) == (1, 2)
    else:
        assert forward > 1 and count.launches > 2
