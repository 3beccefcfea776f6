"""Executing the sweep: `execute` runs the plan, one child process per run, appends each
run's record to --out, shows progress, and ends with the compare table; `sweep_command`
is what `gan-bench sweep` calls."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed

from bench.analysis.records import load_rows
from bench.analysis.render import print_table
from bench.analysis.stats import summarise
from bench.config import ConfigError
from bench.sweep import slurm
from bench.sweep.child import SignalCatcher, child_record, point_command, run_child
from bench.sweep.estimate import estimate_runs_s, measured_compile_s, print_plan
from bench.sweep.grid import Point
from bench.sweep.outcome import outcome_record, sweep_record
from bench.sweep.plan import (
    PlannedRun,
    plan_runs,
    point_config,
    precompilable,
    recorded_keys,
)
from bench.sweep.precompile import run_precompiles, select
from bench.sweep.progress import SweepProgress, outcome_line
from bench.sweep.spec import SweepSpec, build_spec
from bench.sweep.warm import WarmStarter
from bench.telemetry.records import append_record, keep_sample_grid

# ---------------------------------------------------------------------------------- main


def _run_point(
    run: PlannedRun,
    spec: SweepSpec,
    work: str,
    index: int,
    signals: SignalCatcher,
    warm: WarmStarter | None,
    name: str = "",
    precompiled: bool = False,
) -> tuple[dict, float | None]:
    """One run in a child process: its record and the child's wall time. Its files are
    named after `index` (and `name`, for a second try of the same run). `precompiled`: a
    precompile process compiled its graphs ahead (bench/sweep/precompile.py)."""
    prefix = os.path.join(work, f"run{index:04d}{name}")
    point_out = prefix + ".jsonl"
    try:
        cfg = point_config(run.point, run.repeat, spec, out=point_out, seed=run.seed)
    except ConfigError as err:  # checked when planning; the machine changed since (TRITON_*?)
        record = sweep_record(run.point, run.repeat, spec, "skipped", str(err), seed=run.seed)
        return record, None
    result = run_child(
        point_command(cfg, run.point.world_size),
        spec.timeout_s,
        prefix,
        signals,
        warm,
    )
    child = child_record(point_out)
    if child is not None:
        keep_sample_grid(child, work, spec.out)
    record = outcome_record(run.point, run.repeat, spec, result, child, seed=run.seed)
    # also where the child left no record of its own (a crash before it could write one)
    run_info = record.setdefault("run", {})
    run_info["process_start"] = "fork server" if result.forked else "interpreter"
    run_info["precompiled"] = precompiled
    run_info["concurrency"] = spec.concurrent
    return record, result.wall_s


def _forked(record: dict) -> bool:
    return (record.get("run") or {}).get("process_start") == "fork server"


class _Runner:
    """Runs one planned run: its record and wall time (None once the sweep was stopped).
    Until a forked point has run ok, a forked one that fails is run again in a fresh
    interpreter, and if it runs there, the fork server is at fault (a CUDA context a fork
    cannot inherit, say) and is dropped. Safe to call from several threads (--concurrent)."""

    def __init__(self, spec: SweepSpec, work: str, signals: SignalCatcher):
        self.spec, self.work, self.signals = spec, work, signals
        self.warm = WarmStarter() if spec.fork_server else None
        self.warm_proven = False
        self.precompiled: set[Point] = set()  # the points compiled ahead
        self._tried: set[Point] = set()  # ... or tried
        self._lock = threading.Lock()

    def wants_to_compile_ahead(self, run: PlannedRun) -> bool:
        """A run that compiles in a mode a precompile can do, not compiled ahead yet."""
        return (
            self.spec.precompile_jobs > 0
            and run.action == "run"
            and precompilable(run.point)
            and run.point not in self._tried
        )

    def compile_ahead(self, rest: list[PlannedRun], report) -> None:
        """The next --precompile-jobs points of `rest` (the sweep from here) that compile in
        such a mode, compiled ahead at once (bench/sweep/precompile.py). A window, not the
        whole sweep: a sweep cut off by its time limit has timed the points compiled so far."""
        chosen = [r for r in select(rest) if r.point not in self._tried]
        chosen = chosen[: self.spec.precompile_jobs]
        self._tried.update(r.point for r in chosen)
        self.precompiled |= run_precompiles(
            chosen, self.spec, self.work, self.signals, self.warm, report
        )

    def __call__(self, index: int, run: PlannedRun) -> tuple[dict, float | None] | None:
        spec, work, signals = self.spec, self.work, self.signals
        if signals.received:
            return None
        if run.action == "skip":
            return sweep_record(
                run.point, run.repeat, spec, "skipped", run.reason, seed=run.seed
            ), None
        warm, ahead = self.warm, run.point in self.precompiled
        record, wall_s = _run_point(run, spec, work, index, signals, warm, precompiled=ahead)
        if warm is not None and not self.warm_proven and _forked(record):
            if record["status"] == "ok":
                self.warm_proven = True
            elif record["status"] == "failed" and not signals.received:
                fresh, fresh_wall_s = _run_point(
                    run, spec, work, index, signals, None, "-fresh", precompiled=ahead
                )
                if fresh["status"] == "ok":
                    warm.reason = (
                        f"a point failed when forked ({record['reason']}) and ran in a fresh "
                        "interpreter"
                    )[:300]
                record, wall_s = fresh, fresh_wall_s
        with self._lock:
            if self.warm is not None and self.warm.reason:
                print(
                    f"gan-bench sweep: fresh interpreters for every point ({self.warm.reason})",
                    file=sys.stderr,
                )
                self.warm = None
        return record, wall_s


def execute(spec: SweepSpec) -> int:
    """Run the plan; return 0 when every run was ok (or skipped), 1 when one was not,
    128 + the signal number when SIGINT/SIGTERM stopped the sweep."""
    points = spec.points()
    on_slurm = spec.slurm is not None  # records are matched by partition
    done = recorded_keys(spec.out, on_slurm) if spec.resume else set()
    runs = plan_runs(points, spec, done)
    # This machine's compile times as earlier runs in --out measured them, where they did
    measured = measured_compile_s(spec.out, spec.environment_key(), on_slurm) if done else {}
    estimates = estimate_runs_s(runs, spec, measured)
    if spec.dry_run:
        print_plan(runs, spec, estimates, measured)
        if on_slurm:
            print("\n".join(slurm.plan_lines(spec, runs)))
        return 0
    todo = [(r, w) for r, w in zip(runs, estimates, strict=True) if r.action != "done"]
    already = len(runs) - len(todo)
    n_run = sum(1 for r, _ in todo if r.action == "run")
    print(
        f"gan-bench sweep: {len(points)} point(s) × {spec.repeats} repeat(s) × "
        f"{len(spec.seeds)} seed(s) on "
        f"{spec.machine.device_type}: {n_run} to run, {len(todo) - n_run} skipped, "
        f"{already} already recorded in {spec.out} (resume); "
        f"rough estimate {sum(estimates) / 60:.1f} min",
        file=sys.stderr,
        flush=True,
    )
    statuses: Counter = Counter()
    with (
        tempfile.TemporaryDirectory(prefix="gan-bench-sweep-") as work,
        SignalCatcher() as signals,
        SweepProgress([w for _, w in todo], n_run) as progress,
    ):
        runner = _Runner(spec, work, signals)

        def finish(index: int, run: PlannedRun, weight: float, record: dict, wall_s) -> None:
            append_record(spec.out, record)
            statuses[record["status"]] += 1
            rate = (record.get("metrics") or {}).get("images_per_s")
            last = f"last: {rate:,.0f} images/s" if rate else f"last: {record['status']}"
            progress.finished(
                weight,
                outcome_line(run, record, wall_s, index, len(todo), len(spec.seeds)),
                last=last,
            )

        if on_slurm:
            slurm.run_jobs(spec, todo, signals, progress, finish)
        elif spec.concurrent > 1:
            # Points side by side, each still its own process: as each ends, its record.
            with ThreadPoolExecutor(spec.concurrent, thread_name_prefix="point") as pool:
                futures = {
                    pool.submit(runner, index, run): (index, run, weight)
                    for index, (run, weight) in enumerate(todo, start=1)
                }
                for future in as_completed(futures):
                    outcome = future.result()
                    if outcome is not None:  # None: not started, the sweep was stopped
                        finish(*futures[future], *outcome)
        else:
            for index, (run, weight) in enumerate(todo, start=1):
                if signals.received:
                    break
                if runner.wants_to_compile_ahead(run):
                    runner.compile_ahead([r for r, _ in todo[index - 1 :]], progress.note)
                    if signals.received:
                        break
                outcome = runner(index, run)
                if outcome is None:
                    break
                finish(index, run, weight, *outcome)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    print(
        f"gan-bench sweep: {summary or 'nothing to do'}; {already} already recorded; "
        f"records in {spec.out}",
        file=sys.stderr,
    )
    if signals.received:
        print(
            "gan-bench sweep: interrupted; every record written is whole. Run the same "
            "command again to resume.",
            file=sys.stderr,
        )
        return 128 + signals.received[0]
    _print_comparison(spec.out)
    return 0 if set(statuses) <= {"ok", "skipped"} else 1


def _print_comparison(path: str) -> None:
    if not os.path.exists(path):
        return
    rows = load_rows([path])
    if rows:
        print_table(summarise(rows, "eager"))


def sweep_command(**options) -> int:
    """`gan-bench sweep`: validate the options (ConfigError before anything runs), then run
    the plan, or print it with dry_run. Returns the exit code (see `execute`)."""
    return execute(build_spec(**options))
