"""Compiling ahead, several points at once: at a sweep's point that compiles, it and the
next points that will compile, --precompile-jobs of them, each get a short untimed process
(all at once, the device shared) that runs the point's first iterations, so that
torch.compile's work lands in inductor's on-disk caches (the FX graph and AOTAutograd
caches, Triton's binaries). Each point's own process, run after and alone as always, then
loads its compiled graphs instead of compiling them: a DCGAN-64 step compiled for 27-34 s on an H100
host (results/NVIDIA-H100-80GB-HBM3/sweep.jsonl, `run.phase_s`), an MLP GAN step for 22 s
on the 2-core CPU and loaded in 2 s.

Only the compile modes whose compiled code does not depend on timings on the device:
inductor's default and reduce-overhead. The autotuning modes time their candidate kernels
while compiling, and processes sharing the device would time each other, so their points
still compile alone. Even the default mode times launch configurations of the Triton
kernels it generates, the first time each one runs. A precompile process keeps none of
those choices (autotune_local_cache off: nothing written), and the code it caches carries
that setting, so the point's own process times them again, alone, in its warm-up.

Nothing a precompile process measures is kept. A point's record says whether a precompile
ran for it (`run.precompiled`), and its compile counters how many graphs it loaded from
the caches (`run.compile.caches`).

Each such process is `python -m bench.precompile RUN_OPTIONS...`: `gan-bench run` with
the autotuning cache off (bench/precompile.py).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING

from bench.config import RunConfig
from bench.speedups.cuda_graph import required_warmup_steps
from bench.sweep.child import ChildResult, SignalCatcher, child_record, run_child
from bench.sweep.grid import Point
from bench.sweep.plan import PlannedRun, point_config, precompilable

if TYPE_CHECKING:
    from bench.sweep.spec import SweepSpec
    from bench.sweep.warm import WarmStarter


def precompile_config(cfg: RunConfig) -> RunConfig:
    """The point's config cut to the iterations that compile: one warm-up iteration (the
    warm-up a CUDA graph needs before its capture, when it has one) and one timed; no
    quality evaluation (it runs the uncompiled generator) or profile."""
    warmup = required_warmup_steps(1, cfg.critic_updates) if cfg.cuda_graph else 1
    return dataclasses.replace(
        cfg,
        steps=1,
        warmup_steps=warmup,
        quality=False,
        eval_every=None,
        target_fd=None,
        profile_steps=0,
        quiet=True,
    )


def precompile_command(cfg: RunConfig) -> list[str]:
    return [sys.executable, "-m", "bench.precompile", *cfg.to_cli_args()]


def select(runs: list[PlannedRun]) -> list[PlannedRun]:
    """The runs to precompile: the first run to do of each precompilable configuration.
    The repeat and seed change nothing that is compiled."""
    chosen: dict[Point, PlannedRun] = {}
    for run in runs:
        if run.action == "run" and precompilable(run.point):
            chosen.setdefault(run.point, run)
    return list(chosen.values())


def run_precompiles(
    runs: list[PlannedRun],
    spec: SweepSpec,
    work: str,
    signals: SignalCatcher,
    warm: WarmStarter | None,
    report: Callable[[str], None],
) -> set[Point]:
    """Precompile `runs` (from `select`), spec.precompile_jobs at a time, each under the
    sweep's per-point limit; returns the points whose precompile ran ok. `report` gets a
    line as each process ends."""
    if not runs:
        return set()
    jobs = max(1, spec.precompile_jobs)
    report(
        f"gan-bench sweep: compiling {len(runs)} configuration(s) ahead, {jobs} at a time "
        "(inductor's on-disk caches; nothing timed or recorded)"
    )
    started = time.monotonic()

    def precompile(n: int, run: PlannedRun) -> tuple[PlannedRun, ChildResult | None, str]:
        if signals.received:
            return run, None, "not started: the sweep was stopped"
        prefix = os.path.join(work, f"precompile{n:04d}")
        point_out = prefix + ".jsonl"
        cfg = point_config(run.point, run.repeat, spec, out=point_out, seed=run.seed)
        result = run_child(
            precompile_command(precompile_config(cfg)), spec.timeout_s, prefix, signals, warm
        )
        return run, result, _status(result, point_out)

    ok: set[Point] = set()
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="precompile") as pool:
        futures = [pool.submit(precompile, n, run) for n, run in enumerate(runs, start=1)]
        for future in as_completed(futures):
            run, result, status = future.result()
            if status == "ok":
                ok.add(run.point)
            wall = f" in {result.wall_s:.1f} s" if result is not None else ""
            report(f"  precompile {run.point.label}: {status}{wall}")
    report(
        f"gan-bench sweep: {len(ok)} of {len(runs)} compiled ahead in "
        f"{time.monotonic() - started:.0f} s; the rest compile in their own runs"
    )
    return ok


def _status(result: ChildResult, record_path: str) -> str:
    """The outcome: ok, or why not (the run's record's status and reason, else its exit)."""
    record = child_record(record_path)
    if record is not None:
        if record.get("status") == "ok":
            return "ok"
        return f"{record.get('status')}: {str(record.get('reason'))[:150]}"
    if result.timed_out:
        return "timeout"
    tail = result.stderr_tail[-1] if result.stderr_tail else "no output"
    return f"exit {result.returncode}: {tail[:150]}"
