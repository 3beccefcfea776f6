"""Each measured goal of the open issues, met or missed, from what .ci/measure-gpu wrote.

    python3 -m bench.analysis.goals OUT_DIR     (prints the verdicts; writes OUT_DIR/goals.md)
    python3 -m bench.analysis.goals --best OUT_DIR MODEL BATCH
                                     (prints the fastest variant sweep.jsonl holds at that
                                     single-GPU bf16 point, or nothing: what to profile)

Reads whatever of these OUT_DIR holds (a goal whose records are missing says "not
measured"): device-rates.json (copy bandwidth, bf16 matmul rate), eager-dcgan64.jsonl
(issue 2's eager reference points), eager-why.jsonl (why they leave the reference ranges:
batch 128 profiled, batch 1024 without cuDNN autotuning), kernels.jsonl (issue 3's kernel
goals), sweep.jsonl (the goal sweeps and the default GPU grid: issue 6's end-to-end goals,
the best variant against eager and torch.compile in the same sweep), parity.jsonl (issue
6's quality parity), profile.jsonl (where the time of an iteration goes at each goal point:
what a missed goal is explained by). Speed-ups and groups are `gan-bench compare`'s own
(bench.analysis.stats), so the verdicts and the compare table cannot disagree.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.analysis import records, stats
from bench.records import read_records

# Issue 2: eager DCGAN-64 on one H100, torch 2.11, synthetic data (images/s ranges), and
# the peak allocated memory at batch 128 bf16 ("about 290 MiB": within a quarter).
EAGER_REFERENCE = {
    (128, "fp32"): (12_900, 15_700),
    (128, "bf16"): (12_900, 15_700),
    (1024, "bf16"): (36_700, 39_400),
}
EAGER_PEAK_MIB_B128_BF16 = 290
EAGER_PEAK_TOLERANCE = 0.25

# Issue 3: the fused op, forward + backward, same run as eager and torch.compile.
LARGE_CASE = "large-64x64x64-nchw"
LARGE_BF16_MAX_MS = 0.45
LARGE_FP32_MAX_MS = 0.8
LARGE_MIN_VS_COMPILE = 1.7
LARGE_MIN_VS_EAGER = 6.0
LARGE_MIN_PCT_COPY = 50.0
SMALL_STRETCH_MS = 0.05

# Issue 6: best variant against eager at the goal points (bf16, one GPU), the MFU goal on
# the issue's own basis (2.48 GFLOP per DCGAN-64 image, torch.utils.flop_counter with D's
# weight gradients in the G update; over the bf16 matmul rate measured on the card), and
# the best variant against torch.compile default at every point of the GPU sweep.
END_TO_END = (
    ("dcgan64", 128, 4.0),
    ("dcgan64", 1024, 3.0),
    ("mlp", 512, 10.0),
)
DCGAN64_GFLOP_PER_IMAGE = 2.48
MFU_GOAL = (("dcgan64", 1024), 0.35)
MIN_VS_COMPILE = 2.0


@dataclass
class Verdict:
    issue: int
    goal: str
    figure: str
    met: bool | None  # None: not measured, or a reference range rather than a goal

    @property
    def mark(self) -> str:
        return {True: "met", False: "MISSED", None: "—"}[self.met]


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [r for _, r in read_records(str(path)) if isinstance(r, dict)]


def _rates(out: Path) -> dict:
    path = out / "device-rates.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _where(rate: float, lo: float, hi: float) -> str:
    """A rate against a reference range: "in range", "below" or "above"."""
    return "in range" if lo <= rate <= hi else ("below" if rate < lo else "above")


def eager_reference(out: Path) -> list[Verdict]:
    verdicts = []
    by_point: dict[tuple, list[dict]] = {}
    for record in _records(out / "eager-dcgan64.jsonl"):
        cfg = record.get("config") or {}
        if record.get("status") == "ok" and cfg.get("model") == "dcgan64":
            by_point.setdefault((cfg.get("batch_size"), cfg.get("precision")), []).append(record)
    for (batch, precision), (lo, hi) in EAGER_REFERENCE.items():
        goal = f"eager DCGAN-64 b{batch} {precision}: {lo / 1e3:.1f}–{hi / 1e3:.1f} k img/s"
        records = by_point.get((batch, precision))
        if not records:
            verdicts.append(Verdict(2, goal, "not measured", None))
            continue
        rates = [(r.get("metrics") or {}).get("images_per_s") for r in records]
        rates = [v for v in rates if isinstance(v, (int, float))]
        if not rates:
            verdicts.append(Verdict(2, goal, "no throughput in the ok records", None))
            continue
        rate = statistics.median(rates)
        where = _where(rate, lo, hi)
        verdicts.append(Verdict(2, goal, f"{rate / 1e3:.1f} k img/s ({where})", lo <= rate <= hi))
        if (batch, precision) == (128, "bf16"):
            peaks = [(r.get("metrics") or {}).get("peak_allocated_mib") for r in records]
            peaks = [p for p in peaks if isinstance(p, (int, float))]
            ref = EAGER_PEAK_MIB_B128_BF16
            goal = f"eager DCGAN-64 b128 bf16 peak allocated: about {ref} MiB"
            if peaks:
                peak = statistics.median(peaks)
                near = abs(peak - ref) <= EAGER_PEAK_TOLERANCE * ref
                verdicts.append(Verdict(2, goal, f"{peak:.0f} MiB", near))
    return verdicts + eager_diagnosis(out)


def eager_diagnosis(out: Path) -> list[Verdict]:
    """What the eager-why runs say (no verdict of their own: they explain the ones above).
    Batch 128 profiled: the share of an iteration the device sat idle, waiting on the host.
    Batch 1024 without cuDNN autotuning: its throughput against the reference range."""
    rows = []
    for record in _records(out / "eager-why.jsonl"):
        cfg, metrics = record.get("config") or {}, record.get("metrics") or {}
        if record.get("status") != "ok" or cfg.get("model") != "dcgan64":
            continue
        profile = record.get("profile") or {}
        idle = profile.get("device_idle_fraction")
        busy = profile.get("device_busy_ms_per_iteration")
        wall = profile.get("wall_ms_per_iteration")
        if isinstance(idle, (int, float)) and isinstance(busy, (int, float)) and wall:
            rows.append(
                Verdict(
                    2,
                    f"why: eager DCGAN-64 b{cfg.get('batch_size')} {cfg.get('precision')}, "
                    "device busy and idle under the profiler",
                    f"idle {idle:.0%} of an iteration (busy {busy:.2f} of {wall:.2f} ms,"
                    f" {profile.get('kernel_launches_per_iteration', 0):.0f} kernels)",
                    None,
                )
            )
        rate = metrics.get("images_per_s")
        reference = EAGER_REFERENCE.get((cfg.get("batch_size"), cfg.get("precision")))
        if cfg.get("cudnn_benchmark") is False and isinstance(rate, (int, float)) and reference:
            lo, hi = reference
            where = _where(rate, lo, hi)
            rows.append(
                Verdict(
                    2,
                    f"why: eager DCGAN-64 b{cfg.get('batch_size')} {cfg.get('precision')} "
                    "without cuDNN autotuning",
                    f"{rate / 1e3:.1f} k img/s ({where})",
                    None,
                )
            )
    return rows


def _kernel_rows(out: Path) -> dict[tuple, dict]:
    """(case, impl, pass) -> the last ok row measured with the op's own launch tuning
    (rows of `gan-bench kernels --tune` are experiments, not the op's figures)."""
    rows = {}
    for record in _records(out / "kernels.jsonl"):
        if record.get("tuned"):
            continue
        if record.get("status") == "ok" and isinstance(record.get("ms_p50"), (int, float)):
            rows[(record.get("case"), record.get("impl"), record.get("pass"))] = record
    return rows


def kernel_goals(out: Path) -> list[Verdict]:
    rows = _kernel_rows(out)
    fb = "forward+backward"

    def ms(case: str, impl: str) -> float | None:
        row = rows.get((case, impl, fb))
        return row["ms_p50"] if row else None

    def device_ms(case: str, impl: str) -> float | None:
        """The same call replayed from a CUDA graph: its time without the host's."""
        value = rows.get((case, impl, fb), {}).get("device_ms")
        return value if isinstance(value, (int, float)) and value > 0 else None

    verdicts = []
    for dtype, limit in (("bf16", LARGE_BF16_MAX_MS), ("fp32", LARGE_FP32_MAX_MS)):
        case = f"{LARGE_CASE}-{dtype}"
        triton, triton_device = ms(case, "triton"), device_ms(case, "triton")
        goal = f"(256, 64, 64, 64) {dtype} fwd+bwd ≤ {limit} ms"
        if triton is None:
            verdicts.append(Verdict(3, goal, "not measured", None))
            continue
        # The verdicts go by do_bench's time, the goals' method; where a CUDA graph replayed
        # the call, its device-only figure stands beside (a gap between the two is the
        # host's launch overhead).
        figure = f"{triton:.3f} ms"
        if triton_device:
            figure += f" (device-only {triton_device:.3f} ms)"
        row = rows[(case, "triton", fb)]
        host, bare = row.get("host_ms"), row.get("host_ms_without_launches")
        if isinstance(host, (int, float)):
            figure += f"; host {host:.3f} ms a call"
            if isinstance(bare, (int, float)):
                figure += f", {bare:.3f} without its launches"
        verdicts.append(Verdict(3, goal, figure, triton <= limit))
        if dtype != "bf16":
            continue
        for impl, minimum in (("compile", LARGE_MIN_VS_COMPILE), ("eager", LARGE_MIN_VS_EAGER)):
            other = ms(case, impl)
            goal = f"(256, 64, 64, 64) bf16 fwd+bwd ≥ {minimum}× {impl}"
            if other is None:
                verdicts.append(Verdict(3, goal, f"no {impl} measurement", None))
                continue
            ratio = other / triton
            figure = f"{ratio:.2f}× ({other:.3f} ms / {triton:.3f} ms)"
            other_device = device_ms(case, impl)
            if triton_device and other_device:
                figure += f"; device-only {other_device / triton_device:.2f}×"
            verdicts.append(Verdict(3, goal, figure, ratio >= minimum))
        pct = row.get("pct_of_copy_bandwidth")
        goal = f"(256, 64, 64, 64) bf16 fwd+bwd ≥ {LARGE_MIN_PCT_COPY:.0f}% of copy bandwidth"
        if isinstance(pct, (int, float)):
            figure = f"{pct:.0f}%"
            if triton_device and pct > 0:
                figure += f" (device-only {pct * triton / triton_device:.0f}%)"
            verdicts.append(Verdict(3, goal, figure, pct >= LARGE_MIN_PCT_COPY))
    small = sorted(
        {case for case, impl, _ in rows if case and impl == "triton" and case.endswith("-bf16")}
        - {f"{LARGE_CASE}-bf16"}
    )
    for case in small:
        triton, eager, compiled = ms(case, "triton"), ms(case, "eager"), ms(case, "compile")
        if triton is None:
            continue
        goal = f"{case} fwd+bwd faster than eager and torch.compile"
        if eager is None or compiled is None:
            verdicts.append(Verdict(3, goal, f"{triton:.3f} ms; eager or compile missing", None))
            continue
        figure = (
            f"{triton:.3f} ms vs eager {eager:.3f}, compile {compiled:.3f}"
            f" (stretch ≤ {SMALL_STRETCH_MS} ms: {'met' if triton <= SMALL_STRETCH_MS else 'not'})"
        )
        # The same calls replayed from CUDA graphs: how much of each time is the host's.
        device = {
            impl: rows[(case, impl, fb)].get("device_ms") for impl in ("triton", "eager", "compile")
        }
        if all(isinstance(v, (int, float)) for v in device.values()):
            figure += "; device-only " + ", ".join(f"{i} {v:.3f}" for i, v in device.items())
        verdicts.append(Verdict(3, goal, figure, triton < eager and triton < compiled))
    return verdicts


def _best(path: Path) -> list[stats.Best]:
    if not path.is_file():
        return []
    return stats.best_variants(stats.summarise(records.load_rows([str(path)])))


def _single_gpu_bf16(best: stats.Best) -> bool:
    g = best.group
    return g.device_type == "cuda" and g.world_size == 1 and g.precision == "bf16"


def _at_goal_point(bests: list[stats.Best], model: str, batch: int) -> list[stats.Best]:
    """The best variants of the single-GPU bf16 groups (the goal points' kind) at one point."""
    return [
        b
        for b in bests
        if _single_gpu_bf16(b) and (b.group.model, b.group.batch_size) == (model, batch)
    ]


def best_variant(out: Path, model: str, batch: int) -> str | None:
    """The fastest variant of sweep.jsonl at a single-GPU bf16 point, or None: the variant
    whose figure a goal's verdict gives, so the one whose profile says where a missed
    goal's time goes."""
    found = _at_goal_point(_best(out / "sweep.jsonl"), model, batch)
    return found[0].variant.variant if found else None


def end_to_end_goals(out: Path) -> list[Verdict]:
    all_best = _best(out / "sweep.jsonl")
    matmul = _rates(out).get("matmul_bf16_tflops")
    verdicts = []
    for model, batch, minimum in END_TO_END:
        goal = f"{model} b{batch} bf16: best variant ≥ {minimum:g}× eager"
        found = _at_goal_point(all_best, model, batch)
        if not found:
            verdicts.append(Verdict(6, goal, "not measured", None))
        for b in found:
            if b.variant.speedup is None:
                verdicts.append(Verdict(6, goal, f"{b.variant.variant}; eager not ok", None))
                continue
            figure = f"{b.variant.variant}: {b.variant.speedup:.2f}× ({b.group.workload})"
            verdicts.append(Verdict(6, goal, figure, b.variant.speedup >= minimum))
            if (model, batch) != MFU_GOAL[0]:
                continue
            mfu_goal = f"{model} b{batch} bf16: best variant ≥ {MFU_GOAL[1]:.0%} MFU"
            if not isinstance(matmul, (int, float)) or not math.isfinite(matmul):
                verdicts.append(Verdict(6, mfu_goal, "no measured matmul rate", None))
                continue
            tflops = b.variant.images_per_s * DCGAN64_GFLOP_PER_IMAGE / 1e3
            mfu = tflops / matmul
            figure = (
                f"{mfu:.1%} ({b.variant.images_per_s / 1e3:.1f} k img/s × "
                f"{DCGAN64_GFLOP_PER_IMAGE} GFLOP = {tflops:.0f} TFLOP/s of {matmul:.0f} "
                "measured)"
            )
            if b.variant.mfu is not None:
                figure += (
                    f"; the record's own MFU (counted FLOPs, datasheet peak) {b.variant.mfu:.1%}"
                )
            verdicts.append(Verdict(6, mfu_goal, figure, mfu >= MFU_GOAL[1]))
    for b in all_best:
        if b.group.device_type != "cuda":
            continue
        goal = f"{b.group.label}: best ≥ {MIN_VS_COMPILE:g}× torch.compile"
        if b.vs_compile is None:
            verdicts.append(Verdict(6, goal, f"{b.variant.variant}; no compile run", None))
            continue
        figure = f"{b.variant.variant}: {b.vs_compile:.2f}× compile"
        verdicts.append(Verdict(6, goal, figure, b.vs_compile >= MIN_VS_COMPILE))
    return verdicts + _not_run(out / "sweep.jsonl")


def _not_run(path: Path) -> list[Verdict]:
    """The variants of the GPU sweeps that did not run ok: no verdict of their own, but a
    best variant is only best among those that ran."""
    if not path.is_file():
        return []
    verdicts = []
    for group in stats.summarise(records.load_rows([str(path)])).groups:
        if group.device_type != "cuda":
            continue
        for summary in group.variants:
            if summary.repeats_ok < summary.repeats_total and summary.status != "skipped":
                reason = (summary.reason or "")[:160]
                figure = f"{summary.status}" + (f": {reason}" if reason else "")
                verdicts.append(
                    Verdict(6, f"{group.label}: {summary.variant} did not run ok", figure, None)
                )
    return verdicts


def parity_goals(out: Path) -> list[Verdict]:
    path = out / "parity.jsonl"
    if not path.is_file():
        return [Verdict(6, "quality parity of every variant (FD, KID)", "not measured", None)]
    comparison = stats.summarise(records.load_rows([str(path)]))
    verdicts = []
    for group in comparison.groups:
        for summary in group.variants:
            if summary.variant == comparison.baseline:
                continue
            verdict = stats.parity_verdict(summary)
            goal = f"{group.label}: {summary.variant} within eager's seed spread"
            met = {"within": True, "outside": False}.get(verdict)
            figure = _parity_figure(summary) if verdict else (summary.parity_note or summary.status)
            verdicts.append(Verdict(6, goal, figure, met))
    return verdicts


def _parity_figure(summary: stats.VariantSummary) -> str:
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
    records = _records(out / "profile.jsonl")
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
    rates = _rates(out)
    lines = ["# Goals, met or missed", ""]
    if rates:
        lines += [
            f"Device {rates.get('device_name', '?')}: copy "
            f"{rates.get('copy_gb_per_s', float('nan')):.0f} GB/s, bf16 matmul "
            f"{rates.get('matmul_bf16_tflops', float('nan')):.0f} TFLOP/s (measured).",
            "",
        ]
    lines += ["| issue | goal | figure | verdict |", "|---|---|---|---|"]
    lines += [f"| #{v.issue} | {v.goal} | {v.figure} | {v.mark} |" for v in verdicts]
    lines += profile_lines(out)
    return "\n".join(lines).rstrip("\n") + "\n"


USAGE = (
    "usage: python3 -m bench.analysis.goals OUT_DIR, or --best OUT_DIR MODEL BATCH (OUT_DIR: "
    "the folder .ci/measure-gpu wrote)"
)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--best"]:
        if len(argv) != 4 or not Path(argv[1]).is_dir() or not argv[3].isdigit():
            print(USAGE, file=sys.stderr)
            return 2
        print(best_variant(Path(argv[1]), argv[2], int(argv[3])) or "")
        return 0
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print(USAGE, file=sys.stderr)
        return 2
    out = Path(argv[0])
    verdicts = eager_reference(out) + kernel_goals(out) + end_to_end_goals(out) + parity_goals(out)
    text = render(verdicts, out)
    (out / "goals.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
