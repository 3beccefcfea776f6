"""Host-side launch planning: the 3-D channel view of an input, tile sizes, and SPLIT.

Nothing here launches anything; ``kernels/batchnorm/ops.py`` turns a ``LaunchPlan`` into grids.
Everything is decided from shapes, strides and the device's SM count, never from tensor
values, so the plans are CUDA-graph and torch.compile safe.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import torch

from kernels._plumbing import ActiveSetting, cdiv, next_pow2, sm_count

# Elements per [BLOCK_C, BLOCK_S] tile under the interpreter, where each tile op is one
# NumPy call, so bigger tiles mean fewer Python-level iterations. (GPU: Tuning.tile_elems.)
TILE_ELEMS_INTERPRETER = 8192
# Longest run along the contiguous axis: 1024 elements (4 KiB fp32) covers the widest
# DCGAN plane (32x32) in one tile row.
MAX_BLOCK_CONTIGUOUS = 1024
# Widest channel block when channels are the contiguous axis (channels_last, (N, C)).
MAX_BLOCK_C_CHANNELS_LAST = 128
# A split program should reduce at least this many tiles, or the partial writes and the
# extra finalize launch cost more than the parallelism buys.
MIN_TILES_PER_PROGRAM = 2
# Channel widths of the narrow tiles that the fused path prefers (``_plan``): 2 channels
# when each channel is a contiguous plane (NCHW), 16 when channels are the contiguous axis
# (channels_last, (N, C)), where a row of 16 bf16 channels is one 32-byte sector.
NARROW_BLOCK_C = 2
NARROW_BLOCK_C_CHANNELS_LAST = 16
# Upper bound on SPLIT; the finalize kernel loops over partial rows in BLOCK_P chunks.
MAX_SPLIT = 512
# The finalize kernels' [BLOCK_P, BLOCK_C] chunk of partial rows (``finalize_blocks``):
# 2048 elements per array, 16 fp32 registers a thread at 4 warps. Each program walks its
# channels' P rows one chunk after the other, and each chunk waits on its loads from L2, so
# a layer's finalize takes about (chunks per program) x (L2 latency). Measured on an H100
# (bf16 DCGAN-64, batch 128): with fixed [32, 64] chunks, a layer of 64 channels and 512
# partial rows ran on 1 program through 32 chunks (two passes of 16), and the two finalize
# kernels averaged 17 us a call, 16% of the iteration's device time. Tall, narrow chunks
# put the rows side by side instead: [256, 8] is 8 programs of 2 chunks a pass there.
FINALIZE_TILE_ELEMS = 2048
FINALIZE_MAX_BLOCK_P = 256
# Narrowest channel block: 8 fp32 partials, a 32-byte sector of each partial row.
FINALIZE_MIN_BLOCK_C = 8
# Triton's own default for a launch that names no num_warps.
TRITON_DEFAULT_NUM_WARPS = 4
# Most tiles one program of the one-kernel path reduces: each lane of its tiles counts the
# values it folded in as a float32 (the reciprocal of that count weights Welford's update),
# exact up to 2**24. The split path's programs reduce their share of the tiles instead.
MAX_FUSED_TILES = 2**24


@dataclass(frozen=True)
class Tuning:
    """How the compiled kernels are launched on a GPU (the interpreter ignores all but the
    split it implies; its tile is TILE_ELEMS_INTERPRETER).

    Attributes:
        tile_elems: elements per ``[BLOCK_C, BLOCK_S]`` tile. 2048 fp32 elements = 8 KiB,
            16 per thread at 4 warps: enough bytes in flight per load without spilling
            registers (the Triton layer-norm tutorial uses blocks of this order).
        programs_per_sm: the split path aims for this many reduction programs per SM. A
            reduction program has one tile's loads in flight at a time (4 KiB for bf16
            statistics), and Little's law on an H100 (3 TB/s x ~0.7 us DRAM latency / 132
            SMs) asks for ~16 KB in flight per SM: 4 programs only with no time lost
            between loads, 8 with headroom, at 32 warps per SM (half occupancy). 8 fit:
            the statistics and backward partial kernels take at most 64 registers per
            thread (sm_90, bf16, 4 warps), 8 x 128 x 64 = the whole 64K register file.
        num_warps: warps per program, every tiled kernel.
        num_stages: software pipelining of the reduction loops (``tl.range(num_stages=)``):
            1 leaves them as written; k > 1 fetches k - 1 tiles ahead into shared memory.
        fused_max_tiles: when a block of narrow channels has at most this many tiles, one
            program per channel block does statistics, finalize and apply in one launch
            (the "fused" or one-kernel path; the backward likewise); otherwise the split
            path's three. 8: a launch costs a few microseconds of device time (more of host
            time), about what one program needs to stream 8 tiles of 4-8 KiB twice. 0:
            never; ``MAX_FUSED_TILES``: wherever one program can (what ``make_plan``'s
            ``one_kernel`` asks for a single call).
    """

    tile_elems: int = 2048
    programs_per_sm: int = 8
    num_warps: int = TRITON_DEFAULT_NUM_WARPS
    num_stages: int = 1
    fused_max_tiles: int = 8

    def __post_init__(self):
        for name in ("tile_elems", "num_warps"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two, got {value}")
        if self.tile_elems < 64 or self.num_warps > 32:
            raise ValueError(f"tile_elems >= 64 and num_warps <= 32, got {self}")
        if self.programs_per_sm < 1 or self.num_stages < 1:
            raise ValueError(f"programs_per_sm and num_stages must be >= 1, got {self}")
        if self.fused_max_tiles < 0:
            raise ValueError(f"fused_max_tiles must be >= 0, got {self}")


DEFAULT_TUNING = Tuning()
_TUNING = ActiveSetting(DEFAULT_TUNING)


def active_tuning() -> Tuning:
    """The Tuning that ``make_plan`` uses now (DEFAULT_TUNING unless inside ``tuned``)."""
    return _TUNING.value


def tuned(tuning: Tuning) -> contextlib.AbstractContextManager[Tuning]:
    """Plan the kernels with ``tuning`` inside the block (``gan-bench kernels --tune``);
    see ``ActiveSetting``."""
    return _TUNING.use(tuning)


# CUDA launch limits: grid axes 1 and 2 hold at most 65535 blocks; the kernels index a
# tile's position along S in int32 (the tile's start address is int64).
MAX_GRID_Y = 65535
MAX_INT32 = 2**31 - 1


@dataclass(frozen=True)
class ChannelView:
    """An input seen as ``(n, c, s)`` with element strides ``(sn, sc, ss)``.

    ``count`` = ``n * s`` is the number of elements per channel.
    """

    n: int
    c: int
    s: int
    sn: int
    sc: int
    ss: int

    @property
    def count(self) -> int:
        return self.n * self.s

    @property
    def channels_contiguous(self) -> bool:
        return self.sc == 1 and self.ss != 1


def _concrete(*values) -> bool:
    """Plain ints, not symbolic sizes (torch.compile tracing with dynamic shapes), so the
    host-side results below can be cached by value."""
    return set(map(type, values)) <= {int}


def _dense_in_order(sizes: tuple[int, ...], strides: tuple[int, ...], dims) -> bool:
    """Whether the tensor is dense with ``dims`` running from innermost to outermost,
    torch's ``is_contiguous`` rule: dims of size 1 may have any stride, an empty tensor is
    contiguous."""
    if 0 in sizes:
        return True
    expected = 1
    for d in dims:
        if sizes[d] != 1 and strides[d] != expected:
            return False
        expected *= sizes[d]
    return True


@functools.lru_cache(maxsize=4096)
def _channels_last_order(sizes: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """``permute(0, 2, ..., 1).is_contiguous()`` from sizes and strides alone."""
    return _dense_in_order(sizes, strides, (1, *range(len(sizes) - 1, 1, -1), 0))


def _contiguous_order(sizes: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """``is_contiguous()`` from sizes and strides alone."""
    return _dense_in_order(sizes, strides, range(len(sizes) - 1, -1, -1))


def _channels_last_like(x: torch.Tensor) -> bool:
    """True when x's memory order is (N, spatial..., C): channels_last for 4-D, (N, C) for 2-D.

    The stride rule is cached by sizes and strides, which saves the permuted view that the
    plain ``permute(...).is_contiguous()`` builds each time."""
    sizes, strides = tuple(x.shape), x.stride()
    if _concrete(*sizes, *strides):
        return _channels_last_order(sizes, strides)
    return x.permute((0, *range(2, x.dim()), 1)).is_contiguous()


@functools.lru_cache(maxsize=4096)
def _cached_view(sizes: tuple[int, ...], strides: tuple[int, ...]) -> ChannelView | None:
    """``channel_view``'s view for concrete sizes and strides; None when x must be copied."""
    n, c, s = sizes[0], sizes[1], math.prod(sizes[2:])
    if _channels_last_order(sizes, strides):
        return ChannelView(1, c, n * s, 0, 1, c)
    if _contiguous_order(sizes, strides):
        return ChannelView(n, c, s, c * s, s, 1)
    return None


def layout_view(sizes: tuple[int, ...], strides: tuple[int, ...]) -> ChannelView:
    """The view ``channel_view`` gives an input of these (concrete) sizes and strides,
    after its copy for a layout it copies."""
    view = _cached_view(sizes, strides)
    if view is not None:
        return view
    n, c, s = sizes[0], sizes[1], math.prod(sizes[2:])
    return ChannelView(n, c, s, c * s, s, 1)


def channel_view(x: torch.Tensor) -> tuple[torch.Tensor, ChannelView]:
    """Return ``(x, view)`` where ``view`` addresses ``x`` as ``(N', C, S')`` without a copy.

    - contiguous ``(N, C, *spatial)`` -> ``(N, C, S)``, strides ``(C*S, S, 1)``;
    - channels-last order (``channels_last`` 4-D, ``(N, C)``, ``(N, C, L)`` stored as
      ``(N, L, C)``) -> ``(1, C, N*S)``, strides ``(0, 1, C)``.

    Any other layout (a slice, a transposed batch, an expanded tensor) is first made
    contiguous: one copy, documented here because it costs a full read and write.
    Concrete sizes and strides are looked up in a cache (every forward and backward of a
    layer asks for the same view: host time that small layers do not hide).
    """
    if x.dim() < 2:
        raise ValueError(f"expected an input with at least 2 dims (N, C, ...), got {x.dim()}D")
    sizes, strides = tuple(x.shape), x.stride()
    if _concrete(*sizes, *strides):
        view = _cached_view(sizes, strides)
        if view is not None:
            return x, view
    elif _channels_last_like(x):
        n, c = x.shape[0], x.shape[1]
        return x, ChannelView(1, c, n * math.prod(x.shape[2:]), 0, 1, c)
    if not x.is_contiguous():
        x = x.contiguous()
    n, c = x.shape[0], x.shape[1]
    s = math.prod(x.shape[2:])
    return x, ChannelView(n, c, s, c * s, s, 1)


def like_layout(t: torch.Tensor, x: torch.Tensor, view: ChannelView) -> torch.Tensor:
    """Return ``t`` (same shape as ``x``) with x's memory layout, copying only if needed.

    The backward walks ``dy`` with x's view; autograd may hand over a gradient in another
    layout (an expanded ``ones`` from ``.sum().backward()``, a contiguous gradient for a
    channels_last input), which costs one copy here.
    """
    same = t.shape == x.shape and (
        (view.sn == 0 and _channels_last_like(t)) or (view.sn != 0 and t.is_contiguous())
    )
    if same:
        return t
    out = torch.empty_like(x)
    out.copy_(t)
    return out


def finalize_blocks(c: int, p: int) -> tuple[int, int]:
    """``(BLOCK_C, BLOCK_P)`` of the finalize kernels for ``c`` channels of ``p`` partial
    rows: as many rows as fit a chunk side by side (up to ``FINALIZE_MAX_BLOCK_P``), then
    as many channels as the chunk has room for, at least ``FINALIZE_MIN_BLOCK_C``. Cached
    for concrete sizes, as the plans are."""
    if _concrete(c, p):
        return _cached_finalize_blocks(c, p)
    return _finalize_blocks(c, p)


@functools.lru_cache(maxsize=4096)
def _cached_finalize_blocks(c: int, p: int) -> tuple[int, int]:
    return _finalize_blocks(c, p)


def _finalize_blocks(c: int, p: int) -> tuple[int, int]:
    block_p = min(max(2, next_pow2(p)), FINALIZE_MAX_BLOCK_P)
    block_c = min(max(2, next_pow2(c)), max(FINALIZE_MIN_BLOCK_C, FINALIZE_TILE_ELEMS // block_p))
    return block_c, block_p


@dataclass(frozen=True)
class LaunchPlan:
    """Tile sizes and the reduction split for one input view.

    A tile is ``[block_c, block_n * block_s]``: ``block_c`` channels by ``block_n`` batch
    items of ``block_s`` positions (``block_n`` > 1 only for NCHW planes shorter than a
    tile's row). ``split == 1`` selects the fused single-launch path (one program per
    channel block); ``split > 1`` the three-launch split path with ``[SPLIT, C]``
    partials. ``even``: every tile is full (C, N and S are multiples of the tile's
    sides), so no load needs a mask. ``num_warps`` and ``num_stages`` are the Tuning's.
    """

    block_c: int
    block_n: int
    block_s: int
    n_tiles_s: int
    tiles_total: int
    c_blocks: int
    split: int
    tiles_per_prog: int
    even: bool
    num_warps: int
    num_stages: int
    split_reason: str = ""

    @property
    def launch_options(self) -> dict:
        """Launch keywords of the tiled kernels: num_warps only when it is not Triton's
        default (a launch option makes torch.compile wrap the kernel in a one-config
        autotuner; without one the default path is traced as it always was)."""
        if self.num_warps == TRITON_DEFAULT_NUM_WARPS:
            return {}
        return {"num_warps": self.num_warps}

    @property
    def fused(self) -> bool:
        return self.split == 1


def _tile_shape(
    view: ChannelView, tile: int, max_contig: int, block_c: int | None = None
) -> tuple[int, int, int]:
    """``(block_c, block_n, block_s)`` of tiles of about ``tile`` elements.

    The contiguous axis first (up to ``max_contig`` along S for NCHW, up to
    ``MAX_BLOCK_C_CHANNELS_LAST`` channels otherwise), then channels (or ``block_c`` when
    given: the narrow tiles of the fused path), then, for NCHW planes shorter than the
    tile's row, batch items, so that small planes (4x4, 8x8) still make full tiles.
    """
    c_cap = max(2, next_pow2(view.c))
    s_cap = max(2, next_pow2(view.s))
    if view.channels_contiguous:
        block_c = min(c_cap, block_c or MAX_BLOCK_C_CHANNELS_LAST)
        return block_c, 1, max(2, min(s_cap, tile // block_c))
    block_s = min(s_cap, max_contig)
    block_c = min(c_cap, block_c or max(2, tile // block_s))
    block_n = 1
    if block_s == s_cap and view.n > 1:
        block_n = max(1, min(next_pow2(view.n), tile // (block_c * block_s)))
        # The in-tile offsets (below block_c * sc + block_n * sn + block_s) are int32.
        while block_n > 1 and block_c * view.sc + block_n * view.sn + block_s > MAX_INT32:
            block_n //= 2
    return block_c, block_n, block_s


def _tiles(view: ChannelView, block_n: int, block_s: int) -> tuple[int, int]:
    """(tiles along S per batch group, tiles per channel block)."""
    n_tiles_s = cdiv(view.s, block_s)
    return n_tiles_s, cdiv(view.n, block_n) * n_tiles_s


def make_plan(
    view: ChannelView,
    device: torch.device,
    *,
    interpreted: bool,
    split: int = 0,
    one_kernel: bool = False,
) -> LaunchPlan:
    """Choose tile sizes and SPLIT for ``view`` on ``device`` (``_plan``), cached: the same
    layer asks for the same plan at every forward and backward, and planning is host time
    that small layers do not hide behind their kernels."""
    tuning = active_tuning()
    fields = (view.n, view.c, view.s, view.sn, view.sc, view.ss)
    if _concrete(*fields):
        return _cached_plan(view, device, interpreted, split, tuning, one_kernel)
    return _plan(view, device, interpreted, split, tuning, one_kernel)


@functools.lru_cache(maxsize=4096)
def _cached_plan(view, device, interpreted, split, tuning, one_kernel) -> LaunchPlan:
    return _plan(view, device, interpreted, split, tuning, one_kernel)


def _plan(
    view: ChannelView,
    device: torch.device,
    interpreted: bool,
    split: int,
    tuning: Tuning,
    one_kernel: bool,
) -> LaunchPlan:
    """Choose tile sizes and SPLIT for ``view`` on ``device`` with ``tuning``.

    Args:
        view: the input's channel view.
        device: where the kernels run; a CUDA device's SM count sizes the grid.
        interpreted: the kernels run under TRITON_INTERPRET (bigger tiles, SPLIT 1).
        split: 0 chooses automatically; 1 forces the fused path; ``k > 1`` forces the
            split path with up to ``k`` partials (tiles are shrunk along N, then S,
            until there are at least ``k`` tiles, so tiny test inputs can exercise it).
        one_kernel: the automatic choice takes the fused path wherever one program can own
            a channel block's whole reduction, as if ``fused_max_tiles`` were
            ``MAX_FUSED_TILES``. Not where it cannot: too many tiles for one program's
            counts, or too many channel blocks for the grid (``split_reason`` says which).

    The automatic choice: the fused path with narrow channel blocks (``NARROW_BLOCK_C``
    channels, so that small layers still spread over many programs) when such a block has
    at most ``fused_max_tiles`` tiles; otherwise the split path with wide tiles, whose
    SPLIT aims for ``programs_per_sm * SMs`` reduction programs in all (the Tuning's;
    ``make_plan`` passes the active one, see ``tuned``), so that a layer with few channel
    blocks (C = 64 at 32x32) still fills the GPU, and keeps at least
    ``MIN_TILES_PER_PROGRAM`` tiles per program. The interpreter always takes the fused
    path with wide tiles (fewer tiles are fewer Python-level iterations).
    """
    if split < 0:
        raise ValueError(f"split must be >= 0 (0 = automatic), got {split}")
    tile = TILE_ELEMS_INTERPRETER if interpreted else tuning.tile_elems
    max_contig = tile if interpreted else MAX_BLOCK_CONTIGUOUS
    block_c, block_n, block_s = _tile_shape(view, tile, max_contig)
    chosen, reason = 0, ""
    if split == 0 and not interpreted:
        narrow = NARROW_BLOCK_C_CHANNELS_LAST if view.channels_contiguous else NARROW_BLOCK_C
        shape = _tile_shape(view, tile, max_contig, block_c=narrow)
        limit = min(MAX_FUSED_TILES if one_kernel else tuning.fused_max_tiles, MAX_FUSED_TILES)
        narrow_blocks, narrow_tiles = cdiv(view.c, shape[0]), _tiles(view, *shape[1:])[1]
        if narrow_blocks <= MAX_GRID_Y and narrow_tiles <= limit:
            (block_c, block_n, block_s), chosen = shape, 1
        elif one_kernel and narrow_blocks > MAX_GRID_Y:
            reason = (
                f"{narrow_blocks} channel blocks of {shape[0]}, more than the {MAX_GRID_Y} "
                "a CUDA grid allows on the elementwise kernels' second axis"
            )
        elif one_kernel:
            reason = (
                f"{narrow_tiles} tiles per channel block, more than the {MAX_FUSED_TILES} "
                "one program counts exactly"
            )
    n_tiles_s, tiles_total = _tiles(view, block_n, block_s)
    c_blocks = cdiv(view.c, block_c)
    if c_blocks > MAX_GRID_Y:
        raise ValueError(
            f"{view.c} channels need {c_blocks} channel blocks of {block_c} at this layout, "
            f"more than the {MAX_GRID_Y} a CUDA grid allows on its second axis"
        )
    if view.s > MAX_INT32:
        raise ValueError(
            f"{view.s} elements per channel in one run (N*H*W for channels_last and (N, C) "
            "inputs, H*W for NCHW) exceed the kernels' 32-bit tile index; for channels_last "
            "use the NCHW layout"
        )
    if split > 1:
        while tiles_total < split and (block_n > 1 or block_s > 2):
            if block_n > 1:
                block_n //= 2
            else:
                block_s //= 2
            n_tiles_s, tiles_total = _tiles(view, block_n, block_s)
        chosen = min(split, tiles_total)
    elif split == 1 or interpreted:
        chosen = 1
    elif not chosen:
        target = tuning.programs_per_sm * sm_count(device)
        chosen = min(cdiv(target, c_blocks), cdiv(tiles_total, MIN_TILES_PER_PROGRAM), MAX_SPLIT)
    chosen = max(chosen, 1)
    tiles_per_prog = cdiv(tiles_total, chosen)
    chosen = cdiv(tiles_total, tiles_per_prog)  # no program without tiles
    even = view.s % block_s == 0 and view.c % block_c == 0 and view.n % block_n == 0
    return LaunchPlan(
        block_c, block_n, block_s, n_tiles_s, tiles_total, c_blocks, chosen, tiles_per_prog,
        even, tuning.num_warps, tuning.num_stages, reason if chosen > 1 else "",
    )  # fmt: skip
