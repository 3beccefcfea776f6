"""Cross-process BatchNorm + LeakyReLU (SyncBatchNorm semantics) on the fused kernels.

Forward, per rank: partial statistics -> merged local ``(count, mean - K, M2, K)``
``[4, C]`` -> ``all_gather`` over the process group -> rows rebased onto one shift K ->
the same finalize kernel merges the ``world_size`` rows with Chan's formula (global
count, mean, biased var for normalising, unbiased var for running_var) -> apply. The
result equals single-process BatchNorm over the concatenated batch.

Backward, per rank: local ``sum g`` and ``sum g * xhat`` -> ``all_reduce`` (SUM) -> dx
with the global count. ``dweight`` and ``dbias`` are returned *local*, as
``torch.nn.SyncBatchNorm`` returns them: DDP's gradient all-reduce combines them later.

This path is a plain ``torch.autograd.Function`` that launches the kernels directly and
calls torch.distributed collectives: torch.compile does not trace it (a graph break:
it runs eagerly between compiled graphs) and it is not CUDA-graph capturable with
gloo. Outside training, or with one process, it is ``batch_norm_leaky_relu``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from kernels import availability
from kernels._plumbing import eager_launches
from kernels.batchnorm.arguments import (
    check_arguments,
    copy_back_running_stats,
    one_value_per_channel_message,
    unit_stride_vectors,
    values_per_channel,
)
from kernels.batchnorm.ops import (
    batch_norm_leaky_relu,
    launch_apply,
    launch_bwd_finalize,
    launch_bwd_partial,
    launch_dx,
    launch_stats_finalize,
    launch_stats_partial,
)
from kernels.batchnorm.plan import channel_view, like_layout, make_plan

__all__ = ["sync_batch_norm_leaky_relu"]


def _world_size(process_group) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


class _SyncBatchNormLeakyReLUFunction(torch.autograd.Function):
    """Eager calls launch the kernels plainly (kernels._plumbing.wrap_triton); traced ones through
    torch.library's wrapper."""

    @staticmethod
    def forward(ctx, *args):
        with eager_launches():
            return _sync_forward(ctx, *args)

    @staticmethod
    def backward(ctx, dy):
        with eager_launches():
            return _sync_backward(ctx, dy)


def _sync_forward(
    ctx,
    x,
    weight,
    bias,
    running_mean,
    running_var,
    num_batches_tracked,
    momentum,
    eps,
    negative_slope,
    process_group,
    split,
):
    availability.require_runnable(x.device)
    xv, view = channel_view(x)
    acc = torch.float64 if xv.dtype == torch.float64 else torch.float32
    plan = make_plan(view, xv.device, interpreted=availability.INTERPRETED, split=split)
    y = torch.empty_like(xv)
    stats = xv.new_empty((6, view.c), dtype=acc)
    merged = xv.new_zeros((4, view.c), dtype=acc)  # count, mean - K, M2, K
    if xv.numel() > 0:
        part = launch_stats_partial(xv, view, plan)
        launch_stats_finalize(part, xv, view, stats, merged=merged)
    world = _world_size(process_group)
    gathered = [torch.empty_like(merged) for _ in range(world)]
    dist.all_gather(gathered, merged, group=process_group)
    rows = torch.stack(gathered, dim=1)  # [4, world, C]
    if view.c and values_per_channel(xv) <= 1 and int(rows[0, :, 0].sum()) == 1:
        # Only a rank holding at most one value per channel reads the global count
        # (a host sync): the whole batch may still have enough, as in nn.SyncBatchNorm.
        raise ValueError(one_value_per_channel_message(x.size()))
    # Every rank's mean is rebased onto one common shift K, the first non-empty rank's
    # (no host sync), before the merge: mean_r - K = (mean_r - K_r) + (K_r - K), where
    # K_r - K is exact for nearby values (Sterbenz), so a large mean with a small spread
    # keeps its digits as in one process (kernels/batchnorm/kernels.py).
    first = (rows[0] > 0).to(torch.int8).argmax(dim=0, keepdim=True)  # [1, C]
    shift = rows[3].gather(0, first).squeeze(0)
    part = torch.stack((rows[0], rows[1] + (rows[3] - shift), rows[2])).contiguous()
    update = running_mean is not None
    launch_stats_finalize(
        part, xv, view, stats, shift=shift, weight=weight, bias=bias,
        running_mean=running_mean, running_var=running_var,
        num_batches_tracked=num_batches_tracked if update and momentum is None else None,
        momentum=momentum, eps=eps,
    )  # fmt: skip
    increment = num_batches_tracked if update else None
    if xv.numel() > 0:
        launch_apply(xv, y, view, plan, stats, negative_slope=negative_slope,
                     increment=increment)  # fmt: skip
    elif increment is not None:
        increment.add_(1)
    ctx.save_for_backward(xv, stats)
    ctx.negative_slope = negative_slope
    ctx.process_group = process_group
    ctx.split = split
    ctx.weight_dtype = weight.dtype if weight is not None else x.dtype
    ctx.bias_dtype = bias.dtype if bias is not None else x.dtype
    return y


def _sync_backward(ctx, dy):
    xv, stats = ctx.saved_tensors
    need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
    _, view = channel_view(xv)
    dy = like_layout(dy, xv, view)
    plan = make_plan(view, xv.device, interpreted=availability.INTERPRETED, split=ctx.split)
    dw = xv.new_zeros((view.c,), dtype=ctx.weight_dtype) if need_dw else None
    db = xv.new_zeros((view.c,), dtype=ctx.bias_dtype) if need_db else None
    if xv.numel() > 0:
        part = launch_bwd_partial(xv, dy, None, view, plan, stats, ctx.negative_slope)
        sums = launch_bwd_finalize(part, xv, view, dw, db)
    else:
        sums = xv.new_zeros((2, view.c), dtype=stats.dtype)
    dx = None
    if need_dx:
        # As torch.nn.SyncBatchNorm: only dx needs the global sums; every rank of a
        # DDP job asks for dx alike, so the collective is matched.
        dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=ctx.process_group)
        dx = torch.empty_like(xv)
        if xv.numel() > 0:
            launch_dx(xv, dy, dx, view, plan, stats, sums, ctx.negative_slope)
    return dx, dw, db, None, None, None, None, None, None, None, None


def sync_batch_norm_leaky_relu(
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
    process_group: dist.ProcessGroup | None = None,
    _split: int = 0,
) -> torch.Tensor:
    """``batch_norm_leaky_relu`` with batch statistics shared across ``process_group``.

    Same arguments as ``kernels.batch_norm_leaky_relu`` plus ``process_group`` (None:
    the default group). When training with torch.distributed initialised and more than
    one process in the group, statistics are those of the whole, concatenated batch,
    and running statistics are updated identically on every rank; dweight/dbias are
    local (DDP all-reduces them), dx uses the global sums. Otherwise this is
    ``batch_norm_leaky_relu``. Every rank must call it (collectives inside).

    Under torch.compile the synchronised path is a graph break: it runs eagerly.
    """
    synced = training and _world_size(process_group) > 1
    check_arguments(x, running_mean, running_var, weight, bias, training, momentum,
                    num_batches_tracked, local_part_of_batch=synced)  # fmt: skip
    if not synced:
        return batch_norm_leaky_relu(
            x, running_mean, running_var, weight, bias, training, momentum, eps,
            negative_slope, num_batches_tracked=num_batches_tracked, _split=_split,
        )  # fmt: skip
    w, b, rm, rv = unit_stride_vectors(weight, bias, running_mean, running_var)
    y = _synced(
        x, w, b, rm, rv, num_batches_tracked,
        None if momentum is None else float(momentum), float(eps), float(negative_slope),
        process_group, int(_split),
    )  # fmt: skip
    copy_back_running_stats((running_mean, running_var), [rm, rv])
    return y


@torch.compiler.disable(reason="collectives inside an autograd.Function")
def _synced(*args):
    """The cross-process op, never traced: under torch.compile it runs eagerly between
    compiled graphs (a graph break), rather than dynamo tracing collectives it cannot
    place inside an autograd.Function's graph."""
    return _SyncBatchNormLeakyReLUFunction.apply(*args)
