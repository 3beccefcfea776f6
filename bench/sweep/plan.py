"""The sweep's plan: what runs where, and in which order; nothing here runs a point.

Why this sweep's machine cannot run a point (`skip_reason`: world sizes, then the run's
own validation against the machine, speed-up requirements included); every (point, seed,
repeat) with what the sweep will do with it (`plan_runs`: run, skip, or done when
resuming); the keys that match a recorded run (`run_key`, `recorded_keys`).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from bench.analysis import records
from bench.config import ConfigError, RunConfig, check_machine
from bench.runtime.slurm import check_nodes, shape_problem
from bench.speedups import parse_variant
from bench.speedups.compile import MODES, NOT_COMPILED, cost_rank
from bench.sweep.grid import Point
from bench.sweep.spec import SweepSpec, record_environment_key
from bench.telemetry.records import read_records


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One repeat of one point at one seed and what the sweep will do with it."""

    point: Point
    repeat: int
    action: str  # "run", "skip" (recorded as skipped), "done" (resume: already recorded)
    reason: str | None = None  # why skipped
    seed: int = 0  # the child's --seed (weights, data order, latents)


def compile_mode(point: Point) -> str:
    """The compile mode of a point's variant ("none" when not compiled)."""
    return parse_variant(point.variant).fields["compile_mode"]


def skip_reason(point: Point, spec: SweepSpec) -> str | None:
    """Why this sweep cannot run `point` on its machine (a skipped record's reason), or
    None: more processes than GPUs or cores, or what the run itself would refuse (an
    invalid combination, or what this machine lacks: a GPU precision on CPU, a speed-up's
    requirement)."""
    machine = spec.machine
    if spec.slurm is not None:  # as many nodes as a run needs, each of the same shape
        problem = shape_problem(point.world_size, spec.slurm)
        if problem:
            return problem
    elif machine.cuda and point.world_size > machine.gpu_count:
        return f"needs {point.world_size} GPUs; this machine has {machine.gpu_count}"
    elif not machine.cuda and point.world_size > machine.cpu_cores:
        return (
            f"{point.world_size} processes on {machine.cpu_cores} CPU cores: the timing "
            "would measure oversubscription"
        )
    try:
        point_config(point, 0, spec, out=spec.out)
    except ConfigError as err:
        return str(err)
    return None


def point_fields(point: Point, repeat: int, spec: SweepSpec, out: str, seed: int = 0) -> dict:
    """The RunConfig fields a point's child process is given."""
    return {
        "model": point.model,
        "dataset": point.dataset,
        "data_dir": spec.data_dir,
        "batch_size": point.batch_size,
        "scaling": point.scaling,
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
    if check and spec.slurm is not None:
        check_nodes(cfg, spec.slurm)
    elif check:
        check_machine(cfg, spec.machine)
    return cfg


def precompilable(point: Point) -> bool:
    """A point a precompile process can compile ahead: one process (torchrun's workers
    compile under their own process group) and a compile mode whose compiled code depends
    on no timing on the device."""
    mode = compile_mode(point)
    return point.world_size == 1 and mode != NOT_COMPILED and MODES[mode].precompilable


def plan_runs(
    points: list[Point], spec: SweepSpec, done: set[tuple] | None = None
) -> list[PlannedRun]:
    """Every (point, seed, repeat), repeat-major: all points once, then all again, so that a
    slow drift of the machine (heat, a neighbour's job) spreads over the points instead of
    landing on one, and an interrupted sweep has covered every point. Within a repeat,
    cheapest compile mode first (bench.speedups.compile.COMPILE_MODES' order), then
    seed-major: the first pass over the seeds already gives `compare` a quality spread; the
    points' own order after that."""
    done = done or set()
    reasons = {point: skip_reason(point, spec) for point in points}
    # This machine's environment is only needed to match recorded runs (on CUDA it costs a
    # child process).
    environment = spec.environment_key() if done else ()
    workload = spec_workload(spec)
    runs = []
    costs = {point: cost_rank(compile_mode(point)) for point in points}
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


def record_key(record: dict, slurm: bool = False) -> tuple | None:
    """run_key of a record, or None when it lacks the fields (or garbles them). `slurm`:
    keyed as a SLURM sweep keys its runs, by the partition the job ran on."""
    point = records.record_point(record)
    if point is None:
        return None
    cfg = record["config"]
    return run_key(
        Point(*point),
        records.record_repeat(cfg),
        records.workload(cfg),
        record_environment_key(record, slurm),
        records.record_seed(cfg),
    )


def recorded_keys(path: str, slurm: bool = False) -> set[tuple]:
    """{(run key, status)} of the ok and skipped records in `path` (corrupt lines warned);
    `slurm`: keyed by partition (record_key)."""
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
        key = record_key(record, slurm)
        if key is not None and record.get("status") in ("ok", "skipped"):
            keys.add((key, record["status"]))
    return keys
