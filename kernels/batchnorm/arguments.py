"""Validation and preparation of the fused op's arguments, shared by the single-process
op (``ops.py``) and the cross-process one (``sync.py``).

Errors name what is allowed, in one line; where ``F.batch_norm`` raises for the same
input, the message is its own.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "check_arguments",
    "copy_back_running_stats",
    "one_value_per_channel_message",
    "unit_stride_vectors",
    "values_per_channel",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_vector(name: str, t: torch.Tensor | None, x: torch.Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor or None, got {type(t).__name__}")
    c = x.shape[1]
    if t.dim() != 1 or t.shape[0] != c:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)}, expected ({c},): one value per channel of "
            f"an input of shape {tuple(x.shape)}"
        )
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but the input is on {x.device}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")


def unit_stride_vectors(*vectors: torch.Tensor | None) -> list[torch.Tensor | None]:
    """The kernels index per-channel vectors as ``ptr + c``; ``F.batch_norm`` takes any
    strides (a column of a matrix, an expanded scalar), so strided ones are packed first.
    Contiguous ones (every module's) are passed through as they are."""
    return [t if t is None or t.is_contiguous() else t.contiguous() for t in vectors]


def copy_back_running_stats(
    given: tuple[torch.Tensor | None, ...], used: list[torch.Tensor | None]
) -> None:
    """Running statistics updated in packed copies (``unit_stride_vectors``) go back to
    the caller's tensors."""
    for original, packed in zip(given, used, strict=True):
        if original is not None and packed is not original:
            original.copy_(packed)


def check_arguments(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    training: bool,
    momentum: float | None,
    num_batches_tracked: torch.Tensor | None,
    *,
    local_part_of_batch: bool = False,
) -> None:
    """Validate the functional's arguments; raise ValueError/TypeError with what is allowed.

    ``local_part_of_batch``: x is one rank's share of a SyncBN batch, whose values per
    channel are counted over all ranks (``sync.py``), not here."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"input must be a tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"expected an input (N, C, ...) with 2 or more dims, got {x.dim()}D")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"input dtype must be float16, bfloat16, float32 or float64, got {x.dtype}"
        )
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        _check_vector(name, t, x)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be tensors or both be None")
    if not training and running_mean is None:
        raise ValueError(
            "running_mean and running_var must be given when training=False (evaluation "
            "uses the running statistics); pass training=True to use batch statistics"
        )
    if momentum is not None and not isinstance(momentum, (int, float)):
        raise TypeError(f"momentum must be a float or None, got {type(momentum).__name__}")
    if num_batches_tracked is not None:
        if not isinstance(num_batches_tracked, torch.Tensor) or num_batches_tracked.numel() != 1:
            raise ValueError("num_batches_tracked must be a one-element tensor (a counter)")
        if num_batches_tracked.is_floating_point() or num_batches_tracked.device != x.device:
            raise ValueError(
                f"num_batches_tracked must be an integer tensor on {x.device}, got "
                f"{num_batches_tracked.dtype} on {num_batches_tracked.device}"
            )
    if training and running_mean is not None and momentum is None and num_batches_tracked is None:
        raise ValueError(
            "momentum=None (cumulative moving average) needs num_batches_tracked to "
            "weight each batch by 1/num_batches_tracked; pass the module's counter"
        )
    if training and not local_part_of_batch and values_per_channel(x) == 1:
        raise ValueError(one_value_per_channel_message(x.size()))


def values_per_channel(x: torch.Tensor) -> int:
    return x.shape[0] * math.prod(x.shape[2:])


def one_value_per_channel_message(size) -> str:
    # torch.nn.functional.batch_norm's message (_verify_batch_size)
    return f"Expected more than 1 value per channel when training, got input size {size}"
