"""Launch planning: the Tuning knobs and how they shape a plan, without a GPU."""

from __future__ import annotations

import pytest
import torch

import kernels
from kernels import availability
from kernels.batchnorm import plan
from kernels.batchnorm.plan import DEFAULT_TUNING, ChannelView, Tuning, make_plan, tuned
from kernels.batchnorm.reference import batch_norm_leaky_relu_reference

# (256, 64, 64, 64) NCHW: 64 channels of 256 planes of 4096 elements.
LARGE = ChannelView(256, 64, 4096, 64 * 4096, 4096, 1)
H100_SMS = 132


@pytest.fixture
def h100(monkeypatch):
    monkeypatch.setattr(plan, "sm_count", lambda device: H100_SMS)
    plan._cached_plan.cache_clear()  # plans made with another SM count
    yield
    plan._cached_plan.cache_clear()


def gpu_plan(view: ChannelView) -> plan.LaunchPlan:
    return make_plan(view, torch.device("cuda"), interpreted=False)


def test_default_plan_of_the_large_case(h100):
    p = gpu_plan(LARGE)
    # 2048-element tiles of [2 channels, 1024 elements]: 32 channel blocks of 1024 tiles.
    assert (p.block_c, p.block_s, p.c_blocks, p.tiles_total) == (2, 1024, 32, 1024)
    # 8 programs per SM x 132 SMs / 32 channel blocks = 33, rounded to whole tile ranges.
    assert (p.split, p.tiles_per_prog) == (32, 32)
    assert (p.num_warps, p.num_stages, p.launch_options) == (4, 1, {})


def nchw(n: int, c: int, h: int, w: int) -> ChannelView:
    return ChannelView(n, c, h * w, c * h * w, h * w, 1)


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        # (path, block_c, block_n, block_s, programs, tiles per program)
        (nchw(128, 512, 4, 4), ("fused", 2, 64, 16, 256, 2)),
        (nchw(128, 256, 8, 8), ("fused", 2, 16, 64, 128, 8)),
        (nchw(128, 128, 16, 16), ("split", 8, 1, 256, 16 * 64, 2)),
        (nchw(128, 64, 32, 32), ("split", 2, 1, 1024, 32 * 32, 4)),
        (ChannelView(1, 1024, 512, 0, 1, 1024), ("fused", 16, 1, 128, 64, 4)),  # BN1d
        # channels_last (128, 512, 4, 4): too many rows per narrow block to fuse
        (ChannelView(1, 512, 128 * 16, 0, 1, 512), ("split", 128, 1, 16, 4 * 64, 2)),
        # batch 1024: 16 tiles per channel pair even at 64 batch items per tile
        (nchw(1024, 512, 4, 4), ("split", 128, 1, 16, 4 * 256, 4)),
    ],
    ids=["512x4x4", "256x8x8", "128x16x16", "64x32x32", "bn1d-1024", "cl-512x4x4", "b1024"],
)
def test_dcgan_layers_at_batch_128_get_fused_narrow_tiles_when_small(h100, view, expected):
    """Small layers get one program per pair of channels (NCHW; 16 channels-last) whose
    tiles span batch items, in one launch; larger ones the split path's wide tiles."""
    p = gpu_plan(view)
    path = "fused" if p.fused else "split"
    got = (path, p.block_c, p.block_n, p.block_s, p.c_blocks * p.split, p.tiles_per_prog)
    assert got == expected
    assert p.block_c * p.block_n * p.block_s == DEFAULT_TUNING.tile_elems
    with tuned(Tuning(fused_max_tiles=0)):
        assert not gpu_plan(view).fused


def test_tiles_spanning_batch_items_keep_in_tile_offsets_in_int32():
    view = ChannelView(4, 2**27, 16, 2**31, 16, 1)  # sn = 2**31: a second item is out of range
    assert plan._tile_shape(view, 2048, 1024, block_c=2) == (2, 1, 16)
    # 4 items would span 2**32; 2 span 2 * sn + 2 channels + 16 positions < 2**31: allowed
    view = ChannelView(4, 2**26 - 2**6, 16, 2**30 - 2**10, 16, 1)
    assert plan._tile_shape(view, 2048, 1024, block_c=2) == (2, 2, 16)
    assert plan._tile_shape(nchw(4, 8, 4, 4), 2048, 1024, block_c=2) == (2, 4, 16)


def test_tuned_plans_follow_the_tuning_and_restore_the_default(h100):
    with tuned(Tuning(tile_elems=4096, programs_per_sm=4, num_warps=8, num_stages=3)):
        assert plan.active_tuning().num_stages == 3
        p = gpu_plan(LARGE)
    assert (p.block_c, p.block_s, p.c_blocks) == (4, 1024, 16)
    assert p.split == 32  # 4 x 132 / 16 channel blocks = 33, rounded to whole tile ranges
    assert (p.num_warps, p.num_stages, p.launch_options) == (8, 3, {"num_warps": 8})
    assert plan.active_tuning() is DEFAULT_TUNING
    with pytest.raises(RuntimeError), tuned(Tuning(programs_per_sm=2)):
        raise RuntimeError("a failed measurement")
    assert plan.active_tuning() is DEFAULT_TUNING


@pytest.mark.parametrize(
    "fields",
    [
        {"tile_elems": 3000},
        {"tile_elems": 32},
        {"num_warps": 3},
        {"num_warps": 64},
        {"programs_per_sm": 0},
        {"num_stages": 0},
        {"fused_max_tiles": -1},
    ],
)
def test_bad_tunings_are_refused(fields):
    with pytest.raises(ValueError):
        Tuning(**fields)


@pytest.mark.skipif(not availability.INTERPRETED, reason="the interpreter runs the kernels here")
def test_pipelined_reduction_loops_give_the_same_result():
    """NUM_STAGES only changes how the loads are scheduled, never what is summed."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((4, 6, 5, 5), generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(6, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True)
    dy = torch.randn((4, 6, 5, 5), generator=gen, dtype=torch.float64)
    ref = batch_norm_leaky_relu_reference(x, None, None, weight, bias, True, 0.1, 1e-5, 0.2)
    want = torch.autograd.grad(ref, (x, weight, bias), dy)
    with tuned(Tuning(num_stages=3)):
        y = kernels.batch_norm_leaky_relu(
            x, None, None, weight, bias, True, 0.1, 1e-5, 0.2, _split=3
        )
        got = torch.autograd.grad(y, (x, weight, bias), dy)
    torch.testing.assert_close(y, ref)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.empty(4, 3, 5, 6),
        lambda: torch.empty(4, 3, 5, 6).to(memory_format=torch.channels_last),
        lambda: torch.empty(4, 1, 5, 6),  # one channel: both orders at once
        lambda: torch.empty(1, 3, 1, 1),
        lambda: torch.empty(4, 3),
        lambda: torch.empty(3, 4).t(),
        lambda: torch.empty(4, 5, 3).transpose(1, 2),  # (N, C, L) stored as (N, L, C)
        lambda: torch.empty(4, 3, 5, 6)[:, :, ::2],
        lambda: torch.empty(0, 3, 5, 6),
        lambda: torch.empty(3, 1).expand(3, 4),
    ],
)
def test_memory_orders_from_strides_match_torch(make):
    x = make()
    perm = (0, *range(2, x.dim()), 1)
    assert plan._channels_last_like(x) == x.permute(perm).is_contiguous()
    assert plan._contiguous_order(tuple(x.shape), x.stride()) == x.is_contiguous()


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.empty(4, 3, 5, 6),
        lambda: torch.empty(4, 3, 5, 6).to(memory_format=torch.channels_last),
        lambda: torch.empty(4, 3, 5, 6)[:, :, ::2],
    ],
)
def test_symbolic_views_match_concrete_ones(make):
    """torch.compile with dynamic shapes hands over symbolic sizes, which bypass the caches:
    the views and plans made from them evaluate to the concrete ones."""
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    concrete = make()
    mode = FakeTensorMode(shape_env=ShapeEnv())
    symbolic = mode.from_tensor(concrete, source=ConstantSource("x"), static_shapes=False)
    with mode:
        _, view = plan.channel_view(symbolic)
    assert not plan._concrete(*view.__dict__.values())
    hints = [v.node.hint if isinstance(v, torch.SymInt) else v for v in view.__dict__.values()]
    assert hints == [*plan.channel_view(concrete)[1].__dict__.values()]
    assert plan.make_plan(view, torch.device("cpu"), interpreted=True).block_c >= 1


def test_plans_are_cached_per_tuning(h100):
    first = gpu_plan(LARGE)
    assert gpu_plan(LARGE) is first
    with tuned(Tuning(programs_per_sm=4)):
        assert gpu_plan(LARGE) is not first
    assert gpu_plan(LARGE) is first


# BatchNorm inputs (C, H, W) of dcgan64 and dcgan32 (tests/gan_models checks the models),
# and the MLP GAN's BatchNorm1d widths.
DCGAN_LAYERS = [(512, 4, 4), (256, 8, 8), (128, 16, 16), (64, 32, 32), (256, 4, 4), (128, 8, 8),
                (64, 16, 16)]  # fmt: skip
MLP_WIDTHS = [256, 512, 1024]


def _narrow_tiles(view: ChannelView) -> int:
    """Tiles per narrow channel block, as ``Tuning.fused_max_tiles`` counts them: 2048
    elements of 16 channels by 128 rows when channels are contiguous; of 2 channels by
    whole NCHW planes (up to 1024 positions), as many batch items as fit, otherwise."""
    if view.channels_contiguous:
        return -(-view.s // 128)
    block_s = min(1 << (view.s - 1).bit_length(), 1024)
    items = max(1, 2048 // (2 * block_s)) if block_s >= view.s else 1
    return -(-view.n // items) * -(-view.s // block_s)


def _views():
    for batch in (32, 64, 128, 256):
        for c, h, w in DCGAN_LAYERS:
            yield f"{batch}x{c}x{h}x{w}", nchw(batch, c, h, w)
            yield f"{batch}x{c}x{h}x{w}-cl", ChannelView(1, c, batch * h * w, 0, 1, c)
    for batch in (64, 512, 4096):
        for c in MLP_WIDTHS:
            yield f"bn1d-{batch}x{c}", ChannelView(1, c, batch, 0, 1, c)


VIEWS = dict(_views())


@pytest.mark.parametrize("name", list(VIEWS))
def test_one_kernel_takes_every_dcgan_and_mlp_layer_and_the_default_only_small_ones(h100, name):
    """Asked for one kernel, every DCGAN-32/64 BatchNorm at batch <= 256 and every MLP
    BatchNorm1d at batch <= 4096 takes the one-kernel path (one launch each way); by
    default, only those whose narrow channel blocks have at most fused_max_tiles tiles."""
    view = VIEWS[name]
    default = gpu_plan(view)
    assert default.fused == (_narrow_tiles(view) <= DEFAULT_TUNING.fused_max_tiles)
    assert not default.split_reason
    one = make_plan(view, torch.device("cuda"), interpreted=False, one_kernel=True)
    assert one.fused and one.c_blocks * one.block_c >= view.c
    with tuned(Tuning(fused_max_tiles=plan.MAX_FUSED_TILES)):
        assert gpu_plan(view) == one  # the same choice, as a launch tuning


def test_shapes_one_kernel_cannot_take_keep_the_split_path_and_say_why(h100):
    # 2**31 items of 2 x 4 x 4: 2**25 tiles of 64 items per channel pair
    view = ChannelView(2**31, 2, 16, 32, 16, 1)
    one = make_plan(view, torch.device("cuda"), interpreted=False, one_kernel=True)
    assert not one.fused and "tiles per channel block" in one.split_reason
    assert not gpu_plan(view).split_reason  # nobody asked


def test_channels_past_the_grid_in_narrow_blocks_take_wide_ones(h100):
    """2**20 + 16 channels are 65,537 blocks of 16, past the elementwise kernels' grid:
    the channel blocks are the wide ones (128), each still one program's whole reduction."""
    view = ChannelView(1, 2**20 + 16, 4096, 0, 1, 2**20 + 16)
    one = make_plan(view, torch.device("cuda"), interpreted=False, one_kernel=True)
    assert one.fused and one.block_c == 128


def test_the_interpreter_takes_one_kernel_either_way():
    for view in (LARGE, *VIEWS.values()):
        for one_kernel in (False, True):
            p = make_plan(view, torch.device("cpu"), interpreted=True, one_kernel=one_kernel)
            assert p.fused and not p.split_reason
