"""torch.compile, one speed-up per compile mode, and the one table of what each mode is.

Every fact about a compile mode lives in `COMPILE_MODES`: whether inductor puts CUDA
graphs of its own around the compiled graphs (then a whole-iteration CUDA graph cannot
go around it: a graph inside a graph), whether it times candidate kernels while
compiling (minutes a point, alone on the device), and, from the table's order, what a
compile costs: cheapest first.

Compiled, in this order: G as the step calls it, D's objective (both inside DDP, so
that dynamo's DDPOptimizer splits graphs at bucket boundaries and communication overlaps
compute), and the frozen D of the generator update, as a graph of its own: its
parameters never require grad there, so it never recompiles against the D update's
graph. The network wrappers stay outside that last one: compiled, G's and D's wrappers
would share one frame (the wrapper's forward), which dynamo compiles once per input
dtype, a recompile.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.speedups.base import Build, Option, SpeedUp, Stage
from bench.speedups.requirements import needs_cuda


@dataclass(frozen=True)
class CompileMode:
    """A torch.compile mode (`mode`, "default" for mode=None) and what it does."""

    mode: str
    speedup: str  # the speed-up's name in variants
    help: str
    cuda_graphs: bool  # inductor's own CUDA graphs (cudagraph trees) around the graphs
    autotunes: bool  # times candidate kernels while compiling: device timings decide
    gpu_work: str | None = None  # why it means nothing on a CPU, if it does not

    @property
    def precompilable(self) -> bool:
        """Its compiled code depends on no timing on the device: processes may compile it
        ahead, several at once, into inductor's on-disk caches."""
        return not self.autotunes


# Cheapest compile first: inductor's default and reduce-overhead compile a DCGAN-64 step in
# 27-34 s on an H100 host; the autotuning modes take minutes.
COMPILE_MODES = (
    CompileMode(
        "default",
        "compile",
        "torch.compile, default mode",
        cuda_graphs=False,
        autotunes=False,
    ),
    CompileMode(
        "reduce-overhead",
        "compile-reduce-overhead",
        "torch.compile mode=reduce-overhead (inductor's CUDA graphs)",
        cuda_graphs=True,
        autotunes=False,
        gpu_work="it is a CUDA-graph mode; on CPU inductor skips the graphs, so the record "
        "would name a path that did not run",
    ),
    CompileMode(
        "max-autotune-no-cudagraphs",
        "compile-max-autotune-no-cudagraphs",
        "torch.compile mode=max-autotune-no-cudagraphs (Triton autotuning, no graphs)",
        cuda_graphs=False,
        autotunes=True,
        gpu_work="it tunes Triton GEMM templates on a GPU; on CPU it would tune inductor's "
        "C++ templates instead, another path, at minutes per compile",
    ),
    CompileMode(
        "max-autotune",
        "compile-max-autotune",
        "torch.compile mode=max-autotune (Triton autotuning and inductor's CUDA graphs)",
        cuda_graphs=True,
        autotunes=True,
        gpu_work="it is a CUDA-graph mode that tunes Triton templates; on CPU neither runs, "
        "so the record would name a path that did not run",
    ),
)
MODES = {m.mode: m for m in COMPILE_MODES}
NOT_COMPILED = "none"

COMPILE_MODE = Option(
    "compile_mode",
    str,
    NOT_COMPILED,
    "torch.compile mode for G and D: " + ", ".join((NOT_COMPILED, *MODES)) + ".",
    choices=(NOT_COMPILED, *MODES),
)


def cost_rank(mode: str) -> int:
    """0 for no compile, then by COMPILE_MODES' order: what a point costs to compile."""
    return 0 if mode == NOT_COMPILED else 1 + list(MODES).index(mode)


def _compile(build: Build) -> None:
    cfg = build.cfg
    mode = None if cfg.compile_mode == "default" else cfg.compile_mode
    build.g_forward = torch.compile(build.g_forward, mode=mode)
    build.d_objective = torch.compile(build.d_objective, mode=mode)
    build.d_frozen = build.wrap(torch.compile(build.discriminator, mode=mode))
    build.record["compile_mode"] = cfg.compile_mode


def _watch(build: Build) -> None:
    """What dynamo and inductor did in this run, read once the run is over."""
    from bench.telemetry.compile_watch import CompileWatch  # imports dynamo

    watch = CompileWatch(makes_cuda_graphs=MODES[build.cfg.compile_mode].cuda_graphs)
    build.late_record["compile"] = watch.counters
    build.cleanup.append(watch.close)


def _speedup(mode: CompileMode) -> SpeedUp:
    requires = () if mode.gpu_work is None else (needs_cuda(mode.gpu_work),)
    return SpeedUp(
        name=mode.speedup,
        help=mode.help,
        options=(COMPILE_MODE,),
        fields={"compile_mode": mode.mode},
        stage=Stage.COMPILE,
        hooks={Stage.SETTINGS: _watch, Stage.COMPILE: _compile},
        requires=requires,
        record_off={"compile_mode": None},
    )


SPEEDUPS = tuple(_speedup(mode) for mode in COMPILE_MODES)
