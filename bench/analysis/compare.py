"""`gan-bench compare`: variants side by side against a baseline, from result records.

Records are grouped by (environment, model, dataset, batch per process, precision, world
size); the environment is the device name plus the torch version, so numbers from two
machines or two torch builds are never set against each other: they land in different
groups, and the output says so. Within a group each variant gets its throughput (median
over repeats, with the spread), its speed-up over the baseline, its peak memory and the
ratio, quality deltas when both sides measured quality with the same extractor, a quality
parity verdict (its FD and KID against the baseline's seed-to-seed spread: see
quality_parity), and its status. Runs with different seeds share a group: their throughput
is pooled like repeats. A second table follows each configuration across world sizes (scaling
efficiency).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from bench.config import ConfigError, RunConfig
from bench.records import read_records
from bench.timing import percentile
from bench.variants import VARIANTS

FORMATS = ("table", "markdown", "csv", "json")
# Quality fields whose baseline deltas are shown (record["quality"], written by the quality
# module): FD and KID lower is better; precision, recall, coverage higher is better.
QUALITY_DELTA_FIELDS = ("fd", "kid_mean", "precision", "recall", "coverage")
_QUALITY_SHORT = {"fd": "fd", "kid_mean": "kid", "precision": "P", "recall": "R", "coverage": "cov"}
# With 2-4 repeats a p20-p80 band is an interpolation between neighbouring values, not a
# band; min-max says plainly what was seen. From 5 repeats on, p20-p80 (as the per-iteration
# percentiles of a record, DESIGN.md habit 4) ignores one outlier on either side.
MIN_REPEATS_FOR_PERCENTILE_SPREAD = 5
# Quality parity across seeds: FD and KID (distances, lower is better) of a variant against
# the baseline's seed-to-seed spread. One value per seed (the median over that seed's
# repeats), since repeats of one seed differ only by machine noise, seeds by training luck.
PARITY_FIELDS = ("fd", "kid_mean")
MIN_PARITY_SEEDS = 3
# The band is the baseline's mean ± 2 sample standard deviations over its seeds, not the
# min-max range. For an honest variant (per-seed values drawn like the baseline's; normal,
# simulated), the mean of 3 variant seeds falls outside the range of 3 baseline seeds 37% of
# the time: the range would flag about one honest variant in three. Outside mean ± 2 s: 13%
# with 3 baseline seeds, 3% with 5.
PARITY_SIGMAS = 2.0


def _warn(message: str) -> None:
    print(f"gan-bench: warning: {message}", file=sys.stderr)


@dataclass
class Row:
    """One record, reduced to what comparing needs."""

    environment: str  # "device name · torch version": records compare only within one
    device_type: str
    model: str
    dataset: str
    batch_size: int  # per process
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


def record_point(record: dict) -> tuple[str, str, int, str, int, str] | None:
    """(model, dataset, batch size, precision, world size, variant) of a record, or None
    when a field is missing or of the wrong type (a hand-edited or garbled line)."""
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
    return model, dataset, batch, precision, world, variant


def _whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def to_row(record: dict, source: str) -> Row | None:
    """A Row for a record, or None when it lacks the fields a comparison needs."""
    point = record_point(record)
    metrics = record.get("metrics") or {}
    if point is None or not isinstance(metrics, dict):
        return None
    cfg, env = record["config"], record["environment"]
    model, dataset, batch, precision, world, variant = point
    cuda = env.get("device_type") == "cuda"
    # GPU: tensors the caching allocator handed out (what a batch costs); CPU: the process's
    # peak resident set, interpreter and libraries included, so CPU ratios sit near 1.
    memory_kind = "peak_allocated_mib" if cuda else "peak_rss_mib"
    quality = record.get("quality")
    status, reason = record.get("status"), record.get("reason")
    concurrency = (record.get("run") or {}).get("concurrency")
    concurrency = concurrency if _whole_number(concurrency) and concurrency > 1 else 1
    timed_alone = concurrency == 1
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
        images_per_s=_number(metrics.get("images_per_s")) if timed_alone else None,
        mfu=_number(metrics.get("mfu")) if timed_alone else None,
        memory_mib=_number(metrics.get(memory_kind)),
        memory_kind=memory_kind,
        quality=quality if isinstance(quality, dict) else None,
        sample_grid_path=grid if isinstance(grid := metrics.get("sample_grid_path"), str) else None,
        source=source,
        concurrency=concurrency,
    )


def record_repeat(cfg: dict) -> int:
    """Which repeat of a sweep point the run was (0 for a run made by hand)."""
    repeat = cfg.get("repeat")
    return repeat if _whole_number(repeat) else 0


def record_seed(cfg: dict) -> int:
    """The run's seed; a record without one ran with RunConfig's default, 0."""
    seed = cfg.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def load_rows(paths: list[str]) -> list[Row]:
    """Rows of every record in `paths`, in file order.

    A missing file raises ConfigError (bad input). A line that is not a JSON object, or a
    record without config/environment, is skipped with a warning naming file and line.
    """
    if not paths:
        raise ConfigError("give at least one results file (JSON lines)")
    for path in paths:
        if not os.path.exists(path):
            raise ConfigError(f"results file {path!r} does not exist")
        if os.path.isdir(path):
            raise ConfigError(f"results file {path!r} is a directory; give a .jsonl file")
    rows: list[Row] = []
    for path in paths:
        try:
            for line_no, record in read_records(path):
                if record is None:
                    _warn(f"{path} line {line_no} is not a JSON object; skipped")
                    continue
                row = to_row(record, path)
                if row is None:
                    _warn(
                        f"{path} line {line_no} lacks fields compare needs (or garbles them); "
                        "skipped"
                    )
                    continue
                rows.append(row)
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read results file {path!r}: {err}") from None
    return rows


@dataclass
class VariantSummary:
    """One variant of one group: its repeats summarised and set against the baseline."""

    variant: str
    repeats_ok: int
    repeats_total: int
    status: str  # "ok", "ok 2/3, failed 1", "skipped", ...
    reason: str | None  # the first non-ok reason
    images_per_s: float | None  # median over ok repeats
    images_per_s_lo: float | None
    images_per_s_hi: float | None
    spread: str | None  # "min-max" or "p20-p80"; None with fewer than 2 ok repeats
    speedup: float | None  # images_per_s / baseline's
    memory_mib: float | None  # median over ok repeats
    mfu: float | None  # median over ok repeats that have one
    memory_ratio: float | None
    quality: dict = field(default_factory=dict)  # median of each numeric quality field
    extractor: str | None = None
    # (n_real, n_fake, split) behind the quality numbers: FD's bias depends on the sample
    # counts, so numbers measured on other counts are not on one scale. None when mixed.
    quality_samples: tuple | None = None
    quality_delta: dict = field(default_factory=dict)  # field -> variant - baseline
    quality_note: str | None = None  # why deltas are missing although quality exists
    scaling_efficiency: float | None = None  # throughput(N) / (N * throughput(1))
    # PARITY_FIELDS name -> {"verdict": "within" | "outside" | None, "reason", "variant_mean",
    # "band": [lo, hi], "seeds": shared seeds, "baseline_seeds"}; only metrics it measured.
    # A variant that diverged at a seed where the baseline trained is "outside" (its reason
    # says so; no mean, no band; "seeds": those seeds).
    parity: dict = field(default_factory=dict)
    parity_note: str | None = None  # why a measured metric got no parity verdict
    sample_grid_paths: list = field(default_factory=list)  # (repeat, path, source) of ok runs


@dataclass
class Group:
    environment: str
    device_type: str
    model: str
    dataset: str
    batch_size: int
    precision: str
    world_size: int
    workload: str
    memory_kind: str
    baseline_found: bool
    variants: list[VariantSummary]

    @property
    def config_key(self) -> tuple:
        """The configuration without its world size: what a scaling series shares."""
        return (
            self.environment,
            self.model,
            self.dataset,
            self.batch_size,
            self.precision,
            self.workload,
        )

    @property
    def label(self) -> str:
        return (
            f"{self.model}/{self.dataset} batch {self.batch_size} {self.precision} "
            f"×{self.world_size} ({self.workload})"
        )


@dataclass
class ScalingRow:
    """One configuration at one world size, against the same configuration at world size 1."""

    environment: str
    model: str
    dataset: str
    batch_size: int
    precision: str
    workload: str
    variant: str
    world_size: int
    images_per_s: float
    images_per_s_per_device: float
    efficiency: float | None  # None without a world-size-1 measurement


@dataclass
class Comparison:
    baseline: str
    environments: list[str]
    groups: list[Group]
    scaling: list[ScalingRow]

    @property
    def mixed_environments(self) -> bool:
        return len(self.environments) > 1


def _variant_order(name: str, baseline: str) -> tuple:
    registry = list(VARIANTS)
    if name == baseline:
        return (0, 0, name)
    if name in registry:
        return (1, registry.index(name), name)
    return (2, 0, name)


def _status_text(rows: list[Row]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.status] += 1
    shared = max(r.concurrency for r in rows) if rows else 1
    if set(counts) == {"ok"} and shared > 1:
        return f"ok (up to {shared} runs at once: speed not compared)"
    if set(counts) == {"ok"}:
        return "ok"
    if len(counts) == 1:
        return next(iter(counts))
    parts = []
    if counts.get("ok"):
        parts.append(f"ok {counts.pop('ok')}/{len(rows)}")
    parts += [f"{name} {n}" for name, n in sorted(counts.items())]
    return ", ".join(parts)


def _ok(rows: list[Row]) -> list[Row]:
    """The ok runs: their quality counts; their speed where they ran alone (images_per_s)."""
    return [r for r in rows if r.status == "ok"]


def _summarise_variant(variant: str, rows: list[Row]) -> VariantSummary:
    ok = _ok(rows)
    throughputs = [r.images_per_s for r in ok if r.images_per_s is not None]
    median = statistics.median(throughputs) if throughputs else None
    lo = hi = spread = None
    if len(throughputs) >= MIN_REPEATS_FOR_PERCENTILE_SPREAD:
        lo, hi, spread = percentile(throughputs, 20), percentile(throughputs, 80), "p20-p80"
    elif len(throughputs) >= 2:
        lo, hi, spread = min(throughputs), max(throughputs), "min-max"
    memories = [r.memory_mib for r in ok if r.memory_mib is not None]
    mfus = [r.mfu for r in ok if r.mfu is not None]
    quality: dict = {}
    extractors = {r.quality.get("extractor") for r in ok if r.quality}
    sample_counts = {_sample_counts(r.quality) for r in ok if r.quality}
    for name in QUALITY_DELTA_FIELDS:
        values = [_number(r.quality.get(name)) for r in ok if r.quality]
        values = [v for v in values if v is not None]
        if values:
            quality[name] = statistics.median(values)
    not_ok = [r for r in rows if r.status != "ok"]
    return VariantSummary(
        variant=variant,
        repeats_ok=len(ok),
        repeats_total=len(rows),
        status=_status_text(rows),
        reason=next((r.reason for r in not_ok if r.reason), None),
        images_per_s=median,
        images_per_s_lo=lo,
        images_per_s_hi=hi,
        spread=spread,
        speedup=None,
        memory_mib=statistics.median(memories) if memories else None,
        mfu=statistics.median(mfus) if mfus else None,
        memory_ratio=None,
        quality=quality,
        # Repeats measured with different extractors have no common scale: no extractor.
        extractor=next(iter(extractors)) if len(extractors) == 1 else None,
        quality_samples=next(iter(sample_counts)) if len(sample_counts) == 1 else None,
        sample_grid_paths=sorted(
            (r.repeat, r.sample_grid_path, r.source) for r in ok if r.sample_grid_path
        ),
    )


def _against_baseline(summary: VariantSummary, base: VariantSummary) -> None:
    if summary.images_per_s is not None and base.images_per_s:
        summary.speedup = summary.images_per_s / base.images_per_s
    if summary.memory_mib is not None and base.memory_mib:
        summary.memory_ratio = summary.memory_mib / base.memory_mib
    if summary is base or not (summary.quality and base.quality):
        return
    mismatch = _quality_mismatch(summary, base)
    if mismatch:
        summary.quality_note = f"{mismatch}: no deltas"
        return
    for name in QUALITY_DELTA_FIELDS:
        if name in summary.quality and name in base.quality:
            summary.quality_delta[name] = summary.quality[name] - base.quality[name]


def _sample_counts(quality: dict) -> tuple:
    return tuple(quality.get(key) for key in ("n_real", "n_fake", "split"))


def _quality_mismatch(summary: VariantSummary, base: VariantSummary) -> str | None:
    """Why the two sides' quality numbers have no common scale (each feature space has its
    own distances; FD's bias falls as the sample counts grow), or None when both measured
    with one and the same extractor on the same real split and sample counts."""
    if summary.extractor is None or summary.extractor != base.extractor:
        return f"extractors differ ({summary.extractor} vs {base.extractor})"
    if summary.quality_samples is None or base.quality_samples is None:
        return "sample counts are mixed within a variant"
    (real, fake, split), (base_real, base_fake, base_split) = (
        summary.quality_samples,
        base.quality_samples,
    )
    if (real, fake) != (base_real, base_fake):
        return (
            f"sample counts differ ({fake} generated, {real} real vs "
            f"{base_fake} generated, {base_real} real)"
        )
    if split != base_split:
        return f"real images differ ({split} vs {base_split})"
    return None


def _per_seed(rows: list[Row], name: str) -> dict[int, float]:
    """Quality field `name` per seed over the ok runs: the median over each seed's repeats."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for row in _ok(rows):
        value = _number(row.quality.get(name)) if row.quality else None
        if value is not None:
            by_seed[row.seed].append(value)
    return {seed: statistics.median(values) for seed, values in sorted(by_seed.items())}


def _parity_entry(variant: dict[int, float], base: dict[int, float], baseline: str) -> dict:
    """One metric's verdict: the variant's mean over the seeds both sides ran against the
    baseline's band over all its seeds (mean ± PARITY_SIGMAS sample standard deviations)."""
    shared = sorted(set(variant) & set(base))
    entry = {
        "verdict": None,
        "reason": None,
        "variant_mean": None,
        "band": None,
        "seeds": shared,
        "baseline_seeds": sorted(base),
    }
    if len(base) < MIN_PARITY_SEEDS:
        entry["reason"] = f"needs ≥ {MIN_PARITY_SEEDS} seeds of {baseline}, has {len(base)}"
        return entry
    if len(shared) < MIN_PARITY_SEEDS:
        entry["reason"] = (
            f"needs ≥ {MIN_PARITY_SEEDS} seeds shared with {baseline}, has {len(shared)} "
            f"(variant seeds {_seed_list(variant)}; {baseline} seeds {_seed_list(base)})"
        )
        return entry
    centre = statistics.fmean(base.values())
    half = PARITY_SIGMAS * statistics.stdev(base.values())
    mean = statistics.fmean(variant[seed] for seed in shared)
    lo, hi = centre - half, centre + half
    entry.update(
        verdict="within" if lo <= mean <= hi else "outside", variant_mean=mean, band=[lo, hi]
    )
    return entry


def _seed_list(values: dict, most: int = 6) -> str:
    seeds = [str(seed) for seed in sorted(values)]
    return ", ".join(seeds if len(seeds) <= most else [*seeds[:most], "…"]) or "none"


def quality_parity(
    summary: VariantSummary,
    base: VariantSummary,
    rows: list[Row],
    base_rows: list[Row],
    baseline: str,
) -> tuple[dict, str | None]:
    """(parity, note) of a variant against the baseline (see VariantSummary.parity): one
    entry per PARITY_FIELDS metric the variant measured; no verdict, with the reason, when
    the extractors differ or either side has fewer than MIN_PARITY_SEEDS seeds to judge."""
    mismatch = _quality_mismatch(summary, base) if summary.quality and base.quality else None
    parity: dict = {}
    diverged = sorted({r.seed for r in rows if r.status == "diverged"})
    for name in PARITY_FIELDS:
        base_values = _per_seed(base_rows, name)
        lost = [seed for seed in diverged if seed in base_values]
        if lost:
            # A non-finite loss where the baseline trained at the same seed is the worst
            # quality there is, whatever the other seeds measured.
            parity[name] = {
                "verdict": "outside",
                "reason": f"diverged at seed {_seed_list(dict.fromkeys(lost))}, where "
                f"{baseline} trained",
                "variant_mean": None,
                "band": None,
                "seeds": lost,
                "baseline_seeds": sorted(base_values),
            }
            continue
        values = _per_seed(rows, name)
        if not values:
            continue  # not measured (synthetic data, a failed run): nothing to judge
        entry = _parity_entry(values, base_values, baseline)
        if mismatch:
            entry.update(verdict=None, reason=mismatch, variant_mean=None, band=None)
        parity[name] = entry
    reasons = dict.fromkeys(e["reason"] for e in parity.values() if e["verdict"] is None)
    return parity, "; ".join(reasons) or None


def summarise(rows: list[Row], baseline: str = "eager") -> Comparison:
    """Group rows, summarise every variant and set it against `baseline` in its group."""
    by_group: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        by_group[row.group_key].append(row)
    groups: list[Group] = []
    for key in sorted(by_group, key=lambda k: (k[0], k[1], k[2], k[6], k[4], k[3], k[5])):
        members = by_group[key]
        by_variant: dict[str, list[Row]] = defaultdict(list)
        for row in members:
            by_variant[row.variant].append(row)
        summaries = [
            _summarise_variant(name, by_variant[name])
            for name in sorted(by_variant, key=lambda n: _variant_order(n, baseline))
        ]
        base = next((s for s in summaries if s.variant == baseline), None)
        if base is not None:
            for summary in summaries:
                _against_baseline(summary, base)
                if summary is not base:
                    summary.parity, summary.parity_note = quality_parity(
                        summary, base, by_variant[summary.variant], by_variant[baseline], baseline
                    )
        env, model, dataset, batch, precision, world, workload = key
        groups.append(
            Group(
                environment=env,
                device_type=members[0].device_type,
                model=model,
                dataset=dataset,
                batch_size=batch,
                precision=precision,
                world_size=world,
                workload=workload,
                memory_kind=members[0].memory_kind,
                baseline_found=base is not None,
                variants=summaries,
            )
        )
    scaling = _scaling(groups)
    environments = sorted({g.environment for g in groups})
    return Comparison(baseline=baseline, environments=environments, groups=groups, scaling=scaling)


def _scaling(groups: list[Group]) -> list[ScalingRow]:
    """Each configuration measured at two or more world sizes, with its efficiency
    throughput(N) / (N × throughput(1)): 1.0 is linear scaling."""
    series: dict[tuple, dict[int, float]] = defaultdict(dict)
    for group in groups:
        for summary in group.variants:
            if summary.images_per_s is not None:
                series[(*group.config_key, summary.variant)][group.world_size] = (
                    summary.images_per_s
                )
    rows: list[ScalingRow] = []
    efficiency: dict[tuple, float | None] = {}
    for key in sorted(series):
        points = series[key]
        if len(points) < 2:
            continue
        single = points.get(1)
        for world in sorted(points):
            efficiency[(key, world)] = points[world] / (world * single) if single else None
            rows.append(
                ScalingRow(
                    *key,
                    world_size=world,
                    images_per_s=points[world],
                    images_per_s_per_device=points[world] / world,
                    efficiency=efficiency[(key, world)],
                )
            )
    for group in groups:
        for summary in group.variants:
            summary.scaling_efficiency = efficiency.get(
                ((*group.config_key, summary.variant), group.world_size)
            )
    return rows


def below_threshold(comparison: Comparison, minimum: float) -> list[tuple[Group, VariantSummary]]:
    """Ok variants (the baseline aside) whose speed-up over the baseline is under `minimum`."""
    return [
        (group, summary)
        for group in comparison.groups
        for summary in group.variants
        if summary.variant != comparison.baseline
        and summary.repeats_ok
        and summary.speedup is not None
        and summary.speedup < minimum
    ]


def parity_verdict(summary: VariantSummary) -> str | None:
    """The variant's overall parity: "outside" when any metric lies outside the baseline's
    spread, "within" when one has a verdict and none is outside, else None (no verdict, or
    nothing measured)."""
    verdicts = {entry["verdict"] for entry in summary.parity.values()}
    if "outside" in verdicts:
        return "outside"
    return "within" if "within" in verdicts else None


def outside_parity(comparison: Comparison) -> list[tuple[Group, VariantSummary]]:
    """Variants whose FD or KID lies outside the baseline's seed-to-seed spread."""
    return [
        (group, summary)
        for group in comparison.groups
        for summary in group.variants
        if parity_verdict(summary) == "outside"
    ]


# The variant every speed-up must also beat: torch.compile in its default mode.
COMPILE_REFERENCE = "compile"


@dataclass
class Best:
    """A group's fastest variant, against the baseline and against torch.compile."""

    group: Group
    variant: VariantSummary
    vs_compile: float | None  # None when the group has no ok compile run


def best_variants(comparison: Comparison) -> list[Best]:
    """Per group with an ok baseline and another ok variant: the fastest variant (median
    images/s), with its speed-up over the baseline and over torch.compile's default mode."""
    best = []
    for group in comparison.groups:
        ok = [s for s in group.variants if s.images_per_s is not None and s.repeats_ok]
        if not group.baseline_found or len(ok) < 2:
            continue
        fastest = max(ok, key=lambda s: s.images_per_s)
        compiled = next((s for s in ok if s.variant == COMPILE_REFERENCE), None)
        vs_compile = fastest.images_per_s / compiled.images_per_s if compiled else None
        best.append(Best(group, fastest, vs_compile))
    return best


def _best_cells(best: list[Best]) -> list[list[str]]:
    return [
        [
            b.group.label,
            b.variant.variant,
            _fmt_rate(b.variant.images_per_s),
            _fmt_ratio(b.variant.speedup),
            _fmt_ratio(b.vs_compile),
            "—" if b.variant.mfu is None else f"{b.variant.mfu:.1%}",
        ]
        for b in best
    ]


# ------------------------------------------------------------------------------ rendering


def _fmt_rate(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _fmt_spread(s: VariantSummary) -> str:
    if s.spread is None:
        return "—"
    return f"{_fmt_rate(s.images_per_s_lo)}–{_fmt_rate(s.images_per_s_hi)} ({s.spread})"


def _fmt_quality(s: VariantSummary, baseline: str) -> str:
    if s.quality_delta:
        return ", ".join(
            f"{_QUALITY_SHORT[name]} {value:+.3g}" for name, value in s.quality_delta.items()
        )
    if s.quality_note:
        return s.quality_note
    if s.quality and s.variant == baseline:
        return ", ".join(f"{_QUALITY_SHORT[n]} {v:.3g}" for n, v in s.quality.items())
    return ""


def _fmt_parity(s: VariantSummary, outside: str = "OUTSIDE") -> str:
    """The quality-parity cell: "ok (3 seeds)", "OUTSIDE: fd 120.3 not in [80.1, 95.2]", or
    why there is no verdict; empty when the variant measured no FD or KID (or is the
    baseline). `outside` is the marker, emphasised by the caller's format."""
    if not s.parity:
        return ""
    entries = s.parity.items()
    unjudged: dict[str, list[str]] = defaultdict(list)  # reason -> metrics, said once
    for name, entry in entries:
        if entry["verdict"] is None:
            unjudged[entry["reason"]].append(_QUALITY_SHORT[name])
    missing = [f"{', '.join(names)}: {reason}" for reason, names in unjudged.items()]
    verdict = parity_verdict(s)
    if verdict is None:
        return "no verdict: " + "; ".join(missing)
    if verdict == "outside":
        text = f"{outside}: " + "; ".join(
            dict.fromkeys(
                e["reason"]  # diverged
                if e["variant_mean"] is None
                else f"{_QUALITY_SHORT[n]} {e['variant_mean']:.4g} not in "
                f"[{e['band'][0]:.4g}, {e['band'][1]:.4g}]"
                for n, e in entries
                if e["verdict"] == "outside"
            )
        )
    else:
        seeds = min(len(e["seeds"]) for _, e in entries if e["verdict"] == "within")
        text = f"ok ({seeds} seeds)"
    return "; ".join([text, *missing])


def _fmt_status(s: VariantSummary, width: int = 70) -> str:
    if s.status == "ok" or not s.reason:
        return s.status
    reason = s.reason if len(s.reason) <= width else s.reason[: width - 1] + "…"
    return f"{s.status}: {reason}"


def _memory_header(comparison: Comparison, groups: list[Group]) -> str:
    kinds = {g.memory_kind for g in groups}
    if kinds == {"peak_allocated_mib"}:
        return "peak alloc MiB (GPU)"
    if kinds == {"peak_rss_mib"}:
        return "peak RSS MiB (CPU)"
    return "peak MiB (GPU alloc / CPU RSS)"


def _table_rows(comparison: Comparison, groups: list[Group]) -> list[list[str]]:
    """The main table as text cells, one list per (group, variant)."""
    out = []
    for group in groups:
        for summary in group.variants:
            status = _fmt_status(summary)
            if not group.baseline_found:
                note = f"no {comparison.baseline} baseline in this group"
                status = f"{status} ({note})" if status else note
            out.append(
                [
                    group.model,
                    group.dataset,
                    str(group.batch_size),
                    group.precision,
                    str(group.world_size),
                    group.workload,
                    summary.variant,
                    _fmt_rate(summary.images_per_s),
                    _fmt_spread(summary),
                    f"{summary.repeats_ok}/{summary.repeats_total}",
                    _fmt_ratio(summary.speedup),
                    _fmt_rate(summary.memory_mib),
                    _fmt_ratio(summary.memory_ratio),
                    _fmt_quality(summary, comparison.baseline),
                    _fmt_parity(summary, outside="**OUTSIDE**"),
                    status,
                ]
            )
    return out


def _headers(comparison: Comparison, groups: list[Group]) -> list[str]:
    return [
        "model",
        "dataset",
        "batch/proc",
        "precision",
        "procs",
        "workload",
        "variant",
        "images/s (median)",
        "spread",
        "ok/runs",
        f"speed-up vs {comparison.baseline}",
        _memory_header(comparison, groups),
        "mem ratio",
        f"quality Δ vs {comparison.baseline}",
        "quality parity",
        "status",
    ]


def _scaling_cells(rows: list[ScalingRow]) -> list[list[str]]:
    return [
        [
            r.model,
            r.dataset,
            str(r.batch_size),
            r.precision,
            r.variant,
            str(r.world_size),
            _fmt_rate(r.images_per_s),
            _fmt_rate(r.images_per_s_per_device),
            "—" if r.efficiency is None else f"{r.efficiency:.0%}",
        ]
        for r in rows
    ]


SCALING_HEADERS = [
    "model",
    "dataset",
    "batch/proc",
    "precision",
    "variant",
    "procs",
    "images/s",
    "images/s per proc",
    "efficiency",
]
SCALING_NOTE = "efficiency = throughput(N) / (N × throughput(1)); 100% is linear scaling"


def _by_environment(comparison: Comparison):
    for env in comparison.environments:
        yield (
            env,
            [g for g in comparison.groups if g.environment == env],
            [r for r in comparison.scaling if r.environment == env],
        )


def mixed_environment_warning(comparison: Comparison) -> str | None:
    """The flag for results from more than one environment, or None."""
    if not comparison.mixed_environments:
        return None
    return (
        f"these results come from {len(comparison.environments)} environments "
        "(device, torch version); each is compared only within itself: "
        + "; ".join(comparison.environments)
    )


def render_markdown(comparison: Comparison, heading_level: int = 2) -> str:
    """The comparison as markdown tables: per environment, main table then scaling."""
    hashes = "#" * heading_level
    lines: list[str] = []
    warning = mixed_environment_warning(comparison)
    if warning:
        lines += [f"> **Warning:** {warning}", ""]
    for env, groups, scaling in _by_environment(comparison):
        lines += [f"{hashes} {env}", ""]
        lines += _markdown_table(_headers(comparison, groups), _table_rows(comparison, groups))
        best = [b for b in best_variants(comparison) if b.group in groups]
        if best:
            lines += ["", f"{hashes}# Best variant per configuration", ""]
            lines += _markdown_table(_best_headers(comparison), _best_cells(best))
        if scaling:
            lines += ["", f"{hashes}# Scaling across processes", "", SCALING_NOTE, ""]
            lines += _markdown_table(SCALING_HEADERS, _scaling_cells(scaling))
        lines.append("")
    return "\n".join(lines)


def _best_headers(comparison: Comparison) -> list[str]:
    return [
        "configuration",
        "fastest variant",
        "images/s",
        f"vs {comparison.baseline}",
        f"vs {COMPILE_REFERENCE}",
        "MFU",
    ]


def _markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def render_csv(comparison: Comparison) -> str:
    """One CSV row per (group, variant), the scaling efficiency as a column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    quality_cols = [f"delta_{name}" for name in QUALITY_DELTA_FIELDS]
    parity_cols = [
        f"parity_{_QUALITY_SHORT[name]}_{part}"
        for name in PARITY_FIELDS
        for part in ("mean", "lo", "hi")
    ]
    writer.writerow(
        [
            "environment",
            "model",
            "dataset",
            "batch_size_per_process",
            "precision",
            "world_size",
            "workload",
            "variant",
            "repeats_ok",
            "repeats_total",
            "images_per_s_median",
            "images_per_s_lo",
            "images_per_s_hi",
            "spread",
            "speedup",
            "memory_kind",
            "memory_mib",
            "memory_ratio",
            *quality_cols,
            "quality_parity",
            "quality_parity_detail",
            *parity_cols,
            "scaling_efficiency",
            "baseline_found",
            "status",
            "reason",
        ]
    )
    for group in comparison.groups:
        for s in group.variants:
            writer.writerow(
                [
                    group.environment,
                    group.model,
                    group.dataset,
                    group.batch_size,
                    group.precision,
                    group.world_size,
                    group.workload,
                    s.variant,
                    s.repeats_ok,
                    s.repeats_total,
                    s.images_per_s,
                    s.images_per_s_lo,
                    s.images_per_s_hi,
                    s.spread,
                    s.speedup,
                    group.memory_kind,
                    s.memory_mib,
                    s.memory_ratio,
                    *[s.quality_delta.get(name) for name in QUALITY_DELTA_FIELDS],
                    parity_verdict(s),
                    _fmt_parity(s),
                    *_parity_numbers(s),
                    s.scaling_efficiency,
                    group.baseline_found,
                    s.status,
                    s.reason,
                ]
            )
    return buffer.getvalue()


def _parity_numbers(s: VariantSummary) -> list[float | None]:
    """The CSV's parity_<metric>_{mean,lo,hi} cells, blank without a verdict."""
    cells: list[float | None] = []
    for name in PARITY_FIELDS:
        entry = s.parity.get(name) or {}
        band = entry.get("band") or [None, None]
        cells += [entry.get("variant_mean"), *band]
    return cells


def render_json(comparison: Comparison) -> str:
    """The whole comparison as one JSON document."""
    doc = asdict(comparison)
    doc["mixed_environments"] = comparison.mixed_environments
    for group, group_doc in zip(comparison.groups, doc["groups"], strict=True):
        for s, summary in zip(group.variants, group_doc["variants"], strict=True):
            summary["sample_grid_paths"] = [path for _, path, _ in summary["sample_grid_paths"]]
            summary["quality_parity"] = parity_verdict(s)
            summary["quality_parity_detail"] = _fmt_parity(s) or None
    doc["best"] = [
        {
            "configuration": b.group.label,
            "environment": b.group.environment,
            "variant": b.variant.variant,
            "images_per_s": b.variant.images_per_s,
            "vs_baseline": b.variant.speedup,
            "vs_compile": b.vs_compile,
            "mfu": b.variant.mfu,
        }
        for b in best_variants(comparison)
    ]
    return json.dumps(doc, indent=2)


def print_table(comparison: Comparison, console=None) -> None:
    """The comparison as rich tables on the console, one per environment: the columns of
    the markdown table, with a group's configuration folded into one cell to fit a
    terminal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if console is None:
        # Off a terminal rich assumes 80 columns; logs and pipes get a wider line instead,
        # unless COLUMNS says otherwise.
        tty = sys.stdout.isatty() or "COLUMNS" in os.environ
        console = Console(width=None if tty else 160)
    warning = mixed_environment_warning(comparison)
    if warning:
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    base = comparison.baseline
    for env, groups, scaling in _by_environment(comparison):
        quality = any(_fmt_quality(s, base) for g in groups for s in g.variants)
        table = Table(title=f"compare against {base} — {env}", title_justify="left")
        table.add_column("configuration")
        table.add_column("variant", no_wrap=True)
        for header in ("images/s", "spread", "runs ok", f"vs {base}"):
            table.add_column(header, justify="right")
        kinds = {g.memory_kind for g in groups}
        table.add_column(
            {"peak_allocated_mib": "alloc MiB", "peak_rss_mib": "RSS MiB"}.get(
                next(iter(kinds)) if len(kinds) == 1 else "", "peak MiB"
            ),
            justify="right",
        )
        table.add_column("mem ×", justify="right")
        if quality:
            table.add_column(f"quality Δ vs {base}")
        parity = any(s.parity for g in groups for s in g.variants)
        if parity:
            table.add_column("quality parity")
        table.add_column("status")
        for n, group in enumerate(groups):
            if n:
                table.add_section()
            config = (
                f"{group.model}/{group.dataset}\nbatch {group.batch_size} · "
                f"{group.precision} · {group.world_size} proc{'s' if group.world_size > 1 else ''}"
                f"\n{group.workload}"
            )
            for i, s in enumerate(group.variants):
                status = _fmt_status(s, width=48)
                if not group.baseline_found:
                    status += f" (no {base} baseline in this group)"
                cells = [
                    config if i == 0 else "",
                    s.variant,
                    _fmt_rate(s.images_per_s),
                    _fmt_spread(s).replace(f" ({s.spread})", "") if s.spread else "—",
                    f"{s.repeats_ok}/{s.repeats_total}",
                    _fmt_ratio(s.speedup),
                    _fmt_rate(s.memory_mib),
                    _fmt_ratio(s.memory_ratio),
                ]
                if quality:
                    cells.append(_fmt_quality(s, base))
                if parity:
                    # A Text, not markup: the band's brackets would read as rich tags.
                    style = "bold red" if parity_verdict(s) == "outside" else ""
                    cells.append(Text(_fmt_parity(s), style=style))
                table.add_row(*cells, status)
        notes = [f"memory: {_memory_header(comparison, groups)}"]
        spreads = {s.spread for g in groups for s in g.variants if s.spread}
        if spreads:
            notes.append("spread over repeats: " + ", ".join(sorted(spreads)))
        if parity:
            notes.append(
                f"quality parity: mean FD/KID over the seeds shared with {base}, against "
                f"{base}'s mean ± {PARITY_SIGMAS:g} s.d. over its seeds (≥ {MIN_PARITY_SEEDS})"
            )
        table.caption = "; ".join(notes)
        console.print(table)
        best = [b for b in best_variants(comparison) if b.group in groups]
        if best:
            fastest = Table(title=f"best variant per configuration — {env}", title_justify="left")
            for n, header in enumerate(_best_headers(comparison)):
                fastest.add_column(header, justify="right" if n > 1 else "left")
            for cells in _best_cells(best):
                fastest.add_row(*cells)
            console.print(fastest)
        if scaling:
            scale = Table(title=f"scaling — {env}", caption=SCALING_NOTE, title_justify="left")
            scale.add_column("configuration")
            scale.add_column("variant", no_wrap=True)
            for header in ("procs", "images/s", "per proc", "efficiency"):
                scale.add_column(header, justify="right")
            for r in scaling:
                scale.add_row(
                    f"{r.model}/{r.dataset} batch {r.batch_size} · {r.precision}",
                    r.variant,
                    str(r.world_size),
                    _fmt_rate(r.images_per_s),
                    _fmt_rate(r.images_per_s_per_device),
                    "—" if r.efficiency is None else f"{r.efficiency:.0%}",
                )
            console.print(scale)


def check_baseline(rows: list[Row], baseline: str) -> None:
    """ConfigError, naming the variants present, when no record ran `baseline`."""
    if not any(row.variant == baseline for row in rows):
        present = sorted({row.variant for row in rows}, key=lambda n: _variant_order(n, baseline))
        raise ConfigError(
            f"--baseline {baseline!r} matches no record; variants present: {', '.join(present)}"
        )


def compare_command(
    paths: list[str],
    baseline: str = "eager",
    fmt: str = "table",
    fail_below: float | None = None,
    fail_on_quality: bool = False,
) -> int:
    """`gan-bench compare`: print the comparison; return 1 when `fail_below` is given and an
    ok variant's speed-up is under it, or with `fail_on_quality` when a variant's quality is
    outside the baseline's seed-to-seed spread; else 0. Bad input raises ConfigError first."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not known; choose one of: {', '.join(FORMATS)}")
    if fail_below is not None and not (math.isfinite(fail_below) and fail_below > 0):
        raise ConfigError(f"--fail-below must be a positive speed-up ratio, got {fail_below}")
    rows = load_rows(paths)
    if not rows:
        raise ConfigError(f"no usable records in {', '.join(paths)}")
    check_baseline(rows, baseline)
    comparison = summarise(rows, baseline)
    if fmt == "table":
        print_table(comparison)
    else:
        warning = mixed_environment_warning(comparison)
        if warning and fmt == "csv":  # markdown and json carry the flag themselves
            _warn(warning)
        text = {"markdown": render_markdown, "csv": render_csv, "json": render_json}[fmt](
            comparison
        )
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    slow = below_threshold(comparison, fail_below) if fail_below is not None else []
    for group, summary in slow:
        print(
            f"gan-bench: {summary.variant} at {group.label} ({group.environment}): "
            f"{summary.speedup:.2f}× over {baseline}, under --fail-below {fail_below:g}",
            file=sys.stderr,
        )
    outside = outside_parity(comparison) if fail_on_quality else []
    for group, summary in outside:
        print(
            f"gan-bench: {summary.variant} at {group.label} ({group.environment}): quality "
            f"outside {baseline}'s seed-to-seed spread ({_fmt_parity(summary)}), "
            "--fail-on-quality",
            file=sys.stderr,
        )
    return 1 if slow or outside else 0
