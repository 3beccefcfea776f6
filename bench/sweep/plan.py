"""The sweep's plan: what runs where, and in which order; nothing here runs a point.

The machine the points run on (`detect_machine`) and its default grid (a union of blocks,
each a Cartesian product of axis values); the points of a grid (`expand`) and why this
machine cannot run one (`skip_reason`); every (point, seed, repeat) with what the sweep
will do with it (`plan_runs`: run, skip, or done when resuming); the keys that match a
recorded run (`run_key`, `recorded_keys`); a rough cost of each run (`estimate_runs_s`);
and the plan as `--dry-run` prints it (`print_plan`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from bench.analysis import records
from bench.config import (
    CUDA_ONLY_PRECISIONS,
    ConfigError,
    RunConfig,
    check_device,
    triton_interpret_requested,
)
from bench.records import read_records
from bench.variants import COMPILE_MODES_WITH_CUDA_GRAPHS, VARIANTS

if TYPE_CHECKING:
    from bench.sweep.spec import SweepSpec

AXES = ("models", "datasets", "batch_sizes", "precisions", "world_sizes", "variants")


def _block(models, datasets, batch_sizes, precisions, world_sizes, variants) -> dict:
    return dict(
        zip(AXES, (models, datasets, batch_sizes, precisions, world_sizes, variants), strict=True)
    )


# The default plan on a CPU, sized for a 2-core machine to finish in well under 5 minutes
# even when the machine is shared. Measured there (torch 2.14, `python -m bench.run`): a
# process start costs ~5 s (torch and dynamo imports: a 1-step run takes 5.7 s), torchrun
# with 2 workers ~10 s; an eager iteration at batch 64 takes ~18 ms (mlp) and ~150 ms
# (dcgan32); a first torch.compile 20-30 s (~2 s once inductor's on-disk cache holds the
# kernels). Start-up dominated, so the plan is few points, not a Cartesian product: mostly
# mlp at batch 128, each axis at two values once, compile next to its eager baseline. A
# first 8-point version (batch × precision crossed, dcgan32 and mnist5k apart) took 4.5 min
# on a loaded machine; this one has 6 points. One-process points now fork from a warm server
# (bench/sweep/warm.py: ~0.1 s of start-up), and the 12 runs take about 40 s.
CPU_DEFAULT_BLOCKS = (
    # batch size, then precision, with the cheap model on one process
    _block(("mlp",), ("synthetic",), (32, 128), ("fp32",), (1,), ("eager",)),
    _block(("mlp",), ("synthetic",), (128,), ("fp32", "bf16"), (1,), ("eager",)),
    # world sizes 1 and 2 (gloo). torchrun gives each worker OMP_NUM_THREADS=1, so both sizes
    # share the same 2 cores: the efficiency shows the cost of DDP's all-reduce, not more
    # hardware.
    _block(("mlp",), ("synthetic",), (128,), ("fp32",), (1, 2), ("eager",)),
    # eager vs compile at one point: the compare table's compile row and its baseline
    _block(("mlp",), ("synthetic",), (128,), ("fp32",), (1,), ("eager", "compile")),
    # a second model on a second data set (5,000 real MNIST digits, resized to 32x32)
    _block(("dcgan32",), ("mnist5k",), (32,), ("fp32",), (1,), ("eager",)),
)
# Timed iterations, warm-up, repeats and the per-point limit (s) when not given. CPU: 20
# timed iterations are enough for a p50 and cost ~0.5 s for mlp, little next to the 5 s
# start-up; on a loaded 2-core machine two-thread runs slow down up to 10x (dcgan32 at
# batch 32 measured 800 ms/iteration with two other test suites running), so iterations
# are kept few. 2 repeats give every point a min-max spread. The warm-up absorbs a compile
# (done in the first iteration). GPU: 100 steps, 3 repeats (the median of 3 survives one
# outlier), room for max-autotune compiles; 12 warm-up iterations, what a CUDA graph under
# DDP needs (11 eager, then the capture: bench/cuda_graph.py), for every variant alike.
CPU_DEFAULTS = {"steps": 20, "warmup_steps": 3, "repeats": 2, "timeout_s": 300.0}
GPU_DEFAULTS = {"steps": 100, "warmup_steps": 12, "repeats": 3, "timeout_s": 1800.0}

# The default GPU plan: the questions a GPU user brings, not a full Cartesian product (the
# 768 registered variants x 3 models x 3 batches x 3 precisions would be 20,736 points per
# world size). The headline blocks are the end-to-end goals: DCGAN-64 at batch 128
# (launch-bound) and 1024 (layout- and bandwidth-bound) and the MLP GAN at 512, in bf16,
# over every speed-up alone, each compile mode with the fused kernels, and the stacks that
# can beat them, compiled and not; then precision at DCGAN-32; then scaling.
DCGAN_GPU_VARIANTS = (
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
# it. Its discriminator has no BatchNorm, so joint-d does (DCGAN's D has BatchNorm: joint-d
# is refused there).
MLP_GPU_VARIANTS = (
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
    "triton+cuda-graph",
    "joint-d+cuda-graph",
    "triton+joint-d+cuda-graph",
    "joint-d+batched-casts+cuda-graph",
    "triton+joint-d+batched-casts+cuda-graph",
    "compile+cuda-graph",
    "compile+joint-d+cuda-graph",
    "compile+triton+joint-d+cuda-graph",
)
PRECISION_GPU_VARIANTS = (
    "eager",
    "compile",
    "channels-last+cuda-graph",
    "triton+channels-last+cuda-graph",
)
SCALING_GPU_VARIANTS = ("eager", "channels-last+cuda-graph")
GPU_PRECISIONS = ("fp32", "tf32", "bf16")

# Compile modes whose point is a CUDA graph (COMPILE_MODES_WITH_CUDA_GRAPHS) are skipped on
# CPU, not run: inductor
# skips the graphs there (counted in cudagraph_skips), so reduce-overhead would measure
# the default compile under another name, and max-autotune would autotune inductor's C++
# GEMM templates, a CPU-only path that is not the Triton-templates-plus-graphs path the
# variant names. Either record would claim a path that did not run (the silent fallback
# DESIGN.md calls a bug) and cost another cold compile (minutes for max-autotune on 2 cores).
# max-autotune-no-cudagraphs is skipped on CPU for the second of those reasons.
GPU_TUNING_MODES = ("max-autotune-no-cudagraphs",)


# ------------------------------------------------------------------------------- machine


@dataclass(frozen=True)
class Machine:
    """What the sweep can run on here."""

    device_type: str  # "cuda" or "cpu": where every point runs
    gpu_count: int
    cpu_cores: int
    triton_installed: bool
    triton_interpret: bool  # TRITON_INTERPRET=1: Triton kernels run on the CPU (slowly)


def detect_machine(device: str = "auto") -> Machine:
    """This machine; `device` is auto (CUDA when present), cpu or cuda."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device!r} is not known; choose one of: auto, cpu, cuda")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "cuda" and not gpus:
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is visible; use cpu")
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (cgroups, taskset)
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return Machine(
        device_type="cuda" if gpus and device != "cpu" else "cpu",
        gpu_count=gpus,
        cpu_cores=cores,
        triton_installed=importlib.util.find_spec("triton") is not None,
        triton_interpret=triton_interpret_requested(),
    )


def default_blocks(machine: Machine) -> list[dict]:
    """The plan when no axis is given: see CPU_DEFAULT_BLOCKS; on GPUs the blocks above, the
    scaling block over world sizes 1, 2, 4, ... up to the GPUs present."""
    if machine.device_type == "cpu":
        return [dict(block) for block in CPU_DEFAULT_BLOCKS]
    worlds = tuple(2**k for k in range(machine.gpu_count.bit_length()))
    return [
        _block(("dcgan64",), ("synthetic",), (128, 1024), ("bf16",), (1,), DCGAN_GPU_VARIANTS),
        _block(("mlp",), ("synthetic",), (512,), ("bf16",), (1,), MLP_GPU_VARIANTS),
        _block(
            ("dcgan32",), ("synthetic",), (64, 256), GPU_PRECISIONS, (1,), PRECISION_GPU_VARIANTS
        ),
        _block(("dcgan64",), ("synthetic",), (128,), ("bf16",), worlds, SCALING_GPU_VARIANTS),
    ]


def machine_defaults(machine: Machine) -> dict:
    return dict(CPU_DEFAULTS if machine.device_type == "cpu" else GPU_DEFAULTS)


# ---------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Point:
    model: str
    dataset: str
    batch_size: int  # per process
    precision: str
    world_size: int
    variant: str

    @property
    def label(self) -> str:
        return (
            f"{self.model}/{self.dataset} b{self.batch_size} {self.precision} "
            f"×{self.world_size} {self.variant}"
        )


@dataclass(frozen=True)
class PlannedRun:
    """One repeat of one point at one seed and what the sweep will do with it."""

    point: Point
    repeat: int
    action: str  # "run", "skip" (recorded as skipped), "done" (resume: already recorded)
    reason: str | None = None  # why skipped
    seed: int = 0  # the child's --seed (weights, data order, latents)


def expand(blocks: list[dict], overrides: dict | None = None) -> list[Point]:
    """The points of a union of blocks, each axis in `overrides` replacing it in every
    block; duplicates dropped. Models in the order they first appear (the default GPU
    grid's goal blocks first: a sweep cut off by its time limit has measured those), and
    within a model so that a configuration's baseline (eager, world size 1) runs before
    its variants."""
    points: dict[Point, None] = {}
    for block in blocks:
        axes = {**block, **(overrides or {})}
        for values in itertools.product(*(axes[name] for name in AXES)):
            points[Point(*values)] = None
    model_rank = {model: i for i, model in enumerate(dict.fromkeys(p.model for p in points))}
    variant_rank = {name: i for i, name in enumerate(VARIANTS)}
    return sorted(
        points,
        key=lambda p: (
            model_rank[p.model],
            p.dataset,
            p.precision,
            p.batch_size,
            p.world_size,
            variant_rank.get(p.variant, len(variant_rank)),
        ),
    )


def skip_reason(point: Point, machine: Machine) -> str | None:
    """Why this machine cannot run `point` (a skipped record's reason), or None."""
    fields = VARIANTS[point.variant].fields
    if machine.device_type == "cuda":
        if point.world_size > machine.gpu_count:
            return f"needs {point.world_size} GPUs; this machine has {machine.gpu_count}"
    else:
        if point.world_size > machine.cpu_cores:
            return (
                f"{point.world_size} processes on {machine.cpu_cores} CPU cores: the timing "
                "would measure oversubscription"
            )
        if point.precision in CUDA_ONLY_PRECISIONS:
            return f"precision {point.precision} needs a CUDA GPU"
        if fields["compile_mode"] in COMPILE_MODES_WITH_CUDA_GRAPHS:
            return (
                f"compile mode {fields['compile_mode']} is a CUDA-graph mode; on CPU inductor "
                "skips the graphs, so the record would name a path that did not run"
            )
        if fields["compile_mode"] in GPU_TUNING_MODES:
            return (
                f"compile mode {fields['compile_mode']} tunes Triton GEMM templates on a GPU; "
                "on CPU it would tune inductor's C++ templates instead, another path, at "
                "minutes per compile"
            )
    if "triton" in (fields["kernels"], fields["conv_kernels"]):
        if not machine.triton_installed:
            return "triton kernels need the triton package, which is not installed"
        if machine.device_type == "cpu" and not machine.triton_interpret:
            return "triton kernels need a CUDA GPU, or TRITON_INTERPRET=1 on CPU"
    return None


def point_fields(point: Point, repeat: int, spec: SweepSpec, out: str, seed: int = 0) -> dict:
    """The RunConfig fields a point's child process is given."""
    return {
        "model": point.model,
        "dataset": point.dataset,
        "data_dir": spec.data_dir,
        "batch_size": point.batch_size,
        "precision": point.precision,
        "steps": spec.steps,
        "warmup_steps": spec.warmup_steps,
        "device": spec.machine.device_type,
        "nproc": point.world_size,
        "out": out,
        "variant": point.variant,
        "repeat": repeat,
        "seed": seed,
        "quiet": True,
    }


def point_config(
    point: Point, repeat: int, spec: SweepSpec, out: str, check: bool = True, seed: int = 0
) -> RunConfig:
    """The RunConfig a point's child process is given. ConfigError when the combination is
    invalid (e.g. mlp at batch 1) or, with `check`, when this machine cannot run it."""
    cfg = RunConfig(**point_fields(point, repeat, spec, out, seed))
    if check:
        check_device(cfg, spec.machine.device_type == "cuda")
    return cfg


# Compile modes in the order their points run within a repeat, cheapest first: no compile
# (seconds a point on an H100), inductor's default and reduce-overhead (a cold compile of a
# DCGAN-64 step took 27-34 s there), then the modes that autotune (minutes). A sweep cut
# off by its time limit has then measured the most points, the compile baselines before
# the autotuned variants; a later call resumes the rest.
COMPILE_COST_ORDER = (
    "none",
    "default",
    "reduce-overhead",
    "max-autotune-no-cudagraphs",
    "max-autotune",
)


def _compile_cost(point: Point) -> int:
    return COMPILE_COST_ORDER.index(VARIANTS[point.variant].fields["compile_mode"])


# Compile modes whose compiled code depends on no timing on the device, so that separate
# processes may compile their points ahead, several at once, into inductor's on-disk caches
# (bench/sweep/precompile.py); the autotuning modes time candidate kernels while compiling.
PRECOMPILE_MODES = ("default", "reduce-overhead")


def precompilable(point: Point) -> bool:
    """A point a precompile process can compile ahead: one process (torchrun's workers
    compile under their own process group) and a compile mode of PRECOMPILE_MODES."""
    mode = VARIANTS[point.variant].fields["compile_mode"]
    return point.world_size == 1 and mode in PRECOMPILE_MODES


def default_precompile_jobs(cpu_cores: int) -> int:
    """Precompile processes at once: one per 4 host cores, at most 4 (each compiles with
    a pool of Triton compile workers of its own); none on a 2-core machine, where compiling
    in parallel only shares the same cores."""
    return min(4, cpu_cores // 4)


def plan_runs(
    points: list[Point], spec: SweepSpec, done: set[tuple] | None = None
) -> list[PlannedRun]:
    """Every (point, seed, repeat), repeat-major: all points once, then all again, so that a
    slow drift of the machine (heat, a neighbour's job) spreads over the points instead of
    landing on one, and an interrupted sweep has covered every point. Within a repeat,
    cheapest compile mode first (COMPILE_COST_ORDER), then seed-major: the first pass over
    the seeds already gives `compare` a quality spread; the points' own order after that."""
    done = done or set()
    reasons: dict[Point, str | None] = {}
    for point in points:
        reason = skip_reason(point, spec.machine)
        if reason is None:
            try:
                point_config(point, 0, spec, out=spec.out)
            except ConfigError as err:
                reason = str(err)
        reasons[point] = reason
    # This machine's environment is only needed to match recorded runs (on CUDA it costs a
    # child process).
    environment = spec.environment_key() if done else ()
    workload = spec_workload(spec)
    runs = []
    costs = {point: _compile_cost(point) for point in points}
    order = [
        (repeat, seed, point)
        for repeat in range(spec.repeats)
        for cost in sorted(set(costs.values()))
        for seed in spec.seeds
        for point in points
        if costs[point] == cost
    ]
    for repeat, seed, point in order:
        reason = reasons[point]
        key = run_key(point, repeat, workload, environment, seed)
        if (key, "ok") in done or (reason and (key, "skipped") in done):
            runs.append(PlannedRun(point, repeat, "done", seed=seed))
        elif reason:
            runs.append(PlannedRun(point, repeat, "skip", reason, seed=seed))
        else:
            runs.append(PlannedRun(point, repeat, "run", seed=seed))
    return runs


# -------------------------------------------------------------------------------- resume


def run_key(point: Point, repeat: int, workload: str, environment: tuple, seed: int = 0) -> tuple:
    """What makes two runs the same measurement: the point, the repeat, the seed, the
    workload (loss, timed and warm-up steps, and any other training field a run was given:
    `records.workload`) and the environment (device name, torch version). A record without
    a seed ran with RunConfig's default, 0, as `seed` defaults here."""
    return (*dataclasses.astuple(point), workload, repeat, seed, *environment)


def spec_workload(spec: SweepSpec) -> str:
    """The workload of every run of a sweep: RunConfig's defaults but for the steps."""
    return records.workload({"loss": RunConfig.loss, "steps": spec.steps,
                             "warmup_steps": spec.warmup_steps})  # fmt: skip


def record_key(record: dict) -> tuple | None:
    """run_key of a record, or None when it lacks the fields (or garbles them)."""
    point = records.record_point(record)
    if point is None:
        return None
    cfg, env = record["config"], record["environment"]
    return run_key(
        Point(*point),
        records.record_repeat(cfg),
        records.workload(cfg),
        env_key(env),
        records.record_seed(cfg),
    )


def env_key(env: dict) -> tuple:
    return (env.get("device_name"), env.get("torch"))


def recorded_keys(path: str) -> set[tuple]:
    """{(run key, status)} of the ok and skipped records in `path` (corrupt lines warned)."""
    keys: set[tuple] = set()
    if not os.path.exists(path):
        return keys
    for line_no, record in read_records(path):
        if record is None:
            print(
                f"gan-bench: warning: {path} line {line_no} is not a JSON object; ignored",
                file=sys.stderr,
            )
            continue
        key = record_key(record)
        if key is not None and record.get("status") in ("ok", "skipped"):
            keys.add((key, record["status"]))
    return keys


# ------------------------------------------------------------------------------ estimate

# Seconds per real image of one eager iteration on the 2-core CPU the defaults were sized
# on (batch 64: mlp ~18 ms, dcgan32 ~150 ms; dcgan64 has 4x the pixels of dcgan32).
_CPU_S_PER_IMAGE = {"mlp": 0.3e-3, "dcgan32": 2.3e-3, "dcgan64": 9.0e-3}


def estimate_run_s(
    point: Point, spec: SweepSpec, compiled_before: bool, measured: Mapping | None = None
) -> float:
    """A rough cost of one run in seconds, for the ETA and --dry-run (not a measurement).
    `compiled_before`: inductor's on-disk caches hold its compiled graphs. `measured`: cold
    compile seconds per (model, compile mode) on this machine (`measured_compile_s`), in
    place of the figures assumed below."""
    mode = VARIANTS[point.variant].fields["compile_mode"]
    compiles = mode != "none"
    iterations = spec.steps + spec.warmup_steps + 1  # +1: the FLOP count's untimed iteration
    # Real data sets get a quality evaluation by default (bench/quality): ~5 s on this CPU
    # once its extractor is cached (the first one trains for ~20 s more).
    quality_s = 0.0 if point.dataset == "synthetic" else 5.0
    # A point forked from the warm server (bench/sweep/warm.py) skips the imports.
    forked = spec.fork_server and point.world_size == 1
    if spec.machine.device_type == "cpu":
        if forked:
            start = quality_s + 0.5
        else:
            start = quality_s + (5.0 if point.world_size == 1 else 5.0 + 2.5 * point.world_size)
        # N processes share the cores one process had: each iteration ~N times slower.
        per_iteration = _CPU_S_PER_IMAGE.get(point.model, 2e-3) * point.batch_size
        work = iterations * per_iteration * point.world_size
        cold_s, warm_s = 25.0, 2.0  # warm: the graphs loaded from inductor's caches
    else:
        # One H100 host (torch 2.11): imports 8-11 s, then ~2 s of setup, FLOP count and
        # sample grid; a first compile of a DCGAN-64 step 27-34 s
        # (results/NVIDIA-H100-80GB-HBM3/sweep.jsonl, run.phase_s). The autotuning modes
        # benchmark every GEMM/convolution template and Triton config: minutes (not yet
        # measured there; 150 s assumed until --out holds a measured one: measured_compile_s).
        start = quality_s + (2.0 if forked else 12.0 + 3.0 * (point.world_size - 1))
        work = iterations * 0.02
        autotunes = _compile_cost(point) >= COMPILE_COST_ORDER.index("max-autotune-no-cudagraphs")
        cold_s, warm_s = (150.0 if autotunes else 35.0), 10.0
    if not compiles:
        return start + work
    cold_s = (measured or {}).get((point.model, mode), cold_s)
    return start + work + (warm_s if compiled_before else cold_s)


def measured_compile_s(path: str, environment: tuple) -> dict[tuple[str, str], float]:
    """Cold compile seconds per (model, compile mode): the median warm-up phase of the ok
    records in `path` measured on `environment` (env_key) whose compile was cold, i.e. not
    compiled ahead and, where the record counts inductor's cache lookups, with graphs
    missing from the caches. The warm-up's iterations are a small part of it next to the
    compile (on an H100, 12 DCGAN-64 iterations at batch 128 took about 0.15 s, the
    compile 27 s)."""
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    if not os.path.exists(path):
        return {}
    for _, record in read_records(path):
        if not record or record.get("status") != "ok":
            continue
        if not isinstance(record.get("environment"), dict):
            continue
        cfg, run = record.get("config") or {}, record.get("run") or {}
        mode = cfg.get("compile_mode") or "none"
        warmup_s = (run.get("phase_s") or {}).get("warm-up")
        if mode == "none" or warmup_s is None or env_key(record["environment"]) != environment:
            continue
        caches = (run.get("compile") or {}).get("caches")
        missed = caches is None or (caches.get("fx_graph") or {}).get("misses", 0) > 0
        if not run.get("precompiled") and missed:
            seconds[cfg.get("model"), mode].append(warmup_s)
    return {key: statistics.median(values) for key, values in seconds.items()}


# How much longer a process takes beside others than alone (precompiles, --concurrent
# points): they share the device and the host's cores (an assumption: not yet measured).
SHARED_SLOWDOWN = 1.5


def estimate_runs_s(
    runs: list[PlannedRun], spec: SweepSpec, measured: Mapping | None = None
) -> list[float]:
    """estimate_run_s of each run to do (0 for the others); a compile is cold only the first
    time a point is seen: inductor caches on disk. A point compiled ahead (spec.precompile_jobs)
    is warm, and is charged its share of the precompiles, which run that many at once; with
    --concurrent N each run is charged its share of the time it shares. `measured`: see
    estimate_run_s."""
    seen: set[Point] = set()
    out = []
    for run in runs:
        if run.action != "run":
            out.append(0.0)
            continue
        p = run.point
        ahead = spec.precompile_jobs > 0 and precompilable(p) and p not in seen
        estimate = estimate_run_s(p, spec, p in seen or ahead, measured)
        if ahead:  # its precompile process: about a cold run (start-up and compile)
            cold = estimate_run_s(p, spec, False, measured)
            estimate += cold * SHARED_SLOWDOWN / spec.precompile_jobs
        if spec.concurrent > 1:  # its share of the time it runs beside others
            estimate *= SHARED_SLOWDOWN / spec.concurrent
        out.append(estimate)
        seen.add(p)
    return out


# --------------------------------------------------------------------------- dry run


def print_plan(
    runs: list[PlannedRun], spec: SweepSpec, estimates: list[float], measured: Mapping
) -> None:
    """--dry-run: the plan per point, and what it would cost (`measured`: the cold compile
    seconds the estimate took from earlier records, `measured_compile_s`)."""
    from rich.console import Console
    from rich.table import Table

    per_point: dict[Point, list[PlannedRun]] = defaultdict(list)
    for run in runs:
        per_point[run.point].append(run)
    table = Table()
    for header in ("#", "model", "dataset", "batch/proc", "precision", "procs", "variant", "do"):
        table.add_column(header, overflow="fold")
    for n, (point, planned) in enumerate(per_point.items(), start=1):
        counts = Counter(r.action for r in planned)
        skip = next((r.reason for r in planned if r.action == "skip"), None)
        action = ", ".join(f"{a} {counts[a]}" for a in ("run", "done", "skip") if counts[a])
        if skip:
            action += f" ({skip})"
        table.add_row(
            str(n),
            point.model,
            point.dataset,
            str(point.batch_size),
            point.precision,
            str(point.world_size),
            point.variant,
            action,
        )
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(
        f"gan-bench sweep plan: {spec.machine.device_type}, {spec.steps} timed + "
        f"{spec.warmup_steps} warm-up iterations, {spec.repeats} repeat(s), "
        f"seed{'s' if len(spec.seeds) > 1 else ''} {','.join(map(str, spec.seeds))}, "
        f"records to {spec.out}",
        highlight=False,
    )
    console.print(table)
    counts = Counter(r.action for r in runs)
    console.print(
        f"{len(per_point)} points × {spec.repeats} repeat(s) × {len(spec.seeds)} seed(s): "
        f"{counts['run']} to run, "
        f"{counts['skip']} skipped (recorded), {counts['done']} already recorded; "
        f"rough estimate {sum(estimates) / 60:.1f} min{_measured_note(spec, measured)}. "
        "Nothing was run or written.",
        highlight=False,
    )


def _measured_note(spec: SweepSpec, measured: Mapping) -> str:
    if not measured:
        return ""
    compiles = ", ".join(
        f"{model} {mode} {seconds:.0f} s" for (model, mode), seconds in sorted(measured.items())
    )
    return f" (cold compiles as {spec.out} measured them here: {compiles})"
