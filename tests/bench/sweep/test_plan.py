"""The plan: skip rules, the order of runs (repeats outermost, cheapest compile first,
seeds), and resume."""

from __future__ import annotations

import pytest

from bench import sweep
from bench.speedups.compile import cost_rank
from bench.sweep import (
    Machine,
    Point,
    build_spec,
    loop,
    plan,
    plan_runs,
    skip_reason,
)
from bench.telemetry.records import append_record
from sweep_specs import (
    CPU2,
    ENV,
    GPU8,
    one_point_spec,
    records,
    small_spec,
)


def test_within_a_repeat_points_run_cheapest_compile_mode_first():
    """A GPU sweep cut off by its time limit has measured the most points, and the
    compile baselines before the modes that autotune for minutes; repeats stay outermost."""
    spec = build_spec(machine=GPU8, repeats=2, grid="full")
    runs = plan_runs(spec.points(), spec)
    cost = [cost_rank(plan.compile_mode(r.point)) for r in runs]
    repeats = [r.repeat for r in runs]
    assert repeats == sorted(repeats)
    for repeat in (0, 1):
        costs = [c for c, r in zip(cost, repeats, strict=True) if r == repeat]
        assert costs == sorted(costs) and costs[0] == 0
        assert costs[-1] == cost_rank("max-autotune-no-cudagraphs")
    first = [r.point for r in runs if r.repeat == 0]
    assert sorted(first, key=str) == sorted(spec.points(), key=str)  # each point once a repeat


@pytest.mark.parametrize(
    ("machine", "point", "reason"),
    [
        (CPU2, Point("mlp", "synthetic", 8, "fp16", 1, "eager"), "needs a CUDA GPU"),
        (CPU2, Point("mlp", "synthetic", 8, "tf32", 1, "eager"), "needs a CUDA GPU"),
        (CPU2, Point("mlp", "synthetic", 8, "fp32", 4, "eager"), "4 processes on 2 CPU cores"),
        (CPU2, Point("mlp", "synthetic", 8, "fp32", 1, "compile-reduce-overhead"), "CUDA-graph"),
        (CPU2, Point("mlp", "synthetic", 8, "fp32", 1, "compile-max-autotune"), "CUDA-graph"),
        (CPU2, Point("mlp", "synthetic", 8, "fp32", 1, "triton"), "TRITON_INTERPRET=1"),
        (CPU2, Point("mlp", "synthetic", 8, "fp32", 1, "compile+triton"), "TRITON_INTERPRET=1"),
        (
            CPU2,
            Point("mlp", "synthetic", 8, "fp32", 1, "compile-max-autotune-no-cudagraphs"),
            "C++ templates",
        ),
        (
            GPU8,
            Point("mlp", "synthetic", 8, "bf16", 16, "eager"),
            "needs 16 GPUs; this machine has 8",
        ),
        (
            Machine("cuda", 1, 8, triton_installed=False, triton_interpret=False),
            Point("dcgan64", "synthetic", 8, "fp32", 1, "triton"),
            "not installed",
        ),
    ],
)
def test_skip_rules(machine, point, reason):
    assert reason in skip_reason(point, build_spec(machine=machine))


@pytest.mark.parametrize(
    ("machine", "point"),
    [
        (CPU2, Point("mlp", "synthetic", 8, "bf16", 2, "compile")),
        (Machine("cpu", 0, 2, True, True), Point("mlp", "synthetic", 8, "fp32", 1, "triton")),
        (GPU8, Point("dcgan64", "synthetic", 8, "fp16", 8, "compile-reduce-overhead")),
        (GPU8, Point("dcgan64", "synthetic", 8, "tf32", 1, "compile+triton")),
    ],
)
def test_runnable_points_are_not_skipped(machine, point):
    assert skip_reason(point, build_spec(machine=machine)) is None


@pytest.mark.parametrize(
    ("variant", "model", "words"),
    [
        ("cuda-graph", "dcgan32", ["--cuda-graph", "needs a CUDA GPU"]),
        ("triton+channels-last+cuda-graph", "dcgan32", ["CUDA"]),
        ("channels-last", "mlp", ["mlp", "no convolutions"]),
    ],
)
def test_every_new_variant_runs_or_is_skipped_with_its_reason_on_cpu(variant, model, words):
    spec = small_spec(models=model, batch_sizes="4", variants=variant)
    runs = plan_runs(spec.points(), spec)
    assert runs and all(run.action == "skip" for run in runs)
    for word in words:
        assert word in runs[0].reason


def test_invalid_combination_is_skipped_with_the_configs_reason():
    spec = small_spec(models="mlp,dcgan32", batch_sizes="1")
    runs = {r.point.model: r for r in plan_runs(spec.points(), spec)}
    assert runs["dcgan32"].action == "run"
    assert runs["mlp"].action == "skip" and "BatchNorm" in runs["mlp"].reason


def test_repeats_are_the_outer_loop():
    spec = small_spec(batch_sizes="8,16", repeats=2)
    runs = plan_runs(spec.points(), spec)
    assert [(r.point.batch_size, r.repeat) for r in runs] == [(8, 0), (16, 0), (8, 1), (16, 1)]


def test_every_point_runs_once_per_seed_and_repeat():
    spec = small_spec(batch_sizes="8,16", repeats=2, seeds="3,0,3")
    assert spec.seeds == (3, 0)  # order kept, the duplicate dropped
    runs = plan_runs(spec.points(), spec)
    assert [(r.repeat, r.seed, r.point.batch_size) for r in runs] == [
        (0, 3, 8),
        (0, 3, 16),
        (0, 0, 8),
        (0, 0, 16),
        (1, 3, 8),
        (1, 3, 16),
        (1, 0, 8),
        (1, 0, 16),
    ]
    assert build_spec(machine=CPU2).seeds == (0,)  # default: RunConfig's seed


def test_resume_keys_differ_by_seed(tmp_path):
    spec = one_point_spec(tmp_path, seeds="0,1,2", repeats=1)
    spec._environment = {**ENV, "device_type": "cpu"}
    (point,) = spec.points()
    for seed in (1, 7):  # seed 7 is not in this sweep
        append_record(spec.out, sweep.sweep_record(point, 0, spec, "ok", None, seed=seed))
    done = sweep.recorded_keys(spec.out)
    assert len(done) == 2  # two seeds, two keys
    runs = plan_runs(spec.points(), spec, done)
    assert [(r.seed, r.action) for r in runs] == [(0, "run"), (1, "done"), (2, "run")]
    workload = plan.spec_workload(spec)
    key = plan.run_key(point, 0, workload, ("Test CPU", "2.14.0"), 0)
    assert key != plan.run_key(point, 0, workload, ("Test CPU", "2.14.0"), 1)


def test_strong_scaling_reaches_each_points_run_and_its_resume_key(tmp_path):
    weak = one_point_spec(tmp_path, gpus="2")
    strong = one_point_spec(tmp_path, gpus="2", scaling="strong")
    (point,) = strong.points()
    assert point.scaling == "strong" and point.label.startswith("mlp/synthetic b8 global")
    cfg = plan.point_config(point, 0, strong, out=strong.out)
    assert (cfg.scaling, cfg.batch_size_per_process) == ("strong", 4)
    assert "--scaling strong" in " ".join(cfg.to_cli_args())  # what the child is given
    # A weak record of the same point resumes the weak sweep, not the strong one.
    for spec in (weak, strong):
        spec._environment = {**ENV, "device_type": "cpu"}
    append_record(weak.out, sweep.sweep_record(weak.points()[0], 0, weak, "ok", None))
    done = sweep.recorded_keys(weak.out)
    assert [r.action for r in plan_runs(weak.points(), weak, done)] == ["done"]
    assert [r.action for r in plan_runs(strong.points(), strong, done)] == ["run"]
    # A global batch the processes cannot share evenly: skipped with the run's own reason.
    uneven = small_spec(gpus="2", batch_sizes="9", scaling="strong", repeats=1)
    (run,) = plan_runs(uneven.points(), uneven)
    assert run.action == "skip" and "does not divide evenly among 2 processes" in run.reason


def test_resume_skips_only_exactly_matching_ok_runs(tmp_path, capsys):
    out = tmp_path / "sweep.jsonl"
    spec = small_spec(batch_sizes="8,16", repeats=2, steps=5, out=str(out))
    spec._environment = dict(ENV)

    def rec(batch, repeat, status="ok", steps=5, loss="non-saturating", lr=2e-4, **env):
        return {
            "schema_version": 1,
            "status": status,
            "reason": None,
            "config": {
                "model": "mlp",
                "dataset": "synthetic",
                "batch_size": batch,
                "precision": "fp32",
                "steps": steps,
                "repeat": repeat,
                "loss": loss,
                "lr": lr,
                "warmup_steps": spec.warmup_steps,
                "nproc": 1,
            },
            "run": {"world_size": 1, "variant": "eager"},
            "environment": {**ENV, **env},
            "metrics": {},
        }

    for r in (
        rec(8, 0),  # done
        rec(8, 1, status="failed"),  # failed: run again
        rec(8, 1, loss="hinge"),  # trained with another loss (a run by hand): not this point
        rec(16, 0, lr=1e-3),  # or another learning rate
        rec(16, 0, steps=6),  # other steps: another measurement
        rec(16, 1, torch="2.11.0"),  # other environment
    ):
        append_record(str(out), r)
    with open(out, "a") as handle:
        handle.write("{not json\n")
    runs = plan_runs(spec.points(), spec, sweep.recorded_keys(str(out)))
    assert [(r.point.batch_size, r.repeat, r.action) for r in runs] == [
        (8, 0, "done"),
        (16, 0, "run"),
        (8, 1, "run"),
        (16, 1, "run"),
    ]
    assert "line 7 is not a JSON object" in capsys.readouterr().err


def test_nothing_runs_when_everything_is_recorded(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep.jsonl"
    spec = small_spec(precisions="fp32,fp16", repeats=1, out=str(out))
    spec._environment = {**ENV, "device_type": "cpu"}
    fp32 = next(p for p in spec.points() if p.precision == "fp32")
    done = sweep.sweep_record(fp32, 0, spec, "ok", None)
    append_record(str(out), done)
    monkeypatch.setattr(loop, "run_child", lambda *a, **k: pytest.fail("ran a child"))
    assert sweep.execute(spec) == 0  # fp32 is recorded ok; fp16 on CPU is a skip record
    assert [(r["status"], r["config"]["precision"]) for r in records(out)] == [
        ("ok", "fp32"),
        ("skipped", "fp16"),
    ]
    assert "1 already recorded" in capsys.readouterr().err
    assert sweep.execute(spec) == 0
    assert len(records(out)) == 2  # neither the ok run nor the skip was recorded again
    assert "2 already recorded" in capsys.readouterr().err
