"""The sweep's grids, as data: named tiers of blocks, each block a Cartesian product of
axis values, and the points of a grid (`expand`).

- `quick` (the default): on a CPU a minute of start-up-dominated points; on GPUs the
  questions a GPU user brings first, in minutes: eager, torch.compile, the fused kernels
  without a CUDA graph, and the fastest stacks measured so far at the project's goal
  points (DCGAN-64 at batch 128, launch-bound, and 1024, bandwidth-bound; the MLP GAN at
  512), in bf16, and scaling over the GPUs present;
- `full`: every speed-up alone at the goal points, each compile mode with the fused
  kernels and the stacks that can beat them, compiled and not; precisions at DCGAN-32;
  scaling (most of an hour on one GPU, by `--dry-run`);
- `goals`: the goal points alone, over the variants the project's goals are judged on.

A world-size axis of `ALL_GPUS` is 1, 2, 4, ... up to the machine's GPUs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from bench.config import batch_label, per_process_batch
from bench.speedups import variant_rank
from bench.telemetry.machine import Machine

AXES = ("models", "datasets", "batch_sizes", "precisions", "world_sizes", "variants")
ALL_GPUS = "all"


def block(models, datasets, batch_sizes, precisions, world_sizes, variants) -> dict:
    return dict(
        zip(AXES, (models, datasets, batch_sizes, precisions, world_sizes, variants), strict=True)
    )


# On a CPU, sized for a 2-core machine to finish in about a minute even when shared.
# Measured there (torch 2.14): a fresh process costs ~5 s of imports, torchrun with 2
# workers ~10 s; an eager iteration at batch 64 ~18 ms (mlp) and ~150 ms (dcgan32); a first
# torch.compile 20-30 s (~2 s once inductor's on-disk cache holds the kernels). Start-up
# dominates, so the plan is few points: mostly mlp at batch 128, each axis at two values
# once, compile next to its eager baseline; one-process points fork from a warm server
# (bench/sweep/warm.py: ~0.1 s of start-up), and its 12 runs take about 40 s.
CPU_BLOCKS = (
    # batch size, then precision, with the cheap model on one process
    block(("mlp",), ("synthetic",), (32, 128), ("fp32",), (1,), ("eager",)),
    block(("mlp",), ("synthetic",), (128,), ("fp32", "bf16"), (1,), ("eager",)),
    # world sizes 1 and 2 (gloo). torchrun gives each worker OMP_NUM_THREADS=1, so both sizes
    # share the same 2 cores: the efficiency shows the cost of DDP's all-reduce, not more
    # hardware.
    block(("mlp",), ("synthetic",), (128,), ("fp32",), (1, 2), ("eager",)),
    # eager vs compile at one point: the compare table's compile row and its baseline
    block(("mlp",), ("synthetic",), (128,), ("fp32",), (1,), ("eager", "compile")),
    # a second model on a second data set (5,000 real MNIST digits, resized to 32x32)
    block(("dcgan32",), ("mnist5k",), (32,), ("fp32",), (1,), ("eager",)),
)

# The fastest stacks measured on an H100 (results/NVIDIA-H100-80GB-HBM3/): DCGAN-64 at
# batch 128 (4.9x eager) and 1024 (2.5x), the MLP GAN at 512 (14.9x).
DCGAN_BEST = (
    "triton+channels-last+pad-channels+batched-casts+cuda-graph",
    "triton+channels-last+pad-channels+cuda-graph",
)
MLP_BEST = ("triton+joint-d+batched-casts+cuda-graph",)

# The fused kernels without a CUDA graph, as a user turns them on first: alone, with
# channels_last, and asked for one kernel each way (triton-one-kernel).
FUSED_ALONE = ("triton", "triton+channels-last", "triton+triton-one-kernel")

QUICK_GPU_BLOCKS = (
    block(
        ("dcgan64",), ("synthetic",), (128, 1024), ("bf16",), (1,),
        ("eager", "compile", *FUSED_ALONE, "channels-last+cuda-graph", *DCGAN_BEST),
    ),
    block(
        ("mlp",), ("synthetic",), (512,), ("bf16",), (1,),
        ("eager", "compile", "triton", "triton+triton-one-kernel", *MLP_BEST),
    ),
    block(("dcgan64",), ("synthetic",), (128,), ("bf16",), ALL_GPUS, ("eager", DCGAN_BEST[1])),
)  # fmt: skip

# The goal points over every speed-up alone, each compile mode with the fused kernels,
# and the stacks that can beat them, compiled and not. fused-adam is on its own and with
# compile or the fused kernels: a CUDA graph uses fused Adam already.
DCGAN_GOAL_VARIANTS = (
    "eager",
    "compile",
    "compile-reduce-overhead",
    "compile-max-autotune-no-cudagraphs",
    "triton",
    "channels-last",
    "cuda-graph",
    "compile+triton",
    "compile-reduce-overhead+triton",
    "compile-max-autotune-no-cudagraphs+triton",
    "triton+channels-last",
    "triton+triton-one-kernel",
    "triton+channels-last+triton-one-kernel",
    "fused-adam",
    "compile+fused-adam",
    "triton+channels-last+fused-adam",
    "channels-last+cuda-graph",
    "triton+channels-last+cuda-graph",
    "channels-last+pad-channels+cuda-graph",
    "triton+channels-last+pad-channels+cuda-graph",
    "triton+channels-last+pad-channels+batched-casts+cuda-graph",
    "triton+channels-last+pad-channels+cudnn-exhaustive+cuda-graph",
    "triton+triton-convs+channels-last+cuda-graph",
    "triton+triton-convs+channels-last+batched-casts+cuda-graph",
    "compile+channels-last+cuda-graph",
    "compile+triton+channels-last+pad-channels+cuda-graph",
    "compile-max-autotune-no-cudagraphs+triton+channels-last+pad-channels+cuda-graph",
)
# The MLP GAN has no convolutions: channels_last and padded image channels do not apply to
# it. Its discriminator has no BatchNorm, so joint-d does.
MLP_GOAL_VARIANTS = (
    "eager",
    "compile",
    "compile-reduce-overhead",
    "compile-max-autotune-no-cudagraphs",
    "triton",
    "joint-d",
    "cuda-graph",
    "compile+triton",
    "compile-reduce-overhead+triton",
    "compile-max-autotune-no-cudagraphs+triton",
    "triton+triton-one-kernel",
    "fused-adam",
    "compile+fused-adam",
    "triton+joint-d+fused-adam",
    "triton+cuda-graph",
    "joint-d+cuda-graph",
    "triton+joint-d+cuda-graph",
    "joint-d+batched-casts+cuda-graph",
    "triton+joint-d+batched-casts+cuda-graph",
    "compile+cuda-graph",
    "compile+joint-d+cuda-graph",
    "compile+triton+joint-d+cuda-graph",
)
GOAL_BLOCKS = (
    block(("dcgan64",), ("synthetic",), (128, 1024), ("bf16",), (1,), DCGAN_GOAL_VARIANTS),
    block(("mlp",), ("synthetic",), (512,), ("bf16",), (1,), MLP_GOAL_VARIANTS),
)
FULL_GPU_BLOCKS = (
    *GOAL_BLOCKS,
    block(
        ("dcgan32",), ("synthetic",), (64, 256), ("fp32", "tf32", "bf16"), (1,),
        ("eager", "compile", "channels-last+cuda-graph", "triton+channels-last+cuda-graph"),
    ),
    block(
        ("dcgan64",), ("synthetic",), (128,), ("bf16",), ALL_GPUS,
        ("eager", "channels-last+cuda-graph"),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Grid:
    """A named tier: what it is for, and its blocks on a CPU and on GPUs."""

    name: str
    description: str
    cpu: tuple[dict, ...]
    gpu: tuple[dict, ...]

    def blocks(self, machine: Machine) -> list[dict]:
        """The blocks for `machine`, `ALL_GPUS` spelled out as its world sizes."""
        worlds = tuple(2**k for k in range(max(machine.gpu_count, 1).bit_length()))
        chosen = self.gpu if machine.cuda else self.cpu
        return [
            {**b, "world_sizes": worlds if b["world_sizes"] == ALL_GPUS else b["world_sizes"]}
            for b in chosen
        ]


GRIDS = {
    grid.name: grid
    for grid in (
        Grid("quick", "eager, compile and the fastest stacks at the goal points; scaling",
             CPU_BLOCKS, QUICK_GPU_BLOCKS),
        Grid("full", "every speed-up at the goal points, precisions, scaling",
             CPU_BLOCKS, FULL_GPU_BLOCKS),
        Grid("goals", "the goal points over the variants the goals are judged on",
             GOAL_BLOCKS, GOAL_BLOCKS),
    )
}  # fmt: skip
DEFAULT_GRID = "quick"

# Timed iterations, warm-up, repeats and the per-point limit (s) when not given. CPU: 20
# timed iterations are enough for a p50 and cost ~0.5 s for mlp, little next to the start-
# up; on a loaded 2-core machine two-thread runs slow down up to 10x, so iterations are
# kept few; 2 repeats give every point a min-max spread; the warm-up absorbs a compile.
# GPU: 100 steps, 3 repeats (the median of 3 survives one outlier), room for max-autotune
# compiles; 12 warm-up iterations, what a CUDA graph under DDP needs (11 eager, then the
# capture: bench/speedups/cuda_graph.py), for every variant alike.
CPU_DEFAULTS = {"steps": 20, "warmup_steps": 3, "repeats": 2, "timeout_s": 300.0}
GPU_DEFAULTS = {"steps": 100, "warmup_steps": 12, "repeats": 3, "timeout_s": 1800.0}


def machine_defaults(machine: Machine) -> dict:
    return dict(GPU_DEFAULTS if machine.cuda else CPU_DEFAULTS)


@dataclass(frozen=True)
class Point:
    model: str
    dataset: str
    batch_size: int  # per process under weak scaling, the global batch under strong
    precision: str
    world_size: int
    variant: str
    scaling: str = "weak"  # RunConfig.scaling

    @property
    def batch_per_process(self) -> int:
        return per_process_batch(self.batch_size, self.world_size, self.scaling)

    @property
    def batch_text(self) -> str:
        return batch_label(self.batch_size, self.scaling)

    @property
    def label(self) -> str:
        return (
            f"{self.model}/{self.dataset} b{self.batch_text} {self.precision} "
            f"×{self.world_size} {self.variant}"
        )


def expand(blocks: list[dict], overrides: dict | None = None) -> list[Point]:
    """The points of a union of blocks, each axis in `overrides` replacing it in every
    block; duplicates dropped. Models in the order they first appear (a grid's goal blocks
    first: a sweep cut off by its time limit has measured those), and within a model so
    that a configuration's baseline (eager, world size 1) runs before its variants."""
    points: dict[Point, None] = {}
    for b in blocks:
        axes = {**b, **(overrides or {})}
        for values in itertools.product(*(axes[name] for name in AXES)):
            points[Point(*values)] = None
    model_rank = {model: i for i, model in enumerate(dict.fromkeys(p.model for p in points))}
    return sorted(
        points,
        key=lambda p: (
            model_rank[p.model],
            p.dataset,
            p.precision,
            p.batch_size,
            p.world_size,
            variant_rank(p.variant),
        ),
    )
