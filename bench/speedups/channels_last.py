"""Models and images in channels_last (NHWC) memory order: the `channels-last` speed-up.

The 4-D weights are laid out NHWC when the networks move to the device; the fused
kernels and cuDNN keep their input's format, so activations stay NHWC from the first
layer on, and the real batches and latents are made NHWC too. The record reads the
format off the weights (`memory_format_of`): what really ran, not what was asked.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.speedups.base import Build, Option, SpeedUp, Stage
from bench.speedups.requirements import needs_convolutions


def memory_format_of(*modules: nn.Module) -> str:
    """The memory format the 4-D parameters (convolution weights) really have."""
    weights = [p for m in modules for p in m.parameters() if p.dim() == 4]
    if not weights:
        return "no 4-D parameters"
    # A weight of shape (C, 1, 1, 1) or (1, C, 1, 1) is both; it says nothing.
    telling = [w for w in weights if w.shape[1] > 1 and w.shape[2] * w.shape[3] > 1] or weights
    last = [w.is_contiguous(memory_format=torch.channels_last) for w in telling]
    if all(last):
        return "channels_last"
    if not any(last) and all(w.is_contiguous() for w in telling):
        return "contiguous"
    return "mixed"


def _channels_last(build: Build) -> None:
    build.memory_format = torch.channels_last


CHANNELS_LAST = SpeedUp(
    name="channels-last",
    help="models and images in channels_last (NHWC) memory format",
    options=(
        Option(
            "memory_format",
            str,
            "contiguous",
            "Memory format of models and images: contiguous (NCHW) or channels_last.",
            choices=("contiguous", "channels_last"),
        ),
    ),
    fields={"memory_format": "channels_last"},
    stage=Stage.MEMORY_FORMAT,
    hooks={Stage.MEMORY_FORMAT: _channels_last},
    requires=(needs_convolutions("it has no convolutions and its activations are 2-D"),),
)
