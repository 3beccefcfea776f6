"""`gan-bench kernels --host`: the fused op's host time with its launches stubbed and
counted, against eager's dispatch, on a CPU."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console

from bench.cli import main
from bench.kernelbench import host
from bench.kernelbench.batchnorm import benchmark_cases
from bench.kernelbench.tables import print_host_table
from bench.telemetry.records import read_records
from kernels import availability
from kernels.batchnorm import ops
from kernels.batchnorm import plan as batchnorm_plan

# One case on the fused op's one-launch path on a GPU, one on its split path there.
ONE_LAUNCH, SPLIT = "dcgan64-512x4x4-nchw-fp32", "dcgan64-64x32x32-nchw-fp32"


def _case(name: str):
    return next(c for c in benchmark_cases() if c.name == name)


def test_host_command_on_a_cpu_writes_kernel_host_records(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    wrap, interpreted, sm_count = ops.wrap_triton, availability.INTERPRETED, batchnorm_plan.sm_count
    out = tmp_path / "host.jsonl"
    argv = ["kernels", "--host", "--dtypes", "fp32", "--match", f"{ONE_LAUNCH},{SPLIT}"]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--out", str(out), "--quiet"])
    assert info.value.code == 0
    records = {r["case"]: r for _, r in read_records(str(out))}
    assert set(records) == {ONE_LAUNCH, SPLIT}
    for r in records.values():
        assert r["kind"] == "kernel-host" and r["status"] == "ok", r.get("reason")
        assert r["host_us"] > 0 and r["eager_dispatch_us"] > 0
        assert r["host_ratio"] == pytest.approx(r["host_us"] / r["eager_dispatch_us"])
        assert r["goal_met"] == (r["host_ratio"] <= 0.5 and r["launches_per_call"] <= 2)
        assert (r["plan_device"], r["plan_sms"]) == ("nominal H100 (132 SMs)", 132)
        assert r["eager_method"] == "cpu-minimal-shape" and r["eager_shape"] == [2, 8, 2, 2]
        assert r["environment"]["device_type"] == "cpu" and r["environment"]["torch"]
        # under the interpreter the op's own plan is measured too: one launch each way
        assert r["kernels_interpreted"] is availability.INTERPRETED
        if availability.INTERPRETED:
            assert r["interpreter_launches_per_call"] == 2 and r["interpreter_host_us"] > 0
    # the GPU's plan, not the interpreter's: the 64x32x32 layer takes the split path there,
    # and one kernel each way when asked (triton-one-kernel)
    assert records[ONE_LAUNCH]["launches_per_call"] == 2
    assert records[SPLIT]["launches_per_call"] > 2
    for r in records.values():
        assert r["one_kernel_launches_per_call"] == 2 and r["one_kernel_host_us"] > 0
        assert r["one_kernel_host_ratio"] == pytest.approx(
            r["one_kernel_host_us"] / r["eager_dispatch_us"]
        )
    # every stub and setting is back as it was
    assert ops.wrap_triton is wrap and batchnorm_plan.sm_count is sm_count
    assert availability.INTERPRETED is interpreted


def test_without_the_interpreter_only_the_gpu_plan_is_measured(monkeypatch):
    monkeypatch.setattr(availability, "INTERPRETED", False)
    row = host.run_host_case(_case("bn1d-1024-nc-bf16"), gpu=("nominal", 132))
    assert row["status"] == "ok", row["reason"]
    assert row["launches_per_call"] == 2 and row["eager_shape"] == [2, 8]
    assert row["kernels_interpreted"] is False
    assert row["interpreter_host_us"] is None and row["interpreter_launches_per_call"] is None


def test_a_case_that_fails_is_a_row_with_its_reason(monkeypatch):
    def broken(case):
        raise RuntimeError("no dispatch\nsecond line")

    monkeypatch.setattr(host, "eager_dispatch_call", broken)
    wrap = ops.wrap_triton
    row = host.run_host_case(_case(ONE_LAUNCH), gpu=("nominal", 132))
    assert row["status"] == "failed" and row["reason"] == "RuntimeError: no dispatch"
    assert ops.wrap_triton is wrap


def test_eager_dispatch_keeps_the_layout_and_dtype_at_a_minimal_shape():
    assert host.dispatch_shape((128, 512, 4, 4)) == (2, 8, 2, 2)
    assert host.dispatch_shape((512, 1024)) == (2, 8)
    assert host.dispatch_shape((4, 3, 1, 5)) == (2, 3, 1, 2)
    case = _case("dcgan64-256x8x8-channels_last-bf16")
    x = host.host_tensors(case, host.dispatch_shape(case.shape))["x"]
    assert x.shape == (2, 8, 2, 2) and x.dtype == torch.bfloat16
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def test_goal_cases_are_the_dcgan64_layers_and_bn1d():
    goal = {c.name for c in benchmark_cases() if host.goal_case(c)}
    assert goal == {c.name for c in benchmark_cases() if not c.name.startswith("large")}
    assert len(goal) == 18


def test_host_table_shows_ratio_launches_and_the_goal():
    def row(case, host_us, eager_us, launches, met, interpreter_us=None, one=(25.0, 2, True)):
        return {"case": case, "status": "ok", "host_us": host_us, "eager_dispatch_us": eager_us,
                "host_ratio": host_us / eager_us, "launches_per_call": launches, "goal_met": met,
                "plan_device": "nominal H100 (132 SMs)", "interpreter_host_us": interpreter_us,
                "interpreter_launches_per_call": 2, "one_kernel_host_us": one[0],
                "one_kernel_launches_per_call": one[1], "one_kernel_goal_met": one[2]}  # fmt: skip

    rows = [
        row("dcgan64-512x4x4-nchw-bf16", 30.0, 80.0, 2, True, 40.0),
        row("dcgan64-64x32x32-nchw-bf16", 90.0, 60.0, 6, False, 85.0, one=(55.0, 2, False)),
        row("large-64x64x64-nchw-bf16", 90.0, 60.0, 6, None, 85.0, one=(55.0, 2, None)),
        {"case": "bn1d-1024-nc-bf16", "status": "failed", "reason": "RuntimeError: no"},
    ]
    out = io.StringIO()
    print_host_table(rows, Console(file=out, width=200))
    lines = out.getvalue().splitlines()
    assert "nominal H100" in out.getvalue()
    assert any("512x4x4" in ln and "30.0" in ln and "0.38" in ln and "met" in ln for ln in lines)
    assert any("64x32x32" in ln and "1.50" in ln and " 6 " in ln and "missed" in ln for ln in lines)
    assert any("large" in ln and "met" not in ln and "missed" not in ln for ln in lines)
    assert any("512x4x4" in ln and "40.0 (2)" in ln for ln in lines)
    assert any("64x32x32" in ln and "55.0 (2)" in ln for ln in lines)
    assert any("bn1d" in ln and "failed" in ln for ln in lines)


@pytest.mark.parametrize(
    "args",
    [["--dtypes", "fp8"], ["--match", "no-such-case"], ["--tune"], ["--convs"], ["--dtypes", ""]],
    ids=["dtype", "match", "tune", "convs", "no-dtype"],
)
def test_bad_input_is_one_line_and_exit_2(args, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "host.jsonl"
    with pytest.raises(SystemExit) as info:
        main(["kernels", "--host", *args, "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gan-bench: error: ") and len(err.strip().splitlines()) == 1
    assert not out.exists()
