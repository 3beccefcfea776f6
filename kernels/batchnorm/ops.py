"""The fused BatchNorm + LeakyReLU op: torch.library registration, autograd, functional API.

Two custom ops, registered with ``torch.library.triton_op`` so that torch.compile sees
the Triton kernels inside them (``wrap_triton``) and traces without a graph break:

- ``gan_bench::batch_norm_leaky_relu_forward`` mutates ``running_mean``,
  ``running_var`` and ``num_batches_tracked`` and returns ``(y, stats)``;
- ``gan_bench::batch_norm_leaky_relu_backward`` is functional and returns
  ``(dx, dweight, dbias)`` (empty tensors for gradients nobody asked for).

``torch.library.register_autograd`` only accepts functional ops, and the forward must
mutate the running statistics (in its finalize kernel, with no host sync), so autograd
is wired with a ``torch.autograd.Function`` that calls the two ops. Dynamo traces
``autograd.Function`` into the graph (forward and backward), so
``torch.compile(fullgraph=True)`` holds; the backward is not differentiable again
(no double backward through this op).

Registering the ops is the one thing importing this module does besides defining
functions: torch.compile needs the op to exist before it traces a call to it.

Launches per call (small = the fused path, ``LaunchPlan.split == 1``; large = split):

==========================  =====  =====
pass                        small  large
==========================  =====  =====
training forward            1      3     (+1 ``add_`` when momentum is None)
eval forward                1      1
training backward           1      3     (2 without dx)
eval backward, dx only      1      1
eval backward, dw/db        1      2
==========================  =====  =====

plus one copy of dy when it does not have x's layout (``kernels.batchnorm.plan.like_layout``).
"""

# ruff: noqa: UP007, UP045
# torch.library infers op schemas from the annotations; typing.Optional is understood by
# every torch version we support (2.11 to 2.14), PEP 604 unions are not guaranteed to be.

import struct
from typing import Optional

import torch

from kernels import availability
from kernels._plumbing import cdiv, define_op, direct_call, eager_launches, launchable, wrap_triton
from kernels.batchnorm.arguments import (
    check_arguments,
    copy_back_running_stats,
    unit_stride_vectors,
)
from kernels.batchnorm.plan import (
    ChannelView,
    LaunchPlan,
    channel_view,
    finalize_blocks,
    like_layout,
    make_plan,
)

if availability.TRITON_AVAILABLE:
    from kernels.batchnorm.kernels import (
        bn_apply_kernel,
        bn_bwd_dx_kernel,
        bn_bwd_finalize_kernel,
        bn_bwd_fused_kernel,
        bn_bwd_partial_kernel,
        bn_fwd_fused_kernel,
        bn_stats_finalize_kernel,
        bn_stats_partial_kernel,
    )

__all__ = ["batch_norm_leaky_relu"]

FORWARD_OP = "gan_bench::batch_norm_leaky_relu_forward"
BACKWARD_OP = "gan_bench::batch_norm_leaky_relu_backward"

# ---------------------------------------------------------------------------------------
# Launch helpers (shared with sync.py). ``view`` and ``plan`` come from plan.py.
# ---------------------------------------------------------------------------------------


def launch_stats_partial(x: torch.Tensor, view: ChannelView, plan: LaunchPlan) -> torch.Tensor:
    """Partial (count, mean - K, M2) rows, ``[3, SPLIT, C]``, in the accumulation dtype."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    part = x.new_empty((3, plan.split, view.c), dtype=acc)
    if launchable(x):
        wrap_triton(bn_stats_partial_kernel)[(plan.c_blocks, plan.split)](
            x, part, view.c, view.n, view.s, plan.n_tiles_s, plan.tiles_total, plan.tiles_per_prog,
            view.sn, view.sc, view.ss,
            BLOCK_C=plan.block_c, BLOCK_N=plan.block_n, BLOCK_S=plan.block_s,
            FP64=x.dtype == torch.float64,
            NUM_STAGES=plan.num_stages, EVEN=plan.even, **plan.launch_options,
        )  # fmt: skip
    return part


def float_arg(value: float, like: torch.Tensor) -> float | int:
    """A float kernel argument (eps, slope, momentum). Triton passes a Python float to a
    compiled kernel as fp32, which would round 0.2 to 0.20000000298 in float64 kernels:
    for float64 inputs the float64's bit pattern is passed as an integer instead, and the
    kernel rebuilds it (``_float_arg`` in the kernels)."""
    if like.dtype != torch.float64:
        return float(value)
    return struct.unpack("<q", struct.pack("<d", float(value)))[0]


def launch_stats_finalize(
    part: torch.Tensor,
    x: torch.Tensor,
    view: ChannelView,
    stats: torch.Tensor,
    *,
    shift: Optional[torch.Tensor] = None,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    running_mean: Optional[torch.Tensor] = None,
    running_var: Optional[torch.Tensor] = None,
    num_batches_tracked: Optional[torch.Tensor] = None,
    momentum: Optional[float] = None,
    eps: float = 1e-5,
    merged: Optional[torch.Tensor] = None,
) -> None:
    """Merge ``part`` into ``stats`` (and update running stats), or into ``merged`` [4, C].

    ``part``'s means are relative to ``shift`` (C,), by default the channel's first
    element ``x[0, c, 0]``, the shift ``launch_stats_partial`` uses."""
    update = running_mean is not None
    shift_source, shift_stride = (x, view.sc) if shift is None else (shift, 1)
    if launchable(x):
        block_c, block_p = finalize_blocks(view.c, part.shape[1])
        wrap_triton(bn_stats_finalize_kernel)[(cdiv(view.c, block_c),)](
            part, part.shape[1], shift_source, shift_stride, view.c,
            x if weight is None else weight,
            x if bias is None else bias,
            x if running_mean is None else running_mean,
            x if running_var is None else running_var,
            x if num_batches_tracked is None else num_batches_tracked,
            stats, x if merged is None else merged,
            float_arg(0.0 if momentum is None else momentum, x), float_arg(eps, x),
            HAS_W=weight is not None, HAS_B=bias is not None,
            UPDATE_RUNNING=update, FACTOR_FROM_NBT=update and momentum is None,
            MERGE_ONLY=merged is not None,
            BLOCK_C=block_c, BLOCK_P=block_p, FP64=x.dtype == torch.float64,
        )  # fmt: skip


def launch_apply(
    x: torch.Tensor,
    y: torch.Tensor,
    view: ChannelView,
    plan: LaunchPlan,
    stats: torch.Tensor,
    *,
    negative_slope: float,
    eval_weight: Optional[torch.Tensor] = None,
    eval_bias: Optional[torch.Tensor] = None,
    eval_running_mean: Optional[torch.Tensor] = None,
    eval_running_var: Optional[torch.Tensor] = None,
    eps: float = 1e-5,
    increment: Optional[torch.Tensor] = None,
) -> None:
    """``y = leaky(BN(x))`` elementwise; eval mode when ``eval_running_mean`` is given."""
    is_eval = eval_running_mean is not None
    if launchable(x):
        wrap_triton(bn_apply_kernel)[(plan.tiles_total, plan.c_blocks)](
            x, y, stats,
            x if eval_weight is None else eval_weight,
            x if eval_bias is None else eval_bias,
            x if eval_running_mean is None else eval_running_mean,
            x if eval_running_var is None else eval_running_var,
            x if increment is None else increment,
            view.c, view.n, view.s, plan.n_tiles_s, view.sn, view.sc, view.ss,
            float_arg(eps, x), float_arg(negative_slope, x), float(view.count),
            EVAL=is_eval, HAS_W=eval_weight is not None, HAS_B=eval_bias is not None,
            INC_NBT=increment is not None,
            BLOCK_C=plan.block_c, BLOCK_N=plan.block_n, BLOCK_S=plan.block_s,
            FP64=x.dtype == torch.float64,
            **plan.launch_options,
        )  # fmt: skip


def launch_bwd_partial(
    x: torch.Tensor,
    dy: torch.Tensor,
    dx: Optional[torch.Tensor],
    view: ChannelView,
    plan: LaunchPlan,
    stats: torch.Tensor,
    negative_slope: float,
) -> torch.Tensor:
    """Partial ``sum g`` / ``sum g*xhat`` rows ``[2, SPLIT, C]``; eval dx too if ``dx`` given."""
    part = x.new_empty((2, plan.split, view.c), dtype=stats.dtype)
    if launchable(x):
        wrap_triton(bn_bwd_partial_kernel)[(plan.c_blocks, plan.split)](
            x, dy, x if dx is None else dx, stats, part,
            view.c, view.n, view.s, plan.n_tiles_s, plan.tiles_total, plan.tiles_per_prog,
            view.sn, view.sc, view.ss, float_arg(negative_slope, x),
            WRITE_DX=dx is not None,
            BLOCK_C=plan.block_c, BLOCK_N=plan.block_n, BLOCK_S=plan.block_s,
            FP64=x.dtype == torch.float64,
            NUM_STAGES=plan.num_stages, **plan.launch_options,
        )  # fmt: skip
    return part


def launch_bwd_finalize(
    part: torch.Tensor,
    x: torch.Tensor,
    view: ChannelView,
    dweight: Optional[torch.Tensor],
    dbias: Optional[torch.Tensor],
) -> torch.Tensor:
    """Sum partial rows into ``sums`` ``[2, C]``; write dweight/dbias if given."""
    sums = x.new_empty((2, view.c), dtype=part.dtype)
    if launchable(x):
        block_c, block_p = finalize_blocks(view.c, part.shape[1])
        wrap_triton(bn_bwd_finalize_kernel)[(cdiv(view.c, block_c),)](
            part, part.shape[1], view.c, sums,
            x if dweight is None else dweight, x if dbias is None else dbias,
            HAS_DW=dweight is not None, HAS_DB=dbias is not None,
            BLOCK_C=block_c, BLOCK_P=block_p, FP64=x.dtype == torch.float64,
        )  # fmt: skip
    return sums


def launch_dx(
    x: torch.Tensor,
    dy: torch.Tensor,
    dx: torch.Tensor,
    view: ChannelView,
    plan: LaunchPlan,
    stats: torch.Tensor,
    sums: Optional[torch.Tensor],
    negative_slope: float,
) -> None:
    """Elementwise dx: training formula when ``sums`` is given, ``g * scale`` otherwise."""
    if launchable(x):
        wrap_triton(bn_bwd_dx_kernel)[(plan.tiles_total, plan.c_blocks)](
            x, dy, dx, stats, stats if sums is None else sums,
            view.c, view.n, view.s, plan.n_tiles_s, view.sn, view.sc, view.ss,
            float_arg(negative_slope, x),
            TRAINING=sums is not None,
            BLOCK_C=plan.block_c, BLOCK_N=plan.block_n, BLOCK_S=plan.block_s,
            FP64=x.dtype == torch.float64,
            **plan.launch_options,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------
# The ops
# ---------------------------------------------------------------------------------------


def _forward_impl(
    x: torch.Tensor,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    running_mean: Optional[torch.Tensor],
    running_var: Optional[torch.Tensor],
    num_batches_tracked: Optional[torch.Tensor],
    training: bool,
    momentum: Optional[float],
    eps: float,
    negative_slope: float,
    split: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    # Arguments are validated by batch_norm_leaky_relu; ``training`` here means "use batch
    # statistics" (F.batch_norm's meaning), running stats are updated iff they are given.
    availability.require_runnable(x.device)
    x, view = channel_view(x)
    y = torch.empty_like(x)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    stats = x.new_empty((6, view.c), dtype=acc)
    update = training and running_mean is not None
    increment = num_batches_tracked if update else None
    if x.numel() == 0:  # as eager: empty output, running statistics untouched
        stats.zero_()
        if increment is not None:
            increment.add_(1)
        return y, stats
    plan = make_plan(view, x.device, interpreted=availability.INTERPRETED, split=split)
    if not training:
        launch_apply(
            x, y, view, plan, stats, negative_slope=negative_slope,
            eval_weight=weight, eval_bias=bias,
            eval_running_mean=running_mean, eval_running_var=running_var, eps=eps,
        )  # fmt: skip
        return y, stats
    factor_from_nbt = update and momentum is None
    if plan.fused:
        # The counter can be bumped in-kernel only when no program reads it.
        in_kernel = increment is not None and not factor_from_nbt
        if launchable(x):
            wrap_triton(bn_fwd_fused_kernel)[(plan.c_blocks,)](
                x, y, stats,
                x if weight is None else weight,
                x if bias is None else bias,
                running_mean if update else x,
                running_var if update else x,
                num_batches_tracked if num_batches_tracked is not None else x,
                view.c, view.n, view.s, plan.n_tiles_s, plan.tiles_total, view.sn, view.sc, view.ss,
                float_arg(0.0 if momentum is None else momentum, x), float_arg(eps, x),
                float_arg(negative_slope, x),
                HAS_W=weight is not None, HAS_B=bias is not None,
                UPDATE_RUNNING=update, FACTOR_FROM_NBT=factor_from_nbt, INC_NBT=in_kernel,
                BLOCK_C=plan.block_c, BLOCK_N=plan.block_n, BLOCK_S=plan.block_s,
                FP64=x.dtype == torch.float64,
                NUM_STAGES=plan.num_stages, EVEN=plan.even, **plan.launch_options,
            )  # fmt: skip
        if increment is not None and not in_kernel:
            increment.add_(1)
        return y, stats
    part = launch_stats_partial(x, view, plan)
    launch_stats_finalize(
        part, x, view, stats, weight=weight, bias=bias,
        running_mean=running_mean if update else None,
        running_var=running_var if update else None,
        num_batches_tracked=num_batches_tracked if factor_from_nbt else None,
        momentum=momentum, eps=eps,
    )  # fmt: skip
    launch_apply(x, y, view, plan, stats, negative_slope=negative_slope, increment=increment)
    return y, stats


def _backward_impl(
    dy: torch.Tensor,
    x: torch.Tensor,
    stats: torch.Tensor,
    training: bool,
    negative_slope: float,
    need_dx: bool,
    need_dweight: bool,
    need_dbias: bool,
    weight_dtype: torch.dtype,
    bias_dtype: torch.dtype,
    split: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    availability.require_runnable(x.device)
    x, view = channel_view(x)
    dy = like_layout(dy, x, view)
    dx = torch.empty_like(x) if need_dx else x.new_empty((0,))
    dw = x.new_empty((view.c if need_dweight else 0,), dtype=weight_dtype)
    db = x.new_empty((view.c if need_dbias else 0,), dtype=bias_dtype)
    if x.numel() == 0:
        dw.zero_()
        db.zero_()
        return dx, dw, db
    plan = make_plan(view, x.device, interpreted=availability.INTERPRETED, split=split)
    reduce = (training and need_dx) or need_dweight or need_dbias
    dx_in_reduce = need_dx and reduce and not training
    dx_after = need_dx and (training or not reduce)
    dw_arg = dw if need_dweight else None
    db_arg = db if need_dbias else None
    if not reduce:
        if dx_after:
            launch_dx(x, dy, dx, view, plan, stats, None, negative_slope)
    elif plan.fused:
        if launchable(x):
            wrap_triton(bn_bwd_fused_kernel)[(plan.c_blocks,)](
                x, dy, dx if need_dx else x, stats,
                x if dw_arg is None else dw_arg, x if db_arg is None else db_arg,
                view.c, view.n, view.s, plan.n_tiles_s, plan.tiles_total, view.sn, view.sc, view.ss,
                float_arg(negative_slope, x),
                TRAINING=training, REDUCE=True, DX_IN_REDUCE=dx_in_reduce, DX_AFTER=dx_after,
                HAS_DW=dw_arg is not None, HAS_DB=db_arg is not None,
                BLOCK_C=plan.block_c, BLOCK_N=plan.block_n, BLOCK_S=plan.block_s,
                FP64=x.dtype == torch.float64,
                NUM_STAGES=plan.num_stages, **plan.launch_options,
            )  # fmt: skip
    else:
        part = launch_bwd_partial(
            x, dy, dx if dx_in_reduce else None, view, plan, stats, negative_slope
        )
        sums = launch_bwd_finalize(part, x, view, dw_arg, db_arg)
        if dx_after:
            launch_dx(x, dy, dx, view, plan, stats, sums, negative_slope)
    return dx, dw, db


_forward_op = define_op(
    FORWARD_OP, mutates_args=("running_mean", "running_var", "num_batches_tracked")
)(_forward_impl)
_backward_op = define_op(BACKWARD_OP, mutates_args=())(_backward_impl)


# ---------------------------------------------------------------------------------------
# Autograd and the functional API
# ---------------------------------------------------------------------------------------


class _BatchNormLeakyReLUFunction(torch.autograd.Function):
    """Autograd for the forward op; saves x and the ``[6, C]`` stats, nothing activation-sized."""

    @staticmethod
    def forward(
        ctx,
        x,
        weight,
        bias,
        running_mean,
        running_var,
        num_batches_tracked,
        training,
        momentum,
        eps,
        negative_slope,
        split,
    ):
        direct = direct_call()
        forward = _forward_impl if direct else torch.ops.gan_bench.batch_norm_leaky_relu_forward
        with eager_launches(direct):
            y, stats = forward(
                x, weight, bias, running_mean, running_var, num_batches_tracked,
                training, momentum, eps, negative_slope, split,
            )  # fmt: skip
        ctx.save_for_backward(x, stats)
        ctx.training = training
        ctx.negative_slope = negative_slope
        ctx.split = split
        ctx.weight_dtype = weight.dtype if weight is not None else x.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else x.dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        x, stats = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        direct = direct_call()
        backward = _backward_impl if direct else torch.ops.gan_bench.batch_norm_leaky_relu_backward
        with eager_launches(direct):
            dx, dw, db = backward(
                dy, x, stats, ctx.training, ctx.negative_slope, need_dx, need_dw, need_db,
                ctx.weight_dtype, ctx.bias_dtype, ctx.split,
            )  # fmt: skip
        return (
            dx if need_dx else None,
            dw if need_dw else None,
            db if need_db else None,
            None, None, None, None, None, None, None, None,
        )  # fmt: skip


def batch_norm_leaky_relu(
    x: torch.Tensor,
    running_mean: Optional[torch.Tensor],
    running_var: Optional[torch.Tensor],
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    training: bool = False,
    momentum: Optional[float] = 0.1,
    eps: float = 1e-5,
    negative_slope: float = 0.01,
    *,
    num_batches_tracked: Optional[torch.Tensor] = None,
    _split: int = 0,
) -> torch.Tensor:
    """``F.leaky_relu(F.batch_norm(x, ...), negative_slope)`` in fused Triton kernels.

    Arguments mean what they mean in ``torch.nn.functional.batch_norm``; ReLU is
    ``negative_slope=0``. Differentiable in x, weight and bias; composes with
    ``torch.compile(fullgraph=True)`` and CUDA graphs (no host syncs).

    Args:
        x: ``(N, C, *)`` in float16/bfloat16/float32/float64. Contiguous and
            channels-last (incl. ``(N, C)``) inputs are read in place; other layouts are
            copied once. The output has x's dtype and memory format, whatever the dtype
            of weight/bias (as eager BatchNorm, under autocast too: batch_norm is not on
            autocast's fp32 list, so a bf16 input gives a bf16 output).
        running_mean, running_var: ``(C,)`` or None. Updated in place when training.
        weight, bias: ``(C,)`` or None (no affine).
        training: use batch statistics (and update the running ones if given).
        momentum: running-average factor, or None for a cumulative moving average
            (factor ``1 / num_batches_tracked``, which then must be given).
        eps: added to the variance.
        negative_slope: LeakyReLU slope; 0 gives ReLU.
        num_batches_tracked: the module's batch counter. When given, and running
            statistics are updated, it is incremented on the device (what
            ``nn.BatchNorm`` does in its forward, before ``F.batch_norm``).
        _split: internal, for tests: 0 chooses; 1 forces the single-launch path,
            ``k > 1`` the split path with up to k partials per channel.

    Raises:
        ValueError: bad shapes, devices or dtypes; one value per channel in training.
        KernelUnavailableError: no CUDA GPU and no TRITON_INTERPRET (no eager fallback).
    """
    check_arguments(x, running_mean, running_var, weight, bias, training, momentum,
                    num_batches_tracked)  # fmt: skip
    w, b, rm, rv = unit_stride_vectors(weight, bias, running_mean, running_var)
    y = _BatchNormLeakyReLUFunction.apply(
        x, w, b, rm, rv, num_batches_tracked,
        bool(training), None if momentum is None else float(momentum), float(eps),
        float(negative_slope), int(_split),
    )  # fmt: skip
    if training:
        copy_back_running_stats((running_mean, running_var), [rm, rv])
    return y
