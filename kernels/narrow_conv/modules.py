"""Drop-in convolution modules over the narrow-convolution kernels, and the swap that puts
them in a model in place of ``nn.Conv2d`` / ``nn.ConvTranspose2d``.

``NarrowConv2d`` and ``NarrowConvTranspose2d`` subclass the torch modules: the same
parameters, state_dict and attributes, so checkpoints, optimizers, ``isinstance`` checks
and code that widens a layer's channels keep working; only ``forward`` differs.
``NarrowConv2d`` can carry the LeakyReLU (or ReLU) that followed it, in its epilogue.
Under autocast they cast input, weight and bias to autocast's dtype, as autocast does for
a convolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from kernels.narrow_conv.ops import narrow_conv2d, narrow_conv_transpose2d
from kernels.narrow_conv.plan import MAX_NARROW_CHANNELS

__all__ = ["NarrowConv2d", "NarrowConvTranspose2d", "SwapReport", "swap_narrow_convolutions"]

# Convolutions whose narrow side has at most this many channels are swapped by default:
# image channels (1 to 4, 8 once padded), where library kernels tile 64 or more.
DEFAULT_MAX_CHANNELS = 16


def _autocast(x: torch.Tensor, *tensors):
    """x and `tensors` in autocast's dtype when autocast is on for x's device."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return (x, *tensors)
    dtype = torch.get_autocast_dtype(device)
    return tuple(t if t is None else t.to(dtype) for t in (x, *tensors))


class NarrowConv2d(nn.Conv2d):
    """``nn.Conv2d`` (groups 1, dilation 1, zero padding) computed by ``narrow_conv2d``,
    followed by a LeakyReLU of slope ``negative_slope`` when that is not None."""

    negative_slope: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, weight, bias = _autocast(x, self.weight, self.bias)
        return narrow_conv2d(x, weight, bias, self.stride, self.padding, self.negative_slope)

    def extra_repr(self) -> str:
        slope = "" if self.negative_slope is None else f", negative_slope={self.negative_slope}"
        return super().extra_repr() + slope


class NarrowConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (groups 1, dilation 1) computed by ``narrow_conv_transpose2d``."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if output_size is not None:
            raise ValueError("NarrowConvTranspose2d takes its output_padding, not output_size")
        x, weight, bias = _autocast(x, self.weight, self.bias)
        return narrow_conv_transpose2d(
            x, weight, bias, self.stride, self.padding, self.output_padding
        )


@dataclass
class SwapReport:
    """What ``swap_narrow_convolutions`` did: ``swapped`` names (``"<conv>+<activation>"``
    when an activation was fused in), ``skipped`` (name, reason) of narrow convolutions
    left as they were."""

    swapped: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.swapped)


def _unsupported(conv: nn.Module) -> str | None:
    if conv.groups != 1:
        return f"groups={conv.groups}"
    if tuple(conv.dilation) != (1, 1):
        return f"dilation={tuple(conv.dilation)}"
    if conv.padding_mode != "zeros":
        return f"padding_mode={conv.padding_mode!r}"
    if isinstance(conv.padding, str):
        return f"padding={conv.padding!r}"
    return None


def _activation_slope(module: nn.Module) -> float | None:
    if type(module) is nn.ReLU:
        return 0.0
    if type(module) is nn.LeakyReLU and module.negative_slope >= 0:
        return float(module.negative_slope)
    return None


def _swap(conv: nn.Module, new_type: type) -> nn.Module:
    """`conv` as `new_type`: the same object state (parameters shared, not copied)."""
    swapped = new_type.__new__(new_type)
    swapped.__dict__.update(conv.__dict__)
    return swapped


def swap_narrow_convolutions(
    module: nn.Module, max_channels: int = DEFAULT_MAX_CHANNELS
) -> SwapReport:
    """Replace, in place, each ``nn.Conv2d`` with at most `max_channels` input channels and
    each ``nn.ConvTranspose2d`` with at most `max_channels` output channels (exact types)
    by the narrow modules, sharing their parameters; a ``nn.LeakyReLU`` (slope >= 0) or
    ``nn.ReLU`` that follows such a ``Conv2d`` as the next child of an ``nn.Sequential``
    moves into its epilogue and becomes ``nn.Identity``."""
    if not 1 <= max_channels <= MAX_NARROW_CHANNELS:
        raise ValueError(f"max_channels must be in [1, {MAX_NARROW_CHANNELS}], got {max_channels}")
    report = SwapReport()
    for prefix, parent in list(module.named_modules()):
        children = list(parent.named_children())
        for i, (name, child) in enumerate(children):
            full = f"{prefix}.{name}" if prefix else name
            if type(child) is nn.Conv2d and child.in_channels <= max_channels:
                new_type = NarrowConv2d
            elif type(child) is nn.ConvTranspose2d and child.out_channels <= max_channels:
                new_type = NarrowConvTranspose2d
            else:
                continue
            reason = _unsupported(child)
            if reason:
                report.skipped.append((full, reason))
                continue
            swapped = _swap(child, new_type)
            label = full
            if new_type is NarrowConv2d and isinstance(parent, nn.Sequential):
                after = children[i + 1] if i + 1 < len(children) else None
                slope = None if after is None else _activation_slope(after[1])
                if slope is not None:
                    swapped.negative_slope = slope
                    setattr(parent, after[0], nn.Identity())
                    label = f"{full}+{prefix + '.' if prefix else ''}{after[0]}"
            setattr(parent, name, swapped)
            report.swapped.append(label)
    return report
