"""`gan-bench kernels`: the fused BatchNorm+LeakyReLU op against eager and torch.compile;
with `--convs`, the narrow convolutions against cuDNN and torch.compile.

The measurements themselves live in ``batchnorm.py`` (do_bench medians, effective
bandwidth over the 5-pass minimum, the copy bandwidth measured in the same process) and
``narrow_conv.py``; this module picks the cases, turns each row into a record with its
environment, appends it to the results file and prints the table.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Sequence

import torch
from rich.console import Console
from rich.table import Table

from bench.config import ConfigError
from bench.environment import collect_environment
from bench.records import SCHEMA_VERSION, append_record


def _pick(flag: str, values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise ConfigError(
            f"{flag} {','.join(values) or '(empty)'}: choose from {', '.join(allowed)}"
        )
    return list(values)


def run_kernel_benchmarks(
    *,
    out: str,
    dtypes: Sequence[str],
    impls: Sequence[str],
    passes: Sequence[str],
    match: str | None,
    rep_ms: int,
    quiet: bool = False,
    tune: bool = False,
    convs: bool = False,
) -> list[dict]:
    """Benchmark every selected case on the current CUDA device; append one record per row.

    ``tune``: time the fused op alone under each launch tuning of
    ``batchnorm.TUNINGS`` instead (rows say ``"tuned": true``), and print how each
    compares with the default. ``convs``: the narrow convolutions' cases instead (bf16:
    ``dtypes`` is not read), ``tune`` then times their tunings.

    Raises ConfigError (exit 2) for bad choices or when no CUDA GPU is present: the
    Triton interpreter is a correctness tool, never benchmarked.
    """
    if not torch.cuda.is_available():
        raise ConfigError(
            "gan-bench kernels needs a CUDA GPU: the Triton interpreter on a CPU is for tests, "
            "its timings mean nothing"
        )
    if convs:
        return _run_conv_benchmarks(out, impls, passes, match, rep_ms, quiet, tune)
    # imports triton; only now that a GPU is known
    from bench.kernelbench import batchnorm, measure

    dtypes = _pick("--dtypes", dtypes, tuple(batchnorm.DTYPES))
    impls = _pick("--impls", impls, batchnorm.IMPLS)
    passes = _pick("--passes", passes, measure.PASSES)
    cases = _selected(match, [c for c in batchnorm.benchmark_cases() if c.dtype in dtypes])
    if tune and "triton" not in impls:
        raise ConfigError("--tune times the fused op: --impls must include triton")
    device = torch.device("cuda", torch.cuda.current_device())
    environment = collect_environment(device)
    copy_gbps = measure.copy_bandwidth_gbps(device)
    run_case = functools.partial(
        batchnorm.run_case, passes=passes, rep_ms=rep_ms, copy_gbps=copy_gbps, device=device
    )
    tunings = batchnorm.TUNINGS if tune else None
    rows = _record_all(out, "kernel", cases, _runs(impls, tunings), run_case, environment)
    if not quiet:
        (print_tuning_table if tune else print_kernel_table)(rows, copy_gbps)
    return rows


def _runs(impls: list[str], tunings) -> list[dict]:
    """The measurements per case: every implementation once, or (tunings given) the
    Triton kernels once per tuning."""
    if tunings is None:
        return [{"impls": impls, "tuning": None}]
    return [{"impls": ["triton"], "tuning": t} for t in tunings]


def _record_all(out: str, kind: str, cases, runs, measure, environment: dict) -> list[dict]:
    """``measure(case, **run)`` for each case and run; every row appended to `out` as a
    record of `kind` as it is measured (a cut-off benchmark keeps what it measured)."""
    session = uuid.uuid4().hex
    records: list[dict] = []
    for case in cases:
        for run in runs:
            for row in measure(case, **run):
                record = {
                    "schema_version": SCHEMA_VERSION,
                    "kind": kind,
                    "session_id": session,
                    **row,
                    "environment": environment,
                }
                append_record(out, record)
                records.append(record)
    return records


def _selected(match: str | None, cases: list) -> list:
    texts = [t.strip() for t in (match or "").split(",") if t.strip()]
    chosen = [c for c in cases if not texts or any(t in c.name for t in texts)]
    if not chosen:
        raise ConfigError(f"--match {match!r} selects no benchmark case")
    return chosen


def _run_conv_benchmarks(out, impls, passes, match, rep_ms, quiet, tune) -> list[dict]:
    from bench.kernelbench import measure
    from bench.kernelbench import narrow_conv as convs

    impls = _pick("--impls", impls, convs.CONV_IMPLS)
    passes = _pick("--passes", passes, measure.PASSES)
    cases = _selected(match, convs.conv_cases())
    if tune and "triton" not in impls:
        raise ConfigError("--tune times the Triton kernels: --impls must include triton")
    device = torch.device("cuda", torch.cuda.current_device())
    environment = collect_environment(device)
    run_case = functools.partial(convs.run_conv_case, passes=passes, rep_ms=rep_ms, device=device)
    tunings = convs.NARROW_TUNINGS if tune else None
    rows = _record_all(out, "narrow-conv", cases, _runs(impls, tunings), run_case, environment)
    if not quiet:
        print_conv_table(rows)
    return rows


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
