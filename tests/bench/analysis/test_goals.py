"""`gan-bench goals`: the goals of results/goals.json, met or missed, from hand-written
GPU-shaped records.

The figures in the closing note of a GPU session come from this command; here its
arithmetic (speed-ups, the MFU on the goal's own basis, the kernel ratios, the reference
ranges) is checked on records whose answers are known, and the goals file itself: every
figure a verdict uses is read from it.
"""

from __future__ import annotations

import json
import re

import pytest

from bench.analysis.goals import best_variant, judge
from bench.analysis.goals_file import GOALS_FILE, load_goals
from bench.analysis.records import load_rows
from bench.analysis.stats import summarise
from bench.config import ConfigError
from result_records import record, run_cli, variant, write


def run_record(variant, images_per_s, *, model="dcgan64", batch=128, precision="bf16", peak=300.0):
    """An ok run on one H100."""
    return record(
        variant, images_per_s, peak, model=model, batch=batch, precision=precision,
        device="NVIDIA H100 80GB HBM3", torch_version="2.11.0", device_type="cuda",
    )  # fmt: skip


def kernel_row(case, impl, ms, pct=None):
    return {"case": case, "impl": impl, "pass": "forward+backward", "ms_p50": ms,
            "pct_of_copy_bandwidth": pct, "status": "ok"}  # fmt: skip


def verdicts_of(out, theme, goals_file=GOALS_FILE):
    """{goal text: verdict} of one theme's goals against the records in `out`."""
    themes = [t for t in load_goals(goals_file) if t.name == theme]
    assert themes, theme
    return {v.goal: v for v in judge(out, themes)}


def test_end_to_end_speedups_mfu_and_compile(tmp_path):
    (tmp_path / "device-rates.json").write_text(
        json.dumps({"device_name": "NVIDIA H100", "copy_gb_per_s": 3000, "matmul_bf16_tflops": 800})
    )
    write(
        tmp_path / "sweep.jsonl",
        [
            run_record("eager", 10_000),
            run_record("compile", 9_000),
            run_record("channels-last+cuda-graph", 45_000),
            run_record("eager", 40_000, batch=1024),
            run_record("channels-last+cuda-graph", 100_000, batch=1024),
        ],
    )
    verdicts = verdicts_of(tmp_path, "end to end")
    b128 = verdicts["dcgan64 b128 bf16: best variant ≥ 4× eager"]
    assert b128.met is True and "channels-last+cuda-graph: 4.50×" in b128.figure
    b1024 = verdicts["dcgan64 b1024 bf16: best variant ≥ 3× eager"]
    assert b1024.met is False and "2.50×" in b1024.figure
    # 100 k images/s x 2.48 GFLOP = 248 TFLOP/s of the 800 measured: 31.0%.
    mfu = verdicts["dcgan64 b1024 bf16: best variant ≥ 35% MFU"]
    assert mfu.met is False and mfu.figure.startswith("31.0%") and "248 TFLOP/s" in mfu.figure
    assert verdicts["mlp b512 bf16: best variant ≥ 10× eager"].met is None
    vs_compile = [v for v in verdicts.values() if "torch.compile" in v.goal]
    assert [(v.met, v.figure) for v in vs_compile if "batch 128" in v.goal] == [
        (True, "channels-last+cuda-graph: 5.00× compile")
    ]
    assert [v.met for v in vs_compile if "batch 1024" in v.goal] == [None]
    assert {v.theme for v in verdicts.values()} == {"end to end"}


TRITON_B128 = "dcgan64 b128 bf16: triton ≥ 1.15× eager"
TRITON_CL_B1024 = "dcgan64 b1024 bf16: triton+channels-last ≥ 1.3× eager"


def test_single_variants_against_eager_as_the_compare_table_has_them(tmp_path):
    path = tmp_path / "sweep.jsonl"
    write(
        path,
        [
            run_record("eager", 10_000),
            run_record("triton", 12_000),
            run_record("triton", 11_000, precision="fp32"),  # not the goals' precision
            run_record("eager", 40_000, batch=1024),
            run_record("triton+channels-last", 48_000, batch=1024),
            run_record("triton+channels-last+cuda-graph", 90_000, batch=1024),
        ],
    )
    verdicts = verdicts_of(tmp_path, "end to end")
    triton = verdicts[TRITON_B128]
    assert triton.met is True and triton.figure.startswith(
        "1.20× (12.0 k img/s against eager's 10.0 k; "
    )
    channels_last = verdicts[TRITON_CL_B1024]
    assert channels_last.met is False
    assert channels_last.figure.startswith("1.20× (48.0 k img/s against eager's 40.0 k; ")
    # The speed-ups are the compare table's own, workload and all.
    comparison = summarise(load_rows([str(path)]))
    for verdict, name, batch in (
        (triton, "triton", 128),
        (channels_last, "triton+channels-last", 1024),
    ):
        summary = variant(comparison, name, batch_size=batch, precision="bf16")
        (group,) = [g for g in comparison.groups if summary in g.variants]
        assert verdict.figure == (
            f"{summary.speedup:.2f}× ({summary.images_per_s / 1e3:.1f} k img/s against eager's "
            f"{summary.images_per_s / summary.speedup / 1e3:.1f} k; {group.workload})"
        )


def test_single_variants_not_measured_or_not_ok(tmp_path):
    failed = {**run_record("triton+channels-last", None, batch=1024), "status": "oom",
              "reason": "CUDA out of memory"}  # fmt: skip
    write(tmp_path / "sweep.jsonl", [run_record("eager", 40_000, batch=1024), failed])
    verdicts = verdicts_of(tmp_path, "end to end")
    assert verdicts[TRITON_B128].figure == "not measured" and verdicts[TRITON_B128].met is None
    oom = verdicts[TRITON_CL_B1024]
    assert oom.met is None and oom.figure.startswith("oom: CUDA out of memory (")
    # Without eager's throughput there is no speed-up to judge.
    other = tmp_path / "other"
    other.mkdir()
    write(other / "sweep.jsonl", [{**run_record("eager", None), "status": "failed"},
                                  run_record("triton", 12_000)])  # fmt: skip
    assert verdicts_of(other, "end to end")[TRITON_B128].figure.startswith("eager not ok (")


def test_variants_that_did_not_run_ok_are_listed_without_a_verdict(tmp_path):
    failed = {
        **run_record("compile+channels-last+cuda-graph", None),
        "status": "failed",
        "reason": "AssertionError during warm-up, iteration 1: expected size 512==512",
    }
    write(tmp_path / "sweep.jsonl", [run_record("eager", 10_000), failed])
    rows = [v for v in verdicts_of(tmp_path, "end to end").values() if "did not run ok" in v.goal]
    assert [(v.met, v.goal.split(": ")[-1]) for v in rows] == [
        (None, "compile+channels-last+cuda-graph did not run ok")
    ]
    assert rows[0].figure.startswith("failed") and "expected size 512==512" in rows[0].figure


def test_kernel_goals(tmp_path):
    large = "large-64x64x64-nchw"
    small = "dcgan64-512x4x4-nchw-bf16"
    write(
        tmp_path / "kernels.jsonl",
        [
            kernel_row(f"{large}-bf16", "eager", 3.12),
            {**kernel_row(f"{large}-bf16", "compile", 0.78), "device_ms": 0.64},
            {**kernel_row(f"{large}-bf16", "triton", 0.40, pct=55.0), "device_ms": 0.32},
            # host-bound: a CUDA graph's replay shows the device's share
            {**kernel_row(f"{large}-fp32", "compile", 1.30), "device_ms": 1.0},
            {
                **kernel_row(f"{large}-fp32", "triton", 1.25, pct=20.0),
                "device_ms": 0.5,
                "host_ms": 1.2,
                "host_ms_without_launches": 0.3,
            },
            {**kernel_row(small, "eager", 0.10), "device_ms": 0.031},
            {**kernel_row(small, "compile", 0.20), "device_ms": 0.042},
            {**kernel_row(small, "triton", 0.06), "device_ms": 0.012},
            {**kernel_row(small, "triton", 9.0), "status": "failed"},  # not the measurement
            {**kernel_row(f"{large}-fp32", "triton", 0.1), "tuned": True},  # an experiment
        ],
    )
    verdicts = verdicts_of(tmp_path, "fused kernels")
    assert verdicts["(256, 64, 64, 64) bf16 fwd+bwd ≤ 0.45 ms"].met is True
    fp32 = verdicts["(256, 64, 64, 64) fp32 fwd+bwd ≤ 0.8 ms"]
    assert fp32.met is False and fp32.figure == (
        "1.250 ms (device-only 0.500 ms); host 1.200 ms a call, 0.300 without its launches"
    )
    vs_compile = verdicts["(256, 64, 64, 64) bf16 fwd+bwd ≥ 1.7× compile"]
    assert vs_compile.met is True and vs_compile.figure.startswith("1.95×")
    assert vs_compile.figure.endswith("; device-only 2.00×")
    vs_eager = verdicts["(256, 64, 64, 64) bf16 fwd+bwd ≥ 6.0× eager"]
    assert vs_eager.met is True and vs_eager.figure.startswith("7.80×")
    bandwidth = verdicts["(256, 64, 64, 64) bf16 fwd+bwd ≥ 50% of copy bandwidth"]
    assert bandwidth.met is True and bandwidth.figure == "55% (device-only 69%)"
    layer = verdicts[f"{small} fwd+bwd faster than eager and torch.compile"]
    assert layer.met is True and "stretch ≤ 0.05 ms: not" in layer.figure
    assert "device-only triton 0.012, eager 0.031, compile 0.042" in layer.figure


def fused_rows(case, eager, compiled, fused):
    """Forward + backward rows of one case, each with its do_bench and device-only times:
    `fused` maps a fused implementation to its (ms_p50, device_ms)."""
    rows = [
        {**kernel_row(case, "eager", eager[0]), "device_ms": eager[1]},
        {**kernel_row(case, "compile", compiled[0]), "device_ms": compiled[1]},
    ]
    return rows + [
        {**kernel_row(case, impl, ms), "device_ms": device, "tuned": False}
        for impl, (ms, device) in fused.items()
    ]


EITHER = "triton or triton-one-kernel faster than eager and torch.compile"
ONE_KERNEL_DEVICE = "triton-one-kernel fwd+bwd device-only ≤ 1× triton's at every bf16 case of both"


def test_the_fused_op_by_either_path_and_the_one_kernel_device_time(tmp_path):
    small, bn1d, mid = "dcgan64-512x4x4-nchw-bf16", "bn1d-1024-nc-bf16", "dcgan64-256x8x8-nchw-bf16"
    large_cl = "large-64x64x64-channels_last-bf16"
    rows = [
        # the default plan loses to eager, the one-kernel path beats both
        *fused_rows(small, (0.21, 0.051), (0.75, 0.011),
                    {"triton": (0.53, 0.010), "triton-one-kernel": (0.15, 0.009)}),
        # both paths lose to eager; one kernel is slower on the device
        *fused_rows(bn1d, (0.21, 0.030), (0.85, 0.019),
                    {"triton": (0.58, 0.012), "triton-one-kernel": (0.50, 0.015)}),
        # the default plan alone measured, and it loses
        *fused_rows(mid, (0.16, 0.051), (0.53, 0.013), {"triton": (0.54, 0.017)}),
        # a case the goal leaves out, although both paths win there
        *fused_rows(large_cl, (0.98, 0.96), (0.92, 0.66),
                    {"triton": (0.68, 0.40), "triton-one-kernel": (0.60, 0.38)}),
        *fused_rows("dcgan64-512x4x4-nchw-fp32", (0.2, 0.05), (0.7, 0.01),
                    {"triton": (0.1, 0.01), "triton-one-kernel": (0.1, 0.02)}),
    ]  # fmt: skip
    write(tmp_path / "kernels.jsonl", rows)
    verdicts = verdicts_of(tmp_path, "fused kernels")
    either = {g.split(" fwd+bwd")[0]: v for g, v in verdicts.items() if g.endswith(EITHER)}
    assert set(either) == {small, bn1d, mid}
    assert either[small].met is True
    assert either[small].figure == (
        "triton 0.530 ms, triton-one-kernel 0.150 ms vs eager 0.210, compile 0.750; device-only "
        "triton 0.010, triton-one-kernel 0.009, eager 0.051, compile 0.011; met by "
        "triton-one-kernel"
    )
    assert either[bn1d].met is False and either[bn1d].figure.endswith("; met by neither")
    assert either[mid].met is None
    assert either[mid].figure.endswith("; triton-one-kernel not measured; not met by triton")
    # The goal on the op as planned judges the default plan alone, as before.
    planned = verdicts[f"{small} fwd+bwd faster than eager and torch.compile"]
    assert planned.met is False and planned.figure.startswith("0.530 ms vs eager 0.210")
    assert "one-kernel" not in planned.figure
    device = verdicts[ONE_KERNEL_DEVICE]
    assert device.met is False
    assert device.figure == (
        "no slower at 2 of 3: dcgan64-512x4x4-nchw (0.009 vs 0.010 ms), large-64x64x64-"
        "channels_last (0.380 vs 0.400 ms); slower at 1: bn1d-1024-nc (0.015 vs 0.012 ms)"
    )
    # Where one kernel is no slower at every case both measured, the goal is met.
    (tmp_path / "kernels.jsonl").unlink()
    write(tmp_path / "kernels.jsonl", [r for r in rows if r["case"] != bn1d])
    device = verdicts_of(tmp_path, "fused kernels")[ONE_KERNEL_DEVICE]
    assert device.met is True and device.figure.endswith("; slower at 0")


def test_the_fused_op_goals_without_kernel_records_are_not_measured(tmp_path):
    verdicts = verdicts_of(tmp_path, "fused kernels")
    assert verdicts[ONE_KERNEL_DEVICE].figure == "not measured"
    (either,) = [v for g, v in verdicts.items() if g.endswith(EITHER)]
    assert either.figure == "not measured" and either.met is None
    # Rows of the default plan alone: no case where one kernel's device time is compared.
    case = "dcgan64-512x4x4-nchw-bf16"
    write(
        tmp_path / "kernels.jsonl",
        fused_rows(case, (0.2, 0.05), (0.7, 0.01), {"triton": (0.1, 0.01)}),
    )
    verdicts = verdicts_of(tmp_path, "fused kernels")
    assert verdicts[ONE_KERNEL_DEVICE].met is None
    assert verdicts[f"{case} fwd+bwd: {EITHER}"].met is True


def host_record(case, default, one_kernel, *, goal_case=True, eager_us=55.0):
    """A kernel-host record as `gan-bench kernels --host` writes it: `default` and
    `one_kernel` are each plan's (host_ratio, launches_per_call)."""
    (ratio, launches), (one_ratio, one_launches) = default, one_kernel
    return {
        "schema_version": 1, "kind": "kernel-host", "session_id": "s", "case": case,
        "shape": [128, 512, 4, 4], "layout": "nchw", "dtype": "bf16",
        "host_us": ratio * eager_us, "launches_per_call": launches,
        "plan_device": "nominal H100 (132 SMs)", "plan_sms": 132, "cpu_blocks_kept": True,
        "eager_dispatch_us": eager_us, "eager_method": "cpu-minimal-shape",
        "eager_shape": [2, 8, 2, 2], "host_ratio": ratio,
        "goal_met": (ratio <= 0.5 and launches <= 2) if goal_case else None,
        "one_kernel_host_us": one_ratio * eager_us, "one_kernel_launches_per_call": one_launches,
        "one_kernel_host_ratio": one_ratio,
        "one_kernel_goal_met": (one_ratio <= 0.5 and one_launches <= 2) if goal_case else None,
        "kernels_interpreted": False, "interpreter_host_us": None,
        "interpreter_launches_per_call": None, "status": "ok", "reason": None,
    }  # fmt: skip


HOST_GOAL = (
    "fused host µs ≤ 0.5× eager's dispatch-only µs in ≤ 2 launches per fwd+bwd, at every goal case"
)


def test_the_host_path_is_met_by_a_plan_that_meets_it_at_every_goal_case(tmp_path):
    cases = [
        host_record("dcgan64-512x4x4-nchw-bf16", (0.40, 2), (0.30, 2)),
        # under the ratio, but the split path's launches
        host_record("dcgan64-128x16x16-nchw-bf16", (0.45, 6), (0.42, 2)),
        host_record("bn1d-1024-nc-bf16", (0.30, 2), (0.49, 2), eager_us=50.0),
        # no goal is set on the large case: its figures do not count
        host_record("large-64x64x64-nchw-bf16", (1.30, 6), (1.10, 2), goal_case=False),
    ]
    write(tmp_path / "kernel-host.jsonl", cases)
    verdict = verdicts_of(tmp_path, "host path")[HOST_GOAL]
    assert verdict.met is True
    assert verdict.figure == (
        "default plan: worst dcgan64-128x16x16-nchw-bf16 0.45× (24.8 of 55.0 µs) in 6 "
        "launches, meets at 2 of 3 cases; one-kernel plan: worst bn1d-1024-nc-bf16 0.49× "
        "(24.5 of 50.0 µs) in 2 launches, meets at 3 of 3 cases; planned for nominal H100 "
        "(132 SMs); met by the one-kernel plan"
    )
    # One case over the ratio on the one-kernel plan too: neither plan meets it everywhere.
    write(tmp_path / "kernel-host.jsonl", [host_record("bn1d-1024-nc-bf16", (0.3, 2), (0.55, 2))])
    verdict = verdicts_of(tmp_path, "host path")[HOST_GOAL]
    assert verdict.met is False and verdict.figure.endswith("; met by neither plan")
    assert "one-kernel plan: worst bn1d-1024-nc-bf16 0.55×" in verdict.figure
    # The goal's figures are the goals file's: a looser ratio and the one-kernel plan meets it.
    doc = json.loads(GOALS_FILE.read_text())
    goal_named(doc, "fused-host-vs-eager-dispatch")["max_host_ratio"] = 0.6
    (tmp_path / "goals.json").write_text(json.dumps(doc))
    verdicts = verdicts_of(tmp_path, "host path", goals_file=tmp_path / "goals.json")
    (verdict,) = verdicts.values()
    assert verdict.met is True and verdict.goal.startswith("fused host µs ≤ 0.6×")
    assert verdict.figure.endswith("; met by the one-kernel plan")


def test_the_host_path_unmeasured_or_failed(tmp_path):
    assert verdicts_of(tmp_path, "host path")[HOST_GOAL].figure == "not measured"
    path = tmp_path / "kernel-host.jsonl"
    # Only the large case, where no goal is set; and an older record without one-kernel fields.
    write(path, [host_record("large-64x64x64-nchw-bf16", (0.1, 2), (0.1, 2), goal_case=False)])
    assert verdicts_of(tmp_path, "host path")[HOST_GOAL].figure == "not measured"
    older = host_record("dcgan64-512x4x4-nchw-bf16", (0.4, 2), (0.4, 2))
    older = {k: v for k, v in older.items() if not k.startswith("one_kernel_")}
    failed = {"kind": "kernel-host", "case": "bn1d-1024-nc-bf16", "status": "failed",
              "reason": "RuntimeError: no plan"}  # fmt: skip
    write(path, [older, failed])
    verdict = verdicts_of(tmp_path, "host path")[HOST_GOAL]
    # The default plan meets it where measured, but a failed case may be a goal case.
    assert verdict.met is None
    assert "one-kernel plan: not measured" in verdict.figure
    assert verdict.figure.endswith("; met by the default plan; failed at bn1d-1024-nc-bf16")


def test_the_host_path_verdict_agrees_with_the_committed_cpu_records(tmp_path):
    """The CPU's kernel-host run, judged by the goals file's figures: the same cases meet it
    as the records' own goal_met flags say (both set the goal at 0.5× and 2 launches)."""
    source = GOALS_FILE.parent / "cpu-intel-xeon-2core" / "kernel-host.jsonl"
    records = [json.loads(line) for line in source.read_text().splitlines()]
    (tmp_path / "kernel-host.jsonl").write_text(source.read_text())
    verdict = verdicts_of(tmp_path, "host path")[HOST_GOAL]
    goal_cases = [r for r in records if r["goal_met"] is not None]
    for label, prefix in (("default plan", ""), ("one-kernel plan", "one_kernel_")):
        meeting = sum(r[f"{prefix}goal_met"] for r in goal_cases)
        assert f"{label}: worst " in verdict.figure
        assert f"meets at {meeting} of {len(goal_cases)} cases" in verdict.figure
    plans_met = [all(r[f"{p}goal_met"] for r in goal_cases) for p in ("", "one_kernel_")]
    assert verdict.met is any(plans_met)


def test_eager_reference_ranges(tmp_path):
    write(
        tmp_path / "eager-dcgan64.jsonl",
        [run_record("eager", 14_000, peak=300.0), run_record("eager", 11_000, precision="fp32")],
    )
    verdicts = verdicts_of(tmp_path, "eager reference")
    assert (
        verdicts["eager DCGAN-64 b128 bf16: 12.9–15.7 k img/s"].figure == "14.0 k img/s (in range)"
    )
    fp32 = verdicts["eager DCGAN-64 b128 fp32: 12.9–15.7 k img/s"]
    assert fp32.met is False and "below" in fp32.figure
    assert verdicts["eager DCGAN-64 b1024 bf16: 36.7–39.4 k img/s"].figure == "not measured"
    assert verdicts["eager DCGAN-64 b128 bf16 peak allocated: about 290 MiB"].met is True


def test_eager_diagnosis_says_how_idle_the_device_was_and_what_autotuning_did(tmp_path):
    profiled = run_record("eager", 10_700)
    profiled["profile"] = {
        "device_idle_fraction": 0.62, "device_busy_ms_per_iteration": 4.5,
        "wall_ms_per_iteration": 11.9, "kernel_launches_per_iteration": 430.0,
    }  # fmt: skip
    untuned = run_record("eager", 38_000, batch=1024)
    untuned["config"]["cudnn_benchmark"] = False
    autotuned = {**run_record("eager", 41_900, batch=1024), "profile": None}
    failed = {**untuned, "status": "failed"}
    write(tmp_path / "eager-why.jsonl", [profiled, untuned, autotuned, failed])
    why = {g: v for g, v in verdicts_of(tmp_path, "eager reference").items() if g.startswith("why")}
    assert set(why) == {
        "why: eager DCGAN-64 b128 bf16, device busy and idle under the profiler",
        "why: eager DCGAN-64 b1024 bf16 without cuDNN autotuning",
    }
    idle = why["why: eager DCGAN-64 b128 bf16, device busy and idle under the profiler"]
    assert idle.figure == "idle 62% of an iteration (busy 4.50 of 11.90 ms, 430 kernels)"
    untuned_row = why["why: eager DCGAN-64 b1024 bf16 without cuDNN autotuning"]
    assert untuned_row.figure == "38.0 k img/s (in range)" and untuned_row.met is None


def test_cli_writes_goals_md_and_refuses_a_missing_folder(tmp_path, capsys):
    assert run_cli("goals", str(tmp_path / "absent")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a folder" in err
    assert run_cli("goals", str(tmp_path)) == 0
    text = (tmp_path / "goals.md").read_text()
    assert "| theme | goal | figure | verdict |" in text
    assert "| fused kernels | (256, 64, 64, 64) bf16 fwd+bwd ≤ 0.45 ms | not measured | — |" in text
    assert "| quality parity | quality parity of every variant (FD, KID) | not measured |" in text
    assert f"| host path | {HOST_GOAL} | not measured | — |" in text
    assert text == capsys.readouterr().out


def test_the_fastest_variant_of_a_goal_point_is_what_gets_profiled(tmp_path, capsys):
    write(
        tmp_path / "sweep.jsonl",
        [
            run_record("eager", 10_000),
            run_record("channels-last+cuda-graph", 45_000),
            run_record("triton+channels-last+cuda-graph", 52_000),
            run_record("cuda-graph", 90_000, precision="fp32"),  # not a bf16 goal point
            run_record("eager", 40_000, batch=1024),
        ],
    )
    fastest = "triton+channels-last+cuda-graph"
    assert best_variant(tmp_path, "dcgan64", 128, "bf16") == fastest
    assert best_variant(tmp_path, "dcgan64", 1024, "bf16") is None  # the baseline alone
    assert best_variant(tmp_path, "mlp", 512, "bf16") is None
    assert run_cli("goals", str(tmp_path), "--best", "dcgan64", "128") == 0
    assert run_cli("goals", str(tmp_path), "--best", "mlp", "512") == 0
    assert capsys.readouterr().out == f"{fastest}\n\n"  # at the goals' precision, bf16
    assert not (tmp_path / "goals.md").exists()
    assert run_cli("goals", str(tmp_path), "--best", "mlp", "many") == 2
    assert run_cli("goals", str(tmp_path / "absent"), "--best", "mlp", "512") == 2


def test_profiles_say_where_the_time_goes(tmp_path):
    profiled = run_record(
        "triton+joint-d+batched-casts+cuda-graph", 612_000.0, model="mlp", batch=512
    )
    profiled["profile"] = {
        "wall_ms_per_iteration": 0.95, "device_busy_ms_per_iteration": 0.81,
        "device_idle_fraction": 0.147, "kernel_launches_per_iteration": 104.0,
        "top_kernels": [
            {"name": "sm90_xmma_gemm_bf16bf16_" + "x" * 80, "share": 0.41,
             "ms_per_iteration": 0.33, "calls_per_iteration": 21.0},
            {"name": "bn_fwd_fused_kernel", "share": 0.12, "ms_per_iteration": 0.097,
             "calls_per_iteration": 3.0},
        ],
    }  # fmt: skip
    failed = run_record("triton+channels-last+cuda-graph", 0.0)
    failed["profile"] = {"error": "RuntimeError: the profiler recorded no CUDA kernels"}
    crashed = run_record("cuda-graph", 0.0, batch=1024)
    crashed["status"], crashed["reason"] = "oom", "CUDA out of memory"
    write(tmp_path / "profile.jsonl", [profiled, failed, crashed])
    assert run_cli("goals", str(tmp_path)) == 0
    text = (tmp_path / "goals.md").read_text()
    assert "## Where the time goes (profiles)" in text
    assert (
        "**mlp b512 triton+joint-d+batched-casts+cuda-graph**: 612.0 k img/s unprofiled; under "
        "the profiler 0.950 ms per iteration, device busy 0.810 ms (idle 15%), 104 kernels "
        "per iteration." in text
    )
    assert "| bn_fwd_fused_kernel | 12.0% | 0.097 | 3 |" in text
    long_name = next(line for line in text.splitlines() if "sm90_xmma" in line)
    assert "…" in long_name and "x" * 80 not in long_name
    assert "profiler failed: RuntimeError: the profiler recorded no CUDA kernels" in text
    assert "**dcgan64 b1024 cuda-graph**: oom: CUDA out of memory" in text


def test_the_goals_file_names_each_goal_once_and_says_what_it_asks():
    themes = load_goals()
    assert [t.name for t in themes] == [
        "eager reference", "fused kernels", "host path", "end to end", "quality parity",
    ]  # fmt: skip
    goals = [goal for theme in themes for goal in theme.goals]
    names = [goal["name"] for goal in goals]
    assert len(names) == len(set(names)) and all(re.fullmatch(r"[a-z0-9-]+", n) for n in names)
    assert all(goal["asks"].strip() and "\n" not in goal["asks"] for goal in goals)
    assert not re.search(r"(?i)issue|#\d", GOALS_FILE.read_text())


def test_the_verdicts_follow_the_figures_of_the_goals_file(tmp_path):
    """The same records against other figures: the goals and their verdicts follow the file."""
    write(
        tmp_path / "sweep.jsonl",
        [run_record("eager", 10_000), run_record("channels-last+cuda-graph", 45_000)],
    )
    assert verdicts_of(tmp_path, "end to end")["dcgan64 b128 bf16: best variant ≥ 4× eager"].met
    doc = json.loads(GOALS_FILE.read_text())
    end_to_end = doc["themes"]["end to end"]
    (b128,) = [g for g in end_to_end["goals"] if g["name"] == "dcgan64-b128-speedup"]
    b128["min_speedup"] = 5.0
    other = tmp_path / "goals.json"
    other.write_text(json.dumps(doc))
    verdicts = verdicts_of(tmp_path, "end to end", goals_file=other)
    assert verdicts["dcgan64 b128 bf16: best variant ≥ 5× eager"].met is False
    end_to_end["precision"] = "fp32"  # the goal points' precision: the sweep ran bf16 only
    other.write_text(json.dumps(doc))
    verdicts = verdicts_of(tmp_path, "end to end", goals_file=other)
    assert verdicts["dcgan64 b128 fp32: best variant ≥ 5× eager"].figure == "not measured"


def goals_of(doc: dict, theme: str) -> list[dict]:
    return doc["themes"][theme]["goals"]


def goal_named(doc: dict, name: str) -> dict:
    (goal,) = [g for t in doc["themes"].values() for g in t["goals"] if g["name"] == name]
    return goal


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda doc: doc["themes"].update(speed=doc["themes"].pop("end to end")),
         "goals theme 'speed' is not one of"),
        (lambda doc: doc["themes"]["end to end"].pop("precision"),
         "goals theme 'end to end' lacks precision"),
        (lambda doc: goals_of(doc, "fused kernels")[0].update(kind="kernel-speed"),
         "goal 'fused-large-bf16-time': kind 'kernel-speed' is not one of"),
        (lambda doc: goals_of(doc, "fused kernels")[0].pop("max_ms"),
         "goal 'fused-large-bf16-time' lacks max_ms"),
        (lambda doc: goals_of(doc, "fused kernels")[1].update(name="fused-large-bf16-time"),
         "a goal without a name of its own"),
        (lambda doc: goals_of(doc, "end to end")[2].update(batch_size=256),
         "goal 'dcgan64-b1024-mfu' has no best-speedup goal at its point"),
        (lambda doc: goal_named(doc, "fused-model-layers-either-path").update(impls="triton"),
         "goal 'fused-model-layers-either-path': impls is not a list of implementation names"),
        (lambda doc: goal_named(doc, "fused-small-layers").update(stretch_max_ms="0.05"),
         "goal 'fused-small-layers': stretch_max_ms is not a number of ms"),
        (lambda doc: goal_named(doc, "one-kernel-device-no-slower").pop("max_ratio"),
         "goal 'one-kernel-device-no-slower' lacks max_ratio"),
        (lambda doc: goal_named(doc, "fused-host-vs-eager-dispatch").pop("max_launches_per_call"),
         "goal 'fused-host-vs-eager-dispatch' lacks max_launches_per_call"),
        (lambda doc: goal_named(doc, "dcgan64-b128-triton-speedup").pop("variant"),
         "goal 'dcgan64-b128-triton-speedup' lacks variant"),
        (lambda doc: goal_named(doc, "dcgan64-b1024-triton-channels-last-speedup").update(
            variant="channels-last+triton"),
         "goal 'dcgan64-b1024-triton-channels-last-speedup': variant 'channels-last+triton' is "
         "'triton+channels-last' in records"),
        (lambda doc: goal_named(doc, "dcgan64-b128-triton-speedup").update(variant="triton+warp"),
         "goal 'dcgan64-b128-triton-speedup': variant 'triton+warp': 'warp' is not a speed-up"),
    ],
    ids=["theme", "theme-field", "kind", "figure", "name", "mfu-point", "impls", "stretch",
         "device-ratio", "host-ratio", "variant", "variant-spelling", "variant-unknown"],
)  # fmt: skip
def test_a_malformed_goals_file_is_refused(tmp_path, change, message):
    doc = json.loads(GOALS_FILE.read_text())
    change(doc)
    path = tmp_path / "goals.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        load_goals(path)
    assert "\n" not in str(refused.value)  # one line for the command's error


def test_an_unreadable_goals_file_is_refused(tmp_path):
    path = tmp_path / "goals.json"
    with pytest.raises(ConfigError, match="cannot read the goals file"):
        load_goals(path)
    path.write_text("{")
    with pytest.raises(ConfigError, match="cannot read the goals file"):
        load_goals(path)
