"""Microbenchmarks of the fused BatchNorm + LeakyReLU op against eager and torch.compile,
on a CUDA GPU, at the BatchNorm shapes of DCGAN-64 and the MLP GAN.

BatchNorm + LeakyReLU is memory-bound, so results are reported as effective bandwidth
against the minimum traffic and against the device's copy bandwidth measured in the
same process (Triton tutorial 05, Liger-Kernel's benchmarks). Timing is
``triton.testing.do_bench`` (median and p20/p80 over a time budget, L2 flushed between
runs). ``benchmark_cases`` lists the cases and ``run_case`` times one; ``command.py``
records them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from bench.kernelbench.measure import (
    PASSES,
    check_choices,
    copy_bandwidth_gbps,
    do_bench_quantiles,
    graph_replay_ms,
    host_ms_per_call,
    launches_stubbed,
    require_cuda,
)
from kernels.batchnorm import ops as batchnorm_ops
from kernels.batchnorm.plan import DEFAULT_TUNING, Tuning, tuned
from kernels.batchnorm.reference import batch_norm_leaky_relu_reference

__all__ = [
    "DTYPES",
    "FUSED_IMPLS",
    "IMPLS",
    "TUNINGS",
    "Case",
    "benchmark_cases",
    "bytes_moved",
    "case_tensors",
    "impl_function",
    "run_case",
]

IMPLS = ("eager", "compile", "triton", "triton-one-kernel")
# The fused op's implementations: as it plans by default, and asked for one kernel each
# way wherever a program can own a channel block (the triton-one-kernel speed-up).
FUSED_IMPLS = ("triton", "triton-one-kernel")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# Tensor passes per benchmark pass, for the minimum traffic: forward reads x and writes
# y (2); backward reads dy and x and writes dx (3, y is recomputed from x); both 5.
# Statistics vectors ([C]-sized) are negligible and left out. A real training forward
# reads x twice (statistics, then normalise) unless x stays in cache, so 100% of copy
# bandwidth is out of reach by construction.
_PASS_TENSORS = {"forward": 2, "backward": 3, "forward+backward": 5}

# The launch tunings `gan-bench kernels --tune` times the fused op with: the default, then
# one knob moved at a time (and the larger tile with the warps to carry it), so a
# difference has one cause.
TUNINGS = (
    DEFAULT_TUNING,
    dataclasses.replace(DEFAULT_TUNING, programs_per_sm=4),
    dataclasses.replace(DEFAULT_TUNING, programs_per_sm=16),
    dataclasses.replace(DEFAULT_TUNING, tile_elems=1024),
    dataclasses.replace(DEFAULT_TUNING, tile_elems=4096),
    dataclasses.replace(DEFAULT_TUNING, num_warps=8),
    dataclasses.replace(DEFAULT_TUNING, tile_elems=4096, num_warps=8),
    dataclasses.replace(DEFAULT_TUNING, num_stages=2),
    dataclasses.replace(DEFAULT_TUNING, num_stages=3),
    dataclasses.replace(DEFAULT_TUNING, fused_max_tiles=0),  # the split path everywhere
    dataclasses.replace(DEFAULT_TUNING, fused_max_tiles=32),
)

# Every BatchNorm input of gan_models' dcgan64 at batch 128 (ngf = ndf = 64), from the
# shape comments in gan_models/dcgan.py (tests/bench/kernelbench checks them with forward
# hooks): G project (512, 4, 4), up1 (256, 8, 8), up2 (128, 16, 16), up3 (64, 32, 32), all
# ReLU; D down1 (128, 16, 16), down2 (256, 8, 8), down3 (512, 4, 4), all LeakyReLU(0.2).
# G and D share shapes, so each shape is one case naming both layers.
_DCGAN64_BATCH = 128
_DCGAN64_BN = (
    ((512, 4, 4), ("G.main.project.bn", "D.main.down3.bn")),
    ((256, 8, 8), ("G.main.up1.bn", "D.main.down2.bn")),
    ((128, 16, 16), ("G.main.up2.bn", "D.main.down1.bn")),
    ((64, 32, 32), ("G.main.up3.bn",)),
)
# A larger 2-D layer (bandwidth-bound regime) and the MLP GAN's widest BatchNorm1d.
_EXTRA_2D = ((256, 64, 64, 64), "large 2d")
_EXTRA_1D = ((512, 1024), "mlp-like 1d")


@dataclass(frozen=True)
class Case:
    """One benchmark input: shape, memory layout and dtype.

    Attributes:
        name: short id, e.g. ``"dcgan64-512x4x4-nchw-bf16"``.
        shape: the BatchNorm input shape, ``(N, C, H, W)`` or ``(N, C)``.
        layout: ``"nchw"`` (contiguous), ``"channels_last"``, or ``"nc"`` (2-D).
        dtype: ``"fp32"`` or ``"bf16"`` (weight, bias and running stats stay fp32, as
            under autocast).
        negative_slope: LeakyReLU slope (does not change the cost).
        sources: which model layers have this input shape.
    """

    name: str
    shape: tuple[int, ...]
    layout: str
    dtype: str
    negative_slope: float = 0.2
    sources: tuple[str, ...] = ()

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def element_size(self) -> int:
        return torch.empty((), dtype=DTYPES[self.dtype]).element_size()


def _measure_order(case: Case) -> tuple[int, int]:
    """Cases the kernels are judged on come first, so that a run cut short by a time limit
    has measured them: (256, 64, 64, 64) NCHW in bf16 then fp32, then every other bf16 case
    (the DCGAN layers, BN1d), then the rest in fp32; the list's own order within each."""
    if case.name.startswith("large") and case.layout == "nchw":
        return (0, case.dtype != "bf16")
    return (1 if case.dtype == "bf16" else 2, 0)


def benchmark_cases() -> list[Case]:
    """The benchmark inputs: dcgan64's BatchNorm shapes at N=128, (256, 64, 64, 64), (512, 1024).

    Each 4-D shape in both layouts (NCHW and channels_last), each case in fp32 and bf16,
    in the order they are measured (`_measure_order`).
    """
    cases: list[Case] = []
    shapes = [
        ((_DCGAN64_BATCH, *chw), "dcgan64", tuple(f"dcgan64.{s}" for s in srcs))
        for chw, srcs in _DCGAN64_BN
    ]
    shapes.append((_EXTRA_2D[0], "large", (_EXTRA_2D[1],)))
    for shape, prefix, sources in shapes:
        for layout in ("nchw", "channels_last"):
            for dtype in DTYPES:
                dims = "x".join(str(s) for s in shape[1:])
                name = f"{prefix}-{dims}-{layout}-{dtype}"
                cases.append(Case(name, shape, layout, dtype, 0.2, sources))
    for dtype in DTYPES:
        shape = _EXTRA_1D[0]
        cases.append(Case(f"bn1d-{shape[1]}-nc-{dtype}", shape, "nc", dtype, 0.2, (_EXTRA_1D[1],)))
    return sorted(cases, key=_measure_order)  # stable: the loops' order within a rank


def bytes_moved(case: Case, pass_: str) -> int:
    """Minimum bytes a pass must move: (2, 3 or 5) x numel x element size."""
    if pass_ not in _PASS_TENSORS:
        raise ValueError(f"unknown pass {pass_!r}; allowed: {', '.join(PASSES)}")
    return _PASS_TENSORS[pass_] * case.numel * case.element_size


# The pass also timed from CUDA-graph replays (``device_ms``) and on the host (``host_ms``):
# the one the goals are set on.
DEVICE_TIMED_PASS = "forward+backward"


def case_tensors(case: Case, device: torch.device | str) -> dict[str, torch.Tensor]:
    """``case``'s input ``x`` (random, requiring grad, in its layout and dtype) and its fp32
    ``weight``, ``bias``, ``running_mean`` and ``running_var`` on ``device``."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(case.shape, generator=gen).to(device=device, dtype=DTYPES[case.dtype])
    if case.layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    c = case.shape[1]
    return {
        "x": x.requires_grad_(True),
        "weight": torch.ones(c, device=device, requires_grad=True),
        "bias": torch.zeros(c, device=device, requires_grad=True),
        "running_mean": torch.zeros(c, device=device),
        "running_var": torch.ones(c, device=device),
    }


def impl_function(
    impl: str, case: Case, t: dict[str, torch.Tensor]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> y`` of implementation ``impl`` (see ``run_case``), training, over the other
    tensors of ``case_tensors``."""

    def eager(x: torch.Tensor) -> torch.Tensor:
        return batch_norm_leaky_relu_reference(
            x, t["running_mean"], t["running_var"], t["weight"], t["bias"], True, 0.1, 1e-5,
            case.negative_slope,
        )  # fmt: skip

    if impl == "eager":
        return eager
    if impl == "compile":
        # A fresh compile per case: dynamo caches per code object, and a long list of
        # shapes would otherwise hit its recompile limit and silently run eager.
        torch.compiler.reset()
        return torch.compile(eager, dynamic=False)

    one_kernel = impl == "triton-one-kernel"

    def fused(x: torch.Tensor) -> torch.Tensor:
        return batchnorm_ops.batch_norm_leaky_relu(
            x, t["running_mean"], t["running_var"], t["weight"], t["bias"], True, 0.1, 1e-5,
            case.negative_slope, one_kernel=one_kernel,
        )  # fmt: skip

    return fused


def run_case(
    case: Case,
    *,
    impls: Sequence[str] = IMPLS,
    passes: Sequence[str] = PASSES,
    rep_ms: int = 100,
    warmup_ms: int = 25,
    copy_gbps: float | None = None,
    device: torch.device | str = "cuda",
    tuning: Tuning | None = None,
) -> list[dict]:
    """Time ``case`` for each implementation and pass; one JSON-ready dict per pair.

    Args:
        case: from ``benchmark_cases``.
        impls: any of ``"eager"`` (F.batch_norm + F.leaky_relu), ``"compile"``
            (torch.compile of that, default mode, ``dynamic=False``, compiled for this
            case), ``"triton"`` (the fused op), ``"triton-one-kernel"`` (the fused op
            asked for its one-kernel path: ``one_kernel=True``).
        passes: any of ``"forward"`` (training forward: batch statistics, running-stat
            update, autograd recording), ``"backward"`` (only the backward: the graph is
            built once and retained), ``"forward+backward"``.
        rep_ms, warmup_ms: do_bench's time budgets per measurement.
        copy_gbps: the device's copy bandwidth; measured here when None.
        device: a CUDA device.
        tuning: launch the fused op with this ``kernels.batchnorm.plan.Tuning`` (an
            experiment: its rows say ``"tuned": true``); None: the op's default.

    Returns:
        Dicts with ``case, shape, layout, dtype, impl, pass, ms_p50, ms_p20, ms_p80,
        bytes_min, gb_per_s, copy_gb_per_s, pct_of_copy_bandwidth, speedup_vs_eager,
        device_ms, device_ms_reason, host_ms, host_ms_without_launches, compile_s, status,
        reason``, and for the fused op ``tuning`` (its fields) and ``tuned``. A measurement
        that fails is a row with ``status="failed"`` and the reason, not an exception.

    Raises:
        KernelUnavailableError: no CUDA GPU (the interpreter is never benchmarked).
        ValueError: an unknown impl or pass.
    """
    require_cuda()
    check_choices(impls, IMPLS, passes)
    device = torch.device(device)
    if copy_gbps is None:
        copy_gbps = copy_bandwidth_gbps(device)
    rows: list[dict] = []
    eager_ms: dict[str, float] = {}
    # eager first, so every other row can report its speed-up
    for impl in sorted(impls, key=lambda i: i != "eager"):
        fused = impl in FUSED_IMPLS
        # The fused op plans its launches when it runs: the whole measurement is inside.
        with tuned(tuning) if fused and tuning else contextlib.nullcontext():
            measured = _measure_impl(
                case, impl, passes, rep_ms, warmup_ms, copy_gbps, device, eager_ms
            )
        if fused:
            used = {"tuning": dataclasses.asdict(tuning or DEFAULT_TUNING), "tuned": bool(tuning)}
            measured = [{**row, **used} for row in measured]
        rows += measured
    return rows


def _measure_impl(
    case: Case,
    impl: str,
    passes: Sequence[str],
    rep_ms: int,
    warmup_ms: int,
    copy_gbps: float,
    device: torch.device,
    eager_ms: dict[str, float],
) -> list[dict]:
    rows: list[dict] = []
    t = case_tensors(case, device)
    fn = impl_function(impl, case, t)
    x = t["x"]
    wrt = (x, t["weight"], t["bias"])
    compile_s = None
    try:
        # The first forward and backward compile (the backward graph is lowered lazily,
        # at its first call) or JIT-compile the Triton kernels: none of it is timed.
        start = time.perf_counter()
        y = fn(x)
        dy = torch.randn_like(y)
        torch.autograd.grad(y, wrt, dy, retain_graph=True)
        torch.cuda.synchronize(device)
        if impl == "compile":
            compile_s = time.perf_counter() - start
    except Exception as exc:  # a failed setup is a row per pass, not a crash
        return [_failed(case, impl, p, exc) for p in passes]
    bench: dict[str, Callable[[], object]] = {
        "forward": lambda fn=fn, x=x: fn(x),
        "backward": lambda y=y, dy=dy, wrt=wrt: torch.autograd.grad(y, wrt, dy, retain_graph=True),
        "forward+backward": lambda fn=fn, x=x, dy=dy, wrt=wrt: torch.autograd.grad(fn(x), wrt, dy),
    }
    for pass_ in passes:
        try:
            p50, p20, p80 = do_bench_quantiles(bench[pass_], rep_ms, warmup_ms)
        except Exception as exc:
            rows.append(_failed(case, impl, pass_, exc))
            continue
        if impl == "eager":
            eager_ms[pass_] = p50
        device_ms, device_reason = None, f"measured for {DEVICE_TIMED_PASS} only"
        host_ms = host_ms_without_launches = None
        if pass_ == DEVICE_TIMED_PASS:
            # A quarter of the budget: its 10 replays of rep_ms each would otherwise make
            # this the longest part of a case.
            device_ms, device_reason = graph_replay_ms(bench[pass_], max(5, rep_ms // 4))
            host_ms = host_ms_per_call(bench[pass_])
            if impl in FUSED_IMPLS:
                with launches_stubbed(batchnorm_ops):
                    host_ms_without_launches = host_ms_per_call(bench[pass_])
        nbytes = bytes_moved(case, pass_)
        gbps = nbytes / (p50 * 1e-3) / 1e9
        rows.append(
            {
                **_row_head(case, impl, pass_),
                "ms_p50": p50,
                "ms_p20": p20,
                "ms_p80": p80,
                "bytes_min": nbytes,
                "gb_per_s": gbps,
                "copy_gb_per_s": copy_gbps,
                "pct_of_copy_bandwidth": 100.0 * gbps / copy_gbps,
                "speedup_vs_eager": (eager_ms[pass_] / p50) if pass_ in eager_ms else None,
                "device_ms": device_ms,
                "device_ms_reason": device_reason,
                "host_ms": host_ms,
                "host_ms_without_launches": host_ms_without_launches,
                "compile_s": compile_s,
                "status": "ok",
                "reason": None,
            }
        )
    return rows


def _row_head(case: Case, impl: str, pass_: str) -> dict:
    return {
        "case": case.name,
        "shape": list(case.shape),
        "layout": case.layout,
        "dtype": case.dtype,
        "impl": impl,
        "pass": pass_,
    }


def _failed(case: Case, impl: str, pass_: str, exc: BaseException) -> dict:
    return {
        **_row_head(case, impl, pass_),
        "status": "failed",
        "reason": f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
    }
