"""The tables `gan-bench kernels` prints: the fused op's cases, its launch tunings against
the default, the narrow convolutions against cuDNN, and the fused op's host time against
eager's dispatch.
"""

from __future__ import annotations

import dataclasses
import sys

from rich.console import Console
from rich.table import Table

__all__ = ["print_conv_table", "print_host_table", "print_kernel_table", "print_tuning_table"]


def print_conv_table(rows: list[dict], console: Console | None = None) -> None:
    """Each image layer, pass and implementation (and tuning): time, useful TFLOP/s and
    speed-up over cuDNN."""
    table = Table(title="Image-layer convolutions, bf16, channels_last")
    for column in ("case", "pass", "impl", "tuning", "ms p50", "useful TFLOP/s", "× cuDNN"):
        table.add_column(column, justify="right" if column[0] in "mu×" else "left")
    for r in rows:
        tuning = r.get("tuning")
        label = ", ".join(f"{k} {v}" for k, v in tuning.items()) if tuning else ""
        head = [r["case"], r["pass"], r["impl"], label]
        if r["status"] != "ok":
            table.add_row(*head, "failed", "", r["reason"][:40])
            continue
        speedup = r.get("speedup_vs_eager")
        table.add_row(
            *head,
            f"{r['ms_p50']:.4f}",
            f"{r['useful_tflops']:.1f}",
            "—" if speedup is None else f"{speedup:.2f}",
        )
    (console or Console()).print(table)


def _tuning_label(tuning: dict) -> str:
    return (
        f"tile {tuning['tile_elems']}, {tuning['programs_per_sm']}/SM, "
        f"{tuning['num_warps']} warps, {tuning['num_stages']} stage(s), "
        f"fused ≤ {tuning['fused_max_tiles']} tiles"
    )


def _device_cell(row: dict) -> str:
    """CUDA-graph replay time: blank where not measured (other passes), "—" if not captured."""
    if row.get("device_ms") is not None:
        return f"{row['device_ms']:.4f}"
    return "—" if (row.get("device_ms_reason") or "").startswith("not captured") else ""


def _host_cell(row: dict) -> str:
    """Host time per call, and for the fused op without its launches: blank where not
    measured (other passes)."""
    if row.get("host_ms") is None:
        return ""
    text = f"{row['host_ms']:.4f}"
    if row.get("host_ms_without_launches") is not None:
        text += f" ({row['host_ms_without_launches']:.4f})"
    return text


def print_tuning_table(rows: list[dict], copy_gbps: float, console: Console | None = None) -> None:
    """Each tuning's time per case and pass, and its speed-up over the default tuning."""
    from kernels.batchnorm.plan import DEFAULT_TUNING

    table = Table(title=f"Fused op launch tunings, copy bandwidth {copy_gbps:,.0f} GB/s")
    for column in ("case", "pass", "tuning", "ms p50", "device ms", "% copy", "× default"):
        table.add_column(column, justify="right" if column[0] in "md%×" else "left")
    ok = [r for r in rows if r["status"] == "ok"]
    default_tuning = dataclasses.asdict(DEFAULT_TUNING)
    default = {(r["case"], r["pass"]): r["ms_p50"] for r in ok if r["tuning"] == default_tuning}
    for r in rows:
        head = [r["case"], r["pass"], _tuning_label(r["tuning"])]
        if r["status"] != "ok":
            table.add_row(*head, "failed", "", "", r["reason"][:40])
            continue
        reference = default.get((r["case"], r["pass"]))
        table.add_row(
            *head,
            f"{r['ms_p50']:.4f}",
            _device_cell(r),
            f"{r['pct_of_copy_bandwidth']:.0f}",
            "—" if reference is None else f"{reference / r['ms_p50']:.2f}",
        )
    (console or Console()).print(table)


def print_kernel_table(rows: list[dict], copy_gbps: float, console: Console | None = None) -> None:
    """Each case, pass and implementation: do_bench and CUDA-graph times, host time (and the
    fused op's without its launches, in brackets), bandwidth, speed-up."""
    table = Table(title=f"BatchNorm+LeakyReLU, copy bandwidth {copy_gbps:,.0f} GB/s")
    for column in (
        "case",
        "dtype",
        "layout",
        "pass",
        "impl",
        "ms p50",
        "device ms",
        "host ms",
        "GB/s",
        "% copy",
        "× eager",
    ):
        table.add_column(column, justify="right" if column[0] in "mdhG%×" else "left")
    for r in rows:
        head = [r["case"], r["dtype"], r["layout"], r["pass"], r["impl"]]
        if r["status"] != "ok":
            table.add_row(*head, "failed", "", "", "", "", r["reason"][:40])
            continue
        speedup = r.get("speedup_vs_eager")
        table.add_row(
            *head,
            f"{r['ms_p50']:.4f}",
            _device_cell(r),
            _host_cell(r),
            f"{r['gb_per_s']:,.0f}",
            f"{r['pct_of_copy_bandwidth']:.0f}",
            "—" if speedup is None else f"{speedup:.2f}",
        )
    (console or Console()).print(table)


def print_host_table(rows: list[dict], console: Console | None = None) -> None:
    """Each case: the fused op's host µs per forward + backward with its launches stubbed,
    eager's dispatch µs, their ratio, launches per call, and whether the goal holds (blank
    where none is set); with the interpreter's plan too where the kernels are interpreted."""
    from bench.kernelbench.host import host_goal

    max_ratio, max_launches = host_goal()

    ok = [r for r in rows if r["status"] == "ok"]
    plan = ok[0]["plan_device"] if ok else "a GPU"
    interpreted = any(r.get("interpreter_host_us") is not None for r in ok)
    table = Table(
        title=f"Host µs per forward + backward: the fused op (launches stubbed, planned for "
        f"{plan}) against eager's dispatch; goal: ratio ≤ {max_ratio}, ≤ {max_launches} launches"
    )
    columns = ["case", "host µs", "eager µs", "ratio", "launches", "goal",
               "one-kernel µs (launches)", "goal"]  # fmt: skip
    if interpreted:
        columns.append("interpreter's plan µs (launches)")
    for column in columns:
        left = column in ("case", "goal")
        table.add_column(column, justify="left" if left else "right", no_wrap=column == "case")
    for r in rows:
        if r["status"] != "ok":
            table.add_row(r["case"], "failed", "", "", "", r["reason"][:40])
            continue
        verdict = {True: "met", False: "missed", None: ""}
        cells = [
            r["case"],
            f"{r['host_us']:.1f}",
            f"{r['eager_dispatch_us']:.1f}",
            f"{r['host_ratio']:.2f}",
            str(r["launches_per_call"]),
            verdict[r["goal_met"]],
            f"{r['one_kernel_host_us']:.1f} ({r['one_kernel_launches_per_call']})",
            verdict[r["one_kernel_goal_met"]],
        ]
        if interpreted:
            cells.append(
                f"{r['interpreter_host_us']:.1f} ({r['interpreter_launches_per_call']})"
                if r.get("interpreter_host_us") is not None
                else ""
            )
        table.add_row(*cells)
    (console or Console(width=None if sys.stdout.isatty() else 160)).print(table)
