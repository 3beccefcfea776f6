"""The fused op against an eager float64 reference: outputs, gradients, running statistics.

Runs on the CPU through Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1
when there is no GPU), and on a GPU compiled. The interpreter is slow, so the factors
are combined with a pairwise (all-pairs) design rather than a Cartesian product: every
pair of values of any two factors appears in at least one case.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import kernels
from kernels import availability
from kernels.batchnorm import calls, ops, plan
from kernels.batchnorm.plan import ChannelView, Tuning, channel_view, make_plan, tuned
from kernels.batchnorm.reference import batch_norm_leaky_relu_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (output atol, rtol), (gradient atol, rtol) per dtype, against float64 eager.
TOLERANCES = {
    torch.float32: ((1e-5, 1e-5), (1e-4, 1e-4)),
    torch.float16: ((1e-2, 1e-2), (1e-2, 1e-2)),
    torch.bfloat16: ((2e-2, 2e-2), (2e-2, 2e-2)),
    torch.float64: ((1e-10, 1e-10), (1e-9, 1e-9)),
}

# (name, shape, layout): layout "nchw" is contiguous, "cl" channels-last order
# (channels_last for 4-D, (N, L, C) storage for 3-D); 2-D (N, C) is always "cl".
SHAPES = [
    ("c3-7x7-nchw", (2, 3, 7, 7), "nchw"),
    ("c3-7x7-cl", (2, 3, 7, 7), "cl"),
    ("nc", (6, 5), "cl"),
    ("ncl", (3, 4, 5), "nchw"),
    ("ncl-cl", (3, 4, 5), "cl"),
    ("dcgan-64x8x8", (4, 64, 8, 8), "nchw"),
    ("dcgan-128x4x4-cl", (4, 128, 4, 4), "cl"),
]

FACTORS = {
    "shape": list(range(len(SHAPES))),
    "slope": [0.0, 0.01, 0.2],
    "affine": [True, False],
    "momentum": [0.1, None],
    "track": [True, False],
    "mode": ["train", "eval"],
    "dtype": [torch.float32, torch.float16],
    "split": [0, 3],  # 0: automatic (the single-launch path on the CPU); 3: split path
}


def pairwise(factors: dict[str, list]) -> list[dict]:
    """A deterministic greedy all-pairs covering array over ``factors``."""
    names = list(factors)
    levels = {n: range(len(factors[n])) for n in names}
    uncovered = {
        (a, i, b, j)
        for a, b in itertools.combinations(names, 2)
        for i in levels[a]
        for j in levels[b]
    }
    rows: list[dict[str, int]] = []
    while uncovered:
        a, i, b, j = min(
            uncovered, key=lambda p: (names.index(p[0]), p[1], names.index(p[2]), p[3])
        )
        row = {a: i, b: j}
        for n in names:
            if n in row:
                continue
            row[n] = max(
                levels[n],
                key=lambda v: sum(
                    (m, row[m], n, v) in uncovered or (n, v, m, row[m]) in uncovered for m in row
                ),
            )
        for m, n in itertools.combinations(names, 2):
            uncovered.discard((m, row[m], n, row[n]))
        rows.append(row)
    return [{n: factors[n][row[n]] for n in names} for row in rows]


CASES = pairwise(FACTORS)


def make_input(shape, layout, dtype, *, seed=0, loc=0.5, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale + loc
    if layout == "cl" and len(shape) == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "cl" and len(shape) == 3:
        x = x.transpose(1, 2).contiguous().transpose(1, 2)  # stored (N, L, C)
    return x.to(device=DEVICE, dtype=dtype)


def make_params(c, *, affine, track, seed=1, param_dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    p = {"weight": None, "bias": None, "running_mean": None, "running_var": None, "nbt": None}
    if affine:
        p["weight"] = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5).to(
            DEVICE, param_dtype
        )
        p["bias"] = torch.randn(c, generator=gen, dtype=torch.float64).to(DEVICE, param_dtype)
    if track:
        p["running_mean"] = torch.randn(c, generator=gen, dtype=torch.float64).to(
            DEVICE, param_dtype
        )
        p["running_var"] = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5).to(
            DEVICE, param_dtype
        )
        p["nbt"] = torch.tensor(3, device=DEVICE)
    return p


def _clone(p, dtype=None):
    out = {}
    for k, v in p.items():
        if v is None:
            out[k] = None
        elif k == "nbt":
            out[k] = v.clone()
        else:
            out[k] = v.detach().clone().to(dtype or v.dtype)
            if k in ("weight", "bias"):
                out[k].requires_grad_(True)
    return out


def run_both(x, params, *, training, momentum, slope, split=0, dy_seed=2, one_kernel=False):
    """Run the fused op on (x, params) and eager float64 on copies; return both sides."""
    ours_p = _clone(params)
    ref_p = _clone(params, torch.float64)
    xo = x.detach().clone().requires_grad_(True)
    xr = x.detach().to(torch.float64).requires_grad_(True)
    y = kernels.batch_norm_leaky_relu(
        xo, ours_p["running_mean"], ours_p["running_var"], ours_p["weight"], ours_p["bias"],
        training, momentum, 1e-5, slope, num_batches_tracked=ours_p["nbt"],
        one_kernel=one_kernel, _split=split,
    )  # fmt: skip
    yr = batch_norm_leaky_relu_reference(
        xr, ref_p["running_mean"], ref_p["running_var"], ref_p["weight"], ref_p["bias"],
        training, momentum, 1e-5, slope, num_batches_tracked=ref_p["nbt"],
    )  # fmt: skip
    gen = torch.Generator().manual_seed(dy_seed)
    dy = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(DEVICE, x.dtype)
    y.backward(dy)
    yr.backward(dy.to(torch.float64))
    return (y, xo, ours_p), (yr, xr, ref_p)


def assert_matches(ours, ref, dtype):
    (y, xo, p), (yr, xr, pr) = ours, ref
    (atol, rtol), (gatol, grtol) = TOLERANCES[dtype]
    assert y.dtype == xo.dtype and y.shape == xo.shape and y.stride() == xo.stride()
    torch.testing.assert_close(y.double(), yr, atol=atol, rtol=rtol, msg="output")
    assert xo.grad.dtype == xo.dtype
    torch.testing.assert_close(xo.grad.double(), xr.grad, atol=gatol, rtol=grtol, msg="dx")
    for name in ("weight", "bias"):
        if p[name] is not None:
            assert p[name].grad.dtype == p[name].dtype
            torch.testing.assert_close(
                p[name].grad.double(), pr[name].grad, atol=gatol, rtol=grtol, msg=f"d{name}"
            )
    for name in ("running_mean", "running_var"):
        if p[name] is not None:
            torch.testing.assert_close(p[name].double(), pr[name], atol=1e-5, rtol=1e-5, msg=name)
    if p["nbt"] is not None:
        assert int(p["nbt"]) == int(pr["nbt"])


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=[
        "-".join(
            [
                SHAPES[c["shape"]][0],
                f"s{c['slope']}",
                "affine" if c["affine"] else "noaffine",
                f"m{c['momentum']}",
                "track" if c["track"] else "notrack",
                c["mode"],
                str(c["dtype"]).removeprefix("torch."),
                f"split{c['split']}",
            ]
        )
        for c in CASES
    ],
)
def test_matches_eager_float64(case):
    _, shape, layout = SHAPES[case["shape"]]
    x = make_input(shape, layout, case["dtype"])
    params = make_params(shape[1], affine=case["affine"], track=case["track"])
    # eval without running statistics uses batch statistics, as nn.BatchNorm does
    training = case["mode"] == "train" or not case["track"]
    ours, ref = run_both(
        x, params, training=training, momentum=case["momentum"], slope=case["slope"],
        split=case["split"],
    )  # fmt: skip
    assert_matches(ours, ref, case["dtype"])


def test_pairwise_design_covers_every_value():
    for name, values in FACTORS.items():
        assert {repr(c[name]) for c in CASES} == {repr(v) for v in values}
    assert len(CASES) < 40  # the point of the design: far fewer than the product


# ---------------------------------------------------------------------------------------
# Both reduction paths, launch counts, determinism
# ---------------------------------------------------------------------------------------


@pytest.fixture
def launches(monkeypatch):
    """Record the name of every kernel the op launches."""
    names: list[str] = []
    real = ops.wrap_triton

    def spy(kernel):
        names.append(getattr(kernel, "fn", kernel).__name__)
        return real(kernel)

    monkeypatch.setattr(ops, "wrap_triton", spy)
    return names


@pytest.mark.parametrize(
    ("split", "forward", "backward"),
    [
        (1, ["bn_fwd_fused_kernel"], ["bn_bwd_fused_kernel"]),
        (
            4,
            ["bn_stats_partial_kernel", "bn_stats_finalize_kernel", "bn_apply_kernel"],
            ["bn_bwd_partial_kernel", "bn_bwd_finalize_kernel", "bn_bwd_dx_kernel"],
        ),
    ],
    ids=["fused", "split"],
)
def test_launches_per_path(launches, split, forward, backward):
    x = make_input((4, 8, 6, 6), "nchw", torch.float32).requires_grad_(True)
    p = make_params(8, affine=True, track=True)
    w = p["weight"].requires_grad_(True)
    y = kernels.batch_norm_leaky_relu(
        x, p["running_mean"], p["running_var"], w, p["bias"], True, 0.1, 1e-5, 0.2,
        num_batches_tracked=p["nbt"], _split=split,
    )  # fmt: skip
    assert launches == forward
    launches.clear()
    y.backward(torch.ones_like(y))
    assert launches == backward
    assert int(p["nbt"]) == 4  # incremented inside a kernel, no extra launch


def test_eval_is_one_launch_and_eval_backward_reduces_only_when_asked(launches):
    x = make_input((4, 8, 6, 6), "cl", torch.float32).requires_grad_(True)
    p = make_params(8, affine=True, track=True)
    y = kernels.batch_norm_leaky_relu(
        x, p["running_mean"], p["running_var"], p["weight"], p["bias"], False, 0.1, 1e-5, 0.2
    )
    assert launches == ["bn_apply_kernel"]
    launches.clear()
    y.backward(torch.ones_like(y))  # weight/bias do not require grad: dx only
    assert launches == ["bn_bwd_dx_kernel"]


@pytest.mark.parametrize(
    ("view", "words"),
    [
        # NCHW with a large plane: 2 channels per block, so 131,072 channels need 65,536
        (ChannelView(1, 131_072, 1024, 0, 1024, 1), "second axis"),
        # channels_last (2048, 3, 1024, 1024): 2**31 elements per channel in one run
        (ChannelView(1, 3, 2048 * 1024 * 1024, 0, 1, 3), "32-bit tile index"),
    ],
)
def test_shapes_beyond_cuda_launch_limits_are_refused_with_the_reason(view, words):
    with pytest.raises(ValueError, match=words):
        make_plan(view, torch.device("cpu"), interpreted=False)


def test_split_plan_is_used_when_forced_and_fused_otherwise_on_the_interpreter():
    for _, shape, layout in SHAPES:
        x, view = channel_view(make_input(shape, layout, torch.float32))
        forced = make_plan(view, x.device, interpreted=availability.INTERPRETED, split=3)
        assert forced.split > 1 and not forced.fused, shape
        assert forced.tiles_per_prog * (forced.split - 1) < forced.tiles_total
        if availability.INTERPRETED:
            auto = make_plan(view, x.device, interpreted=True, split=0)
            assert auto.fused


@pytest.fixture
def gpu_plans(monkeypatch):
    """The op plans its launches as for an H100 (132 SMs, 2048-element tiles, narrow
    channel blocks on the one-kernel path), which the interpreter then runs; the plans
    made are listed. Kept calls are forgotten before and after: they hold their plans."""
    monkeypatch.setattr(plan, "sm_count", lambda device: 132)
    plans = []

    def gpu_plan(view, device, *, interpreted, **kwargs):
        plans.append(make_plan(view, device, interpreted=False, **kwargs))
        return plans[-1]

    monkeypatch.setattr(ops, "make_plan", gpu_plan)
    plan._cached_plan.cache_clear()
    calls.CALLS.clear()
    yield plans
    plan._cached_plan.cache_clear()
    calls.CALLS.clear()


# Inputs that take each GPU plan at a size the interpreter runs quickly: (shape, layout,
# fused_max_tiles, (path, block_c, block_n, tiles per channel block, even)).
GPU_PLAN_CASES = [
    # narrow fused tiles spanning 64 batch items: 3 tiles per channel pair, the last partial
    ((160, 4, 4, 4), "nchw", 8, ("fused", 2, 64, 3, False)),
    ((128, 8, 4, 4), "nchw", 8, ("fused", 2, 64, 2, True)),
    # narrow channels-contiguous tiles: 16 channels (40 = 2.5 blocks) by 128 rows
    ((300, 40), "cl", 8, ("fused", 16, 1, 3, False)),
    # the split path with wide tiles spanning 32 batch items, the last group partial
    ((200, 4, 4, 4), "nchw", 0, ("split", 4, 32, 7, False)),
    ((256, 4, 4, 4), "nchw", 0, ("split", 4, 32, 8, True)),
]


@pytest.mark.parametrize(
    ("shape", "layout", "fused_max_tiles", "expected"),
    GPU_PLAN_CASES,
    ids=[f"{'x'.join(map(str, c[0]))}-{c[1]}-{c[3][0]}" for c in GPU_PLAN_CASES],
)
def test_gpu_plans_match_eager(gpu_plans, shape, layout, fused_max_tiles, expected):
    """The tiles a GPU gets (2048 elements, narrow channel blocks for the fused path, rows
    spanning batch items), run here through the interpreter, which otherwise plans its own
    wider tiles."""
    x = make_input(shape, layout, torch.float32)
    params = make_params(shape[1], affine=True, track=True)
    with tuned(Tuning(fused_max_tiles=fused_max_tiles)):
        ours, ref = run_both(x, params, training=True, momentum=None, slope=0.2)
    assert_matches(ours, ref, torch.float32)
    assert len(gpu_plans) == 1  # the backward launches with the forward's plan
    p = gpu_plans[0]
    path = "fused" if p.fused else "split"
    assert (path, p.block_c, p.block_n, p.tiles_total, p.even) == expected


ONE_LAUNCH_EACH_WAY = (["bn_fwd_fused_kernel"], ["bn_bwd_fused_kernel"])
THREE_LAUNCHES_EACH_WAY = (
    ["bn_stats_partial_kernel", "bn_stats_finalize_kernel", "bn_apply_kernel"],
    ["bn_bwd_partial_kernel", "bn_bwd_finalize_kernel", "bn_bwd_dx_kernel"],
)


@pytest.mark.parametrize(
    ("shape", "layout"),
    [
        # 10 narrow tiles of [2 channels, 16 items x 64 positions] per channel pair
        ((160, 4, 8, 8), "nchw"),
        # 9 narrow tiles of [16 channels, 128 rows] per channel block, the second block and
        # the last tile partial
        ((1100, 20), "cl"),
    ],
    ids=["nchw", "nc"],
)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_one_kernel_and_split_paths_agree_with_eager_on_the_same_input(
    gpu_plans, launches, shape, layout, momentum
):
    """Past ``fused_max_tiles`` (8) tiles per narrow channel block a GPU takes the split
    path; asked for one kernel, the same input takes the one-kernel path: both give eager's
    outputs, gradients and running statistics."""
    x = make_input(shape, layout, torch.float32, seed=8)
    params = make_params(shape[1], affine=True, track=True)
    for one_kernel, expected in ((False, THREE_LAUNCHES_EACH_WAY), (True, ONE_LAUNCH_EACH_WAY)):
        launches.clear()
        ours, ref = run_both(x, params, training=True, momentum=momentum, slope=0.2,
                             one_kernel=one_kernel)  # fmt: skip
        assert_matches(ours, ref, torch.float32)
        assert gpu_plans[-1].fused == one_kernel
        forward = len(expected[0])
        assert (launches[:forward], launches[forward:]) == expected


# One kind of call, then others differing from it in one thing each: (name, layout, dtype,
# affine, running statistics, training, momentum, slope, one_kernel).
BASE_KIND = ("base", "nchw", torch.float32, True, True, True, 0.1, 0.2, False)
OTHER_KINDS = [
    ("channels_last", "cl", torch.float32, True, True, True, 0.1, 0.2, False),
    ("float64", "nchw", torch.float64, True, True, True, 0.1, 0.2, False),
    ("eval", "nchw", torch.float32, True, True, False, 0.1, 0.2, False),
    ("no affine", "nchw", torch.float32, False, True, True, 0.1, 0.2, False),
    ("no running stats", "nchw", torch.float32, True, False, True, 0.1, 0.2, False),
    ("momentum None", "nchw", torch.float32, True, True, True, None, 0.2, False),
    ("relu", "nchw", torch.float32, True, True, True, 0.1, 0.0, False),
    ("one kernel", "nchw", torch.float32, True, True, True, 0.1, 0.2, True),
]


@pytest.fixture
def kept(monkeypatch):
    """The kept call each forward launched, or None for one that was not kept."""
    used = []
    real = ops._kept_forward

    def spy(call, *args):
        used.append(call)
        return real(call, *args)

    monkeypatch.setattr(ops, "_kept_forward", spy)
    return used


def test_a_kept_call_serves_only_calls_of_its_own_kind(kept):
    """Calls of one shape that differ in their layout, dtype, affine parameters, running
    statistics, training flag, momentum, slope or path each get a kept call of their own
    (its flags theirs), seen at their first call and found again at their second, and each
    gives eager's results, before and after the others."""
    calls.CALLS.clear()
    by_kind = {}
    for kind in (BASE_KIND, *OTHER_KINDS, BASE_KIND):
        name, layout, dtype, affine, track, training, momentum, slope, one_kernel = kind
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        x = make_input((4, 6, 5, 5), layout, dtype, seed=9)
        params = make_params(6, affine=affine, track=track, param_dtype=acc)
        training = training or not track  # no running statistics: batch statistics
        for _ in range(2):
            kept.clear()
            ours, ref = run_both(x, params, training=training, momentum=momentum, slope=slope,
                                 one_kernel=one_kernel)  # fmt: skip
            assert_matches(ours, ref, dtype)
            (call,) = kept
            assert by_kind.setdefault(name, call) is call, name
            spec = call.spec
            got = (spec.has_w, spec.running_stats, spec.training, spec.momentum,
                   spec.negative_slope, spec.one_kernel, call.acc, call.view.sn == 0)  # fmt: skip
            assert got == (affine, track, training, momentum, slope, one_kernel, acc,
                           layout == "cl"), name  # fmt: skip
    assert len(calls.CALLS) == 1 + len(OTHER_KINDS)


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_split_path_is_deterministic(layout):
    x = make_input((4, 16, 9, 9), layout, torch.float32)
    params = make_params(16, affine=True, track=True)
    runs = [
        run_both(x, params, training=True, momentum=0.1, slope=0.2, split=5)[0] for _ in range(2)
    ]
    (y1, x1, p1), (y2, x2, p2) = runs
    assert torch.equal(y1, y2)
    assert torch.equal(x1.grad, x2.grad)
    for name in ("weight", "bias"):
        assert torch.equal(p1[name].grad, p2[name].grad)
    for name in ("running_mean", "running_var"):
        assert torch.equal(p1[name], p2[name])


@pytest.mark.parametrize("split", [1, 3, 7])
def test_paths_agree_with_each_other_and_eager(split):
    x = make_input((3, 6, 5, 7), "nchw", torch.float32, seed=4)
    params = make_params(6, affine=True, track=True)
    ours, ref = run_both(x, params, training=True, momentum=None, slope=0.01, split=split)
    assert_matches(ours, ref, torch.float32)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_finalize_walks_several_chunks_of_partial_rows(layout):
    """More partial rows than one finalize chunk holds (kernels.batchnorm.plan.finalize_blocks), the
    last chunk partial, and channels over two programs: statistics, gradients and running
    statistics still those of eager."""
    from kernels.batchnorm.plan import (
        FINALIZE_MAX_BLOCK_P,
        channel_view,
        finalize_blocks,
        make_plan,
    )

    x = make_input((150, 9, 2, 2), layout, torch.float32, seed=6)
    split = FINALIZE_MAX_BLOCK_P + 44
    plan = make_plan(channel_view(x)[1], x.device, interpreted=True, split=split)
    block_c, block_p = finalize_blocks(9, plan.split)
    assert plan.split > block_p and plan.split % block_p and 9 > block_c, (plan, block_c)
    params = make_params(9, affine=True, track=True)
    ours, ref = run_both(x, params, training=True, momentum=0.1, slope=0.2, split=split)
    assert_matches(ours, ref, torch.float32)


# ---------------------------------------------------------------------------------------
# Numerics
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("std", [1.0, 1e-2])
@pytest.mark.parametrize("split", [1, 4])
@pytest.mark.parametrize("channels", [3, 4], ids=["masked-tiles", "full-tiles"])
def test_large_mean_small_variance(std, split, channels):
    """Mean 1e4: E[x^2] - E[x]^2 in fp32 is hopeless here, shifted Welford + Chan is not.
    3 channels leave part of each channel block empty (masked loads, a count per lane),
    4 fill it (kernels.batchnorm.plan.LaunchPlan.even: one count per tile)."""
    gen = torch.Generator().manual_seed(5)
    x64 = 1e4 + std * torch.randn((4, channels, 8, 8), generator=gen, dtype=torch.float64)
    x = x64.to(DEVICE, torch.float32)
    _, view = channel_view(x)
    assert make_plan(view, x.device, interpreted=availability.INTERPRETED).even == (channels == 4)
    params = make_params(channels, affine=True, track=True)
    # momentum 1: running_mean/var become the batch mean and the unbiased batch variance
    ours, ref = run_both(x, params, training=True, momentum=1.0, slope=0.2, split=split)
    (y, xo, p), (yr, xr, pr) = ours, ref
    var_ref = pr["running_var"]
    torch.testing.assert_close(p["running_var"].double(), var_ref, rtol=1e-4, atol=0)
    # the mean itself is stored in fp32: half an ulp at 1e4 is 4.9e-4
    torch.testing.assert_close(p["running_mean"].double(), pr["running_mean"], rtol=0, atol=1e-3)
    # y and dx use (x - K) - (mean - K), exact in fp32, so they keep full accuracy
    torch.testing.assert_close(y.double(), yr, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(xo.grad.double(), xr.grad, atol=1e-3, rtol=1e-3)
    # the naive formula really fails on this input (so the test means something)
    xf = x.transpose(0, 1).reshape(channels, -1)
    naive = (xf * xf).mean(1) - xf.mean(1) ** 2
    n = xf.shape[1]
    naive_unbiased = naive.double() * n / (n - 1)
    assert ((naive_unbiased - var_ref).abs() / var_ref).max() > 1e-2


def test_float64_inputs_accumulate_in_float64():
    x = make_input((3, 4, 5, 5), "nchw", torch.float64)
    params = make_params(4, affine=True, track=True, param_dtype=torch.float64)
    ours, ref = run_both(x, params, training=True, momentum=0.1, slope=0.2, split=2)
    assert_matches(ours, ref, torch.float64)


def test_half_parameters_get_half_gradients():
    x = make_input((4, 6, 5, 5), "cl", torch.float16)
    params = make_params(6, affine=True, track=True, param_dtype=torch.float16)
    (y, xo, p), (yr, xr, pr) = run_both(x, params, training=True, momentum=0.1, slope=0.0)
    assert p["weight"].grad.dtype == torch.float16 and p["bias"].grad.dtype == torch.float16
    assert p["running_mean"].dtype == torch.float16
    torch.testing.assert_close(y.double(), yr, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(p["weight"].grad.double(), pr["weight"].grad, atol=3e-2, rtol=1e-2)


@pytest.mark.parametrize(
    ("training", "split", "shape", "fast"),
    [
        (True, 1, (2, 2, 2, 2), False),
        (True, 2, (2, 3, 3, 3), True),
        (False, 1, (2, 3, 3, 3), True),
        (False, 2, (2, 2, 2, 2), False),
    ],
    ids=["train-fused-full", "train-split-fast", "eval-fused-fast", "eval-split-full"],
)
def test_gradcheck_float64(training, split, shape, fast):
    """The interpreter runs float64 (NumPy), and the kernels then accumulate in float64.

    Full Jacobians on the tiniest shapes; gradcheck's fast mode (random projections)
    on slightly bigger ones, to keep the interpreter's time in check.
    """
    gen = torch.Generator().manual_seed(7)
    c = shape[1]
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_(True)
    w = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5).to(DEVICE).requires_grad_(True)
    b = torch.randn(c, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_(True)
    rm = torch.randn(c, dtype=torch.float64, device=DEVICE)
    rv = torch.rand(c, dtype=torch.float64, device=DEVICE) + 0.5

    def fn(x, w, b):
        # running stats are passed only in eval (training output does not depend on them)
        return kernels.batch_norm_leaky_relu(
            x, None if training else rm, None if training else rv, w, b, training, 0.1,
            1e-5, 0.2, _split=split,
        )  # fmt: skip

    assert torch.autograd.gradcheck(fn, (x, w, b), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=fast)


# ---------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------


def test_channels_last_output_and_no_copy_of_input():
    x = make_input((2, 8, 5, 5), "cl", torch.float32)
    view_x, view = channel_view(x)
    assert view_x is x and (view.n, view.sn, view.sc, view.ss) == (1, 0, 1, 8)
    y = kernels.batch_norm_leaky_relu(x, None, None, training=True)
    assert y.is_contiguous(memory_format=torch.channels_last)
    for shape, strides in (((6, 5), (1, 5, 6, 0, 1, 5)), ((3, 4, 5), (3, 4, 5, 20, 5, 1))):
        t = make_input(shape, "nchw", torch.float32)
        same, v = channel_view(t)
        assert same is t
        assert (v.n, v.c, v.s, v.sn, v.sc, v.ss) == strides


@pytest.mark.parametrize(
    "dy_kind", ["expanded", "contiguous-for-channels-last", "matching"], ids=lambda s: s
)
def test_any_gradient_layout(dy_kind):
    x = make_input((2, 4, 3, 3), "cl", torch.float32)
    params = make_params(4, affine=True, track=False)
    xo = x.clone().requires_grad_(True)
    xr = x.double().requires_grad_(True)
    y = kernels.batch_norm_leaky_relu(xo, None, None, params["weight"], params["bias"], True)
    yr = batch_norm_leaky_relu_reference(
        xr, None, None, params["weight"].double(), params["bias"].double(), True
    )
    if dy_kind == "expanded":
        y.sum().backward()
        yr.sum().backward()
    else:
        dy = torch.randn(y.shape, dtype=torch.float64)
        dy_ours = dy.float().to(DEVICE)
        if dy_kind == "matching":
            dy_ours = dy_ours.contiguous(memory_format=torch.channels_last)
        y.backward(dy_ours)
        yr.backward(dy.to(DEVICE))
    torch.testing.assert_close(xo.grad.double(), xr.grad, atol=1e-4, rtol=1e-4)


def test_odd_layout_is_copied_and_still_correct():
    base = make_input((4, 6, 6, 6), "nchw", torch.float32)
    x = base[::2, :, 1:, ::2]  # not contiguous in any recognised order
    params = make_params(6, affine=True, track=True)
    ours, ref = run_both(x, params, training=True, momentum=0.1, slope=0.2)
    (y, xo, p), (yr, xr, pr) = ours, ref
    assert y.is_contiguous()  # the copy's layout
    torch.testing.assert_close(y.double(), yr, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xo.grad.double(), xr.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(p["running_var"].double(), pr["running_var"])


@pytest.mark.parametrize("training", [True, False])
def test_strided_parameters_and_running_stats_read_and_update_the_right_elements(training):
    """F.batch_norm takes per-channel vectors of any strides: columns of a matrix here, an
    expanded scalar for the bias. Read at the wrong elements, or written into the
    neighbouring column, they would give other values."""
    c = 5
    x = make_input((4, c, 3, 3), "nchw", torch.float32)
    gen = torch.Generator().manual_seed(3)
    variances = torch.rand((c, 2), generator=gen).to(DEVICE) + 0.5  # running_var | unused
    means = torch.randn((c, 2), generator=gen).to(DEVICE)  # running_mean | untouched
    weight = (torch.rand(c, generator=gen) + 0.5).to(DEVICE).requires_grad_(True)
    strided_weight = torch.stack((weight, weight), dim=1)[:, 0]  # stride 2, differentiable
    bias = torch.full((1,), 0.25, device=DEVICE).expand(c)  # stride 0
    rm, rv = means[:, 0], variances[:, 0]
    assert not (strided_weight.is_contiguous() or bias.is_contiguous() or rm.is_contiguous())
    rm_ref, rv_ref = rm.double().clone(), rv.double().clone()
    neighbours = means[:, 1].clone()
    xo, xr = x.clone().requires_grad_(True), x.double().clone().requires_grad_(True)
    y = kernels.batch_norm_leaky_relu(xo, rm, rv, strided_weight, bias, training, 0.1, 1e-5, 0.2)
    wr = weight.detach().double().requires_grad_(True)
    yr = batch_norm_leaky_relu_reference(
        xr, rm_ref, rv_ref, wr, bias.double(), training, 0.1, 1e-5, 0.2
    )
    dy = torch.randn(x.shape, generator=gen).to(DEVICE)
    y.backward(dy)
    yr.backward(dy.double())
    torch.testing.assert_close(y.double(), yr, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(xo.grad.double(), xr.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(weight.grad.double(), wr.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rm.double(), rm_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(rv.double(), rv_ref, atol=1e-6, rtol=1e-6)
    assert torch.equal(means[:, 1], neighbours)


def test_empty_batch_leaves_running_stats_and_counts_the_batch():
    x = torch.empty((0, 3, 4, 4), device=DEVICE)
    p = make_params(3, affine=True, track=True)
    rm = p["running_mean"].clone()
    y = kernels.batch_norm_leaky_relu(
        x, p["running_mean"], p["running_var"], p["weight"], p["bias"], True,
        num_batches_tracked=p["nbt"],
    )  # fmt: skip
    assert y.shape == x.shape
    assert torch.equal(p["running_mean"], rm) and int(p["nbt"]) == 4


# ---------------------------------------------------------------------------------------
# GPU only (bf16 arithmetic does not run in the interpreter)
# ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("split", [0, 1, 6])
def test_bfloat16_on_gpu(layout, split):
    x = make_input((8, 64, 8, 8), layout, torch.bfloat16)
    params = make_params(64, affine=True, track=True)
    ours, ref = run_both(x, params, training=True, momentum=0.1, slope=0.2, split=split)
    assert_matches(ours, ref, torch.bfloat16)


@pytest.mark.gpu
def test_output_dtype_matches_eager_under_autocast():
    x = make_input((4, 8, 4, 4), "nchw", torch.bfloat16)
    p = make_params(8, affine=True, track=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        eager = batch_norm_leaky_relu_reference(
            x, p["running_mean"].clone(), p["running_var"].clone(), p["weight"], p["bias"], True
        )
        fused = kernels.batch_norm_leaky_relu(
            x, p["running_mean"], p["running_var"], p["weight"], p["bias"], True
        )
    assert fused.dtype == eager.dtype == torch.bfloat16


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("shape", "fused"),
    [((128, 512, 4, 4), True), ((512, 1024), True), ((128, 64, 32, 32), False)],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else ("fused" if v else "split"),
)
def test_dcgan_shapes_take_their_path_on_gpu(shape, fused):
    """Small layers: narrow fused tiles (one launch each way); larger: the split path."""
    layout = "nchw" if len(shape) == 4 else "cl"
    x = make_input(shape, layout, torch.float32)
    _, view = channel_view(x)
    assert make_plan(view, x.device, interpreted=False).fused == fused
    params = make_params(shape[1], affine=True, track=True)
    ours, ref = run_both(x, params, training=True, momentum=0.1, slope=0.2)
    assert_matches(ours, ref, torch.float32)


@pytest.mark.gpu
def test_cuda_graph_capture():
    x = make_input((16, 32, 8, 8), "cl", torch.float32)
    p = make_params(32, affine=True, track=True)
    static_x = x.clone()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):  # warm up (JIT compile) outside the capture
        kernels.batch_norm_leaky_relu(
            static_x, p["running_mean"], p["running_var"], p["weight"], p["bias"], True,
            None, 1e-5, 0.2, num_batches_tracked=p["nbt"],
        )  # fmt: skip
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = kernels.batch_norm_leaky_relu(
            static_x, p["running_mean"], p["running_var"], p["weight"], p["bias"], True,
            None, 1e-5, 0.2, num_batches_tracked=p["nbt"],
        )  # fmt: skip
    before = int(p["nbt"])
    graph.replay()
    graph.replay()
    torch.cuda.synchronize()
    assert int(p["nbt"]) == before + 2  # momentum=None read the counter on the device
    ref = batch_norm_leaky_relu_reference(static_x.double(), None, None, p["weight"].double(),
                                          p["bias"].double(), True, None, 1e-5, 0.2)  # fmt: skip
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
