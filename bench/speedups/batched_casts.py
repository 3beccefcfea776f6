"""autocast's parameter casts batched into multi-tensor kernels: the `batched-casts` speed-up.

Under bf16 / fp16 autocast every linear and convolution casts its fp32 weight and bias to
the low dtype in a kernel of its own, in every forward (a CUDA graph needs autocast's cast
cache off, and each forward region uses a weight once anyway), and autograd casts each of
their gradients back to fp32 in another kernel. For the MLP GAN in bf16 that is 40 of the
~130 kernels of an iteration, each a launch for a few microseconds of work.

`BatchedCasts` wraps a network: before its forward, one `torch._foreach_copy_` casts all
those parameters at once (on CUDA one multi-tensor kernel: its fast path converts dtypes),
and the network runs with the cast copies (`torch.func.functional_call`), which autocast
then passes through untouched; in the backward one more multi-tensor copy casts all their
gradients back to fp32, onto the original parameters. The values are autocast's own: the
same rounding of the same fp32 tensors, the same low-precision operations, the same
widening of the gradients. Parameters of other layers (BatchNorm's) stay as they are, as
autocast leaves them.

The gradients of all the wrapped parameters arrive together, at the end of the backward,
where each would have arrived after its own layer: under DDP their all-reduce no longer
overlaps the backward.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.func import functional_call

from bench.speedups.base import Build, Option, SpeedUp, Stage
from bench.speedups.requirements import needs_autocast

# The layers whose parameters autocast casts to the low dtype: the ops on its
# lower-precision list (linear, convolutions) take them as arguments.
CAST_LAYERS = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def cast_parameter_names(module: nn.Module) -> list[str]:
    """Qualified names of the weights and biases of `module`'s CAST_LAYERS."""
    names = []
    for prefix, layer in module.named_modules():
        if isinstance(layer, CAST_LAYERS):
            for name, _ in layer.named_parameters(recurse=False):
                names.append(f"{prefix}.{name}" if prefix else name)
    return names


class _MultiCast(torch.autograd.Function):
    """Cast tensors to `dtype` in one multi-tensor copy; gradients back the same way."""

    @staticmethod
    def forward(ctx, dtype: torch.dtype, *tensors: torch.Tensor):
        ctx.dtypes = [t.dtype for t in tensors]
        out = [torch.empty_like(t, dtype=dtype) for t in tensors]
        torch._foreach_copy_(out, list(tensors))
        return tuple(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        present = [i for i, g in enumerate(grads) if g is not None]
        widened: list = [None] * len(grads)
        if present:
            # Destinations with the gradients' own strides: the fast path needs them equal.
            dst = [torch.empty_like(grads[i], dtype=ctx.dtypes[i]) for i in present]
            torch._foreach_copy_(dst, [grads[i] for i in present])
            for i, g in zip(present, dst, strict=True):
                widened[i] = g
        return (None, *widened)


class BatchedCasts(nn.Module):
    """`module` whose linear and convolution parameters are cast to `dtype` together,
    once per forward, while autocast to `dtype` is on; outside autocast it is `module`."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.dtype = dtype
        self.names = cast_parameter_names(module)

    def forward(self, *args, **kwargs):
        device = next(self.module.parameters()).device.type
        if not self.names or not torch.is_autocast_enabled(device):
            return self.module(*args, **kwargs)
        if torch.get_autocast_dtype(device) != self.dtype:
            raise RuntimeError(
                f"batched casts to {self.dtype} under autocast to "
                f"{torch.get_autocast_dtype(device)}"
            )
        params = dict(self.module.named_parameters())
        cast = _MultiCast.apply(self.dtype, *(params[name] for name in self.names))
        return functional_call(self.module, dict(zip(self.names, cast, strict=True)), args, kwargs)


def _wrap(build: Build) -> None:
    dtype = build.policy.autocast_dtype
    build.wrappers.append(lambda module: BatchedCasts(module, dtype))


BATCHED_CASTS = SpeedUp(
    name="batched-casts",
    help="autocast's parameter casts as one multi-tensor cast per network and forward, and "
    "one for their gradients (bf16/fp16; the same values)",
    options=(Option("batched_casts", bool, False),),
    fields={"batched_casts": True},
    stage=Stage.WRAPPERS,
    hooks={Stage.WRAPPERS: _wrap},
    requires=(needs_autocast("it batches autocast's casts"),),
)


def parameter_casts(build: Build) -> dict | None:
    """How autocast's parameter casts ran (the record's account): None without autocast."""
    if build.policy.autocast_dtype is None:
        return None
    count = sum(len(cast_parameter_names(m)) for m in (build.generator, build.discriminator))
    return {"batched": BATCHED_CASTS.enabled(build.cfg), "parameters": count}
