"""Microbenchmarks of the narrow convolutions against cuDNN (eager) and torch.compile, at
the layers they are for: DCGAN-64's image layers, bf16, channels_last, on a CUDA GPU.

Two layers, each at batch 128 and 1024: ``image-in`` (D's first: conv 3 -> 64 channels,
4x4, stride 2, padding 1, over 64x64 images, then LeakyReLU 0.2) and ``image-out`` (G's
last: transposed conv 64 -> 3 channels, 4x4, stride 2, padding 1, 32x32 -> 64x64). The
backward computes both the input's and the weight's gradients, as the generator's update
does. Rows report do_bench's median (p20, p80), the speed-up over cuDNN, and the useful
work's rate (the reference layer's FLOPs: 2 per multiply-add, 3 channels, per second).
The CLI command that records these is ``gan-bench kernels --convs`` (``command.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.kernelbench.measure import PASSES, check_choices, do_bench_quantiles, require_cuda
from kernels.narrow_conv.ops import narrow_conv2d, narrow_conv_transpose2d
from kernels.narrow_conv.plan import DEFAULT_NARROW_TUNING, NarrowTuning, narrow_tuned

__all__ = ["CONV_IMPLS", "NARROW_TUNINGS", "ConvCase", "conv_cases", "run_conv_case"]

CONV_IMPLS = ("eager", "compile", "triton")
SLOPE = 0.2  # DCGAN's discriminator LeakyReLU

# The launch tunings `gan-bench kernels --convs --tune` times: the default, then one knob
# moved at a time (a larger tile with the warps to hold it: one step, none spills).
# Timed on a GPU only: the GPU's default, not the interpreter's.
_GPU_DEFAULT = NarrowTuning()
NARROW_TUNINGS = (
    _GPU_DEFAULT,
    dataclasses.replace(_GPU_DEFAULT, block_m=32),
    dataclasses.replace(_GPU_DEFAULT, block_m=128, num_warps=8),
    dataclasses.replace(_GPU_DEFAULT, wide_block_k=64),
    dataclasses.replace(_GPU_DEFAULT, num_stages=2),
    dataclasses.replace(_GPU_DEFAULT, num_stages=4),
    dataclasses.replace(_GPU_DEFAULT, wgrad_block_m=64),
    dataclasses.replace(_GPU_DEFAULT, wgrad_num_warps=4),
    dataclasses.replace(_GPU_DEFAULT, wgrad_programs_per_sm=8),
)


@dataclass(frozen=True)
class ConvCase:
    """One layer: ``transposed`` False is ``conv2d(x, w) -> leaky_relu``, True is
    ``conv_transpose2d(x, w)``; weight ``(64, 3, 4, 4)`` either way (for the transposed
    convolution that is (in, out, kh, kw)); stride 2, padding 1."""

    name: str
    batch: int
    transposed: bool

    @property
    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, 64, 32, 32) if self.transposed else (self.batch, 3, 64, 64)

    @property
    def flops(self) -> int:
        """The forward's multiply-adds x 2: output pixels x 64 x 3 channels x 16 taps over
        the 32x32 grid of the stride (each of the 64x64 pixels sees 4 taps)."""
        return 2 * self.batch * 32 * 32 * 64 * 3 * 16


def conv_cases() -> list[ConvCase]:
    return [
        ConvCase(f"{name}-b{batch}", batch, transposed)
        for batch in (128, 1024)
        for name, transposed in (("image-in", False), ("image-out", True))
    ]


def _layer(impl: str, case: ConvCase) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if impl == "triton":
        if case.transposed:
            return lambda x, w: narrow_conv_transpose2d(x, w, None, 2, 1)
        return lambda x, w: narrow_conv2d(x, w, None, 2, 1, SLOPE)

    def eager(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if case.transposed:
            return F.conv_transpose2d(x, w, None, 2, 1)
        return F.leaky_relu(F.conv2d(x, w, None, 2, 1), SLOPE)

    if impl == "compile":
        torch.compiler.reset()  # compiled for this case alone (see batchnorm.py)
        return torch.compile(eager, dynamic=False)
    return eager


def _pass_flops(case: ConvCase, pass_: str) -> int:
    # the backward computes two products of the forward's size (input and weight gradients)
    return case.flops * {"forward": 1, "backward": 2, "forward+backward": 3}[pass_]


def run_conv_case(
    case: ConvCase,
    *,
    impls: Sequence[str] = CONV_IMPLS,
    passes: Sequence[str] = PASSES,
    rep_ms: int = 100,
    warmup_ms: int = 25,
    device: torch.device | str = "cuda",
    tuning: NarrowTuning | None = None,
) -> list[dict]:
    """Time ``case`` for each implementation and pass (bf16, channels_last, cuDNN's
    autotuner on, as the harness runs it); one JSON-ready dict per pair, a failed
    measurement a row with ``status="failed"``. ``tuning``: the Triton kernels' launches
    (rows say ``"tuned": true``); None: their default."""
    require_cuda()
    check_choices(impls, CONV_IMPLS, passes)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(case.x_shape, generator=gen).to(device, torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    w = (torch.randn((64, 3, 4, 4), generator=gen) * 0.02).to(device, torch.bfloat16)
    w = w.contiguous(memory_format=torch.channels_last).requires_grad_()
    rows: list[dict] = []
    eager_ms: dict[str, float] = {}
    benchmark_before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        for impl in sorted(impls, key=lambda i: i != "eager"):
            with narrow_tuned(tuning or DEFAULT_NARROW_TUNING):
                rows += _measure(case, impl, passes, x, w, rep_ms, warmup_ms, eager_ms)
    finally:
        torch.backends.cudnn.benchmark = benchmark_before
    if tuning is not None:
        rows = [{**r, "tuning": dataclasses.asdict(tuning), "tuned": True} for r in rows]
    return rows


def _measure(case, impl, passes, x, w, rep_ms, warmup_ms, eager_ms) -> list[dict]:
    head = {"case": case.name, "shape": list(case.x_shape), "dtype": "bf16", "impl": impl}
    fn = _layer(impl, case)
    try:  # compiles (torch.compile, Triton's JIT, cuDNN's autotuner): not timed
        start = time.perf_counter()
        y = fn(x, w)
        dy = torch.randn_like(y)
        torch.autograd.grad(y, (x, w), dy, retain_graph=True)
        torch.cuda.synchronize()
        setup_s = time.perf_counter() - start
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return [{**head, "pass": p, "status": "failed", "reason": reason} for p in passes]
    bench = {
        "forward": lambda: fn(x, w),
        "backward": lambda: torch.autograd.grad(y, (x, w), dy, retain_graph=True),
        "forward+backward": lambda: torch.autograd.grad(fn(x, w), (x, w), dy),
    }
    rows = []
    for pass_ in passes:
        try:
            p50, p20, p80 = do_bench_quantiles(bench[pass_], rep_ms, warmup_ms)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            rows.append({**head, "pass": pass_, "status": "failed", "reason": reason})
            continue
        if impl == "eager":
            eager_ms[pass_] = p50
        rows.append(
            {
                **head,
                "pass": pass_,
                "ms_p50": p50,
                "ms_p20": p20,
                "ms_p80": p80,
                "speedup_vs_eager": eager_ms[pass_] / p50 if pass_ in eager_ms else None,
                "useful_tflops": _pass_flops(case, pass_) / (p50 * 1e-3) / 1e12,
                "setup_s": setup_s,
                "status": "ok",
                "reason": None,
            }
        )
    return rows
