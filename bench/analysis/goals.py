"""`gan-bench goals`: each performance goal of results/goals.json, met or missed, from the
records .ci/measure-gpu wrote into a folder; the verdicts go to the folder's goals.md.

Reads whatever of these the folder holds (a goal whose records are missing says "not
measured"): device-rates.json (copy bandwidth, bf16 matmul rate), eager-dcgan64.jsonl (the
eager reference points), eager-why.jsonl (why they leave the reference ranges: batch 128
profiled, batch 1024 without cuDNN autotuning), kernels.jsonl (the fused kernels),
kernel-host.jsonl (the fused op's host time against eager's dispatch, measured on any
machine), sweep.jsonl (the goal sweeps and the default GPU grid: the best variant against
eager and torch.compile in the same sweep), parity.jsonl (quality parity), profile.jsonl
(where the time of an iteration goes at each goal point: what a missed goal is explained
by).
Speed-ups and groups are `gan-bench compare`'s own (bench.analysis.stats), so the verdicts
and the compare table cannot disagree. The kernels' goals are judged in
bench.analysis.kernel_goals, each verdict a bench.analysis.verdict.Verdict.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from bench.analysis.goals_file import Theme, load_goals
from bench.analysis.kernel_goals import host_goals, kernel_goals
from bench.analysis.records import load_rows
from bench.analysis.stats import (
    Best,
    Comparison,
    Group,
    VariantSummary,
    best_variants,
    parity_verdict,
    summarise,
)
from bench.analysis.verdict import Verdict, records_of
from bench.config import ConfigError

GOALS_REPORT = "goals.md"


def _rates(out: Path) -> dict:
    path = out / "device-rates.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _where(rate: float, lo: float, hi: float) -> str:
    """A rate against a reference range: "in range", "below" or "above"."""
    return "in range" if lo <= rate <= hi else ("below" if rate < lo else "above")


def _metric(records: list[dict], name: str) -> list[float]:
    values = [(r.get("metrics") or {}).get(name) for r in records]
    return [v for v in values if isinstance(v, (int, float))]


def _eager_reference(out: Path, theme: Theme) -> list[Verdict]:
    model, model_name = theme.fields["model"], theme.fields["model_name"]
    by_point: dict[tuple, list[dict]] = {}
    for record in records_of(out / "eager-dcgan64.jsonl"):
        cfg = record.get("config") or {}
        if record.get("status") == "ok" and cfg.get("model") == model:
            by_point.setdefault((cfg.get("batch_size"), cfg.get("precision")), []).append(record)
    verdicts = []
    for goal in theme.goals:
        batch, precision = goal["batch_size"], goal["precision"]
        records = by_point.get((batch, precision), [])
        rates = _metric(records, "images_per_s")
        if goal["kind"] == "eager-peak-memory":
            # Judged beside the point's throughput: no verdict where that has none.
            ref, peaks = goal["peak_allocated_mib"], _metric(records, "peak_allocated_mib")
            if rates and peaks:
                peak = statistics.median(peaks)
                near = abs(peak - ref) <= goal["tolerance"] * ref
                text = f"eager {model_name} b{batch} {precision} peak allocated: about {ref} MiB"
                verdicts.append(Verdict(theme.name, text, f"{peak:.0f} MiB", near))
            continue
        lo, hi = goal["images_per_s"]
        text = f"eager {model_name} b{batch} {precision}: {lo / 1e3:.1f}–{hi / 1e3:.1f} k img/s"
        if not records:
            verdicts.append(Verdict(theme.name, text, "not measured", None))
            continue
        if not rates:
            verdicts.append(Verdict(theme.name, text, "no throughput in the ok records", None))
            continue
        rate = statistics.median(rates)
        figure = f"{rate / 1e3:.1f} k img/s ({_where(rate, lo, hi)})"
        verdicts.append(Verdict(theme.name, text, figure, lo <= rate <= hi))
    return verdicts + _eager_diagnosis(out, theme)


def _eager_diagnosis(out: Path, theme: Theme) -> list[Verdict]:
    """What the eager-why runs say (no verdict of their own: they explain the ones above).
    Batch 128 profiled: the share of an iteration the device sat idle, waiting on the host.
    Batch 1024 without cuDNN autotuning: its throughput against the reference range."""
    model, model_name = theme.fields["model"], theme.fields["model_name"]
    ranges = {
        (g["batch_size"], g["precision"]): g["images_per_s"]
        for g in theme.of_kind("eager-throughput")
    }
    rows = []
    for record in records_of(out / "eager-why.jsonl"):
        cfg, metrics = record.get("config") or {}, record.get("metrics") or {}
        if record.get("status") != "ok" or cfg.get("model") != model:
            continue
        point = f"eager {model_name} b{cfg.get('batch_size')} {cfg.get('precision')}"
        profile = record.get("profile") or {}
        idle = profile.get("device_idle_fraction")
        busy = profile.get("device_busy_ms_per_iteration")
        wall = profile.get("wall_ms_per_iteration")
        if isinstance(idle, (int, float)) and isinstance(busy, (int, float)) and wall:
            rows.append(
                Verdict(
                    theme.name,
                    f"why: {point}, device busy and idle under the profiler",
                    f"idle {idle:.0%} of an iteration (busy {busy:.2f} of {wall:.2f} ms,"
                    f" {profile.get('kernel_launches_per_iteration', 0):.0f} kernels)",
                    None,
                )
            )
        rate = metrics.get("images_per_s")
        reference = ranges.get((cfg.get("batch_size"), cfg.get("precision")))
        if cfg.get("cudnn_benchmark") is False and isinstance(rate, (int, float)) and reference:
            lo, hi = reference
            rows.append(
                Verdict(
                    theme.name,
                    f"why: {point} without cuDNN autotuning",
                    f"{rate / 1e3:.1f} k img/s ({_where(rate, lo, hi)})",
                    None,
                )
            )
    return rows


def _comparison(path: Path) -> Comparison | None:
    return summarise(load_rows([str(path)])) if path.is_file() else None


def _is_goal_point(group: Group, model: str, batch: int, precision: str) -> bool:
    """A single-GPU group at one point in the goals' precision."""
    point = (group.model, group.batch_size, group.precision)
    return (
        group.device_type == "cuda" and group.world_size == 1 and point == (model, batch, precision)
    )


def _at_goal_point(bests: list[Best], model: str, batch: int, precision: str) -> list[Best]:
    """The best variants of the single-GPU groups in the goals' precision at one point."""
    return [b for b in bests if _is_goal_point(b.group, model, batch, precision)]


def best_variant(out: Path, model: str, batch: int, precision: str) -> str | None:
    """The fastest variant of sweep.jsonl at a single-GPU point, or None: the variant whose
    figure a goal's verdict gives, so the one whose profile says where a missed goal's time
    goes."""
    comparison = _comparison(out / "sweep.jsonl")
    found = _at_goal_point(best_variants(comparison), model, batch, precision) if comparison else []
    return found[0].variant.variant if found else None


def _end_to_end_goals(out: Path, theme: Theme) -> list[Verdict]:
    precision = theme.fields["precision"]
    comparison = _comparison(out / "sweep.jsonl")
    all_best = best_variants(comparison) if comparison else []
    matmul = _rates(out).get("matmul_bf16_tflops")
    mfu_goals = {(g["model"], g["batch_size"]): g for g in theme.of_kind("best-mfu")}
    verdicts = []
    for goal in theme.of_kind("best-speedup"):
        model, batch, minimum = goal["model"], goal["batch_size"], goal["min_speedup"]
        text = f"{model} b{batch} {precision}: best variant ≥ {minimum:g}× eager"
        found = _at_goal_point(all_best, model, batch, precision)
        if not found:
            verdicts.append(Verdict(theme.name, text, "not measured", None))
        for b in found:
            if b.variant.speedup is None:
                figure = f"{b.variant.variant}; eager not ok"
                verdicts.append(Verdict(theme.name, text, figure, None))
                continue
            figure = f"{b.variant.variant}: {b.variant.speedup:.2f}× ({b.group.workload})"
            verdicts.append(Verdict(theme.name, text, figure, b.variant.speedup >= minimum))
            mfu_goal = mfu_goals.get((model, batch))
            if mfu_goal is not None:
                verdicts.append(_mfu_verdict(theme, mfu_goal, b, matmul))
    for goal in theme.of_kind("variant-speedup"):
        verdicts += _variant_verdicts(theme, goal, comparison)
    for goal in theme.of_kind("best-vs-compile"):
        minimum = goal["min_ratio"]
        for b in all_best:
            if b.group.device_type != "cuda":
                continue
            text = f"{b.group.label}: best ≥ {minimum:g}× torch.compile"
            if b.vs_compile is None:
                figure = f"{b.variant.variant}; no compile run"
                verdicts.append(Verdict(theme.name, text, figure, None))
                continue
            figure = f"{b.variant.variant}: {b.vs_compile:.2f}× compile"
            verdicts.append(Verdict(theme.name, text, figure, b.vs_compile >= minimum))
    return verdicts + _not_run(theme, comparison)


def _variant_verdicts(theme: Theme, goal: dict, comparison: Comparison | None) -> list[Verdict]:
    """One variant against eager at a single-GPU point of the goals' precision: its speed-up
    as the compare table gives it, in each group (workload) that ran it."""
    model, batch, variant = goal["model"], goal["batch_size"], goal["variant"]
    precision, minimum = theme.fields["precision"], goal["min_speedup"]
    text = f"{model} b{batch} {precision}: {variant} ≥ {minimum:g}× eager"
    verdicts = []
    for group in comparison.groups if comparison else []:
        summary = next((s for s in group.variants if s.variant == variant), None)
        if summary is None or not _is_goal_point(group, model, batch, precision):
            continue
        base = next((s for s in group.variants if s.variant == comparison.baseline), None)
        if summary.speedup is None:
            # No throughput of its own (not ok, or shared the device), or none of eager's.
            figure = summary.status if summary.images_per_s is None else "eager not ok"
            if summary.images_per_s is None and summary.reason:
                figure += f": {summary.reason[:160]}"
            verdicts.append(Verdict(theme.name, text, f"{figure} ({group.workload})", None))
            continue
        figure = (
            f"{summary.speedup:.2f}× ({summary.images_per_s / 1e3:.1f} k img/s against eager's "
            f"{base.images_per_s / 1e3:.1f} k; {group.workload})"
        )
        verdicts.append(Verdict(theme.name, text, figure, summary.speedup >= minimum))
    return verdicts or [Verdict(theme.name, text, "not measured", None)]


def _mfu_verdict(theme: Theme, goal: dict, best: Best, matmul) -> Verdict:
    """The best variant's MFU on the goal's own basis: its images/s times the goal's FLOPs
    per image, over the matmul rate measured on the card (not the datasheet's)."""
    minimum, gflop = goal["min_mfu"], goal["gflop_per_image"]
    text = (
        f"{goal['model']} b{goal['batch_size']} {theme.fields['precision']}: "
        f"best variant ≥ {minimum:.0%} MFU"
    )
    if not isinstance(matmul, (int, float)) or not math.isfinite(matmul):
        return Verdict(theme.name, text, "no measured matmul rate", None)
    rate = best.variant.images_per_s
    tflops = rate * gflop / 1e3
    mfu = tflops / matmul
    figure = (
        f"{mfu:.1%} ({rate / 1e3:.1f} k img/s × {gflop} GFLOP = {tflops:.0f} TFLOP/s of "
        f"{matmul:.0f} measured)"
    )
    if best.variant.mfu is not None:
        figure += f"; the record's own MFU (counted FLOPs, datasheet peak) {best.variant.mfu:.1%}"
    return Verdict(theme.name, text, figure, mfu >= minimum)


def _not_run(theme: Theme, comparison: Comparison | None) -> list[Verdict]:
    """The variants of the GPU sweeps that did not run ok: no verdict of their own, but a
    best variant is only best among those that ran."""
    verdicts = []
    for group in comparison.groups if comparison else []:
        if group.device_type != "cuda":
            continue
        for summary in group.variants:
            if summary.repeats_ok < summary.repeats_total and summary.status != "skipped":
                reason = (summary.reason or "")[:160]
                figure = f"{summary.status}" + (f": {reason}" if reason else "")
                text = f"{group.label}: {summary.variant} did not run ok"
                verdicts.append(Verdict(theme.name, text, figure, None))
    return verdicts


def _parity_goals(out: Path, theme: Theme) -> list[Verdict]:
    if not theme.of_kind("quality-parity"):
        return []
    comparison = _comparison(out / "parity.jsonl")
    if comparison is None:
        text = "quality parity of every variant (FD, KID)"
        return [Verdict(theme.name, text, "not measured", None)]
    verdicts = []
    for group in comparison.groups:
        for summary in group.variants:
            if summary.variant == comparison.baseline:
                continue
            verdict = parity_verdict(summary)
            text = f"{group.label}: {summary.variant} within eager's seed spread"
            met = {"within": True, "outside": False}.get(verdict)
            figure = _parity_figure(summary) if verdict else (summary.parity_note or summary.status)
            verdicts.append(Verdict(theme.name, text, figure, met))
    return verdicts


def _parity_figure(summary: VariantSummary) -> str:
    parts = []
    for name, entry in summary.parity.items():
        if entry.get("verdict") is None:
            continue
        if entry.get("variant_mean") is None or not entry.get("band"):
            parts.append(f"{name} {entry['verdict']} ({entry.get('reason')})")
            continue
        lo, hi = entry["band"]
        parts.append(
            f"{name} {entry['variant_mean']:.4g} in [{lo:.4g}, {hi:.4g}]: {entry['verdict']}"
        )
    return "; ".join(parts)


_JUDGES = {
    "eager reference": _eager_reference,
    "fused kernels": kernel_goals,
    "host path": host_goals,
    "end to end": _end_to_end_goals,
    "quality parity": _parity_goals,
}


def judge(out: Path, themes: list[Theme]) -> list[Verdict]:
    """Every goal of `themes` against the records in `out`, theme by theme."""
    return [verdict for theme in themes for verdict in _JUDGES[theme.name](out, theme)]


# Kernels listed per profiled point; C++ kernel names are shortened to this many characters.
PROFILE_TOP_KERNELS = 5
PROFILE_NAME_CHARS = 60


def _short(name: str) -> str:
    name = name.replace("|", "/")  # a markdown table cell
    return name if len(name) <= PROFILE_NAME_CHARS else name[: PROFILE_NAME_CHARS - 1] + "…"


def profile_lines(out: Path) -> list[str]:
    """Where the time goes at each profiled point (profile.jsonl, `--profile-steps`): the
    iteration under the profiler, the device's busy and idle share, the kernel launches,
    and the kernels that take the most device time."""
    records = records_of(out / "profile.jsonl")
    if not records:
        return []
    lines = ["", "## Where the time goes (profiles)", ""]
    for record in records:
        cfg = record.get("config") or {}
        point = " ".join(
            str(v) for v in (cfg.get("model"), f"b{cfg.get('batch_size')}", cfg.get("variant"))
        )
        profile = record.get("profile")
        if record.get("status") != "ok" or not isinstance(profile, dict):
            lines += [f"**{point}**: {record.get('status')}: {record.get('reason')}", ""]
            continue
        if "error" in profile:
            lines += [f"**{point}**: profiler failed: {profile['error']}", ""]
            continue
        rate = (record.get("metrics") or {}).get("images_per_s")
        head = f"**{point}**"
        if isinstance(rate, (int, float)):
            head += f": {rate / 1e3:.1f} k img/s unprofiled"
        wall = profile.get("wall_ms_per_iteration")
        busy = profile.get("device_busy_ms_per_iteration")
        idle = profile.get("device_idle_fraction")
        launches = profile.get("kernel_launches_per_iteration")
        if isinstance(wall, (int, float)):
            head += f"; under the profiler {wall:.3f} ms per iteration"
        if isinstance(busy, (int, float)) and isinstance(idle, (int, float)):
            head += f", device busy {busy:.3f} ms (idle {idle:.0%})"
        if isinstance(launches, (int, float)):
            head += f", {launches:.0f} kernels per iteration"
        lines += [head + ".", ""]
        kernels = profile.get("top_kernels") or []
        if kernels:
            lines += ["| kernel | share | ms/iteration | calls/iteration |", "|---|---|---|---|"]
            lines += [
                f"| {_short(k['name'])} | {k['share']:.1%} | {k['ms_per_iteration']:.3f} | "
                f"{k['calls_per_iteration']:g} |"
                for k in kernels[:PROFILE_TOP_KERNELS]
            ]
            lines.append("")
    return lines


def render(verdicts: list[Verdict], out: Path) -> str:
    """goals.md: the device's measured rates, a row per verdict, then the profiles."""
    rates = _rates(out)
    lines = ["# Goals, met or missed", ""]
    if rates:
        lines += [
            f"Device {rates.get('device_name', '?')}: copy "
            f"{rates.get('copy_gb_per_s', float('nan')):.0f} GB/s, bf16 matmul "
            f"{rates.get('matmul_bf16_tflops', float('nan')):.0f} TFLOP/s (measured).",
            "",
        ]
    lines += ["| theme | goal | figure | verdict |", "|---|---|---|---|"]
    lines += [f"| {v.theme} | {v.goal} | {v.figure} | {v.mark} |" for v in verdicts]
    lines += profile_lines(out)
    return "\n".join(lines).rstrip("\n") + "\n"


def goals_command(out_dir: str, best: tuple[str, int] | None = None) -> None:
    """`gan-bench goals`: print the verdicts and write them to OUT_DIR/goals.md; with
    `best` (model, batch), print only the fastest variant sweep.jsonl holds at that goal
    point, or an empty line: the variant to profile. ConfigError for a folder that is not
    one, or a goals file that cannot be used."""
    out = Path(out_dir)
    if not out.is_dir():
        raise ConfigError(f"{out_dir!r} is not a folder (give the one .ci/measure-gpu wrote)")
    themes = load_goals()
    if best is not None:
        end_to_end = next((t for t in themes if t.name == "end to end"), None)
        if end_to_end is None:
            raise ConfigError("the goals file has no end-to-end goals: no goal points")
        model, batch = best
        print(best_variant(out, model, batch, end_to_end.fields["precision"]) or "")
        return
    text = render(judge(out, themes), out)
    (out / GOALS_REPORT).write_text(text, encoding="utf-8")
    print(text, end="")
