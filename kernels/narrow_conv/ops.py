"""Convolutions with few channels on one side, in Triton: ops, autograd, functional API.

``narrow_conv2d`` (optionally with a LeakyReLU fused into its epilogue) and
``narrow_conv_transpose2d`` compute what ``F.conv2d`` (+ ``F.leaky_relu``) and
``F.conv_transpose2d`` compute, for ``groups=1`` and ``dilation=1``, through the three
kernels of ``kernels/narrow_conv/kernels.py``:

==========================  ======================  ======================  ==============
op                          forward                 input gradient          weight gradient
==========================  ======================  ======================  ==============
narrow_conv2d               conv2d_kernel           conv_transpose2d_kernel weight_grad
narrow_conv_transpose2d     conv_transpose2d_kernel conv2d_kernel           weight_grad
==========================  ======================  ======================  ==============

(the transposed convolution's weight gradient is a convolution's, with the roles of
input and output gradient exchanged). The narrow side is the one ``conv_transpose2d_kernel``
writes: a convolution's input channels, a transposed convolution's output channels, at
most ``MAX_NARROW_CHANNELS``. The other side may be any width.

The ops are registered with ``torch.library.triton_op`` (functional, so autograd is
``torch.library.register_autograd``): torch.compile traces them without a graph break,
and a CUDA graph captures them (no host syncs). With an activation, the backward keeps
the output, not the pre-activation: ``y > 0`` exactly when the pre-activation is, for a
slope >= 0 (negative slopes are refused), which is the mask eager's LeakyReLU backward
uses (the slope at exactly 0).
"""

# ruff: noqa: UP007, UP045
# torch.library infers op schemas from the annotations; typing.Optional is understood by
# every torch version we support (2.11 to 2.14), PEP 604 unions are not guaranteed to be.

from __future__ import annotations

from typing import Optional

import torch
from torch._prims_common import suggest_memory_format

from kernels import availability
from kernels._plumbing import cdiv, define_op, eager_launches, launchable, sm_count, wrap_triton
from kernels.narrow_conv.plan import (
    MAX_NARROW_CHANNELS,
    active_narrow_tuning,
    conv2d_launch,
    conv_transpose2d_launch,
    weight_grad_launch,
)

if availability.TRITON_AVAILABLE:
    from kernels.narrow_conv.kernels import (
        conv2d_kernel,
        conv2d_weight_grad_kernel,
        conv_transpose2d_kernel,
    )

__all__ = ["narrow_conv2d", "narrow_conv_transpose2d"]

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _output_format(x: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """channels_last when either operand's strides read so (``suggest_memory_format``, as
    ATen decides for cuDNN), else contiguous."""
    if torch.channels_last in (suggest_memory_format(x), suggest_memory_format(weight)):
        return torch.channels_last
    return torch.contiguous_format


def _input_precision(dtype: torch.dtype) -> str:
    """``tl.dot``'s input precision: fp32 operands use TF32 where cuDNN would
    (``torch.backends.cudnn.allow_tf32``, which the harness sets per precision); 16-bit
    operands take Triton's default, which only fp32 operands read; the interpreter
    computes in IEEE arithmetic always."""
    if availability.INTERPRETED:
        return "ieee"
    if dtype == torch.float32:
        return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"
    return "tf32"


def _nhwc_strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    """Element strides of an (N, C, H, W) tensor in the kernels' order (n, h, w, c)."""
    sn, sc, sh, sw = t.stride()
    return sn, sh, sw, sc


def _needs_int64(*tensors: torch.Tensor) -> bool:
    """Whether an element offset into any of `tensors` may not fit in int32."""
    return any(
        sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride(), strict=True))
        >= 2**31 - 1
        for t in tensors
        if t.numel()
    )


def _like(mask: Optional[torch.Tensor], t: torch.Tensor) -> Optional[torch.Tensor]:
    """An activation's output read beside the gradient `t` with `t`'s offsets: `mask`
    itself when laid out alike (the usual case: both channels_last), else a copy so."""
    if mask is None or mask.stride() == t.stride():
        return mask
    return torch.empty_like(t).copy_(mask)


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


# ----------------------------------------------------------------------------------- ops


@define_op("gan_bench::narrow_conv2d", ())
def _conv2d_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    stride: list[int],
    padding: list[int],
    negative_slope: float,
    activation: bool,
) -> torch.Tensor:
    n, ci, h, w = x.shape
    co, _, kh, kw = weight.shape
    ho, wo = _conv_out(h, kh, stride[0], padding[0]), _conv_out(w, kw, stride[1], padding[1])
    y = torch.empty((n, co, ho, wo), dtype=x.dtype, device=x.device,
                    memory_format=_output_format(x, weight))  # fmt: skip
    m = n * ho * wo
    launch = conv2d_launch(ci * kh * kw, co, m, active_narrow_tuning())
    if m and launchable(x):
        with eager_launches():
            grid = (cdiv(m, launch["BLOCK_M"]), cdiv(co, launch["BLOCK_N"]))
            wrap_triton(conv2d_kernel)[grid](
                x, weight, bias if bias is not None else weight, y,
                m, h, w, ci, ho, wo, co, ci * kh * kw,
                *_nhwc_strides(x), *weight.stride(), *_nhwc_strides(y),
                stride[0], stride[1], padding[0], padding[1], kw,
                float(negative_slope),
                HAS_BIAS=bias is not None, ACTIVATION=activation,
                INPUT_PRECISION=_input_precision(x.dtype), I64=_needs_int64(x, y),
                **launch,
            )  # fmt: skip
    return y


@define_op("gan_bench::narrow_conv_transpose2d", ())
def _conv_transpose2d_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    stride: list[int],
    padding: list[int],
    output_size: list[int],
    mask: Optional[torch.Tensor] = None,
    mask_slope: float = 0.0,
) -> torch.Tensor:
    """``mask``: x is the gradient of a LeakyReLU's output ``mask`` (x's shape), of slope
    ``mask_slope``, taken through the activation's backward first."""
    n, ci, hi, wi = x.shape
    _, co, kh, kw = weight.shape
    ho, wo = output_size
    y = torch.empty((n, co, ho, wo), dtype=x.dtype, device=x.device,
                    memory_format=_output_format(x, weight))  # fmt: skip
    sh, sw = stride
    hp, wp = cdiv(ho, sh), cdiv(wo, sw)  # the most rows (columns) a stride phase has
    m = n * hp * wp
    launch = conv_transpose2d_launch(ci, co, m, active_narrow_tuning())
    mask = _like(mask, x)
    if m and launchable(x):
        with eager_launches():
            wrap_triton(conv_transpose2d_kernel)[(cdiv(m, launch["BLOCK_M"]) * sh * sw,)](
                x, weight, bias if bias is not None else weight, y,
                mask if mask is not None else x,
                n, hi, wi, ci, ho, wo, co,
                *_nhwc_strides(x), *weight.stride(), *_nhwc_strides(y),
                sh, sw, padding[0], padding[1], hp, wp, float(mask_slope),
                KH=kh, KW=kw, TAPS_H=cdiv(kh, sh), TAPS_W=cdiv(kw, sw),
                HAS_BIAS=bias is not None, MASKED=mask is not None,
                INPUT_PRECISION=_input_precision(x.dtype), I64=_needs_int64(x, y),
                **launch,
            )  # fmt: skip
    return y


@define_op("gan_bench::narrow_conv2d_weight_grad", ())
def _weight_grad_op(
    x: torch.Tensor,
    grad: torch.Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    dtype: torch.dtype,
    mask: Optional[torch.Tensor] = None,
    mask_slope: float = 0.0,
) -> torch.Tensor:
    """d loss / d weight of ``conv2d(x, weight)`` given the output's gradient ``grad``:
    ``(CO, CI, KH, KW)`` in ``dtype``, laid out channels_last ((co, kh, kw, ci) in memory).
    ``mask``: as in ``narrow_conv_transpose2d``, for ``grad``."""
    n, ci, h, w = x.shape
    _, co, ho, wo = grad.shape
    kh, kw = kernel_size
    k = ci * kh * kw
    m = n * ho * wo
    t = active_narrow_tuning()
    launch = weight_grad_launch(co, k, m, t)
    block_co, block_k, block_m = launch["BLOCK_CO"], launch["BLOCK_K"], launch["BLOCK_M"]
    tiles = cdiv(co, block_co) * cdiv(k, block_k)
    sms = sm_count(x.device) if x.device.type == "cuda" else 1
    split = max(1, min(cdiv(m, block_m), cdiv(t.wgrad_programs_per_sm * sms, tiles)))
    per_split = cdiv(cdiv(m, split), block_m) * block_m
    split = max(1, cdiv(m, per_split))
    # Every element is written by one program; zeros only when there is nothing to sum.
    part = (x.new_empty if m else x.new_zeros)((split, co, k), dtype=torch.float32)
    mask = _like(mask, grad)
    if m and launchable(x):
        with eager_launches():
            wrap_triton(conv2d_weight_grad_kernel)[
                (cdiv(co, block_co), cdiv(k, block_k), split)
            ](
                x, grad, part, mask if mask is not None else grad,
                m, h, w, ci, ho, wo, co, k,
                *_nhwc_strides(x), *_nhwc_strides(grad),
                stride[0], stride[1], padding[0], padding[1], kw,
                per_split, float(mask_slope),
                MASKED=mask is not None, INPUT_PRECISION=_input_precision(x.dtype),
                I64=_needs_int64(x, grad),
                **launch,
            )  # fmt: skip
    # Partials added in a fixed order (deterministic); (co, kh, kw, ci) -> (co, ci, kh, kw)
    # is a permutation of the dims, not a copy: the result is channels_last.
    dw = part.sum(dim=0).view(co, kh, kw, ci).permute(0, 3, 1, 2)
    return dw.to(dtype)


# ------------------------------------------------------------------------------ autograd


def _conv2d_setup(ctx, inputs, output) -> None:
    x, weight, bias, stride, padding, negative_slope, activation = inputs
    ctx.save_for_backward(x, weight, output if activation else None)
    ctx.stride, ctx.padding = stride, padding
    ctx.negative_slope, ctx.activation = negative_slope, activation
    ctx.bias_dtype = bias.dtype if bias is not None else None


def _conv2d_backward(ctx, dy):
    x, weight, y = ctx.saved_tensors  # y: the activation's output, None without one
    slope = ctx.negative_slope
    need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
    dx = dw = db = None
    # The activation's backward (the mask y > 0: see the module docstring) is applied by
    # the kernels as they load dy.
    if need_dx:
        dx = torch.ops.gan_bench.narrow_conv_transpose2d(
            dy, weight, None, ctx.stride, ctx.padding, list(x.shape[2:]), y, slope
        )
    if need_dw:
        dw = torch.ops.gan_bench.narrow_conv2d_weight_grad(
            x, dy, list(weight.shape[2:]), ctx.stride, ctx.padding, weight.dtype, y, slope
        )
    if need_db:
        if y is not None:
            dy = torch.where(y > 0, dy, dy * slope)
        db = dy.sum(dim=(0, 2, 3), dtype=torch.float32).to(ctx.bias_dtype)
    return dx, dw, db, None, None, None, None


def _conv_transpose2d_setup(ctx, inputs, output) -> None:
    x, weight, bias, stride, padding = inputs[:5]
    ctx.save_for_backward(x, weight)
    ctx.stride, ctx.padding = stride, padding
    ctx.bias_dtype = bias.dtype if bias is not None else None


def _conv_transpose2d_backward(ctx, dy):
    x, weight = ctx.saved_tensors
    need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
    dx = dw = db = None
    if need_dx:  # a convolution of dy with the same weight, read as (out=CI, in=CO, ...)
        dx = torch.ops.gan_bench.narrow_conv2d(dy, weight, None, ctx.stride, ctx.padding,
                                               0.0, False)  # fmt: skip
    if need_dw:  # the convolution dy -> x's weight gradient: (CI, CO, KH, KW), as weight
        dw = torch.ops.gan_bench.narrow_conv2d_weight_grad(
            dy, x, list(weight.shape[2:]), ctx.stride, ctx.padding, weight.dtype
        )
    if need_db:
        db = dy.sum(dim=(0, 2, 3), dtype=torch.float32).to(ctx.bias_dtype)
    return dx, dw, db, None, None, None, None, None


_conv2d_op.register_autograd(_conv2d_backward, setup_context=_conv2d_setup)
_conv_transpose2d_op.register_autograd(
    _conv_transpose2d_backward, setup_context=_conv_transpose2d_setup
)


# ---------------------------------------------------------------------------- functional


def _pair(name: str, value, low: int) -> list[int]:
    pair = [value, value] if isinstance(value, int) else list(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= low for v in pair):
        raise ValueError(f"{name} must be an int >= {low} or a pair of them, got {value!r}")
    return pair


def _check(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
           narrow: int, what: str) -> None:  # fmt: skip
    for name, t in (("input", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(f"{name} must be a 4-D tensor (N, C, H, W)")
        if t.dtype not in _DTYPES:
            raise ValueError(f"{name} dtype must be float16, bfloat16 or float32, got {t.dtype}")
    if x.dtype != weight.dtype or x.device != weight.device:
        raise ValueError(
            f"input ({x.dtype} on {x.device}) and weight ({weight.dtype} on {weight.device}) "
            "must have the same dtype and device"
        )
    if bias is not None and (bias.dim() != 1 or bias.device != x.device):
        raise ValueError(f"bias must be a 1-D tensor on {x.device}")
    if narrow > MAX_NARROW_CHANNELS:
        raise ValueError(
            f"{what} has {narrow} channels; these kernels take at most {MAX_NARROW_CHANNELS} there"
        )
    if not torch.compiler.is_compiling():  # checked when the eager call (or trace) starts
        availability.require_runnable(x.device)


def narrow_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride=1,
    padding=0,
    negative_slope: Optional[float] = None,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)``, then ``F.leaky_relu(., slope)`` when
    ``negative_slope`` is given (0 is ReLU), in Triton kernels; differentiable.

    Args:
        x: ``(N, CI, H, W)``, CI <= MAX_NARROW_CHANNELS, float16/bfloat16/float32, any
            strides (channels_last reads contiguous rows). The output has x's dtype, and
            is channels_last when x or weight is.
        weight: ``(CO, CI, KH, KW)``, x's dtype (cast both first under autocast).
        bias: ``(CO,)`` or None.
        stride, padding: ints or pairs; dilation 1, groups 1.
        negative_slope: the fused LeakyReLU's slope (>= 0), or None for no activation.

    Raises:
        ValueError: shapes, dtypes or arguments these kernels do not take.
        KernelUnavailableError: no CUDA GPU and no TRITON_INTERPRET (no eager fallback).
    """
    _check(x, weight, bias, x.shape[1] if x.dim() == 4 else 0, "the input")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight {tuple(weight.shape)} does not take {x.shape[1]} channels")
    if negative_slope is not None and not negative_slope >= 0:
        raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
    s, p = _pair("stride", stride, 1), _pair("padding", padding, 0)
    for d in (0, 1):
        if _conv_out(x.shape[2 + d], weight.shape[2 + d], s[d], p[d]) < 1:
            raise ValueError(f"input {tuple(x.shape)} is smaller than the kernel")
    slope = 0.0 if negative_slope is None else float(negative_slope)
    return torch.ops.gan_bench.narrow_conv2d(x, weight, bias, s, p, slope,
                                             negative_slope is not None)  # fmt: skip


def narrow_conv_transpose2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride=1,
    padding=0,
    output_padding=0,
) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, bias, stride, padding, output_padding)`` in Triton
    kernels, differentiable; ``weight`` is ``(CI, CO, KH, KW)`` with CO <=
    MAX_NARROW_CHANNELS. Dtypes, layouts and errors as ``narrow_conv2d``."""
    _check(x, weight, bias, weight.shape[1] if weight.dim() == 4 else 0, "the output")
    if weight.shape[0] != x.shape[1]:
        raise ValueError(f"weight {tuple(weight.shape)} does not take {x.shape[1]} channels")
    s, p = _pair("stride", stride, 1), _pair("padding", padding, 0)
    op = _pair("output_padding", output_padding, 0)
    size = []
    for d in (0, 1):
        if op[d] >= s[d]:
            raise ValueError(f"output_padding {op} must be smaller than the stride {s}")
        size.append((x.shape[2 + d] - 1) * s[d] - 2 * p[d] + weight.shape[2 + d] + op[d])
    if min(size) < 1:
        raise ValueError(f"padding {p} leaves no output for input {tuple(x.shape)}")
    return torch.ops.gan_bench.narrow_conv_transpose2d(x, weight, bias, s, p, size)
