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

import functools

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
from kernels.batchnorm.calls import (
    prepare_apply,
    prepare_backward_finalize,
    prepare_backward_partial,
    prepare_dx,
    prepare_stats_finalize,
    prepare_stats_partial,
)
from kernels.batchnorm.ops import (
    batch_norm_leaky_relu,
    launch_apply,
    launch_backward_finalize,
    launch_backward_partial,
    launch_dx,
    launch_stats_finalize,
    launch_stats_partial,
)
from kernels.batchnorm.plan import ChannelView, LaunchPlan, channel_view, like_layout, make_plan

__all__ = ["SYNC_PATH", "sync_batch_norm_leaky_relu", "synchronised"]

# A synchronised training forward + backward in a record's words (as ``ops.training_path``):
# partial statistics, their local merge, the merge of every rank's, the elementwise pass;
# partial sums, their merge, dx.
SYNC_PATH = {"path": "sync", "launches": 7}


def _world_size(process_group) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group)


def synchronised(training: bool, process_group) -> bool:
    """Whether a call synchronises its statistics across ``process_group``."""
    return training and _world_size(process_group) > 1


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


@functools.lru_cache(maxsize=256)
def _forward_launches(
    view: ChannelView,
    plan: LaunchPlan,
    world: int,
    fp64: bool,
    has_w: bool,
    has_b: bool,
    update: bool,
    factor_from_nbt: bool,
    increment: bool,
    momentum: float | None,
    eps: float,
    negative_slope: float,
):
    """The forward's launches: the local partial statistics, their merge into one row,
    the merge of every rank's rows (with the running statistics), the elementwise pass."""
    return (
        prepare_stats_partial(view, plan, fp64),
        prepare_stats_finalize(view, plan.split, fp64, merge_only=True),
        prepare_stats_finalize(
            view, world, fp64, has_w=has_w, has_b=has_b, update=update,
            factor_from_nbt=factor_from_nbt, momentum=momentum, eps=eps, shift_stride=1,
        ),
        prepare_apply(view, plan, fp64, negative_slope=negative_slope, increment=increment),
    )  # fmt: skip


@functools.lru_cache(maxsize=256)
def _backward_launches(
    view: ChannelView,
    plan: LaunchPlan,
    fp64: bool,
    has_dw: bool,
    has_db: bool,
    negative_slope: float,
):
    """The backward's launches: local partial sums, their merge (and dweight, dbias), dx."""
    return (
        prepare_backward_partial(view, plan, fp64, write_dx=False, negative_slope=negative_slope),
        prepare_backward_finalize(view, plan.split, fp64, has_dw=has_dw, has_db=has_db),
        prepare_dx(view, plan, fp64, training=True, negative_slope=negative_slope),
    )


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
    world = _world_size(process_group)
    update = running_mean is not None
    increment = num_batches_tracked if update else None
    partial, merge, finalize, apply = _forward_launches(
        view, plan, world, xv.dtype == torch.float64, weight is not None, bias is not None,
        update, update and momentum is None, increment is not None, momentum, eps,
        negative_slope,
    )  # fmt: skip
    if xv.numel() > 0:
        part = xv.new_empty((3, plan.split, view.c), dtype=acc)
        launch_stats_partial(partial, xv, part)
        launch_stats_finalize(merge, part, xv, xv, xv, xv, xv, xv, stats, merged)
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
    launch_stats_finalize(
        finalize, part, shift, xv if weight is None else weight, xv if bias is None else bias,
        running_mean if update else xv, running_var if update else xv,
        num_batches_tracked if update and momentum is None else xv, stats, xv,
    )  # fmt: skip
    if xv.numel() > 0:
        launch_apply(apply, xv, y, stats, xv, xv, xv, xv,
                     xv if increment is None else increment)  # fmt: skip
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
    partial, finalize, dx_launch = _backward_launches(
        view, plan, xv.dtype == torch.float64, need_dw, need_db, ctx.negative_slope
    )
    if xv.numel() > 0:
        part = xv.new_empty((2, plan.split, view.c), dtype=stats.dtype)
        launch_backward_partial(partial, xv, dy, xv, stats, part)
        sums = xv.new_empty((2, view.c), dtype=stats.dtype)
        launch_backward_finalize(finalize, part, sums, xv if dw is None else dw,
                                 xv if db is None else db)  # fmt: skip
    else:
        sums = xv.new_zeros((2, view.c), dtype=stats.dtype)
    dx = None
    if need_dx:
        # As torch.nn.SyncBatchNorm: only dx needs the global sums; every rank of a
        # DDP job asks for dx alike, so the collective is matched.
        dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=ctx.process_group)
        dx = torch.empty_like(xv)
        if xv.numel() > 0:
            launch_dx(dx_launch, xv, dy, dx, stats, sums)
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
    one_kernel: bool = False,
    _split: int = 0,
) -> torch.Tensor:
    """``batch_norm_leaky_relu`` with batch statistics shared across ``process_group``.

    Same arguments as ``kernels.batch_norm_leaky_relu`` plus ``process_group`` (None:
    the default group); ``one_kernel`` applies to calls that do not synchronise (the
    synchronised path merges partial statistics across processes, so it always splits).
    When training with torch.distributed initialised and more than one process in the
    group, statistics are those of the whole, concatenated batch, and running statistics
    are updated identically on every rank; dweight/dbias are local (DDP all-reduces
    them), dx uses the global sums. Otherwise this is ``batch_norm_leaky_relu``. Every
    rank must call it (collectives inside).

    Under torch.compile the synchronised path is a graph break: it runs eagerly.
    """
    if not synchronised(training, process_group):  # checked there
        return batch_norm_leaky_relu(
            x, running_mean, running_var, weight, bias, training, momentum, eps,
            negative_slope, num_batches_tracked=num_batches_tracked, one_kernel=one_kernel,
            _split=_split,
        )  # fmt: skip
    check_arguments(x, running_mean, running_var, weight, bias, training, momentum,
                    num_batches_tracked, local_part_of_batch=True)  # fmt: skip
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
