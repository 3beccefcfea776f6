"""`gan-bench compare`: variants side by side against a baseline, from result records.

Reads the records (bench.analysis.records: the runs, and the all-reduce times of any
allreduce records among the files, which the scaling table reads), summarises each group
against the baseline (bench.analysis.stats) and prints it in the asked format
(bench.analysis.render); the exit code can flag a speed-up under a threshold or a quality
outside the baseline's spread.
"""

from __future__ import annotations

import math
import sys

from bench.analysis.records import Row, load_results, warn
from bench.analysis.render import (
    format_parity,
    mixed_environment_warning,
    print_table,
    render_csv,
    render_json,
    render_markdown,
)
from bench.analysis.stats import below_threshold, outside_parity, summarise, variant_order
from bench.config import ConfigError

FORMATS = ("table", "markdown", "csv", "json")


def check_baseline(rows: list[Row], baseline: str) -> None:
    """ConfigError, naming the variants present, when no record ran `baseline`."""
    if not any(row.variant == baseline for row in rows):
        present = sorted({row.variant for row in rows}, key=lambda n: variant_order(n, baseline))
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
    rows, measured = load_results(paths)
    if not rows:
        raise ConfigError(f"no usable records in {', '.join(paths)}")
    check_baseline(rows, baseline)
    comparison = summarise(rows, baseline, measured)
    if fmt == "table":
        print_table(comparison)
    else:
        warning = mixed_environment_warning(comparison)
        if warning and fmt == "csv":  # markdown and json carry the flag themselves
            warn(warning)
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
            f"outside {baseline}'s seed-to-seed spread ({format_parity(summary)}), "
            "--fail-on-quality",
            file=sys.stderr,
        )
    return 1 if slow or outside else 0
