"""What a sweep is estimated to cost, and the plan `--dry-run` prints."""

from __future__ import annotations

import pytest

from bench import sweep
from bench.sweep import (
    build_spec,
    estimate,
    loop,
    plan_runs,
)
from bench.telemetry.records import append_record
from sweep_specs import (
    CPU2,
    ENV,
    GPU8,
    _compiled_record,
    run_cli,
)


def test_default_cpu_grid_is_estimated_to_fit_five_minutes():
    spec = build_spec(machine=CPU2)
    runs = plan_runs(spec.points(), spec)
    assert sum(sweep.estimate_runs_s(runs, spec)) < 0.6 * 300  # margin for a busy machine


def test_dry_run_lists_the_seeds(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loop, "run_child", lambda *a, **k: pytest.fail("ran a child"))
    out = tmp_path / "sweep.jsonl"
    args = ["sweep", "--dry-run", "--device", "cpu", "--models", "mlp", "--datasets", "synthetic"]
    args += ["--batch-sizes", "8", "--precisions", "fp32", "--gpus", "1", "--variants", "eager"]
    assert run_cli(*args, "--repeats", "2", "--seeds", "0,1,2", "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "seeds 0,1,2" in text
    assert "1 points × 2 repeat(s) × 3 seed(s): 6 to run" in text
    assert not out.exists()
    assert run_cli(*args, "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "seed 0, records to" in text and "× 1 seed(s): 2 to run" in text  # the default


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loop, "run_child", lambda *a, **k: pytest.fail("ran a child"))
    out = tmp_path / "sweep.jsonl"
    assert (
        run_cli(
            "sweep", "--dry-run", "--device", "cpu", "--precisions", "fp32,fp16", "--out", str(out)
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "Nothing was run or written" in text and "precision fp16 needs a CUDA GPU" in text
    assert not out.exists()


def test_compiled_points_are_estimated_cheaper_when_compiled_ahead():
    kw = dict(machine=GPU8, models="dcgan64", batch_sizes="128", precisions="bf16", gpus="1",
              variants="eager,compile,compile-max-autotune-no-cudagraphs", repeats=1)  # fmt: skip
    alone, ahead = build_spec(**kw, precompile_jobs=0), build_spec(**kw, precompile_jobs=4)
    cost = {}
    for spec in (alone, ahead):
        runs = plan_runs(spec.points(), spec)
        for run, seconds in zip(runs, sweep.estimate_runs_s(runs, spec), strict=True):
            cost[spec.precompile_jobs, run.point.variant] = seconds
    assert cost[4, "compile"] < cost[0, "compile"]
    assert cost[4, "eager"] == cost[0, "eager"]
    autotuned = "compile-max-autotune-no-cudagraphs"
    assert cost[4, autotuned] == cost[0, autotuned]  # compiles alone


def test_cold_compiles_are_estimated_as_this_machine_measured_them(tmp_path, capsys):
    """The autotuning compile's minutes are an assumption until a run measures them: a
    resumed sweep's estimate takes the cold compiles its results file holds from this
    environment (median warm-up phase), not warm ones, nor other machines'."""
    out = tmp_path / "sweep.jsonl"
    mode = "max-autotune-no-cudagraphs"
    cached = {"fx_graph": {"hits": 3, "misses": 0, "bypasses": 0}}
    for record in (
        _compiled_record("dcgan64", mode, 60.0),
        _compiled_record("dcgan64", mode, 80.0),
        _compiled_record("dcgan64", mode, 70.0, compile={"caches": {"fx_graph": {"misses": 2}}}),
        _compiled_record("dcgan64", mode, 5.0, compile={"caches": cached}),  # warm
        _compiled_record("dcgan64", mode, 6.0, precompiled=True),  # compiled ahead
        _compiled_record("dcgan64", mode, 900.0, env={**ENV, "torch": "2.11.0"}),
        _compiled_record("dcgan64", mode, 900.0, status="failed"),
        _compiled_record("dcgan64", "none", 1.0),  # no compile
        _compiled_record("mlp", "default", 20.0),
    ):
        append_record(str(out), record)
    measured = sweep.measured_compile_s(str(out), (ENV["device_name"], ENV["torch"]))
    assert measured == {("dcgan64", mode): 70.0, ("mlp", "default"): 20.0}

    spec = build_spec(machine=GPU8, models="dcgan64", batch_sizes="128", precisions="bf16",
                      gpus="1", variants=f"compile-{mode}", repeats=1, out=str(out))  # fmt: skip
    runs = plan_runs(spec.points(), spec)
    (assumed,) = sweep.estimate_runs_s(runs, spec)
    (calibrated,) = sweep.estimate_runs_s(runs, spec, measured)
    assert assumed - calibrated == pytest.approx(150.0 - 70.0)  # the assumed cold compile
    estimate.print_plan(runs, spec, [calibrated], measured)
    assert "dcgan64 max-autotune-no-cudagraphs 70 s" in capsys.readouterr().out


def test_concurrent_points_are_estimated_to_take_a_share_of_the_time():
    kw = dict(machine=CPU2, models="mlp", batch_sizes="8,16,32,64", precisions="fp32",
              gpus="1", variants="eager", repeats=1)  # fmt: skip
    alone, side_by_side = build_spec(**kw), build_spec(**kw, concurrent=4)
    total = {}
    for spec in (alone, side_by_side):
        total[spec.concurrent] = sum(sweep.estimate_runs_s(plan_runs(spec.points(), spec), spec))
    assert total[4] == pytest.approx(total[1] * estimate.SHARED_SLOWDOWN / 4)
