"""What one call of the fused op needs besides its tensors, worked out once per kind of call.

The host side of a call (the input's channel view, the launch plan, each kernel's grid,
constexprs and scalar arguments) depends only on the kind of call: its input's sizes,
strides, dtype and device, which optional tensors it has, its flags and scalars. It is
worked out once into a ``ForwardCall`` (and its ``BackwardCall``s), which ``ops.py``
launches with the call's tensors; nothing here launches or allocates anything.

``call_key`` names the kind of an eager call; ``remember``/``CALLS`` keep the calls of
the kinds already seen, so that an eager call of such a kind costs its key, its
allocations and its launches (``ops.batch_norm_leaky_relu``).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from kernels import availability
from kernels._plumbing import KernelSite, cdiv
from kernels.batchnorm.plan import (
    ChannelView,
    LaunchPlan,
    _concrete,
    active_tuning,
    finalize_blocks,
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

__all__ = [
    "CALLS",
    "forget",
    "BackwardCall",
    "CallSpec",
    "ForwardCall",
    "Prepared",
    "backward_call",
    "call_key",
    "float_arg",
    "forward_call",
    "remember",
]

# Kinds of calls kept at most; past it the table starts afresh (a process that keeps
# meeting new kinds of calls, say growing batches, would otherwise grow it forever).
MAX_CALLS = 4096


def float_arg(value: float, fp64: bool) -> float | int:
    """A float kernel argument (eps, slope, momentum). Triton passes a Python float to a
    compiled kernel as fp32, which would round 0.2 to 0.20000000298 in float64 kernels:
    for float64 inputs the float64's bit pattern is passed as an integer instead, and the
    kernel rebuilds it (``_float_arg`` in the kernels)."""
    if not fp64:
        return float(value)
    return struct.unpack("<q", struct.pack("<d", float(value)))[0]


class Prepared(NamedTuple):
    """One launch's site (kernel, grid, constexprs) and its scalar arguments."""

    site: KernelSite
    scalars: tuple


def _tiled(plan: LaunchPlan, fp64: bool, **constexprs) -> dict:
    """The tiled kernels' constexprs and launch options."""
    return {"BLOCK_C": plan.block_c, "BLOCK_N": plan.block_n, "BLOCK_S": plan.block_s,
            "FP64": fp64, **constexprs, **plan.launch_options}  # fmt: skip


def _walk(view: ChannelView, plan: LaunchPlan, *counts: int) -> tuple:
    """The tiled kernels' leading scalars: ``C, N, S, n_tiles_s, *counts, sn, sc, ss``."""
    return (view.c, view.n, view.s, plan.n_tiles_s, *counts, view.sn, view.sc, view.ss)


def prepare_stats_partial(view: ChannelView, plan: LaunchPlan, fp64: bool) -> Prepared:
    """Launched with ``(x, part, *scalars)``."""
    options = _tiled(plan, fp64, NUM_STAGES=plan.num_stages, EVEN=plan.even)
    scalars = _walk(view, plan, plan.tiles_total, plan.tiles_per_prog)
    site = KernelSite(bn_stats_partial_kernel, (plan.c_blocks, plan.split), options)
    return Prepared(site, scalars)


def prepare_stats_finalize(
    view: ChannelView,
    parts: int,
    fp64: bool,
    *,
    has_w: bool = False,
    has_b: bool = False,
    update: bool = False,
    factor_from_nbt: bool = False,
    merge_only: bool = False,
    momentum: float | None = None,
    eps: float = 1e-5,
    shift_stride: int | None = None,
) -> Prepared:
    """Launched with ``(part, P, shift, shift_stride, C, weight, bias, running_mean,
    running_var, num_batches_tracked, stats, merged, momentum, eps)``, the scalars being
    ``(P, shift_stride, C, momentum, eps)``. ``shift_stride``: None for the shift read
    from x (``view.sc``, the channel's first element), 1 for a per-channel vector."""
    block_c, block_p = finalize_blocks(view.c, parts)
    options = {"HAS_W": has_w, "HAS_B": has_b, "UPDATE_RUNNING": update,
               "FACTOR_FROM_NBT": factor_from_nbt, "MERGE_ONLY": merge_only,
               "BLOCK_C": block_c, "BLOCK_P": block_p, "FP64": fp64}  # fmt: skip
    stride = view.sc if shift_stride is None else shift_stride
    momentum_arg = float_arg(0.0 if momentum is None else momentum, fp64)
    scalars = (parts, stride, view.c, momentum_arg, float_arg(eps, fp64))
    site = KernelSite(bn_stats_finalize_kernel, (cdiv(view.c, block_c),), options)
    return Prepared(site, scalars)


def prepare_apply(
    view: ChannelView,
    plan: LaunchPlan,
    fp64: bool,
    *,
    negative_slope: float,
    is_eval: bool = False,
    has_w: bool = False,
    has_b: bool = False,
    increment: bool = False,
    eps: float = 1e-5,
) -> Prepared:
    """Launched with ``(x, y, stats, weight, bias, running_mean, running_var, increment,
    *scalars)``; eval mode reads the weight, bias and running statistics."""
    options = _tiled(plan, fp64, EVAL=is_eval, HAS_W=has_w, HAS_B=has_b, INC_NBT=increment)
    floats = (float_arg(eps, fp64), float_arg(negative_slope, fp64), float(view.count))
    site = KernelSite(bn_apply_kernel, (plan.tiles_total, plan.c_blocks), options)
    return Prepared(site, (*_walk(view, plan), *floats))


def prepare_forward_fused(
    view: ChannelView,
    plan: LaunchPlan,
    fp64: bool,
    *,
    has_w: bool,
    has_b: bool,
    update: bool,
    factor_from_nbt: bool,
    increment: bool,
    momentum: float | None,
    eps: float,
    negative_slope: float,
) -> Prepared:
    """Launched with ``(x, y, stats, weight, bias, running_mean, running_var,
    num_batches_tracked, *scalars)``."""
    options = _tiled(
        plan, fp64, HAS_W=has_w, HAS_B=has_b, UPDATE_RUNNING=update,
        FACTOR_FROM_NBT=factor_from_nbt, INC_NBT=increment, NUM_STAGES=plan.num_stages,
        EVEN=plan.even,
    )  # fmt: skip
    floats = (float_arg(0.0 if momentum is None else momentum, fp64), float_arg(eps, fp64),
              float_arg(negative_slope, fp64))  # fmt: skip
    site = KernelSite(bn_fwd_fused_kernel, (plan.c_blocks,), options)
    return Prepared(site, (*_walk(view, plan, plan.tiles_total), *floats))


def prepare_backward_partial(
    view: ChannelView, plan: LaunchPlan, fp64: bool, *, write_dx: bool, negative_slope: float
) -> Prepared:
    """Launched with ``(x, dy, dx, stats, part, *scalars)``."""
    options = _tiled(plan, fp64, WRITE_DX=write_dx, NUM_STAGES=plan.num_stages)
    scalars = _walk(view, plan, plan.tiles_total, plan.tiles_per_prog)
    site = KernelSite(bn_bwd_partial_kernel, (plan.c_blocks, plan.split), options)
    return Prepared(site, (*scalars, float_arg(negative_slope, fp64)))


def prepare_backward_finalize(
    view: ChannelView, parts: int, fp64: bool, *, has_dw: bool, has_db: bool
) -> Prepared:
    """Launched with ``(part, P, C, sums, dweight, dbias)``, the scalars being ``(P, C)``."""
    block_c, block_p = finalize_blocks(view.c, parts)
    options = {"HAS_DW": has_dw, "HAS_DB": has_db, "BLOCK_C": block_c, "BLOCK_P": block_p,
               "FP64": fp64}  # fmt: skip
    site = KernelSite(bn_bwd_finalize_kernel, (cdiv(view.c, block_c),), options)
    return Prepared(site, (parts, view.c))


def prepare_dx(
    view: ChannelView, plan: LaunchPlan, fp64: bool, *, training: bool, negative_slope: float
) -> Prepared:
    """Launched with ``(x, dy, dx, stats, sums, *scalars)`` (``sums`` unread outside
    training)."""
    options = _tiled(plan, fp64, TRAINING=training)
    site = KernelSite(bn_bwd_dx_kernel, (plan.tiles_total, plan.c_blocks), options)
    return Prepared(site, (*_walk(view, plan), float_arg(negative_slope, fp64)))


def prepare_backward_fused(
    view: ChannelView,
    plan: LaunchPlan,
    fp64: bool,
    *,
    training: bool,
    dx_in_reduce: bool,
    dx_after: bool,
    has_dw: bool,
    has_db: bool,
    negative_slope: float,
) -> Prepared:
    """Launched with ``(x, dy, dx, stats, dweight, dbias, *scalars)``."""
    options = _tiled(
        plan, fp64, TRAINING=training, REDUCE=True, DX_IN_REDUCE=dx_in_reduce,
        DX_AFTER=dx_after, HAS_DW=has_dw, HAS_DB=has_db, NUM_STAGES=plan.num_stages,
    )  # fmt: skip
    scalars = _walk(view, plan, plan.tiles_total)
    site = KernelSite(bn_bwd_fused_kernel, (plan.c_blocks,), options)
    return Prepared(site, (*scalars, float_arg(negative_slope, fp64)))


# What a pass launches: nothing, the elementwise pass alone, one program per channel block
# (the one-kernel path), or partial reductions, their merge and the elementwise pass.
EVAL, DX_ONLY, NOTHING, FUSED, SPLIT = "eval", "dx only", "nothing", "one-kernel", "split"


class CallSpec(NamedTuple):
    """A call's flags and scalars. ``training`` means batch statistics (F.batch_norm's
    meaning); running statistics are updated iff they are given (``running_stats``), and
    ``num_batches_tracked`` then counted if given (``counter``)."""

    training: bool
    has_w: bool
    has_b: bool
    running_stats: bool
    counter: bool
    momentum: float | None
    eps: float
    negative_slope: float
    split: int
    one_kernel: bool
    weight_dtype: torch.dtype
    bias_dtype: torch.dtype


@dataclass(eq=False)
class BackwardCall:
    """The backward of one kind of call for one set of requested gradients: ``kind``
    NOTHING, DX_ONLY, FUSED or SPLIT, and ``launches`` in order (the split path's partial
    reduction, merge and, with ``dx_after``, dx)."""

    kind: str
    plan: LaunchPlan
    dx_in_reduce: bool
    dx_after: bool
    launches: tuple[Prepared, ...]


@dataclass(eq=False)
class ForwardCall:
    """The forward of one kind of call, and its backwards by requested gradients.

    ``kind``: EVAL (the elementwise pass with the running statistics), FUSED or SPLIT;
    ``launches`` in order. ``update``: running statistics are updated; ``increment``:
    ``num_batches_tracked`` too, by an ``add_`` after the launches when
    ``host_increment`` (the one-kernel path when its programs read the counter), else in
    a kernel.
    """

    kind: str
    view: ChannelView
    plan: LaunchPlan
    acc: torch.dtype
    spec: CallSpec
    update: bool
    factor_from_nbt: bool
    increment: bool
    host_increment: bool
    launches: tuple[Prepared, ...]
    backwards: dict = field(default_factory=dict, repr=False)

    def backward(self, need_dx: bool, need_dweight: bool, need_dbias: bool) -> BackwardCall:
        """The backward for these gradients, worked out at its first call."""
        needs = (need_dx, need_dweight, need_dbias)
        found = self.backwards.get(needs)
        if found is None:
            fp64, spec = self.acc == torch.float64, self.spec
            found = backward_call(self.view, self.plan, fp64, spec.training,
                                  spec.negative_slope, *needs)  # fmt: skip
            self.backwards[needs] = found
        return found


def forward_call(view: ChannelView, plan: LaunchPlan, dtype: torch.dtype, spec: CallSpec):
    """The forward of a call on an input of ``view`` and ``dtype`` planned as ``plan``,
    kept for concrete views (as the plans are)."""
    if _concrete(*view.__dict__.values()):
        return _cached_forward_call(view, plan, dtype, spec)
    return _forward_call(view, plan, dtype, spec)


@functools.lru_cache(maxsize=MAX_CALLS)
def _cached_forward_call(*args) -> ForwardCall:
    return _forward_call(*args)


def _forward_call(view, plan, dtype, spec: CallSpec) -> ForwardCall:
    fp64 = dtype == torch.float64
    update = spec.training and spec.running_stats
    increment = update and spec.counter
    factor_from_nbt = update and spec.momentum is None
    # The counter is bumped inside the one-kernel path's kernel only when no program reads it.
    host_increment = increment and factor_from_nbt and plan.fused
    affine = {"has_w": spec.has_w, "has_b": spec.has_b}
    slope = spec.negative_slope
    if not spec.training:
        kind = EVAL
        launches = (prepare_apply(view, plan, fp64, negative_slope=slope, is_eval=True,
                                  eps=spec.eps, **affine),)  # fmt: skip
    elif plan.fused:
        kind = FUSED
        launches = (prepare_forward_fused(
            view, plan, fp64, update=update, factor_from_nbt=factor_from_nbt,
            increment=increment and not host_increment, momentum=spec.momentum, eps=spec.eps,
            negative_slope=slope, **affine,
        ),)  # fmt: skip
    else:
        kind = SPLIT
        launches = (
            prepare_stats_partial(view, plan, fp64),
            prepare_stats_finalize(view, plan.split, fp64, update=update,
                                   factor_from_nbt=factor_from_nbt, momentum=spec.momentum,
                                   eps=spec.eps, **affine),
            prepare_apply(view, plan, fp64, negative_slope=slope, increment=increment),
        )  # fmt: skip
    acc = torch.float64 if fp64 else torch.float32
    return ForwardCall(kind, view, plan, acc, spec, update, factor_from_nbt, increment,
                       host_increment, launches)  # fmt: skip


def backward_call(
    view: ChannelView,
    plan: LaunchPlan,
    fp64: bool,
    training: bool,
    negative_slope: float,
    need_dx: bool,
    need_dweight: bool,
    need_dbias: bool,
) -> BackwardCall:
    """The backward of a call on an input of ``view`` planned as ``plan``, kept for
    concrete views. ``training``: the forward used batch statistics."""
    args = (view, plan, fp64, training, negative_slope, need_dx, need_dweight, need_dbias)
    if _concrete(*view.__dict__.values()):
        return _cached_backward_call(*args)
    return _backward_call(*args)


@functools.lru_cache(maxsize=MAX_CALLS)
def _cached_backward_call(*args) -> BackwardCall:
    return _backward_call(*args)


def _backward_call(
    view, plan, fp64, training, negative_slope, need_dx, need_dweight, need_dbias
) -> BackwardCall:
    # Training dx needs the sums of the whole channel; eval dx does not (it is g * scale).
    reduce = (training and need_dx) or need_dweight or need_dbias
    dx_in_reduce = need_dx and reduce and not training
    dx_after = need_dx and (training or not reduce)
    grads = {"has_dw": need_dweight, "has_db": need_dbias}
    slope = {"negative_slope": negative_slope}
    if not reduce:
        kind = DX_ONLY if dx_after else NOTHING
        launches = (prepare_dx(view, plan, fp64, training=False, **slope),) if dx_after else ()
    elif plan.fused:
        kind = FUSED
        launches = (prepare_backward_fused(view, plan, fp64, training=training,
                                           dx_in_reduce=dx_in_reduce, dx_after=dx_after,
                                           **grads, **slope),)  # fmt: skip
    else:
        kind = SPLIT
        launches = (
            prepare_backward_partial(view, plan, fp64, write_dx=dx_in_reduce, **slope),
            prepare_backward_finalize(view, plan.split, fp64, **grads),
        )
        if dx_after:
            launches += (prepare_dx(view, plan, fp64, training=True, **slope),)
    return BackwardCall(kind, plan, dx_in_reduce, dx_after, launches)


# The eager calls of each kind seen so far, by ``call_key``.
CALLS: dict[tuple, ForwardCall] = {}


def _tensor_key(t: torch.Tensor | None):
    if t is None:
        return None
    return (type(t), t.shape, t.stride(), t.dtype, t.device)


def call_key(
    x,
    running_mean,
    running_var,
    weight,
    bias,
    num_batches_tracked,
    training,
    momentum,
    eps,
    negative_slope,
    split,
    one_kernel,
) -> tuple | None:
    """The kind of an eager call: everything that its checks, its plan and its launches'
    host-side arguments depend on. None where the call is never kept (an input that is
    not a plain tensor: a subclass, a fake tensor; an argument that is not a tensor)."""
    if type(x) is not torch.Tensor:
        return None
    try:
        tensors = (
            _tensor_key(weight),
            _tensor_key(bias),
            _tensor_key(running_mean),
            _tensor_key(running_var),
            _tensor_key(num_batches_tracked),
        )
    except AttributeError:
        return None
    return (
        x.shape,
        x.stride(),
        x.dtype,
        x.device,
        tensors,
        training,
        momentum,
        eps,
        negative_slope,
        split,
        one_kernel,
        active_tuning(),
    )


def forget() -> None:
    """Drop every kept call: for whoever changes what a call would plan (a benchmark that
    plans as on a GPU), so that no call kept before serves one planned after."""
    CALLS.clear()


def remember(key: tuple, call: ForwardCall) -> ForwardCall:
    """Keep ``call`` for eager calls of kind ``key`` (whose checks all passed)."""
    if len(CALLS) >= MAX_CALLS:
        CALLS.clear()
    CALLS[key] = call
    return call
