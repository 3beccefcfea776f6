"""Host-side launch planning of the narrow convolutions: the launch tuning, and the tile
sizes and launch options of each kernel for a layer's sizes.

Nothing here launches anything; ``kernels/narrow_conv/ops.py`` turns these into grids.
Everything is decided from shapes and the tuning, never from tensor values.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from kernels import availability
from kernels._plumbing import ActiveSetting, next_pow2

__all__ = [
    "DEFAULT_NARROW_TUNING",
    "MAX_NARROW_CHANNELS",
    "NarrowTuning",
    "active_narrow_tuning",
    "conv2d_launch",
    "conv_transpose2d_launch",
    "narrow_tuned",
    "weight_grad_launch",
]

# The narrow side is one tile wide in conv_transpose2d_kernel (its BLOCK_N).
MAX_NARROW_CHANNELS = 64


@dataclass(frozen=True)
class NarrowTuning:
    """How the kernels are launched (``gan-bench kernels --convs --tune`` times others).

    ``block_m``, ``num_warps``: output pixels per tile (the GEMM's M side) and warps of the
    convolution and the transposed convolution; ``wide_block_k``: the transposed
    convolution's chunk of its wide input's channels; ``wgrad_block_m``,
    ``wgrad_num_warps``: pixels per step of the weight gradient's reduction, and its warps;
    ``wgrad_programs_per_sm``: its programs per streaming multiprocessor (its partial sums
    over the pixels fill the device: a DCGAN image layer has 64 x 48 weights to reduce over
    10^6 pixels at batch 1024); ``num_stages`` as Triton takes it. A tile of None pixels
    covers the whole layer (up to the most a Triton tile holds). The defaults keep every
    kernel within a thread's registers on sm_90 (no spills: ptxas, bf16; checked by
    tests/kernels/narrow_conv/test_narrow_conv_sm90.py, which compiles them for it on any machine).
    """

    block_m: int | None = 64
    num_warps: int = 4
    wide_block_k: int = 32
    wgrad_block_m: int | None = 32
    wgrad_num_warps: int = 8
    wgrad_programs_per_sm: int = 4
    num_stages: int = 3


# Triton's interpreter runs each program's operations one at a time in numpy, with a cost
# per program and operation far above the cost per element: there, one program per layer
# (and per stride phase) where a tile can hold it. A DCGAN-32 generator's last layer over 64
# images took 4.8 s at 512-pixel tiles, 1.0 s at 8192.
DEFAULT_NARROW_TUNING = (
    NarrowTuning(block_m=None, wide_block_k=64, wgrad_block_m=None, wgrad_programs_per_sm=1)
    if availability.INTERPRETED
    else NarrowTuning()
)
# Triton's largest tile is 2^20 elements: pixels x 64 channels (or 64-wide K chunks) at most.
_WHOLE_LAYER_MAX_M = 8192
_TUNING = ActiveSetting(DEFAULT_NARROW_TUNING)


def active_narrow_tuning() -> NarrowTuning:
    """The NarrowTuning the ops launch with now (DEFAULT_NARROW_TUNING unless inside
    ``narrow_tuned``)."""
    return _TUNING.value


def narrow_tuned(tuning: NarrowTuning) -> contextlib.AbstractContextManager[NarrowTuning]:
    """Launch the narrow convolutions with ``tuning`` inside the block (see
    ``kernels._plumbing.ActiveSetting``)."""
    return _TUNING.use(tuning)


def _dot_side(n: int) -> int:
    """A tile side for n elements: a power of 2, at least 16 (tl.dot's smallest)."""
    return max(16, next_pow2(n))


def _tile_m(block_m: int | None, m: int) -> int:
    return block_m or min(_WHOLE_LAYER_MAX_M, max(64, next_pow2(m)))


def conv2d_launch(k: int, co: int, m: int, t: NarrowTuning) -> dict:
    """conv2d_kernel's tile sizes and launch options for K = CI*KH*KW, CO channels out and
    m output pixels."""
    return {
        "BLOCK_M": _tile_m(t.block_m, m),
        "BLOCK_N": min(128, _dot_side(co)),
        "BLOCK_K": 32 if k % 32 == 0 else 16,
        "num_warps": t.num_warps,
        "num_stages": t.num_stages,
    }


def conv_transpose2d_launch(ci: int, co: int, m: int, t: NarrowTuning) -> dict:
    """conv_transpose2d_kernel's, for CI channels in (wide), CO out (narrow) and m output
    pixels per stride phase."""
    return {
        "BLOCK_M": _tile_m(t.block_m, m),
        "BLOCK_N": _dot_side(co),
        "BLOCK_K": min(t.wide_block_k, _dot_side(ci)),
        "num_warps": t.num_warps,
        "num_stages": t.num_stages,
    }


def weight_grad_launch(co: int, k: int, m: int, t: NarrowTuning) -> dict:
    """conv2d_weight_grad_kernel's, for a (CO, K) weight gradient summed over m pixels."""
    return {
        "BLOCK_CO": min(64, _dot_side(co)),
        "BLOCK_K": min(64, _dot_side(k)),
        "BLOCK_M": _tile_m(t.wgrad_block_m, m),
        "num_warps": t.wgrad_num_warps,
        "num_stages": t.num_stages,
    }
