"""`bench.analysis.goals`: the issues' goals, met or missed, from hand-written GPU-shaped records.

The figures in the closing note of a GPU session come from this script; here its
arithmetic (speed-ups, the MFU on the issue's basis, the kernel ratios, the reference
ranges) is checked on records whose answers are known.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.analysis import goals as goals_module


@pytest.fixture(scope="module")
def goals():
    return goals_module


def run_record(variant, images_per_s, *, model="dcgan64", batch=128, precision="bf16", peak=300.0):
    return {
        "schema_version": 1,
        "status": "ok",
        "reason": None,
        "config": {
            "model": model,
            "dataset": "synthetic",
            "batch_size": batch,
            "precision": precision,
            "steps": 50,
            "variant": variant,
        },
        "run": {"world_size": 1, "variant": variant},
        "environment": {"device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0",
                        "device_type": "cuda", "world_size": 1},
        "metrics": {"images_per_s": images_per_s, "peak_allocated_mib": peak},
    }  # fmt: skip


def kernel_row(case, impl, ms, pct=None):
    return {"case": case, "impl": impl, "pass": "forward+backward", "ms_p50": ms,
            "pct_of_copy_bandwidth": pct, "status": "ok"}  # fmt: skip


def write_jsonl(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def by_goal(verdicts):
    return {v.goal: v for v in verdicts}


def test_end_to_end_speedups_mfu_and_compile(goals, tmp_path):
    (tmp_path / "device-rates.json").write_text(
        json.dumps({"device_name": "NVIDIA H100", "copy_gb_per_s": 3000, "matmul_bf16_tflops": 800})
    )
    write_jsonl(
        tmp_path / "sweep.jsonl",
        [
            run_record("eager", 10_000),
            run_record("compile", 9_000),
            run_record("channels-last+cuda-graph", 45_000),
            run_record("eager", 40_000, batch=1024),
            run_record("channels-last+cuda-graph", 100_000, batch=1024),
        ],
    )
    verdicts = by_goal(goals.end_to_end_goals(tmp_path))
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


def test_variants_that_did_not_run_ok_are_listed_without_a_verdict(goals, tmp_path):
    failed = {
        **run_record("compile+channels-last+cuda-graph", None),
        "status": "failed",
        "reason": "AssertionError during warm-up, iteration 1: expected size 512==512",
    }
    write_jsonl(tmp_path / "sweep.jsonl", [run_record("eager", 10_000), failed])
    rows = [v for v in goals.end_to_end_goals(tmp_path) if "did not run ok" in v.goal]
    assert [(v.met, v.goal.split(": ")[-1]) for v in rows] == [
        (None, "compile+channels-last+cuda-graph did not run ok")
    ]
    assert rows[0].figure.startswith("failed") and "expected size 512==512" in rows[0].figure


def test_kernel_goals(goals, tmp_path):
    large = "large-64x64x64-nchw"
    small = "dcgan64-512x4x4-nchw-bf16"
    write_jsonl(
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
    verdicts = by_goal(goals.kernel_goals(tmp_path))
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


def test_eager_reference_ranges(goals, tmp_path):
    write_jsonl(
        tmp_path / "eager-dcgan64.jsonl",
        [run_record("eager", 14_000, peak=300.0), run_record("eager", 11_000, precision="fp32")],
    )
    verdicts = by_goal(goals.eager_reference(tmp_path))
    assert (
        verdicts["eager DCGAN-64 b128 bf16: 12.9–15.7 k img/s"].figure == "14.0 k img/s (in range)"
    )
    fp32 = verdicts["eager DCGAN-64 b128 fp32: 12.9–15.7 k img/s"]
    assert fp32.met is False and "below" in fp32.figure
    assert verdicts["eager DCGAN-64 b1024 bf16: 36.7–39.4 k img/s"].figure == "not measured"
    assert verdicts["eager DCGAN-64 b128 bf16 peak allocated: about 290 MiB"].met is True


def test_eager_diagnosis_says_how_idle_the_device_was_and_what_autotuning_did(goals, tmp_path):
    profiled = run_record("eager", 10_700)
    profiled["profile"] = {
        "device_idle_fraction": 0.62, "device_busy_ms_per_iteration": 4.5,
        "wall_ms_per_iteration": 11.9, "kernel_launches_per_iteration": 430.0,
    }  # fmt: skip
    untuned = run_record("eager", 38_000, batch=1024)
    untuned["config"]["cudnn_benchmark"] = False
    autotuned = {**run_record("eager", 41_900, batch=1024), "profile": None}
    failed = {**untuned, "status": "failed"}
    write_jsonl(tmp_path / "eager-why.jsonl", [profiled, untuned, autotuned, failed])
    rows = goals.eager_reference(tmp_path)
    why = {v.goal: v for v in rows if v.goal.startswith("why")}
    assert set(why) == {
        "why: eager DCGAN-64 b128 bf16, device busy and idle under the profiler",
        "why: eager DCGAN-64 b1024 bf16 without cuDNN autotuning",
    }
    idle = why["why: eager DCGAN-64 b128 bf16, device busy and idle under the profiler"]
    assert idle.figure == "idle 62% of an iteration (busy 4.50 of 11.90 ms, 430 kernels)"
    untuned_row = why["why: eager DCGAN-64 b1024 bf16 without cuDNN autotuning"]
    assert untuned_row.figure == "38.0 k img/s (in range)" and untuned_row.met is None


def test_main_writes_goals_md_and_refuses_a_missing_folder(goals, tmp_path, capsys):
    assert goals.main([str(tmp_path / "absent")]) == 2
    assert goals.main([str(tmp_path)]) == 0
    text = (tmp_path / "goals.md").read_text()
    assert "| #3 | (256, 64, 64, 64) bf16 fwd+bwd ≤ 0.45 ms | not measured | — |" in text
    assert text == capsys.readouterr().out


def test_the_fastest_variant_of_a_goal_point_is_what_gets_profiled(goals, tmp_path, capsys):
    write_jsonl(
        tmp_path / "sweep.jsonl",
        [
            run_record("eager", 10_000),
            run_record("channels-last+cuda-graph", 45_000),
            run_record("triton+channels-last+cuda-graph", 52_000),
            run_record("cuda-graph", 90_000, precision="fp32"),  # not a bf16 goal point
            run_record("eager", 40_000, batch=1024),
        ],
    )
    assert goals.best_variant(tmp_path, "dcgan64", 128) == "triton+channels-last+cuda-graph"
    assert goals.best_variant(tmp_path, "dcgan64", 1024) is None  # the baseline alone
    assert goals.best_variant(tmp_path, "mlp", 512) is None
    assert goals.main(["--best", str(tmp_path), "dcgan64", "128"]) == 0
    assert goals.main(["--best", str(tmp_path), "mlp", "512"]) == 0
    assert capsys.readouterr().out == "triton+channels-last+cuda-graph\n\n"
    assert goals.main(["--best", str(tmp_path), "mlp", "many"]) == 2
    assert goals.main(["--best", str(tmp_path / "absent"), "mlp", "512"]) == 2


def test_profiles_say_where_the_time_goes(goals, tmp_path):
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
    write_jsonl(tmp_path / "profile.jsonl", [profiled, failed, crashed])
    assert goals.main([str(tmp_path)]) == 0
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
