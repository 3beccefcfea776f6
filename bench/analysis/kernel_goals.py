"""The fused kernels' goals of `gan-bench goals`: the fused BatchNorm + LeakyReLU op against
eager and torch.compile in one GPU run (kernels.jsonl, `gan-bench kernels`), and its host
path against eager's dispatch on any machine (kernel-host.jsonl, `gan-bench kernels --host`).

Split from bench.analysis.goals, which calls `kernel_goals` and `host_goals` for their
themes.
"""

from __future__ import annotations

from pathlib import Path

from bench.analysis.goals_file import Theme
from bench.analysis.verdict import Verdict, records_of

FORWARD_BACKWARD = "forward+backward"
# The fused op's implementation a goal judges unless it names others: as the op plans.
DEFAULT_IMPLS = ("triton",)


def _kernel_rows(out: Path) -> dict[tuple, dict]:
    """(case, impl, pass) -> the last ok row measured with the op's own launch tuning
    (rows of `gan-bench kernels --tune` are experiments, not the op's figures)."""
    rows = {}
    for record in records_of(out / "kernels.jsonl"):
        if record.get("tuned"):
            continue
        if record.get("status") == "ok" and isinstance(record.get("ms_p50"), (int, float)):
            rows[(record.get("case"), record.get("impl"), record.get("pass"))] = record
    return rows


def _ms(rows: dict[tuple, dict], case: str, impl: str) -> float | None:
    row = rows.get((case, impl, FORWARD_BACKWARD))
    return row["ms_p50"] if row else None


def _device_ms(rows: dict[tuple, dict], case: str, impl: str) -> float | None:
    """The same call replayed from a CUDA graph: its time without the host's."""
    value = rows.get((case, impl, FORWARD_BACKWARD), {}).get("device_ms")
    return value if isinstance(value, (int, float)) and value > 0 else None


def kernel_goals(out: Path, theme: Theme) -> list[Verdict]:
    rows = _kernel_rows(out)
    verdicts = []
    for goal in theme.goals:
        if goal["kind"] == "kernel-small-cases":
            verdicts += _small_case_verdicts(theme, goal, rows)
            continue
        if goal["kind"] == "kernel-device-ratio":
            verdicts.append(_device_ratio_verdict(theme, goal, rows))
            continue
        case, label = goal["case"], goal["label"]
        triton, triton_device = _ms(rows, case, "triton"), _device_ms(rows, case, "triton")
        if goal["kind"] == "kernel-time":
            text = f"{label} fwd+bwd ≤ {goal['max_ms']} ms"
            if triton is None:
                verdicts.append(Verdict(theme.name, text, "not measured", None))
                continue
            # The verdicts go by do_bench's time, the goals' method; where a CUDA graph
            # replayed the call, its device-only figure stands beside (a gap between the
            # two is the host's launch overhead).
            figure = f"{triton:.3f} ms"
            if triton_device:
                figure += f" (device-only {triton_device:.3f} ms)"
            row = rows[(case, "triton", FORWARD_BACKWARD)]
            host, bare = row.get("host_ms"), row.get("host_ms_without_launches")
            if isinstance(host, (int, float)):
                figure += f"; host {host:.3f} ms a call"
                if isinstance(bare, (int, float)):
                    figure += f", {bare:.3f} without its launches"
            verdicts.append(Verdict(theme.name, text, figure, triton <= goal["max_ms"]))
        elif triton is None:
            continue  # the case's time goal says "not measured"
        elif goal["kind"] == "kernel-speedup":
            impl, minimum = goal["over"], goal["min_ratio"]
            text = f"{label} fwd+bwd ≥ {minimum}× {impl}"
            other = _ms(rows, case, impl)
            if other is None:
                verdicts.append(Verdict(theme.name, text, f"no {impl} measurement", None))
                continue
            ratio = other / triton
            figure = f"{ratio:.2f}× ({other:.3f} ms / {triton:.3f} ms)"
            other_device = _device_ms(rows, case, impl)
            if triton_device and other_device:
                figure += f"; device-only {other_device / triton_device:.2f}×"
            verdicts.append(Verdict(theme.name, text, figure, ratio >= minimum))
        else:
            minimum = goal["min_pct_of_copy_bandwidth"]
            text = f"{label} fwd+bwd ≥ {minimum:.0f}% of copy bandwidth"
            pct = rows[(case, "triton", FORWARD_BACKWARD)].get("pct_of_copy_bandwidth")
            if isinstance(pct, (int, float)):
                figure = f"{pct:.0f}%"
                if triton_device and pct > 0:
                    figure += f" (device-only {pct * triton / triton_device:.0f}%)"
                verdicts.append(Verdict(theme.name, text, figure, pct >= minimum))
    return verdicts


def _small_case_verdicts(theme: Theme, goal: dict, rows: dict[tuple, dict]) -> list[Verdict]:
    """Every fused case of the goal's dtype but those it names: faster than eager and
    torch.compile, with the stretch time beside where the goal sets one. With several
    implementations of the fused op (`impls`, default the op as planned), a case is met
    when one of them is faster than both, and the figure says which."""
    impls = tuple(goal.get("impls", DEFAULT_IMPLS))
    stretch = goal.get("stretch_max_ms")
    asks = "fwd+bwd faster than eager and torch.compile"
    if impls != DEFAULT_IMPLS:
        asks = f"fwd+bwd: {' or '.join(impls)} faster than eager and torch.compile"
    cases = sorted(
        {c for c, impl, _ in rows if c and impl in impls and c.endswith(f"-{goal['dtype']}")}
        - set(goal["other_than"])
    )
    verdicts = []
    for case in cases:
        fused = {impl: _ms(rows, case, impl) for impl in impls}
        measured = {impl: ms for impl, ms in fused.items() if ms is not None}
        if not measured:
            continue
        eager, compiled = _ms(rows, case, "eager"), _ms(rows, case, "compile")
        text = f"{case} {asks}"
        times = ", ".join(f"{impl} {ms:.3f} ms" for impl, ms in measured.items())
        if impls == DEFAULT_IMPLS:
            times = f"{fused[impls[0]]:.3f} ms"
        missing = [impl for impl in impls if impl not in measured]
        if eager is None or compiled is None:
            verdicts.append(Verdict(theme.name, text, f"{times}; eager or compile missing", None))
            continue
        figure = f"{times} vs eager {eager:.3f}, compile {compiled:.3f}"
        fastest = min(measured.values())
        if stretch is not None:
            figure += f" (stretch ≤ {stretch} ms: {'met' if fastest <= stretch else 'not'})"
        # The same calls replayed from CUDA graphs: how much of each time is the host's.
        device = {
            impl: (rows.get((case, impl, FORWARD_BACKWARD)) or {}).get("device_ms")
            for impl in (*measured, "eager", "compile")
        }
        if all(isinstance(v, (int, float)) for v in device.values()):
            figure += "; device-only " + ", ".join(f"{i} {v:.3f}" for i, v in device.items())
        winners = [impl for impl, ms in measured.items() if ms < eager and ms < compiled]
        met = bool(winners)
        if len(impls) > 1:
            figure += f"; {', '.join(missing)} not measured" if missing else ""
            if winners:
                figure += f"; met by {' and '.join(winners)}"
            elif missing:
                # Unmeasured, an implementation might have met it: no miss is declared.
                figure, met = figure + f"; not met by {' or '.join(measured)}", None
            else:
                figure += "; met by neither"
        verdicts.append(Verdict(theme.name, text, figure, met))
    if not verdicts:
        text = f"every {goal['dtype']} case but {', '.join(goal['other_than'])} {asks}"
        verdicts.append(Verdict(theme.name, text, "not measured", None))
    return verdicts


def _device_ratio_verdict(theme: Theme, goal: dict, rows: dict[tuple, dict]) -> Verdict:
    """One implementation's device-only time against another's at every case of the dtype
    where both have one: the cases where it holds and those where it does not."""
    impl, over, limit, dtype = goal["impl"], goal["over"], goal["max_ratio"], goal["dtype"]
    text = f"{impl} fwd+bwd device-only ≤ {limit:g}× {over}'s at every {dtype} case of both"
    cases = sorted({c for c, _, _ in rows if c and c.endswith(f"-{dtype}")})
    holds, fails = [], []
    for case in cases:
        mine, theirs = _device_ms(rows, case, impl), _device_ms(rows, case, over)
        if mine is None or theirs is None:
            continue
        # Case names without the dtype the goal's text already says.
        entry = f"{case.removesuffix(f'-{dtype}')} ({mine:.3f} vs {theirs:.3f} ms)"
        (holds if mine <= limit * theirs else fails).append(entry)
    if not holds and not fails:
        return Verdict(theme.name, text, "not measured", None)
    figure = f"no slower at {len(holds)} of {len(holds) + len(fails)}"
    figure += (": " + ", ".join(holds)) if holds else ""
    figure += f"; slower at {len(fails)}" + ((": " + ", ".join(fails)) if fails else "")
    return Verdict(theme.name, text, figure, not fails)


# The host path's records (`gan-bench kernels --host --out OUT/kernel-host.jsonl`).
HOST_RECORDS = "kernel-host.jsonl"
# Each plan of the fused op a kernel-host record measures: its label and its fields' prefix.
HOST_PLANS = {"default plan": "", "one-kernel plan": "one_kernel_"}


def _host_plan(records: dict[str, dict], prefix: str, goal: dict) -> tuple[str, bool]:
    """One plan at every goal case: its worst case's figures, and whether it met the goal
    at every one (a case it has no figures for counts against it)."""
    ratio_limit, launch_limit = goal["max_host_ratio"], goal["max_launches_per_call"]
    measured = {}
    for case, record in records.items():
        ratio, launches = (
            record.get(f"{prefix}host_ratio"),
            record.get(f"{prefix}launches_per_call"),
        )
        if isinstance(ratio, (int, float)) and isinstance(launches, int):
            measured[case] = (ratio, launches, record.get(f"{prefix}host_us"))
    if not measured:
        return "not measured", False
    meets = {c: r <= ratio_limit and n <= launch_limit for c, (r, n, _) in measured.items()}
    # The worst case: one that misses before one that meets, then the highest ratio.
    worst = max(measured, key=lambda c: (not meets[c], measured[c][0]))
    ratio, launches, host_us = measured[worst]
    figure = f"worst {worst} {ratio:.2f}×"
    eager_us = records[worst].get("eager_dispatch_us")
    if isinstance(host_us, (int, float)) and isinstance(eager_us, (int, float)):
        figure += f" ({host_us:.1f} of {eager_us:.1f} µs)"
    figure += f" in {launches} launches, meets at {sum(meets.values())} of {len(records)} cases"
    return figure, len(measured) == len(records) and all(meets.values())


def host_goals(out: Path, theme: Theme) -> list[Verdict]:
    """The fused op's host time per forward + backward, launches stubbed, against eager's
    dispatch-only time (kernel-host records): at every case the records set the goal on
    (`goal_met` not null: DCGAN-64's batch-128 layers and BN1d), by the goal's own figures,
    for the default plan and the one-kernel plan; met when one plan meets it at every one."""
    latest: dict[str, dict] = {}
    for record in records_of(out / HOST_RECORDS):
        if record.get("kind") == "kernel-host" and isinstance(record.get("case"), str):
            latest[record["case"]] = record
    goal_cases = {
        case: r
        for case, r in latest.items()
        if r.get("status") == "ok" and r.get("goal_met") is not None
    }
    # A failed case's record cannot say whether the goal is set on it: each is named.
    failed = sorted(case for case, r in latest.items() if r.get("status") != "ok")
    verdicts = []
    for goal in theme.of_kind("host-ratio"):
        text = (
            f"fused host µs ≤ {goal['max_host_ratio']:g}× eager's dispatch-only µs in ≤ "
            f"{goal['max_launches_per_call']} launches per fwd+bwd, at every goal case"
        )
        if not goal_cases:
            figure = f"failed at {', '.join(failed)}" if failed else "not measured"
            verdicts.append(Verdict(theme.name, text, figure, None))
            continue
        plans = {
            label: _host_plan(goal_cases, prefix, goal) for label, prefix in HOST_PLANS.items()
        }
        met_by = [label for label, (_, met) in plans.items() if met]
        figure = "; ".join(f"{label}: {summary}" for label, (summary, _) in plans.items())
        devices = sorted({str(r.get("plan_device")) for r in goal_cases.values()})
        figure += f"; planned for {', '.join(devices)}"
        met: bool | None = bool(met_by)
        figure += f"; met by the {' and the '.join(met_by)}" if met_by else "; met by neither plan"
        if failed:
            figure += f"; failed at {', '.join(failed)}"
            met = None if met_by else False
        verdicts.append(Verdict(theme.name, text, figure, met))
    return verdicts
