"""Eager PyTorch reference for the fused op: ``F.batch_norm`` then ``F.leaky_relu``.

Used by the tests (in float64) and by the benchmarks (as the "eager" baseline). Same
signature and semantics as ``kernels.batch_norm_leaky_relu``, including the
``num_batches_tracked`` increment that ``nn.BatchNorm`` does in its forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["batch_norm_leaky_relu_reference"]


def batch_norm_leaky_relu_reference(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    negative_slope: float = 0.01,
    *,
    num_batches_tracked: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.leaky_relu(F.batch_norm(...), negative_slope)``, eager; see ``batch_norm_leaky_relu``.

    When training with running statistics and ``num_batches_tracked`` is given, the
    counter is incremented first and momentum=None uses ``1 / num_batches_tracked``, as
    ``torch.nn.modules.batchnorm._BatchNorm.forward`` does (that ``float()`` of the
    counter syncs with the device: fine for a reference, not for the fused op).
    """
    factor = momentum
    if training and running_mean is not None and num_batches_tracked is not None:
        num_batches_tracked.add_(1)
        if momentum is None:
            factor = 1.0 / float(num_batches_tracked)
    if factor is None:
        factor = 0.0  # only reachable without running statistics, where it is unused
    z = F.batch_norm(x, running_mean, running_var, weight, bias, training, factor, eps)
    return F.leaky_relu(z, negative_slope)
