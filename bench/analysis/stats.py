"""Rows summarised and set against a baseline: the numbers a comparison shows.

Rows are grouped by (environment, model, dataset, batch, precision, world size,
workload, scaling: the batch is per process under weak scaling, global under strong); the
environment is the device name plus the torch version, so numbers from two machines or two
torch builds are never set against each other: they land in different groups. Within a
group each variant gets its throughput (median over repeats, with the spread), its
speed-up over the baseline, its peak memory and the ratio, quality deltas when both sides
measured quality with the same extractor, a quality parity verdict (its FD and KID against
the baseline's seed-to-seed spread: see quality_parity), and its status. Runs with
different seeds share a group: their throughput is pooled like repeats. Each
configuration is also followed across world sizes (scaling efficiency, with the gradient
all-reduces' share: see _communication), and each group's fastest variant set against the
baseline and against torch.compile.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.analysis.records import Row, finite_number
from bench.commbench.bandwidth import Measured, implied_allreduce_s
from bench.config import batch_label, per_process_batch
from bench.speedups import variant_rank
from bench.telemetry.timing import percentile

# Quality fields whose baseline deltas are shown (record["quality"], written by the quality
# module): FD and KID lower is better; precision, recall, coverage higher is better.
QUALITY_DELTA_FIELDS = ("fd", "kid_mean", "precision", "recall", "coverage")
# With 2-4 repeats a p20-p80 band is an interpolation between neighbouring values, not a
# band; min-max says plainly what was seen. From 5 repeats on, p20-p80 (as the per-iteration
# percentiles of a record) ignores one outlier on either side.
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
    communication: dict | None = None  # an ok run's metrics.communication
    images_per_iteration: int | None = None  # real images per iteration, all processes
    # In a scaling series (see ScalingRow): all-reduce bytes per image, the all-reduce
    # seconds per iteration a measured bandwidth implies, seconds lost against t(1).
    allreduce_bytes_per_image: float | None = None
    allreduce_s_per_iteration: float | None = None
    lost_s_per_iteration: float | None = None


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
    scaling: str = "weak"  # batch_size is per process (weak) or global (strong)

    @property
    def config_key(self) -> tuple:
        """The configuration without its world size: what a scaling series shares. Its
        batch is the one held fixed as processes are added: per process under weak
        scaling, the global batch under strong."""
        return (
            self.environment,
            self.scaling,
            self.model,
            self.dataset,
            self.batch_size,
            self.precision,
            self.workload,
        )

    @property
    def batch_text(self) -> str:
        return batch_label(self.batch_size, self.scaling)

    @property
    def batch_per_process(self) -> int:
        return per_process_batch(self.batch_size, self.world_size, self.scaling)

    @property
    def label(self) -> str:
        return (
            f"{self.model}/{self.dataset} batch {self.batch_text} {self.precision} "
            f"×{self.world_size} ({self.workload})"
        )


@dataclass
class ScalingRow:
    """One configuration at one world size, against the same configuration at world size 1.
    `scaling`: weak (`batch_size` per process, the global batch growing with the world
    size) or strong (`batch_size` the global batch, split among the processes)."""

    environment: str
    scaling: str
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
    allreduce_bytes_per_image: float | None = None  # metrics.communication.bytes_per_image
    # The run's gradient buckets at the times an allreduce record of the same environment,
    # backend, world size and dtype measured: seconds per iteration.
    allreduce_s_per_iteration: float | None = None
    # Seconds per iteration lost against linear scaling: t(N) - t(1) (weak), t(N) - t(1)/N
    # (strong), each t the real images per iteration over images/s. None at world size 1
    # or without t(1).
    lost_s_per_iteration: float | None = None


@dataclass
class Comparison:
    baseline: str
    environments: list[str]
    groups: list[Group]
    scaling: list[ScalingRow]

    @property
    def mixed_environments(self) -> bool:
        return len(self.environments) > 1


def variant_order(name: str, baseline: str) -> tuple:
    """Sort key of a variant: the baseline first, then fewer speed-ups before more in the
    registry's order (bench.speedups.variant_rank), then names that are no variant."""
    return (0,) if name == baseline else (1, variant_rank(name))


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
        values = [finite_number(r.quality.get(name)) for r in ok if r.quality]
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
        communication=next((r.communication for r in ok if r.communication), None),
        images_per_iteration=next(
            (r.images_per_iteration for r in ok if r.images_per_iteration), None
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
        value = finite_number(row.quality.get(name)) if row.quality else None
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


def summarise(
    rows: list[Row], baseline: str = "eager", measured: Sequence[Measured] = ()
) -> Comparison:
    """Group rows, summarise every variant and set it against `baseline` in its group;
    `measured`: all-reduce times (bench.analysis.records.load_results) for the scaling."""
    by_group: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        by_group[row.group_key].append(row)
    groups: list[Group] = []
    # Weak before strong within a configuration, the batch and world size growing.
    for key in sorted(
        by_group, key=lambda k: (k[0], k[1], k[2], k[6], k[4], k[7] == "strong", k[3], k[5])
    ):
        members = by_group[key]
        by_variant: dict[str, list[Row]] = defaultdict(list)
        for row in members:
            by_variant[row.variant].append(row)
        summaries = [
            _summarise_variant(name, by_variant[name])
            for name in sorted(by_variant, key=lambda n: variant_order(n, baseline))
        ]
        base = next((s for s in summaries if s.variant == baseline), None)
        if base is not None:
            for summary in summaries:
                _against_baseline(summary, base)
                if summary is not base:
                    summary.parity, summary.parity_note = quality_parity(
                        summary, base, by_variant[summary.variant], by_variant[baseline], baseline
                    )
        env, model, dataset, batch, precision, world, workload, scaling = key
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
                scaling=scaling,
            )
        )
    scaling = _scaling(groups, measured)
    environments = sorted({g.environment for g in groups})
    return Comparison(baseline=baseline, environments=environments, groups=groups, scaling=scaling)


def _scaling(groups: list[Group], measured: Sequence[Measured]) -> list[ScalingRow]:
    """Each configuration measured at two or more world sizes, with its efficiency
    throughput(N) / (N × throughput(1)) in images/s: 1.0 is linear scaling. A series holds
    its batch fixed: the per-process batch under weak scaling, the global one under strong
    (where linear scaling means N processes share one batch N times as fast)."""
    series: dict[tuple, dict[int, float]] = defaultdict(dict)
    summaries: dict[tuple, VariantSummary] = {}
    for group in groups:
        for summary in group.variants:
            if summary.images_per_s is not None:
                series[(*group.config_key, summary.variant)][group.world_size] = (
                    summary.images_per_s
                )
                summaries[(*group.config_key, summary.variant), group.world_size] = summary
    rows: list[ScalingRow] = []
    efficiency: dict[tuple, float | None] = {}
    for key in sorted(series, key=lambda k: (k[0], k[1] == "strong", k)):
        points = series[key]
        if len(points) < 2:
            continue
        single = points.get(1)
        for world in sorted(points):
            efficiency[(key, world)] = points[world] / (world * single) if single else None
            summary = summaries[key, world]
            if world > 1:
                strong = key[1] == "strong"
                single_summary = summaries.get((key, 1))
                _communication(summary, single_summary, key[0], world, measured, strong)
            rows.append(
                ScalingRow(
                    *key,
                    world_size=world,
                    images_per_s=points[world],
                    images_per_s_per_device=points[world] / world,
                    efficiency=efficiency[(key, world)],
                    allreduce_bytes_per_image=summary.allreduce_bytes_per_image,
                    allreduce_s_per_iteration=summary.allreduce_s_per_iteration,
                    lost_s_per_iteration=summary.lost_s_per_iteration,
                )
            )
    for group in groups:
        for summary in group.variants:
            summary.scaling_efficiency = efficiency.get(
                ((*group.config_key, summary.variant), group.world_size)
            )
    return rows


def _iteration_s(summary: VariantSummary) -> float | None:
    if summary.images_per_iteration is None or not summary.images_per_s:
        return None
    return summary.images_per_iteration / summary.images_per_s


def _communication(
    summary: VariantSummary,
    single: VariantSummary | None,
    environment: str,
    world: int,
    measured: Sequence[Measured],
    strong: bool = False,
) -> None:
    """A multi-process summary's all-reduce figures: its bytes per image, the time its
    gradient buckets take at the bandwidth the latest matching allreduce record measured
    (same environment, backend, world size and gradient dtype), and the time per
    iteration it lost against linear scaling, which that all-reduce time may explain:
    t(N) − t(1) when each process keeps its batch (weak), t(N) − t(1)/N when N processes
    share one global batch (strong)."""
    tn, t1 = _iteration_s(summary), _iteration_s(single) if single else None
    ideal = None if t1 is None else (t1 / world if strong else t1)
    summary.lost_s_per_iteration = tn - ideal if tn is not None and ideal is not None else None
    comm = summary.communication
    if comm is None:
        return
    summary.allreduce_bytes_per_image = finite_number(comm.get("bytes_per_image"))
    match = [
        m
        for m in measured
        if (m.environment, m.backend, m.world_size, m.dtype)
        == (environment, comm.get("backend"), world, comm.get("gradient_dtype"))
    ]
    if match:
        summary.allreduce_s_per_iteration = implied_allreduce_s(comm, match[-1].points)


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


def by_environment(comparison: Comparison):
    """(environment, its groups, its scaling rows) per environment: what is shown apart."""
    for env in comparison.environments:
        yield (
            env,
            [g for g in comparison.groups if g.environment == env],
            [r for r in comparison.scaling if r.environment == env],
        )
