"""What a sweep will cost, roughly: each run's seconds (`estimate_run_s`, for the ETA and
`--dry-run`), cold compiles as earlier records of this machine measured them
(`measured_compile_s`), compile-ahead and concurrency shares (`estimate_runs_s`), and the
plan as `--dry-run` prints it (`print_plan`). Estimates, never measurements."""

from __future__ import annotations

import os
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping

from bench.speedups.compile import MODES, NOT_COMPILED
from bench.sweep.grid import Point
from bench.sweep.plan import PlannedRun, compile_mode, precompilable
from bench.sweep.spec import SweepSpec, record_environment_key
from bench.telemetry.records import read_records

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
    mode = compile_mode(point)
    compiles = mode != NOT_COMPILED
    iterations = spec.steps + spec.warmup_steps + 1  # +1: the FLOP count's untimed iteration
    # Real data sets get a quality evaluation by default (bench/quality): ~5 s on this CPU
    # once its extractor is cached (the first one trains for ~20 s more).
    quality_s = 0.0 if point.dataset == "synthetic" else 5.0
    # A point forked from the warm server (bench/sweep/warm.py) skips the imports.
    forked = spec.fork_server and point.world_size == 1
    if not spec.machine.cuda:
        if forked:
            start = quality_s + 0.5
        else:
            start = quality_s + (5.0 if point.world_size == 1 else 5.0 + 2.5 * point.world_size)
        # N processes share the cores one process had: each iteration ~N times slower.
        per_iteration = _CPU_S_PER_IMAGE.get(point.model, 2e-3) * point.batch_per_process
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
        autotunes = compiles and MODES[mode].autotunes
        cold_s, warm_s = (150.0 if autotunes else 35.0), 10.0
    if not compiles:
        return start + work
    cold_s = (measured or {}).get((point.model, mode), cold_s)
    return start + work + (warm_s if compiled_before else cold_s)


def measured_compile_s(
    path: str, environment: tuple, slurm: bool = False
) -> dict[tuple[str, str], float]:
    """Cold compile seconds per (model, compile mode): the median warm-up phase of the ok
    records in `path` measured on `environment` (env_key; for a SLURM sweep, `slurm`, the
    partition's slurm_key) whose compile was cold, i.e. not
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
        if mode == "none" or warmup_s is None:
            continue
        if record_environment_key(record, slurm) != environment:
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
            point.batch_text,
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
