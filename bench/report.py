"""`gan-bench report`: PNG plots and a markdown summary of result records.

Per environment (device name + torch version; numbers from different machines are never
drawn on one axis): throughput vs batch size per variant, throughput vs world size with
the ideal linear line, and peak memory vs batch size, one panel per model × precision.
`report.md` embeds them with relative links, adds the compare table (bench.compare) and,
when records carry `metrics.sample_grid_path`, each group's sample grids side by side.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from pathlib import Path

from bench import compare
from bench.config import ConfigError

REPORT_NAME = "report.md"
_MEMORY_LABEL = {
    "peak_allocated_mib": "peak allocated (MiB, GPU)",
    "peak_rss_mib": "peak RSS (MiB, CPU process)",
}


def _pyplot():
    """matplotlib.pyplot on the Agg backend: files only, no display needed (CI, servers).
    The backend must be chosen before pyplot is first imported."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "env"


def _panels(groups: list[compare.Group]) -> list[tuple[str, str]]:
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


def _variants(comparison: compare.Comparison, groups: list[compare.Group]) -> list[str]:
    names = {s.variant for g in groups for s in g.variants}
    return sorted(names, key=lambda n: compare._variant_order(n, comparison.baseline))


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
                    lines[key].append((group.batch_size, y, s))
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
        _log2_ticks(ax, {g.batch_size for g in mine if g.world_size == world})
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
    """Throughput against world size, a line per (variant, batch, dataset, workload)
    measured at two or more sizes, with its ideal N × throughput(1) dashed."""
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
                series[(r.variant, r.batch_size, r.dataset, r.workload)].append(r)
        for n, ((variant, batch, dataset, workload), rows) in enumerate(sorted(series.items())):
            rows.sort(key=lambda r: r.world_size)
            xs = [r.world_size for r in rows]
            ys = [r.images_per_s for r in rows]
            color = colors[variant]
            label = f"{variant} b{batch}" + (f" · {dataset}" if dataset != "synthetic" else "")
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


def _sample_grids(comparison: compare.Comparison, out_dir: str) -> list[str]:
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
    rows = compare.load_rows(paths)
    if not rows:
        raise ConfigError(f"no usable records in {', '.join(paths)}")
    compare.check_baseline(rows, baseline)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConfigError(f"--out-dir {out_dir!r} exists and is not a directory")
    comparison = compare.summarise(rows, baseline)
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []
    md = ["# gan-bench report", ""]
    md.append("Results: " + ", ".join(f"`{p}`" for p in paths) + f"; baseline `{baseline}`.")
    md.append("")
    warning = compare.mixed_environment_warning(comparison)
    if warning:
        md += [f"> **Warning:** {warning}", ""]
    single_env = len(comparison.environments) == 1
    for env, groups, scaling in compare._by_environment(comparison):
        suffix = "" if single_env else "-" + _slug(env)
        md += [f"## {env}", ""]
        memory_kinds = {g.memory_kind for g in groups}
        memory_label = (
            _MEMORY_LABEL[next(iter(memory_kinds))] if len(memory_kinds) == 1 else "peak MiB"
        )
        figures = [
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
            ),
            (
                f"scaling{suffix}.png",
                "Scaling across processes",
                _scaling_figure(
                    plt, comparison, groups, scaling, f"throughput vs world size\n{env}"
                ),
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
            ),
        ]
        for name, heading, fig in figures:
            md += [f"### {heading}", ""]
            if fig is None:
                md += [
                    "No data for this plot (no ok runs, or one world size per configuration).",
                    "",
                ]
                continue
            path = os.path.join(out_dir, name)
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
            md += [f"![{heading}]({name})", ""]
    md += ["## Compare table", ""]
    md.append(compare.render_markdown(comparison, heading_level=3))
    grids = _sample_grids(comparison, out_dir)
    if grids:
        md += ["## Sample grids", "", "The first repeat of each ok variant, side by side.", ""]
        md += grids
    report_path = os.path.join(out_dir, REPORT_NAME)
    Path(report_path).write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    written.append(report_path)
    return written
