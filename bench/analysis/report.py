"""`gan-bench report`: PNG plots and a markdown summary of result records.

Per environment (device name + torch version; numbers from different machines are never
drawn on one axis): each configuration's speed-up over the baseline per variant (the
verdict at a glance: which speed-ups help, next to torch.compile's, with their quality
parity), throughput vs batch size per variant, throughput vs world size with the ideal
linear line, and peak memory vs batch size, one panel per model × precision.
`report.md` embeds them with relative links, adds the compare table and, when records carry
`metrics.sample_grid_path`, each group's sample grids side by side.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from collections import defaultdict
from pathlib import Path

from bench.analysis.compare import check_baseline
from bench.analysis.records import load_results
from bench.analysis.render import mixed_environment_warning, render_markdown
from bench.analysis.stats import (
    COMPILE_REFERENCE,
    Comparison,
    Group,
    VariantSummary,
    by_environment,
    parity_verdict,
    summarise,
    variant_order,
)
from bench.config import ConfigError, batch_label

REPORT_NAME = "report.md"
_MEMORY_LABEL = {
    "peak_allocated_mib": "peak allocated (MiB, GPU)",
    "peak_rss_mib": "peak RSS (MiB, CPU process)",
}

# Characters per line of a speed-up panel's title (9-point text over a panel 6-7 in wide).
_TITLE_WIDTH = 70


def _pyplot():
    """matplotlib.pyplot on the Agg backend: files only, no display needed (CI, servers).
    The backend must be chosen before pyplot is first imported."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "env"


def _panels(groups: list[Group]) -> list[tuple[str, str]]:
    return sorted({(g.model, g.precision) for g in groups})


def _figure(plt, n_panels: int):
    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    # 6.4 in for a lone panel leaves room for the two-line title naming the environment.
    width = max(6.4, 5.2 * cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, 1.0 + 3.9 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat


def _colors(variants: list[str]) -> dict[str, str]:
    palette = [f"C{i}" for i in range(10)]
    return {name: palette[i % len(palette)] for i, name in enumerate(variants)}


def _variants(comparison: Comparison, groups: list[Group]) -> list[str]:
    names = {s.variant for g in groups for s in g.variants}
    return sorted(names, key=lambda n: variant_order(n, comparison.baseline))


def _per_batch_figure(plt, comparison, groups, value, ylabel, title) -> object | None:
    """One panel per model × precision, a line per (variant, dataset, workload) over batch
    size, at the smallest world size measured for that model (1 when present)."""
    panels = _panels(groups)
    colors = _colors(_variants(comparison, groups))
    # synthetic first: it draws solid lines, real data sets dashed ones
    datasets = sorted({g.dataset for g in groups}, key=lambda d: (d != "synthetic", d))
    several_workloads = len({g.workload for g in groups}) > 1
    fig, axes = _figure(plt, len(panels))
    drawn = False
    for ax, (model, precision) in zip(axes, panels, strict=False):
        mine = [g for g in groups if g.model == model and g.precision == precision]
        world = min(g.world_size for g in mine)
        lines: dict[tuple, list] = defaultdict(list)
        top = 0.0
        for group in mine:
            if group.world_size != world:
                continue
            for s in group.variants:
                y = value(group, s)
                if y is not None:
                    key = (s.variant, group.dataset, group.workload)
                    lines[key].append((group.batch_per_process, y, s))
        for (variant, dataset, workload), pts in sorted(lines.items()):
            pts.sort(key=lambda p: p[0])
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            label = variant if len(datasets) == 1 else f"{variant} · {dataset}"
            label += f" · {workload}" if several_workloads else ""
            k = datasets.index(dataset)
            style, marker = ("-", "o") if k == 0 else ("--", "osD^v<>"[k % 7])
            ax.plot(xs, ys, style, marker=marker, color=colors[variant], label=label)
            top = max(top, *ys)
            if value is _throughput:
                lo = [y - (p[2].images_per_s_lo or y) for y, p in zip(ys, pts, strict=True)]
                hi = [(p[2].images_per_s_hi or y) - y for y, p in zip(ys, pts, strict=True)]
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor=colors[variant], capsize=3)
                top = max(top, *(y + h for y, h in zip(ys, hi, strict=True)))
            drawn = True
        _log2_ticks(ax, {g.batch_per_process for g in mine if g.world_size == world})
        ax.set_title(f"{model} · {precision} · {world} proc{'s' if world > 1 else ''}")
        ax.set_xlabel("batch size per process")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if lines:
            ax.legend(fontsize=8)
        ax.set_ylim(0, top * 1.12 or 1.0)  # from zero, headroom for the top point and legend
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if not drawn:
        plt.close(fig)
        return None
    return fig


def _log2_ticks(ax, values) -> None:
    """A base-2 log axis labelled with the measured values as plain numbers (32, not 2^5)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(values))
    ax.get_xaxis().set_major_formatter("{x:g}")
    ax.get_xaxis().set_minor_formatter(NullFormatter())
    if len(values) == 1:  # one tick: give the point some room either side
        (v,) = values
        ax.set_xlim(v / 2, v * 2)


def _throughput(group, s):
    return s.images_per_s


def _memory(group, s):
    return s.memory_mib


def _scaling_figure(plt, comparison, groups, scaling, title) -> object | None:
    """Throughput against world size, a line per (variant, scaling, batch, dataset,
    workload) measured at two or more sizes, with its ideal N × throughput(1) dashed."""
    if not scaling:
        return None
    panels = sorted({(r.model, r.precision) for r in scaling})
    colors = _colors(_variants(comparison, groups))
    fig, axes = _figure(plt, len(panels))
    markers = "osD^v<>p*h"
    several_workloads = len({r.workload for r in scaling}) > 1
    for ax, (model, precision) in zip(axes, panels, strict=False):
        series: dict[tuple, list] = defaultdict(list)
        for r in scaling:
            if r.model == model and r.precision == precision:
                series[(r.variant, r.scaling, r.batch_size, r.dataset, r.workload)].append(r)
        for n, (key, rows) in enumerate(sorted(series.items())):
            variant, kind, batch, dataset, workload = key
            rows.sort(key=lambda r: r.world_size)
            xs = [r.world_size for r in rows]
            ys = [r.images_per_s for r in rows]
            color = colors[variant]
            label = f"{variant} b{batch_label(batch, kind)}"
            label += f" · {dataset}" if dataset != "synthetic" else ""
            label += f" · {workload}" if several_workloads else ""
            ax.plot(xs, ys, "-", marker=markers[n % len(markers)], color=color, label=label)
            single = next((r.images_per_s for r in rows if r.world_size == 1), None)
            if single:
                ax.plot(xs, [single * x for x in xs], ":", color=color, alpha=0.7)
        ax.plot([], [], ":", color="grey", label="ideal: N × throughput(1)")
        _log2_ticks(ax, {r.world_size for r in scaling})
        ax.set_title(f"{model} · {precision}")
        ax.set_xlabel("world size (processes)")
        ax.set_ylabel("images/s (all processes)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# Bar colours of the speed-up figure, by the variant's quality parity (bench.analysis.stats).
_PARITY_COLORS = {"baseline": "C7", "within": "C2", "outside": "C3", None: "C0"}
_PARITY_LABELS = {
    "baseline": "the baseline",
    "within": "quality within the baseline's spread",
    "outside": "quality OUTSIDE the baseline's spread",
    None: "no quality verdict",
}
_BAR_INCHES = 0.32  # height per bar: names of long combined variants stay legible


def _speedup_bars(group: Group) -> list[VariantSummary]:
    """The group's ok variants with a speed-up, slowest first (matplotlib draws bottom-up)."""
    ok = [s for s in group.variants if s.speedup is not None and s.repeats_ok]
    return sorted(ok, key=lambda s: s.speedup)


def _speedup_figure(plt, comparison, groups, title) -> object | None:
    """One panel per configuration with an ok baseline and another ok variant: a horizontal
    bar per ok variant, its speed-up over the baseline (median images/s ratio; whiskers: the
    variant's spread over repeats), fastest on top, coloured by quality parity; lines at 1×
    (the baseline) and at torch.compile's default mode, the reference every speed-up must
    beat."""
    candidates = [(g, _speedup_bars(g)) for g in groups if g.baseline_found]
    panels = [(g, b) for g, b in candidates if len(b) >= 2]
    if not panels:
        return None
    bars = [b for _, b in panels]
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    heights = [
        1.3 + _BAR_INCHES * max(len(b) for b in bars[r * cols : (r + 1) * cols])
        for r in range(rows)
    ]
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(8.5 * cols, 0.8 + sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    used: set = set()  # the colours drawn, for the legend
    for ax, (group, variants) in zip(flat, panels, strict=False):
        base = next(s for s in group.variants if s.variant == comparison.baseline)
        ys = range(len(variants))
        speedups = [s.speedup for s in variants]
        # The baseline has no verdict of its own: it is the band the others are held to.
        verdicts = [
            "baseline" if s.variant == comparison.baseline else parity_verdict(s) for s in variants
        ]
        used.update(verdicts)
        lo = [
            max(0.0, s.speedup - (s.images_per_s_lo or s.images_per_s) / base.images_per_s)
            for s in variants
        ]
        hi = [
            max(0.0, (s.images_per_s_hi or s.images_per_s) / base.images_per_s - s.speedup)
            for s in variants
        ]
        ax.barh(
            list(ys),
            speedups,
            xerr=[lo, hi],
            color=[_PARITY_COLORS[v] for v in verdicts],
            capsize=2,
            height=0.7,
        )
        ax.set_yticks(list(ys))
        ax.set_yticklabels([s.variant for s in variants], fontsize=8)
        right = max(s + h for s, h in zip(speedups, hi, strict=True))
        for y, s, h in zip(ys, variants, hi, strict=True):
            text = f"{s.speedup:.2f}×" + ("" if s.mfu is None else f" · {s.mfu:.0%} MFU")
            ax.text(s.speedup + h + right * 0.015, y, text, va="center", fontsize=7)
        ax.axvline(1.0, color="black", linewidth=0.8)
        compiled = next((s for s in variants if s.variant == COMPILE_REFERENCE), None)
        if compiled is not None and comparison.baseline != COMPILE_REFERENCE:
            ax.axvline(compiled.speedup, color="C1", linestyle=":", linewidth=1.2)
            ax.text(
                compiled.speedup,
                len(variants) - 0.4,
                " torch.compile",
                color="C1",
                fontsize=7,
                va="bottom",
            )
        ax.set_xlim(0, right * 1.4)  # room for the labels right of the longest bar
        ax.set_ylim(-0.6, len(variants) - 0.1)
        ax.set_xlabel(f"speed-up over {comparison.baseline} (images/s ratio)")
        # Wrapped: a configuration's label is longer than a panel is wide.
        ax.set_title(textwrap.fill(group.label, _TITLE_WIDTH, break_on_hyphens=False), fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [
        Patch(color=_PARITY_COLORS[v], label=_PARITY_LABELS[v])
        for v in ("baseline", "within", "outside", None)
        if v in used
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.35 / (0.8 + sum(heights)), 1, 1))  # 0.35 in for the legend
    return fig


def _resolve_grid(path: str, source: str) -> str:
    """A sample-grid path as written in a record: absolute, or relative to the working
    directory of the run, or to the results file's folder; the first that exists."""
    if os.path.isabs(path):
        return path
    for base in (os.getcwd(), os.path.dirname(os.path.abspath(source))):
        candidate = os.path.join(base, path)
        if os.path.exists(candidate):
            return candidate
    return os.path.abspath(path)


def _link(target: str, out_dir: str) -> str:
    rel = os.path.relpath(target, out_dir).replace(os.sep, "/")
    return f"<{rel}>" if any(c in rel for c in " ()<>") else rel


def _sample_grids(comparison: Comparison, out_dir: str) -> list[str]:
    lines: list[str] = []
    for group in comparison.groups:
        cells = []
        for s in group.variants:
            if s.sample_grid_paths:
                _, path, source = s.sample_grid_paths[0]  # the lowest repeat
                cells.append((s.variant, _resolve_grid(path, source)))
        if not cells:
            continue
        lines += [f"**{group.label}** — {group.environment}", ""]
        lines.append("| " + " | ".join(name for name, _ in cells) + " |")
        lines.append("|" + "---|" * len(cells))
        lines.append(
            "| " + " | ".join(f"![{name}]({_link(p, out_dir)})" for name, p in cells) + " |"
        )
        lines.append("")
    return lines


def write_report(paths: list[str], out_dir: str, baseline: str = "eager") -> list[str]:
    """Write the plots and report.md for the records in `paths` into `out_dir` (created);
    return the files written. ConfigError for bad input, before anything is written."""
    rows, measured = load_results(paths)
    if not rows:
        raise ConfigError(f"no usable records in {', '.join(paths)}")
    check_baseline(rows, baseline)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"--out-dir {out_dir!r} exists and is not a directory")
    comparison = summarise(rows, baseline, measured)
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []
    md = ["# gan-bench report", ""]
    md.append("Results: " + ", ".join(f"`{p}`" for p in paths) + f"; baseline `{baseline}`.")
    md.append("")
    warning = mixed_environment_warning(comparison)
    if warning:
        md += [f"> **Warning:** {warning}", ""]
    single_env = len(comparison.environments) == 1
    for env, groups, scaling in by_environment(comparison):
        suffix = "" if single_env else "-" + _slug(env)
        md += [f"## {env}", ""]
        memory_kinds = {g.memory_kind for g in groups}
        memory_label = (
            _MEMORY_LABEL[next(iter(memory_kinds))] if len(memory_kinds) == 1 else "peak MiB"
        )
        figures = [
            (
                f"speedup{suffix}.png",
                f"Speed-up over {baseline}",
                _speedup_figure(
                    plt,
                    comparison,
                    groups,
                    f"speed-up over {baseline} per configuration (bars: spread over repeats)"
                    f"\n{env}",
                ),
                f"no configuration has an ok {baseline} run and another ok variant",
            ),
            (
                f"throughput_vs_batch{suffix}.png",
                "Throughput vs batch size",
                _per_batch_figure(
                    plt,
                    comparison,
                    groups,
                    _throughput,
                    "images/s (median over repeats)",
                    f"throughput vs batch size (bars: spread over repeats)\n{env}",
                ),
                "no ok runs",
            ),
            (
                f"scaling{suffix}.png",
                "Scaling across processes",
                _scaling_figure(
                    plt, comparison, groups, scaling, f"throughput vs world size\n{env}"
                ),
                "one world size per configuration",
            ),
            (
                f"memory_vs_batch{suffix}.png",
                f"Memory vs batch size ({memory_label})",
                _per_batch_figure(
                    plt,
                    comparison,
                    groups,
                    _memory,
                    memory_label,
                    f"{memory_label} vs batch size\n{env}",
                ),
                "no ok runs",
            ),
        ]
        for name, heading, fig, empty in figures:
            md += [f"### {heading}", ""]
            if fig is None:
                md += [f"No data for this plot ({empty}).", ""]
                continue
            path = os.path.join(out_dir, name)
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
            md += [f"![{heading}]({name})", ""]
    md += ["## Compare table", ""]
    md.append(render_markdown(comparison, heading_level=3))
    grids = _sample_grids(comparison, out_dir)
    if grids:
        md += ["## Sample grids", "", "The first repeat of each ok variant, side by side.", ""]
        md += grids
    report_path = os.path.join(out_dir, REPORT_NAME)
    Path(report_path).write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    written.append(report_path)
    return written
