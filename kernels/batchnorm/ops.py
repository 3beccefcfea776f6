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

An eager call (no torch.compile, no dispatch mode) skips the registered ops, and one of a
kind already seen (``calls.call_key``: shapes, strides, dtypes, devices, flags) also skips
the checks its kind passed the first time and all the host arithmetic: its
``calls.ForwardCall`` says what to allocate and launch.

Registering the ops is the one thing importing this module does besides defining
functions: torch.compile needs the op to exist before it traces a call to it.

Launches per call (small = the fused or one-kernel path, ``LaunchPlan.split == 1``;
large = split):

==========================  =====  =====
pass                        small  large
==========================  =====  =====
training forward            1      3     (small: +1 ``add_`` when momentum is None)
eval forward                1      1
training backward           1      3     (2 without dx)
eval backward, dx only      1      1
eval backward, dw/db        1      2
==========================  =====  =====

plus one copy of dy when it does not have x's layout (``kernels.batchnorm.plan.like_layout``).
Every launch goes through ``wrap_triton``, the one name to patch to see or skip them.
"""

# ruff: noqa: UP007, UP045
# torch.library infers op schemas from the annotations; typing.Optional is understood by
# every torch version we support (2.11 to 2.14), PEP 604 unions are not guaranteed to be.

from typing import Optional

import torch

from kernels import availability
from kernels._plumbing import (
    PlainLaunches,
    define_op,
    direct_call,
    eager_launches,
    launchable,
    wrap_triton,
)
from kernels.batchnorm import calls
from kernels.batchnorm.arguments import (
    check_arguments,
    copy_back_running_stats,
    unit_stride_vectors,
)
from kernels.batchnorm.calls import (
    DX_ONLY,
    EVAL,
    FUSED,
    NOTHING,
    BackwardCall,
    CallSpec,
    ForwardCall,
    Prepared,
    backward_call,
    forward_call,
)
from kernels.batchnorm.plan import channel_view, layout_view, like_layout, make_plan

__all__ = ["batch_norm_leaky_relu", "training_path"]

FORWARD_OP = "gan_bench::batch_norm_leaky_relu_forward"
BACKWARD_OP = "gan_bench::batch_norm_leaky_relu_backward"

# ---------------------------------------------------------------------------------------
# Launches (shared with sync.py): each kernel's arguments in order, from a ``Prepared``
# launch (``calls.prepare_*``) and the tensors; an absent optional tensor is passed as x,
# which the kernel's constexprs leave unread.
# ---------------------------------------------------------------------------------------


def _launch(prepared: Prepared, args: tuple) -> None:
    site = prepared.site
    site.launch(wrap_triton(site.kernel), args)


def launch_stats_partial(p: Prepared, x, part) -> None:
    _launch(p, (x, part, *p.scalars))


def launch_stats_finalize(p: Prepared, part, shift, weight, bias, rm, rv, nbt, stats, merged):
    parts, shift_stride, c, momentum, eps = p.scalars
    _launch(p, (part, parts, shift, shift_stride, c, weight, bias, rm, rv, nbt, stats, merged,
                momentum, eps))  # fmt: skip


def launch_apply(p: Prepared, x, y, stats, weight, bias, rm, rv, increment) -> None:
    _launch(p, (x, y, stats, weight, bias, rm, rv, increment, *p.scalars))


def launch_forward_fused(p: Prepared, x, y, stats, weight, bias, rm, rv, nbt) -> None:
    _launch(p, (x, y, stats, weight, bias, rm, rv, nbt, *p.scalars))


def launch_backward_partial(p: Prepared, x, dy, dx, stats, part) -> None:
    _launch(p, (x, dy, dx, stats, part, *p.scalars))


def launch_backward_finalize(p: Prepared, part, sums, dweight, dbias) -> None:
    parts, c = p.scalars
    _launch(p, (part, parts, c, sums, dweight, dbias))


def launch_dx(p: Prepared, x, dy, dx, stats, sums) -> None:
    _launch(p, (x, dy, dx, stats, sums, *p.scalars))


def launch_backward_fused(p: Prepared, x, dy, dx, stats, dweight, dbias) -> None:
    _launch(p, (x, dy, dx, stats, dweight, dbias, *p.scalars))


def _run_forward(call: ForwardCall, x, y, stats, weight, bias, running_mean, running_var, nbt):
    """Launch ``call``'s forward: y and stats (and the running statistics) from x."""
    w = x if weight is None else weight
    b = x if bias is None else bias
    if call.kind == EVAL:
        launch_apply(call.launches[0], x, y, stats, w, b, running_mean, running_var, x)
        return
    rm, rv = (running_mean, running_var) if call.update else (x, x)
    if call.kind == FUSED:
        counter = x if nbt is None else nbt
        launch_forward_fused(call.launches[0], x, y, stats, w, b, rm, rv, counter)
        if call.host_increment:
            nbt.add_(1)
        return
    partial, finalize, apply = call.launches
    part = x.new_empty((3, call.plan.split, call.view.c), dtype=call.acc)
    launch_stats_partial(partial, x, part)
    launch_stats_finalize(finalize, part, x, w, b, rm, rv, nbt if call.factor_from_nbt else x,
                          stats, x)  # fmt: skip
    launch_apply(apply, x, y, stats, x, x, x, x, nbt if call.increment else x)


def _run_backward(call: BackwardCall, x, dy, stats, dx, dweight, dbias) -> None:
    """Launch ``call``'s backward into the gradients asked for (the others None)."""
    if call.kind == NOTHING:
        return
    if call.kind == DX_ONLY:
        launch_dx(call.launches[0], x, dy, dx, stats, stats)
        return
    dw = x if dweight is None else dweight
    db = x if dbias is None else dbias
    if call.kind == FUSED:
        launch_backward_fused(call.launches[0], x, dy, x if dx is None else dx, stats, dw, db)
        return
    partial, finalize = call.launches[:2]
    part = x.new_empty((2, call.plan.split, x.shape[1]), dtype=stats.dtype)
    launch_backward_partial(partial, x, dy, dx if call.dx_in_reduce else x, stats, part)
    sums = x.new_empty((2, x.shape[1]), dtype=stats.dtype)
    launch_backward_finalize(finalize, part, sums, dw, db)
    if call.dx_after:
        launch_dx(call.launches[2], x, dy, dx, stats, sums)


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
    one_kernel: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    # Arguments are validated by batch_norm_leaky_relu; ``training`` here means "use batch
    # statistics" (F.batch_norm's meaning), running stats are updated iff they are given.
    availability.require_runnable(x.device)
    x, view = channel_view(x)
    y = torch.empty_like(x)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    stats = x.new_empty((6, view.c), dtype=acc)
    if x.numel() == 0:  # as eager: empty output, running statistics untouched
        stats.zero_()
        if training and running_mean is not None and num_batches_tracked is not None:
            num_batches_tracked.add_(1)
        return y, stats
    plan = make_plan(view, x.device, interpreted=availability.INTERPRETED, split=split,
                     one_kernel=one_kernel)  # fmt: skip
    spec = _spec(weight, bias, running_mean, num_batches_tracked, training, momentum, eps,
                 negative_slope, split, one_kernel, x.dtype)  # fmt: skip
    call = forward_call(view, plan, x.dtype, spec)
    if launchable(x):
        _run_forward(call, x, y, stats, weight, bias, running_mean, running_var,
                     num_batches_tracked)  # fmt: skip
    elif call.host_increment:
        num_batches_tracked.add_(1)
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
    one_kernel: bool,
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
    plan = make_plan(view, x.device, interpreted=availability.INTERPRETED, split=split,
                     one_kernel=one_kernel)  # fmt: skip
    call = backward_call(view, plan, x.dtype == torch.float64, training, negative_slope,
                         need_dx, need_dweight, need_dbias)  # fmt: skip
    if launchable(x):
        _run_backward(call, x, dy, stats, dx if need_dx else None,
                      dw if need_dweight else None, db if need_dbias else None)  # fmt: skip
    return dx, dw, db


def _spec(weight, bias, running_mean, nbt, training, momentum, eps, negative_slope, split,
          one_kernel, dtype) -> CallSpec:  # fmt: skip
    return CallSpec(
        training, weight is not None, bias is not None, running_mean is not None,
        nbt is not None, momentum, eps, negative_slope, split, one_kernel,
        dtype if weight is None else weight.dtype, dtype if bias is None else bias.dtype,
    )  # fmt: skip


_forward_op = define_op(
    FORWARD_OP, mutates_args=("running_mean", "running_var", "num_batches_tracked")
)(_forward_impl)
_backward_op = define_op(BACKWARD_OP, mutates_args=())(_backward_impl)


def _kept_forward(call: ForwardCall, x, weight, bias, running_mean, running_var, nbt):
    """A kept call's forward: its allocations and launches, nothing else."""
    y = torch.empty_like(x)
    stats = x.new_empty((6, call.view.c), dtype=call.acc)
    with PlainLaunches():
        _run_forward(call, x, y, stats, weight, bias, running_mean, running_var, nbt)
    return y, stats


def _kept_backward(call: ForwardCall, x, stats, dy, need_dx, need_dweight, need_dbias):
    """A kept call's backward; None for the gradients nobody asked for."""
    backward = call.backward(need_dx, need_dweight, need_dbias)
    if dy.stride() != x.stride():
        dy = like_layout(dy, x, call.view)
    c, spec = call.view.c, call.spec
    dx = torch.empty_like(x) if need_dx else None
    dw = x.new_empty((c,), dtype=spec.weight_dtype) if need_dweight else None
    db = x.new_empty((c,), dtype=spec.bias_dtype) if need_dbias else None
    with PlainLaunches():
        _run_backward(backward, x, dy, stats, dx, dw, db)
    return dx, dw, db


def _first_call(
    key, x, running_mean, running_var, weight, bias, num_batches_tracked, training, momentum,
    eps, negative_slope, split, one_kernel,
) -> Optional[ForwardCall]:  # fmt: skip
    """The call kept for eager calls of kind ``key``, whose checks just passed, or None
    where the general path serves them: an input it copies into another layout, strided
    per-channel vectors (packed and copied back), no elements, scalars of other types."""
    numbers = (int, float)
    if not (
        type(training) is bool
        and type(split) is int
        and type(one_kernel) is bool
        and type(eps) in numbers
        and type(negative_slope) in numbers
        and (momentum is None or type(momentum) in numbers)
        and x.numel() > 0
        and all(t is None or t.is_contiguous() for t in (weight, bias, running_mean, running_var))
    ):
        return None
    availability.require_runnable(x.device)
    same, view = channel_view(x)
    if same is not x:
        return None
    plan = make_plan(view, x.device, interpreted=availability.INTERPRETED, split=split,
                     one_kernel=one_kernel)  # fmt: skip
    spec = _spec(weight, bias, running_mean, num_batches_tracked, training,
                 None if momentum is None else float(momentum), float(eps),
                 float(negative_slope), split, one_kernel, x.dtype)  # fmt: skip
    call = forward_call(view, plan, x.dtype, spec)
    return calls.remember(key, call)


def training_path(
    sizes: tuple[int, ...],
    strides: tuple[int, ...],
    device: torch.device,
    *,
    one_kernel: bool = False,
    counter_on_host: bool = False,
) -> dict:
    """The path a training forward + backward (every gradient) takes on an input of these
    sizes and strides on ``device``, in the words of a record: ``path`` (``one-kernel``, or
    ``split``), ``launches`` (of both passes: 2 or 6; one more for the one-kernel path when
    ``counter_on_host``, momentum None with running statistics: the counter's ``add_``),
    and, where one kernel was asked for and the shape cannot take it, ``why``."""
    view = layout_view(tuple(sizes), tuple(strides))
    plan = make_plan(view, device, interpreted=availability.INTERPRETED, one_kernel=one_kernel)
    if plan.fused:
        return {"path": FUSED, "launches": 2 + int(counter_on_host)}
    path = {"path": calls.SPLIT, "launches": 6}
    if plan.split_reason:
        path["why"] = f"one kernel asked, but {plan.split_reason}"
    return path


# ---------------------------------------------------------------------------------------
# Autograd and the functional API
# ---------------------------------------------------------------------------------------


class _BatchNormLeakyReLUFunction(torch.autograd.Function):
    """Autograd for the forward op; saves x and the ``[6, C]`` stats, nothing activation-sized.

    ``call``: the kept ``ForwardCall`` of an eager call of a kind seen before (launched as
    it is), or None (the registered ops, or their implementations for an eager call)."""

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
        one_kernel,
        call,
    ):
        ctx.call = call
        if call is not None:
            y, stats = _kept_forward(call, x, weight, bias, running_mean, running_var,
                                     num_batches_tracked)  # fmt: skip
            ctx.save_for_backward(x, stats)
            return y
        direct = direct_call()
        forward = _forward_impl if direct else torch.ops.gan_bench.batch_norm_leaky_relu_forward
        with eager_launches(direct):
            y, stats = forward(
                x, weight, bias, running_mean, running_var, num_batches_tracked,
                training, momentum, eps, negative_slope, split, one_kernel,
            )  # fmt: skip
        ctx.save_for_backward(x, stats)
        ctx.training = training
        ctx.negative_slope = negative_slope
        ctx.split = split
        ctx.one_kernel = one_kernel
        ctx.weight_dtype = weight.dtype if weight is not None else x.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else x.dtype
        return y

    @staticmethod
    def backward(ctx, dy):
        x, stats = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        direct = direct_call()
        call = ctx.call
        if call is not None and direct:
            dx, dw, db = _kept_backward(call, x, stats, dy, need_dx, need_dw, need_db)
            return (dx, dw, db, *_NO_GRADS)
        # what the op needs to know of the forward, from the kept call or the context
        fwd = ctx if call is None else call.spec
        backward = _backward_impl if direct else torch.ops.gan_bench.batch_norm_leaky_relu_backward
        with eager_launches(direct):
            dx, dw, db = backward(
                dy, x, stats, fwd.training, fwd.negative_slope, need_dx, need_dw, need_db,
                fwd.weight_dtype, fwd.bias_dtype, fwd.split, fwd.one_kernel,
            )  # fmt: skip
        return (
            dx if need_dx else None,
            dw if need_dw else None,
            db if need_db else None,
            *_NO_GRADS,
        )


# No gradients for running_mean ... call: the Function's inputs after x, weight and bias.
_NO_GRADS = (None,) * 10


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
    one_kernel: bool = False,
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
        one_kernel: on a GPU, take the one-kernel path (one launch each way: statistics,
            running statistics and activation in one program per channel block) wherever
            one program can own a channel block's whole reduction, not only for the small
            layers where it is the default (``kernels.batchnorm.plan.make_plan``).
        _split: internal, for tests: 0 chooses; 1 forces the single-launch path,
            ``k > 1`` the split path with up to k partials per channel.

    Raises:
        ValueError: bad shapes, devices or dtypes; one value per channel in training.
        KernelUnavailableError: no CUDA GPU and no TRITON_INTERPRET (no eager fallback).
    """
    key = None
    if direct_call():
        key = calls.call_key(
            x, running_mean, running_var, weight, bias, num_batches_tracked, training,
            momentum, eps, negative_slope, _split, one_kernel,
        )  # fmt: skip
    call = calls.CALLS.get(key) if key is not None else None
    if call is None:
        # Every check, the first time a kind of call is seen; calls of that kind are then
        # kept, and later ones pass them by being of that kind.
        check_arguments(x, running_mean, running_var, weight, bias, training, momentum,
                        num_batches_tracked)  # fmt: skip
        if key is not None:
            call = _first_call(key, x, running_mean, running_var, weight, bias,
                               num_batches_tracked, training, momentum, eps, negative_slope,
                               _split, one_kernel)  # fmt: skip
    if call is not None:
        return _BatchNormLeakyReLUFunction.apply(
            x, weight, bias, running_mean, running_var, num_batches_tracked, training,
            momentum, eps, negative_slope, _split, one_kernel, call,
        )  # fmt: skip
    w, b, rm, rv = unit_stride_vectors(weight, bias, running_mean, running_var)
    y = _BatchNormLeakyReLUFunction.apply(
        x, w, b, rm, rv, num_batches_tracked,
        bool(training), None if momentum is None else float(momentum), float(eps),
        float(negative_slope), int(_split), bool(one_kernel), None,
    )  # fmt: skip
    if training:
        copy_back_running_stats((running_mean, running_var), [rm, rv])
    return y
