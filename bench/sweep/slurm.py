"""A sweep on a SLURM cluster (`--launcher slurm`): each run one job, submitted through
submitit up to `--max-jobs` at a time, watched until it ends, its record gathered into
--out as it ends. The guarantees of a local sweep hold: a record for every run that was
submitted (its own, or `failed`, `timeout`, `oom`, `cancelled` written here with the job
id, the scheduler's state and reason, and the tail of the job's log), resume, and Ctrl-C
cancels every job the sweep submitted (scancel), waits for them to end and records each.

The jobs' files (sbatch scripts, logs, each run's own record) are kept under `slurm/` beside
--out: on a cluster that folder must be on a filesystem the nodes share.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.config import ConfigError
from bench.runtime.slurm import job_folder, job_shape, node_command, run_args
from bench.runtime.slurm_queue import (
    CANCEL_WAIT_S,
    JobOutcome,
    SlurmQueue,
    SubmitError,
    job_record_file,
    record_of_job,
    with_job_facts,
)
from bench.sweep.child import SignalCatcher
from bench.sweep.outcome import sweep_record
from bench.sweep.plan import PlannedRun, point_config
from bench.sweep.progress import SweepProgress
from bench.sweep.spec import SweepSpec
from bench.telemetry.environment import utc_timestamp
from bench.telemetry.records import keep_sample_grid

POLL_S = 2.0  # one sacct call per look, for all jobs

# What the sweep does with each finished run: (index, run, weight, record, wall time)
Finish = Callable[[int, PlannedRun, float, dict, float | None], None]


@dataclass
class _InFlight:
    index: int
    run: PlannedRun
    weight: float
    out: str  # the run's own record file


def job_record(flight: _InFlight, spec: SweepSpec, outcome: JobOutcome) -> dict:
    """The one record of a run whose job ended (slurm_queue.record_of_job)."""
    run = flight.run

    def bare(status: str, reason: str, tail: list[str]) -> dict:
        return sweep_record(run.point, run.repeat, spec, status, reason, tail, seed=run.seed)

    shape = job_shape(run.point.world_size, spec.slurm)
    own = job_record_file(flight.out, outcome)
    if own is not None:
        keep_sample_grid(own, os.path.dirname(flight.out), spec.out)
    return record_of_job(own, outcome, shape, spec.partition, bare)


def run_jobs(
    spec: SweepSpec,
    todo: list[tuple[PlannedRun, float]],
    signals: SignalCatcher,
    progress: SweepProgress,
    finish: Finish,
) -> None:
    """Every run of `todo` as a job, up to --max-jobs in the queue at once; `finish` is
    called with each run's record as its job ends (or at once, for a skipped run). The
    progress bar shows the queue's states as the jobs go."""
    note = progress.note
    stamp = utc_timestamp().replace(":", "").replace("-", "")
    folder = job_folder(spec.out) / f"sweep-{stamp}-{os.getpid()}"
    queue = SlurmQueue(folder, spec.slurm)
    waiting = list(enumerate(todo, start=1))
    flying: dict[str, _InFlight] = {}
    note(f"gan-bench sweep: SLURM jobs in {folder} (partition {spec.partition})")
    while (waiting or flying) and not signals.received:
        while waiting and len(flying) < spec.slurm.max_jobs and not signals.received:
            index, (run, weight) = waiting.pop(0)
            submitted = _submit(index, run, weight, spec, queue, folder, note)
            if isinstance(submitted, dict):  # a record at once: skipped or refused
                finish(index, run, weight, submitted, None)
            else:
                flying[submitted[0]] = submitted[1]
        for outcome in queue.poll():
            flight = flying.pop(outcome.job_id)
            wall_s = (outcome.result or {}).get("wall_s")
            record = job_record(flight, spec, outcome)
            finish(flight.index, flight.run, flight.weight, record, wall_s)
        if flying and not signals.received:
            progress.show(f"SLURM jobs: {queue.states()}")
            time.sleep(POLL_S)
    if not flying:
        return
    # Jobs that ended while the signal arrived keep their own outcome, then the rest stop.
    outcomes = queue.poll()
    if queue.active:
        note(f"gan-bench sweep: cancelling {len(queue.active)} SLURM job(s): "
             f"{', '.join(queue.active)}")  # fmt: skip
        queue.cancel()
        outcomes += queue.wait_ended(CANCEL_WAIT_S, give_up=lambda: len(signals.received) > 1)
        outcomes += [queue.forget(job_id) for job_id in queue.active]  # not ended in time
    for outcome in outcomes:
        flight = flying.pop(outcome.job_id)
        finish(flight.index, flight.run, flight.weight, job_record(flight, spec, outcome), None)


def _submit(index, run, weight, spec, queue, folder: Path, note):
    """Submit one run: (job id, _InFlight), or the run's record when there is no job."""
    if run.action == "skip":
        record = sweep_record(run.point, run.repeat, spec, "skipped", run.reason, seed=run.seed)
        return with_job_facts(record, spec.partition)
    out = str(folder / f"run{index:04d}.jsonl")
    try:
        cfg = point_config(run.point, run.repeat, spec, out=out, seed=run.seed)
    except ConfigError as err:
        record = sweep_record(run.point, run.repeat, spec, "skipped", str(err), seed=run.seed)
        return with_job_facts(record, spec.partition)
    shape = job_shape(run.point.world_size, spec.slurm)
    try:
        command = node_command("bench.run", run_args(cfg), shape)
        job_id = queue.submit(f"gan-bench {run.point.label}", command, shape)
    except SubmitError as err:
        reason = f"sbatch refused the job ({shape.resources()}): {err}"
        record = sweep_record(run.point, run.repeat, spec, "failed", reason, seed=run.seed)
        return with_job_facts(record, spec.partition, shape)
    note(f"submitted {run.point.label} r{run.repeat} as SLURM job {job_id} ({shape.resources()})")
    return job_id, _InFlight(index, run, weight, out)


def plan_lines(spec: SweepSpec, runs: list[PlannedRun]) -> list[str]:
    """--dry-run: the sbatch resources of each point's job."""
    lines = [f"SLURM jobs (partition {spec.partition}), one per run:"]
    seen = set()
    for run in runs:
        if run.action != "run" or run.point in seen:
            continue
        seen.add(run.point)
        shape = job_shape(run.point.world_size, spec.slurm)
        lines.append(f"  {run.point.label}: sbatch {shape.resources()}")
    return lines
