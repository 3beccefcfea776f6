"""`gan-bench kernels`: refuses to time the interpreter; on a GPU, rows become records."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from rich.console import Console

from bench.config import ConfigError
from bench.kernelbench.batchnorm import TUNINGS
from bench.kernelbench.command import run_kernel_benchmarks
from bench.kernelbench.tables import print_kernel_table, print_tuning_table
from bench.telemetry.records import read_records
from kernels.batchnorm.plan import DEFAULT_TUNING

ARGS = {
    "dtypes": ["fp32"],
    "impls": ["eager", "triton"],
    "passes": ["forward+backward"],
    "match": "bn1d",
    "rep_ms": 5,
    "quiet": True,
}


def test_needs_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        run_kernel_benchmarks(out=str(tmp_path / "k.jsonl"), **ARGS)
    assert not (tmp_path / "k.jsonl").exists()


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("field", "value"),
    [("dtypes", ["fp8"]), ("impls", ["cuda"]), ("passes", []), ("match", "no-such-case")],
)
def test_bad_choices(tmp_path, field, value):
    with pytest.raises(ConfigError):
        run_kernel_benchmarks(out=str(tmp_path / "k.jsonl"), **{**ARGS, field: value})


@pytest.mark.gpu
def test_one_case_becomes_records(tmp_path):
    out = tmp_path / "k.jsonl"
    rows = run_kernel_benchmarks(out=str(out), **ARGS)
    records = [r for _, r in read_records(str(out))]
    assert records == rows and len(rows) == 2  # bn1d fp32 × (eager, triton)
    for r in rows:
        assert r["kind"] == "kernel" and r["status"] == "ok", r.get("reason")
        assert r["environment"]["device_type"] == "cuda"
        assert r["ms_p50"] > 0 and r["gb_per_s"] > 0
        assert r["host_ms"] > 0  # ARGS time forward+backward only
    eager, fused = rows
    assert eager["host_ms_without_launches"] is None
    assert 0 < fused["host_ms_without_launches"] < fused["host_ms"]
    assert rows[1]["speedup_vs_eager"] == pytest.approx(rows[0]["ms_p50"] / rows[1]["ms_p50"])


def tuning_row(tuning, ms, status="ok"):
    row = {"case": "large-64x64x64-nchw-bf16", "pass": "forward+backward", "status": status,
           "tuning": dataclasses.asdict(tuning), "tuned": True}  # fmt: skip
    if status == "ok":
        return {**row, "ms_p50": ms, "pct_of_copy_bandwidth": 50.0}
    return {**row, "reason": "OutOfResources: shared memory"}


def test_tunings_move_one_knob_from_the_default():
    assert TUNINGS[0] == DEFAULT_TUNING and len(set(TUNINGS)) == len(TUNINGS)
    default = dataclasses.asdict(DEFAULT_TUNING)
    for tuning in TUNINGS[1:]:
        moved = {k for k, v in dataclasses.asdict(tuning).items() if v != default[k]}
        assert moved and (len(moved) == 1 or moved == {"tile_elems", "num_warps"}), tuning


def test_tuning_table_sets_each_tuning_against_the_default():
    faster = dataclasses.replace(DEFAULT_TUNING, num_stages=3)
    rows = [
        tuning_row(faster, 0.2),  # measured before the default: still compared with it
        tuning_row(DEFAULT_TUNING, 0.4),
        tuning_row(dataclasses.replace(DEFAULT_TUNING, num_warps=8), None, status="failed"),
    ]
    out = io.StringIO()
    print_tuning_table(rows, 3000.0, Console(file=out, width=200))
    lines = out.getvalue().splitlines()
    assert any("3 stage(s)" in ln and "0.2000" in ln and "2.00" in ln for ln in lines)
    assert any("1 stage(s)" in ln and "0.4000" in ln and "1.00" in ln for ln in lines)
    assert any("8 warps" in ln and "failed" in ln for ln in lines)


@pytest.mark.gpu
def test_tune_times_the_fused_op_under_each_tuning(tmp_path, monkeypatch):
    # Two tunings, not all of them: each one compiles the kernels anew (seconds).
    tunings = (DEFAULT_TUNING, dataclasses.replace(DEFAULT_TUNING, num_stages=3, num_warps=8))
    monkeypatch.setattr("bench.kernelbench.batchnorm.TUNINGS", tunings)
    out = tmp_path / "k.jsonl"
    rows = run_kernel_benchmarks(out=str(out), **{**ARGS, "impls": ["triton"]}, tune=True)
    assert [r["tuning"] for r in rows] == [dataclasses.asdict(t) for t in tunings]
    for r in rows:
        assert r["impl"] == "triton" and r["tuned"] and r["status"] == "ok", r.get("reason")
    with pytest.raises(ConfigError, match="must include triton"):
        run_kernel_benchmarks(out=str(out), **{**ARGS, "impls": ["eager"]}, tune=True)


def test_kernel_table_sets_device_and_host_time_beside_the_do_bench_time():
    def row(impl, pass_, ms, device_ms=None, reason=None, host=None, host_bare=None):
        return {"case": "dcgan64-512x4x4-nchw-bf16", "dtype": "bf16", "layout": "nchw",
                "pass": pass_, "impl": impl, "status": "ok", "ms_p50": ms, "gb_per_s": 40.0,
                "pct_of_copy_bandwidth": 1.0, "speedup_vs_eager": 1.0, "device_ms": device_ms,
                "device_ms_reason": reason, "host_ms": host,
                "host_ms_without_launches": host_bare}  # fmt: skip

    rows = [
        row("eager", "forward+backward", 0.094, 0.0312, host=0.09),
        row("compile", "forward+backward", 0.25, None, "not captured: RuntimeError: capture"),
        row("triton", "forward", 0.03, None, "measured for forward+backward only"),
        row("triton", "forward+backward", 0.3, 0.02, host=0.29, host_bare=0.08),
    ]
    out = io.StringIO()
    print_kernel_table(rows, 3000.0, Console(file=out, width=200))
    lines = out.getvalue().splitlines()
    assert any("eager" in ln and "0.0940" in ln and "0.0312" in ln for ln in lines)
    assert any("compile" in ln and "0.2500" in ln and "—" in ln for ln in lines)
    assert any("triton" in ln and "0.0300" in ln and "—" not in ln for ln in lines)
    # the host's time, and the fused op's without its launches in brackets
    assert any("eager" in ln and "0.0900" in ln and "(" not in ln for ln in lines)
    assert any("triton" in ln and "0.2900 (0.0800)" in ln for ln in lines)


# ------------------------------------------------------------------- narrow convolutions

CONV_ARGS = {**ARGS, "match": "image-in-b128", "passes": ["forward+backward"], "convs": True}


def test_narrow_conv_cases_are_the_dcgan64_image_layers():
    from bench.kernelbench.narrow_conv import NARROW_TUNINGS, conv_cases

    cases = {c.name: c for c in conv_cases()}
    assert set(cases) == {f"image-{d}-b{b}" for d in ("in", "out") for b in (128, 1024)}
    assert cases["image-in-b1024"].x_shape == (1024, 3, 64, 64)
    assert cases["image-out-b128"].x_shape == (128, 64, 32, 32)
    # the useful work is the reference layer's: 2 x outputs x multiply-adds per output
    assert cases["image-in-b128"].flops == 2 * 128 * (32 * 32 * 64) * (3 * 4 * 4)
    assert cases["image-out-b128"].flops == 2 * 128 * (64 * 64 * 3) * (64 * 2 * 2)
    default = dataclasses.asdict(NARROW_TUNINGS[0])
    assert len(set(NARROW_TUNINGS)) == len(NARROW_TUNINGS)
    for tuning in NARROW_TUNINGS[1:]:
        moved = {k for k, v in dataclasses.asdict(tuning).items() if v != default[k]}
        assert len(moved) == 1 or moved == {"block_m", "num_warps"}, tuning


def test_narrow_conv_benchmark_needs_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        run_kernel_benchmarks(out=str(tmp_path / "k.jsonl"), **CONV_ARGS)
    assert not (tmp_path / "k.jsonl").exists()


def test_conv_table_sets_triton_against_cudnn():
    from bench.kernelbench.tables import print_conv_table

    def row(impl, ms, speedup, tuning=None):
        return {"case": "image-out-b1024", "pass": "forward", "impl": impl, "status": "ok",
                "ms_p50": ms, "useful_tflops": 100.0, "speedup_vs_eager": speedup,
                **({"tuning": tuning} if tuning else {})}  # fmt: skip

    rows = [
        row("eager", 0.4, 1.0),
        row("triton", 0.1, 4.0, {"block_m": 64}),
        {
            "case": "image-out-b1024",
            "pass": "forward",
            "impl": "compile",
            "status": "failed",
            "reason": "RuntimeError: no",
        },  # fmt: skip
    ]
    out = io.StringIO()
    print_conv_table(rows, Console(file=out, width=200))
    lines = out.getvalue().splitlines()
    assert any("eager" in ln and "0.4000" in ln and "1.00" in ln for ln in lines)
    assert any("triton" in ln and "block_m 64" in ln and "4.00" in ln for ln in lines)
    assert any("compile" in ln and "failed" in ln for ln in lines)


@pytest.mark.gpu
def test_narrow_conv_case_becomes_records(tmp_path):
    out = tmp_path / "k.jsonl"
    rows = run_kernel_benchmarks(out=str(out), **CONV_ARGS)
    assert [r for _, r in read_records(str(out))] == rows
    assert [r["impl"] for r in rows] == ["eager", "triton"]
    for r in rows:
        assert r["kind"] == "narrow-conv" and r["status"] == "ok", r.get("reason")
        assert r["ms_p50"] > 0 and r["useful_tflops"] > 0
    assert rows[1]["speedup_vs_eager"] == pytest.approx(rows[0]["ms_p50"] / rows[1]["ms_p50"])
    with pytest.raises(ConfigError, match="must include triton"):
        run_kernel_benchmarks(out=str(out), **{**CONV_ARGS, "impls": ["eager"]}, tune=True)
