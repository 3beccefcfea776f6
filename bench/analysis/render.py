"""A comparison as text: console tables, markdown, CSV and JSON.

Each format carries the same numbers (bench.analysis.stats): per environment, the main
table (one row per group and variant), the best variant per configuration, and the
scaling across world sizes. Markdown and JSON carry the mixed-environment warning
themselves; the console tables fold a group's configuration into one cell to fit a
terminal.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections import defaultdict
from dataclasses import asdict

from bench.analysis.stats import (
    COMPILE_REFERENCE,
    MIN_PARITY_SEEDS,
    PARITY_FIELDS,
    PARITY_SIGMAS,
    QUALITY_DELTA_FIELDS,
    Best,
    Comparison,
    Group,
    ScalingRow,
    VariantSummary,
    best_variants,
    by_environment,
    parity_verdict,
)
from bench.config import batch_label

_QUALITY_SHORT = {"fd": "fd", "kid_mean": "kid", "precision": "P", "recall": "R", "coverage": "cov"}


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


def format_parity(s: VariantSummary, outside: str = "OUTSIDE") -> str:
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
                    group.batch_text,
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
                    format_parity(summary, outside="**OUTSIDE**"),
                    status,
                ]
            )
    return out


def _headers(comparison: Comparison, groups: list[Group]) -> list[str]:
    return [
        "model",
        "dataset",
        "batch (per proc, or global)",
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
            r.scaling,
            r.model,
            r.dataset,
            str(r.batch_size),
            r.precision,
            r.variant,
            str(r.world_size),
            _fmt_rate(r.images_per_s),
            _fmt_rate(r.images_per_s_per_device),
            "—" if r.efficiency is None else f"{r.efficiency:.0%}",
            *_communication_cells(r),
        ]
        for r in rows
    ]


def format_bytes(value: float | None) -> str:
    """Bytes in KiB, MiB or GiB, one decimal; a dash for None."""
    if value is None:
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:,.1f} {unit}"
    return f"{value:,.0f} B"


def _fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1e3
    return f"{ms:,.1f}" if abs(ms) >= 10 else f"{ms:.3g}"


def _communication_cells(r: ScalingRow) -> list[str]:
    """All-reduce bytes per image, the all-reduce ms per iteration they imply, ms lost."""
    return [
        format_bytes(r.allreduce_bytes_per_image),
        _fmt_ms(r.allreduce_s_per_iteration),
        _fmt_ms(r.lost_s_per_iteration),
    ]


SCALING_HEADERS = [
    "scaling",
    "model",
    "dataset",
    "batch (fixed)",
    "precision",
    "variant",
    "procs",
    "images/s",
    "images/s per proc",
    "efficiency",
    "all-reduce bytes/image",
    "all-reduce ms/iter (bandwidth)",
    "ms/iter lost vs linear",
]
SCALING_NOTE = (
    "weak scaling: the batch per process is fixed; strong scaling: the global batch is fixed, "
    "split among the processes; efficiency = throughput(N) / (N × throughput(1)) in images/s; "
    "100% is linear scaling. All-reduce ms/iter: the run's gradient buckets at the times an "
    "allreduce record measured (same device, torch, backend, processes, dtype; log-log "
    "interpolation between its sizes); lost = t(N) − t(1) (weak) or t(N) − t(1)/N (strong), "
    "t = real images per iteration / images/s"
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
    for env, groups, scaling in by_environment(comparison):
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
            "scaling",
            "global_batch_size",
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
            "allreduce_bytes_per_image",
            "allreduce_s_per_iteration",
            "lost_s_per_iteration",
        ]
    )
    for group in comparison.groups:
        for s in group.variants:
            writer.writerow(
                [
                    group.environment,
                    group.model,
                    group.dataset,
                    group.batch_per_process,
                    group.scaling,
                    group.batch_per_process * group.world_size,
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
                    format_parity(s),
                    *_parity_numbers(s),
                    s.scaling_efficiency,
                    group.baseline_found,
                    s.status,
                    s.reason,
                    s.allreduce_bytes_per_image,
                    s.allreduce_s_per_iteration,
                    s.lost_s_per_iteration,
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
            summary["quality_parity_detail"] = format_parity(s) or None
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
    for env, groups, scaling in by_environment(comparison):
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
                f"{group.model}/{group.dataset}\nbatch {group.batch_text} · "
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
                    cells.append(Text(format_parity(s), style=style))
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
            scale.add_column("scaling")
            scale.add_column("configuration")
            scale.add_column("variant", no_wrap=True)
            for header in ("procs", "images/s", "per proc", "efficiency"):
                scale.add_column(header, justify="right")
            for header in ("all-reduce B/image", "all-reduce ms/iter", "lost ms/iter"):
                scale.add_column(header, justify="right")
            for r in scaling:
                scale.add_row(
                    r.scaling,
                    f"{r.model}/{r.dataset} batch {batch_label(r.batch_size, r.scaling)} · "
                    f"{r.precision}",
                    r.variant,
                    str(r.world_size),
                    _fmt_rate(r.images_per_s),
                    _fmt_rate(r.images_per_s_per_device),
                    "—" if r.efficiency is None else f"{r.efficiency:.0%}",
                    *_communication_cells(r),
                )
            console.print(scale)
