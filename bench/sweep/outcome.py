"""The record of each run that the sweep writes or amends: `sweep_record` for a run that
produced none (skipped, or a child that died without one), and `outcome_record`, which
turns a finished child (its exit status, and its own record if any) into the one record
appended to --out."""

from __future__ import annotations

import dataclasses
import signal

from bench.config import ConfigError, RunConfig
from bench.speedups import parse_variant
from bench.sweep.child import ChildResult
from bench.sweep.grid import Point
from bench.sweep.plan import point_config, point_fields
from bench.sweep.spec import SweepSpec
from bench.telemetry.environment import utc_timestamp
from bench.telemetry.records import bare_record


def sweep_record(
    point: Point,
    repeat: int,
    spec: SweepSpec,
    status: str,
    reason: str,
    tail=None,
    *,
    seed: int = 0,
) -> dict:
    """A record the sweep writes itself, for a run that produced none: the point's config
    (its seed included, so that resuming matches it), this machine's environment, the
    status and the reason; no metrics."""
    try:
        config = point_config(point, repeat, spec, out=spec.out, check=False, seed=seed).to_dict()
    except ConfigError:  # an invalid combination: the fields as planned, defaults elsewhere
        config = {f.name: f.default for f in dataclasses.fields(RunConfig)}
        config.update(point_fields(point, repeat, spec, out=spec.out, seed=seed))
    record = bare_record(
        config=config,
        world_size=point.world_size,
        variant=point.variant,
        variant_fields=parse_variant(point.variant).fields,
        environment={
            **spec.environment(),
            "world_size": point.world_size,
            "timestamp": utc_timestamp(),
        },
        status=status,
        reason=reason,
    )
    if tail is not None:
        record["stderr_tail"] = tail
    return record


def outcome_record(
    point: Point,
    repeat: int,
    spec: SweepSpec,
    result: ChildResult,
    child: dict | None,
    *,
    seed: int = 0,
) -> dict:
    """The record of a finished child: its own when it wrote one (status timeout when the
    sweep stopped it at the limit), else one the sweep writes with the exit status."""
    tail = result.stderr_tail
    if result.timed_out and not (child is not None and child.get("status") == "ok"):
        # (An ok record means the limit struck after the measurement, during teardown.)
        reason = f"exceeded --timeout-per-point {spec.timeout_s:g} s"
        if child is not None:
            child = {**child, "status": "timeout", "stderr_tail": tail}
            child["reason"] = reason + (f"; the run said: {child.get('reason')}")
            return child
        return sweep_record(point, repeat, spec, "timeout", reason, tail, seed=seed)
    if child is not None:
        if child.get("status") != "ok":
            child = {**child, "stderr_tail": tail}
        return child
    if result.stopped_by is not None:
        name = signal.Signals(result.stopped_by).name
        reason = f"{name} to the sweep"
        return sweep_record(point, repeat, spec, "interrupted", reason, tail, seed=seed)
    last = tail[-1] if tail else "no output on stderr"
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        reason = f"killed by {name}, not by the sweep"
        if -result.returncode == signal.SIGKILL:
            reason += " (often the kernel's out-of-memory killer)"
        status = "failed"
    else:
        reason = f"exit code {result.returncode} without a record: {last}"
        oom_words = ("OutOfMemoryError", "CUDA out of memory")
        status = "oom" if any(word in line for line in tail for word in oom_words) else "failed"
    return sweep_record(point, repeat, spec, status, reason, tail, seed=seed)
