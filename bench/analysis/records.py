"""Result records read back as rows: each record reduced to what comparing it needs.

A record's point (model, dataset, batch size, precision, world size, variant, and its
scaling: whether the batch is per process, weak, or global, strong), its environment
(device name and torch version), its workload (how it trained) and its measurements. A
record that lacks one of those fields, or garbles it, gives no row. The sweep's resume
reads records with the same functions, so a comparison and a resumed sweep agree on which
runs are repeats of one measurement. Records of the other kinds (`kind`: the kernel
benchmarks, `allreduce`) are no runs: they give no row, and `load_results` keeps the
all-reduce measurements apart.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

from bench.commbench.bandwidth import Measured, points_of
from bench.commbench.spec import KIND as ALLREDUCE_KIND
from bench.config import ConfigError, RunConfig
from bench.telemetry.records import read_records


def warn(message: str) -> None:
    """A warning on stderr in gan-bench's own form: the output on stdout stays clean."""
    print(f"gan-bench: warning: {message}", file=sys.stderr)


@dataclass
class Row:
    """One record, reduced to what comparing needs."""

    environment: str  # "device name · torch version": records compare only within one
    device_type: str
    model: str
    dataset: str
    batch_size: int  # config.batch_size: per process (weak scaling) or global (strong)
    precision: str
    world_size: int
    workload: str  # loss, steps and WORKLOAD_FIELDS: runs that trained differently are not repeats
    variant: str
    repeat: int
    seed: int  # config.seed: repeats of one seed are pooled, seeds are the parity samples
    status: str
    reason: str | None
    images_per_s: float | None
    mfu: float | None  # model FLOP utilisation (GPU records with a known peak), else None
    memory_mib: float | None
    memory_kind: str  # "peak_allocated_mib" (GPU) or "peak_rss_mib" (CPU)
    quality: dict | None
    sample_grid_path: str | None
    source: str  # the results file it came from
    # Points the sweep ran at once on a shared device (`run.concurrency`, --concurrent):
    # above 1, the run's throughput and MFU are left out (None) and its quality kept.
    concurrency: int = 1
    # metrics.communication of a multi-process run (its gradient all-reduces), else None
    communication: dict | None = None
    images_per_iteration: int | None = None  # run.real_images_per_iteration
    scaling: str = "weak"  # config.scaling: what batch_size is

    @property
    def group_key(self) -> tuple:
        return (
            self.environment,
            self.model,
            self.dataset,
            self.batch_size,
            self.precision,
            self.world_size,
            self.workload,
            self.scaling,
        )


def environment_label(env: dict) -> str:
    """How an environment is named in the output: device name and torch version."""
    return f"{env.get('device_name') or '?'} · torch {env.get('torch') or '?'}"


# RunConfig fields besides the point's (model, data, batch, precision, processes, variant)
# and the loss and steps that change what a run trains or how fast it runs: records that
# differ in one are not repeats of one measurement (compare) nor the same sweep run
# (resume). Labels for the workload text; a field at RunConfig's default is not named.
WORKLOAD_FIELDS = {
    "warmup_steps": "warm-up",
    "profile_steps": "profiled",
    "n_critic": "n_critic",
    "lr": "lr",
    "beta1": "beta1",
    "beta2": "beta2",
    "latent_dim": "latent",
    "channels": "channels",
    "sync_bn": "sync-bn",
    "target_fd": "target FD",
    "cudnn_benchmark": "cudnn.benchmark",
}


def workload(cfg: dict) -> str:
    """How a record's run trained, as text: "non-saturating, 20 steps, warm-up 3"."""
    parts = [str(cfg.get("loss") or "?"), f"{cfg.get('steps') or '?'} steps"]
    for name, label in WORKLOAD_FIELDS.items():
        value = cfg.get(name, getattr(RunConfig, name))
        if value != getattr(RunConfig, name):
            parts.append(f"{label} {value}")
    return ", ".join(parts)


def record_world_size(record: dict) -> int | None:
    """Processes of a record's run: what the run resolved, else what was asked for."""
    run = record.get("run") or {}
    env = record.get("environment") or {}
    cfg = record.get("config") or {}
    for value in (run.get("world_size"), env.get("world_size"), cfg.get("nproc")):
        if isinstance(value, int) and value >= 1:
            return value
    return None


def record_variant(record: dict) -> str:
    """The variant a record ran: the run's own name, else the config's, else "custom"."""
    run = record.get("run") or {}
    cfg = record.get("config") or {}
    return run.get("variant") or cfg.get("variant") or "custom"


def record_scaling(cfg: dict) -> str:
    """What a record's batch size is: "strong" (global), else "weak" (per process), as
    records from before the choice existed ran."""
    return "strong" if cfg.get("scaling") == "strong" else "weak"


def record_point(record: dict) -> tuple[str, str, int, str, int, str, str] | None:
    """(model, dataset, batch size, precision, world size, variant, scaling) of a record,
    or None when a field is missing or of the wrong type (a hand-edited or garbled line)."""
    cfg = record.get("config")
    if not isinstance(cfg, dict) or not isinstance(record.get("environment"), dict):
        return None
    names = [cfg.get(k) for k in ("model", "dataset", "precision")]
    batch = cfg.get("batch_size")
    world = record_world_size(record)
    variant = record_variant(record)
    if (
        not all(isinstance(n, str) for n in names)
        or not _whole_number(batch)
        or world is None
        or not isinstance(variant, str)
    ):
        return None
    model, dataset, precision = names
    return model, dataset, batch, precision, world, variant, record_scaling(cfg)


def _whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def to_row(record: dict, source: str) -> Row | None:
    """A Row for a record, or None when it lacks the fields a comparison needs."""
    point = record_point(record)
    metrics = record.get("metrics") or {}
    if point is None or not isinstance(metrics, dict):
        return None
    cfg, env = record["config"], record["environment"]
    model, dataset, batch, precision, world, variant, scaling = point
    cuda = env.get("device_type") == "cuda"
    # GPU: tensors the caching allocator handed out (what a batch costs); CPU: the process's
    # peak resident set, interpreter and libraries included, so CPU ratios sit near 1.
    memory_kind = "peak_allocated_mib" if cuda else "peak_rss_mib"
    quality = record.get("quality")
    status, reason = record.get("status"), record.get("reason")
    concurrency = (record.get("run") or {}).get("concurrency")
    concurrency = concurrency if _whole_number(concurrency) and concurrency > 1 else 1
    timed_alone = concurrency == 1
    communication = metrics.get("communication")
    images = (record.get("run") or {}).get("real_images_per_iteration")
    return Row(
        environment=environment_label(env),
        device_type=str(env.get("device_type") or "?"),
        model=model,
        dataset=dataset,
        batch_size=batch,
        precision=precision,
        world_size=world,
        workload=workload(cfg),
        variant=variant,
        repeat=record_repeat(cfg),
        seed=record_seed(cfg),
        status=status if isinstance(status, str) else "?",
        reason=reason if isinstance(reason, str) else None,
        images_per_s=finite_number(metrics.get("images_per_s")) if timed_alone else None,
        mfu=finite_number(metrics.get("mfu")) if timed_alone else None,
        memory_mib=finite_number(metrics.get(memory_kind)),
        memory_kind=memory_kind,
        quality=quality if isinstance(quality, dict) else None,
        sample_grid_path=grid if isinstance(grid := metrics.get("sample_grid_path"), str) else None,
        source=source,
        concurrency=concurrency,
        communication=communication if isinstance(communication, dict) else None,
        images_per_iteration=images if _whole_number(images) and images > 0 else None,
        scaling=scaling,
    )


def to_measured(record: dict) -> Measured | None:
    """The all-reduce times of an ok `allreduce` record, or None when it garbles them."""
    env, backend, dtype = record.get("environment"), record.get("backend"), record.get("dtype")
    world = record.get("world_size")
    points = points_of(record.get("sizes"))
    if (
        not isinstance(env, dict)
        or not all(isinstance(v, str) for v in (backend, dtype))
        or not _whole_number(world)
        or world < 2
        or points is None
    ):
        return None
    return Measured(environment_label(env), backend, world, dtype, points)


def record_repeat(cfg: dict) -> int:
    """Which repeat of a sweep point the run was (0 for a run made by hand)."""
    repeat = cfg.get("repeat")
    return repeat if _whole_number(repeat) else 0


def record_seed(cfg: dict) -> int:
    """The run's seed; a record without one ran with RunConfig's default, 0."""
    seed = cfg.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def finite_number(value) -> float | None:
    """A finite int or float as a float; None for anything else (bool, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def load_rows(paths: list[str]) -> list[Row]:
    """Rows of every run record in `paths`, in file order (see load_results)."""
    return load_results(paths)[0]


def load_results(paths: list[str]) -> tuple[list[Row], list[Measured]]:
    """Rows of every run record in `paths`, and the ok all-reduce measurements, each in
    file order.

    A missing file raises ConfigError (bad input). A line that is not a JSON object, or a
    run record without config/environment, is skipped with a warning naming file and line,
    as is an ok allreduce record without its sizes; other kinds of record, silently.
    """
    if not paths:
        raise ConfigError("give at least one results file (JSON lines)")
    for path in paths:
        if not os.path.exists(path):
            raise ConfigError(f"results file {path!r} does not exist")
        if os.path.isdir(path):
            raise ConfigError(f"results file {path!r} is a directory; give a .jsonl file")
    rows: list[Row] = []
    measured: list[Measured] = []
    for path in paths:
        try:
            for line_no, record in read_records(path):
                if record is None:
                    warn(f"{path} line {line_no} is not a JSON object; skipped")
                    continue
                if record.get("kind") == ALLREDUCE_KIND and record.get("status") == "ok":
                    found = to_measured(record)
                    if found is None:
                        warn(f"{path} line {line_no}: an allreduce record garbles its sizes")
                    else:
                        measured.append(found)
                    continue
                if "kind" in record:
                    continue
                row = to_row(record, path)
                if row is None:
                    warn(
                        f"{path} line {line_no} lacks fields compare needs (or garbles them); "
                        "skipped"
                    )
                    continue
                rows.append(row)
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read results file {path!r}: {err}") from None
    return rows, measured
