"""`gan-bench kernels`: the fused BatchNorm+LeakyReLU op against eager and torch.compile;
with `--convs`, the narrow convolutions against cuDNN and torch.compile; with `--host`,
the fused op's host time against eager's dispatch, on any machine.

The measurements themselves live in ``batchnorm.py`` (do_bench medians, effective
bandwidth over the 5-pass minimum, the copy bandwidth measured in the same process),
``narrow_conv.py`` and ``host.py``; this module picks the cases, turns each row into a
record with its environment, appends it to the results file and prints the table
(``tables.py``).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence

import torch

from bench.config import ConfigError
from bench.kernelbench.tables import (
    print_conv_table,
    print_host_table,
    print_kernel_table,
    print_tuning_table,
)
from bench.telemetry.environment import collect_environment
from bench.telemetry.records import SCHEMA_VERSION, append_record


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
    impls: Sequence[str] | None,
    passes: Sequence[str],
    match: str | None,
    rep_ms: int,
    quiet: bool = False,
    tune: bool = False,
    convs: bool = False,
    host: bool = False,
) -> list[dict]:
    """Benchmark every selected case on the current CUDA device; append one record per row.

    ``tune``: time the fused op alone under each launch tuning of
    ``batchnorm.TUNINGS`` instead (rows say ``"tuned": true``), and print how each
    compares with the default. ``convs``: the narrow convolutions' cases instead (bf16:
    ``dtypes`` is not read), ``tune`` then times their tunings. ``impls``: None for every
    implementation of the benchmark. ``host``: the fused op's
    host time against eager's dispatch instead, on any machine (``host.py``; ``impls``,
    ``passes`` and ``rep_ms`` are not read).

    Raises ConfigError (exit 2) for bad choices, or when no CUDA GPU is present (``host``
    needs none): the Triton interpreter is a correctness tool, never benchmarked.
    """
    if host:
        if tune or convs:
            raise ConfigError(
                "--host measures the fused BatchNorm op alone: not with --tune or --convs"
            )
        return _run_host_benchmarks(out, dtypes, match, quiet)
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
    impls = _pick("--impls", batchnorm.IMPLS if impls is None else impls, batchnorm.IMPLS)
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

    impls = _pick("--impls", convs.CONV_IMPLS if impls is None else impls, convs.CONV_IMPLS)
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


def _run_host_benchmarks(out, dtypes, match, quiet) -> list[dict]:
    from kernels import availability

    if not availability.TRITON_AVAILABLE:
        raise ConfigError("--host needs triton: the fused op's host code names its kernels")
    from bench.kernelbench import batchnorm, host

    dtypes = _pick("--dtypes", dtypes, tuple(batchnorm.DTYPES))
    cases = _selected(match, [c for c in batchnorm.benchmark_cases() if c.dtype in dtypes])
    environment = collect_environment(torch.device("cpu"))
    run_case = functools.partial(host.run_host_case, gpu=host.plan_device())
    rows = _record_all(out, "kernel-host", cases, [{}], lambda case: [run_case(case)], environment)
    if not quiet:
        print_host_table(rows)
    return rows
