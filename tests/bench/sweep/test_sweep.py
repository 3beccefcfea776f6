"""`gan-bench sweep`: the plan (pure), resume, and real child processes that succeed, fail,
hang and get interrupted, each leaving one whole record."""

from __future__ import annotations

import inspect
import os
import re
import signal
import sys
import tempfile
import threading
import time

import pytest

from bench import cli, sweep
from bench.cli import main
from bench.config import ConfigError, RunConfig
from bench.telemetry.records import append_record, read_records
from bench.speedups.compile import cost_rank
from bench.sweep import (
    ChildResult,
    Machine,
    Point,
    build_spec,
    estimate,
    loop,
    plan,
    plan_runs,
    precompile,
    skip_reason,
    spec as sweep_spec,
    warm,
)

CPU2 = Machine(
    device_type="cpu", gpu_count=0, cpu_cores=2, triton_installed=True, triton_interpret=False
)
GPU8 = Machine(
    device_type="cuda", gpu_count=8, cpu_cores=16, triton_installed=True, triton_interpret=False
)
TINY = ["--steps", "2", "--warmup-steps", "1", "--repeats", "1", "--device", "cpu"]
ENV = {"device_name": "Test CPU", "torch": "2.14.0"}


@pytest.fixture(autouse=True)
def _temp_in_tmp_path(tmp_path, monkeypatch):
    """The sweep's per-point files go under tmp_path, like everything a test writes."""
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))


def small_spec(**fields):
    """A one-point-per-axis CPU spec (mlp, synthetic, batch 8, fp32, 1 process, eager),
    the given axes replacing those."""
    axes = {
        "machine": CPU2,
        "models": "mlp",
        "datasets": "synthetic",
        "batch_sizes": "8",
        "precisions": "fp32",
        "gpus": "1",
        "variants": "eager",
    }
    return build_spec(**{**axes, **fields})


def records(path) -> list[dict]:
    lines = list(read_records(str(path)))
    assert all(rec is not None for _, rec in lines), "a results line is not JSON"
    return [rec for _, rec in lines]


def run_cli(*args) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code


# ---------------------------------------------------------------------------- the plan


def test_default_cpu_grid_shows_every_axis_with_eager_baselines():
    points = build_spec(machine=CPU2).points()
    for axis in ("model", "dataset", "batch_size", "precision", "world_size", "variant"):
        assert len({getattr(p, axis) for p in points}) >= 2, axis
    assert {p.world_size for p in points} == {1, 2}
    assert {p.variant for p in points} == {"eager", "compile"}
    assert len(points) == len(set(points))
    for p in points:
        if p.variant != "eager":
            assert Point(p.model, p.dataset, p.batch_size, p.precision, p.world_size, "eager") in (
                points
            )
    # runs in one process before the point that needs torchrun, baseline before variant
    assert all(skip_reason(p, build_spec(machine=CPU2)) is None for p in points)


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


def test_models_run_in_the_order_given_with_the_goal_blocks_first_by_default():
    """A sweep cut off by its limit has measured the first models of each compile mode."""
    assert [p.model for p in small_spec(models="mlp,dcgan32").points()] == ["mlp", "dcgan32"]
    spec = build_spec(machine=GPU8, repeats=1, grid="full")
    by_cost: dict[int, list[str]] = {}
    for run in plan_runs(spec.points(), spec):
        by_cost.setdefault(cost_rank(plan.compile_mode(run.point)), []).append(run.point.model)
    for models in by_cost.values():
        assert list(dict.fromkeys(models)) == [
            m for m in ("dcgan64", "mlp", "dcgan32") if m in models
        ]


def test_default_cpu_grid_is_estimated_to_fit_five_minutes():
    spec = build_spec(machine=CPU2)
    runs = plan_runs(spec.points(), spec)
    assert sum(sweep.estimate_runs_s(runs, spec)) < 0.6 * 300  # margin for a busy machine


def test_sweep_appends_to_the_file_run_appends_to_by_default():
    # so that `gan-bench compare results/runs.jsonl` prints the sweep's table again
    assert build_spec(machine=CPU2).out == RunConfig.out == "results/runs.jsonl"
    assert inspect.signature(cli.sweep).parameters["out"].default == RunConfig.out


@pytest.mark.parametrize(("gpus", "worlds"), [(8, [1, 2, 4, 8]), (6, [1, 2, 4]), (1, [1])])
def test_full_gpu_grid_answers_the_goals(gpus, worlds):
    machine = Machine(
        device_type="cuda",
        gpu_count=gpus,
        cpu_cores=16,
        triton_installed=True,
        triton_interpret=False,
    )
    spec = build_spec(machine=machine, grid="full")
    points = spec.points()
    assert sorted({p.world_size for p in points}) == worlds
    assert {p.model for p in points} == {"mlp", "dcgan32", "dcgan64"}
    assert {p.precision for p in points} == {"fp32", "tf32", "bf16"}
    # The end-to-end goals: every speed-up alone and the best combinations, next to eager
    # and the default torch.compile, at DCGAN-64 batch 128 and 1024 and MLP batch 512, bf16.
    for model, batch in (("dcgan64", 128), ("dcgan64", 1024), ("mlp", 512)):
        variants = {
            p.variant
            for p in points
            if (p.model, p.batch_size, p.precision, p.world_size) == (model, batch, "bf16", 1)
        }
        assert {"eager", "compile", "cuda-graph", "triton", "compile-reduce-overhead"} <= variants
        assert "compile-max-autotune-no-cudagraphs" in variants
        # each compile mode with the fused kernels (every sensible combination)
        modes = ("compile", "compile-reduce-overhead", "compile-max-autotune-no-cudagraphs")
        assert {f"{mode}+triton" for mode in modes} <= variants
        if model == "dcgan64":
            assert {"channels-last", "triton+channels-last+cuda-graph"} <= variants
        else:
            assert not any("channels-last" in v for v in variants)  # no convolutions
    # Nothing in the default plan is an invalid combination that would only be skipped.
    runs = plan_runs(points, spec)
    assert all(r.action == "run" for r in runs if r.point.world_size <= gpus)
    scaling = {p.variant for p in points if p.world_size > 1}
    assert scaling == ({"eager", "channels-last+cuda-graph"} if gpus > 1 else set())
    assert (spec.steps, spec.repeats) == (100, 3)


def test_options_replace_an_axis_in_every_block():
    spec = build_spec(machine=CPU2, variants="eager", precisions="fp32")
    points = spec.points()
    assert {p.variant for p in points} == {"eager"}
    assert {p.precision for p in points} == {"fp32"}
    assert {p.world_size for p in points} == {1, 2}  # the default world sizes stay
    full = small_spec(
        batch_sizes="8,16,8", precisions="fp32,bf16", variants="eager,compile"
    ).points()
    assert len(full) == 2 * 2 * 2  # a plain product, the duplicate 8 dropped


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


def test_variants_option_takes_any_order_and_rejects_conflicts(capsys):
    spec = build_spec(machine=CPU2, variants="cuda-graph+channels-last,eager")
    assert {p.variant for p in spec.points()} == {"channels-last+cuda-graph", "eager"}
    with pytest.raises(ConfigError, match="graph inside a graph"):
        build_spec(machine=CPU2, variants="compile-reduce-overhead+cuda-graph")


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


def test_each_child_is_given_its_seed(tmp_path, monkeypatch):
    seen = []

    def command(cfg, world_size):
        seen.append(cfg.seed)
        return sweep.point_command(cfg, world_size)

    def no_child(cmd, *args, **kwargs):
        commands.append(cmd)
        return ChildResult(1, 0.0, timed_out=False, stopped_by=None, stderr_tail=["boom"])

    commands: list[list[str]] = []
    monkeypatch.setattr(loop, "point_command", command)
    monkeypatch.setattr(loop, "run_child", no_child)
    spec = one_point_spec(tmp_path, seeds="0,1,2")
    spec._environment = {**ENV, "device_type": "cpu"}
    assert sweep.execute(spec) == 1  # every child "failed": no record of its own
    assert seen == [0, 1, 2]
    assert [cmd[cmd.index("--seed") + 1] for cmd in commands] == ["0", "1", "2"]
    assert [r["config"]["seed"] for r in records(spec.out)] == [0, 1, 2]


# ------------------------------------------------------------------------------ resume


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


# --------------------------------------------------------------------- bad input, CLI

BAD = [
    (["--models", ""], "--models is empty"),
    (["--models", " , "], "--models is empty"),
    (["--models", "mlp,resnet"], "'resnet' is not known"),
    (["--datasets", "imagenet"], "'imagenet' is not known"),
    (["--datasets", "cifar10"], "data directory"),
    (["--precisions", "fp8"], "'fp8' is not known"),
    (["--variants", "eager,turbo"], "'turbo' is not a speed-up"),
    (["--batch-sizes", "32,abc"], "'abc' is not a whole number"),
    (["--batch-sizes", "0"], "must be at least 1"),
    (["--batch-sizes", "32,-4"], "must be at least 1"),
    (["--gpus", "0"], "must be at least 1"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--steps", "abc"], "--steps"),  # typer's own wording differs by version
    (["--warmup-steps", "-1"], "--warmup-steps must be at least 0"),
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--timeout-per-point", "0"], "--timeout-per-point must be positive"),
    (["--device", "tpu"], "--device 'tpu' is not known"),
    (["--seeds", "a,b"], "--seeds: 'a' is not a whole number"),
    (["--seeds", "0,1.5"], "--seeds: '1.5' is not a whole number"),
    (["--seeds", "0,-1"], "--seeds: -1 must be at least 0"),
    (["--seeds", "-3"], "--seeds: -3 must be at least 0"),
    (["--seeds", str(2**32)], "--seeds: 4294967296 must be at most 4294967295"),
    (["--seeds", " , "], "--seeds is empty"),
    (["--precompile-jobs", "-1"], "--precompile-jobs must be at least 0"),
    (["--concurrent", "0"], "--concurrent must be at least 1"),
    (["--concurrent", "2", "--precompile-jobs", "1"], "give one of the two"),
    (["--concurrent", "2", "--gpus", "1,2"], "--concurrent runs one-process points"),
]


@pytest.mark.parametrize(
    ("args", "message"), BAD, ids=lambda a: " ".join(a) if isinstance(a, list) else ""
)
def test_bad_input_is_one_line_exit_2_nothing_run(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loop, "run_child", lambda *a, **k: pytest.fail("ran a child"))
    out = tmp_path / "sweep.jsonl"
    assert run_cli("sweep", *args, "--out", str(out)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gan-bench: error: "), err
    assert message in lines[0]
    assert not out.exists()


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


# ----------------------------------------------------------------- real child processes


def one_point_spec(tmp_path, batch_sizes="8", **kw):
    options = dict(
        models="mlp",
        datasets="synthetic",
        batch_sizes=batch_sizes,
        precisions="fp32",
        gpus="1",
        variants="eager",
        steps=2,
        warmup_steps=1,
        repeats=1,
        out=str(tmp_path / "sweep.jsonl"),
        device="cpu",
    )
    options.update(kw)
    return build_spec(**options)


def fake(monkeypatch, code, batch=None):
    """Replace the command of the point at `batch` (or every point) by `python -c code`."""
    real = sweep.point_command

    def command(cfg, world_size):
        if batch is None or cfg.batch_size == batch:
            return [sys.executable, "-c", code]
        return real(cfg, world_size)

    monkeypatch.setattr(loop, "point_command", command)


def test_a_failing_point_is_recorded_and_the_others_run(tmp_path, monkeypatch, capsys):
    fake(
        monkeypatch,
        "import sys; print('Traceback ...\\nValueError: boom at step 3', "
        "file=sys.stderr); sys.exit(1)",
        batch=16,
    )
    spec = one_point_spec(tmp_path, batch_sizes="8,16")
    assert sweep.execute(spec) == 1
    by_batch = {r["config"]["batch_size"]: r for r in records(spec.out)}
    ok, failed = by_batch[8], by_batch[16]
    assert ok["status"] == "ok" and ok["metrics"]["images_per_s"] > 0
    assert ok["run"]["variant"] == "eager" and ok["run"]["variant_fields"]["compile_mode"] == "none"
    assert ok["config"]["repeat"] == 0
    assert failed["status"] == "failed"
    assert "exit code 1" in failed["reason"] and "boom at step 3" in failed["reason"]
    assert failed["stderr_tail"][-1] == "ValueError: boom at step 3"
    assert failed["environment"]["device_name"] == ok["environment"]["device_name"]
    assert failed["run"]["world_size"] == 1 and failed["metrics"] == {}
    assert "compare against eager" in capsys.readouterr().out


def pid_child(tmp_path, seconds=60):
    pid_file = tmp_path / "child.pid"
    code = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        f"time.sleep({seconds})"
    )
    return code, pid_file


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_hanging_point_times_out(tmp_path, monkeypatch):
    code, pid_file = pid_child(tmp_path)
    fake(monkeypatch, code)
    spec = one_point_spec(tmp_path, timeout_per_point=2.0)
    start = time.monotonic()
    assert sweep.execute(spec) == 1
    assert time.monotonic() - start < 30
    (rec,) = records(spec.out)
    assert rec["status"] == "timeout"
    assert "--timeout-per-point 2 s" in rec["reason"]
    assert gone(int(pid_file.read_text()))


def sweep_stopped_by_ctrl_c(spec, ready) -> int:
    """Run the sweep, pressing Ctrl-C once `ready()` (its children have started); the exit
    code, within 30 s."""

    def press_ctrl_c():
        deadline = time.monotonic() + 30
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    start = time.monotonic()
    code = sweep.execute(spec)
    assert time.monotonic() - start < 30
    return code


def test_ctrl_c_stops_the_child_and_leaves_whole_records(tmp_path, monkeypatch):
    code, pid_file = pid_child(tmp_path)
    fake(monkeypatch, code)
    spec = one_point_spec(tmp_path, batch_sizes="8,16", timeout_per_point=60.0)
    assert sweep_stopped_by_ctrl_c(spec, ready=pid_file.exists) == 130
    assert gone(int(pid_file.read_text()))
    (rec,) = records(spec.out)  # the second point never started
    assert rec["status"] == "interrupted" and "SIGINT" in rec["reason"]


def test_cli_sweep_over_world_sizes_1_and_2_then_resume(tmp_path, capsys):
    out = tmp_path / "sweep.jsonl"
    args = [
        "sweep",
        "--models",
        "mlp",
        "--datasets",
        "synthetic",
        "--batch-sizes",
        "8",
        "--precisions",
        "fp32",
        "--gpus",
        "1,2",
        "--variants",
        "eager",
        *TINY,
        "--out",
        str(out),
    ]
    assert run_cli(*args) == 0, capsys.readouterr().err
    recs = records(out)
    assert [r["status"] for r in recs] == ["ok", "ok"], [r.get("reason") for r in recs]
    assert sorted(r["run"]["world_size"] for r in recs) == [1, 2]
    assert all(r["run"]["variant"] == "eager" and r["config"]["repeat"] == 0 for r in recs)
    two = next(r for r in recs if r["run"]["world_size"] == 2)
    assert two["run"]["backend"] == "gloo" and two["metrics"]["params_identical_across_ranks"]
    captured = capsys.readouterr()
    assert "compare against eager" in captured.out and "efficiency" in captured.out
    assert "[2/2]" in captured.err
    # each point's line: its wall time and, of that, its process's start-up (imports)
    assert re.search(r"\[1/2\] .*ok, [\d,]+ images/s \[[\d.]+ s, start-up [\d.]+ s\]", captured.err)
    # Again: both runs are recorded ok, so nothing runs and nothing is appended.
    assert run_cli(*args) == 0
    assert len(records(out)) == 2
    assert "2 already recorded" in capsys.readouterr().err


def test_sample_grids_outlive_the_temporary_folder(tmp_path, monkeypatch):
    """The harness writes a grid next to the child's --out (a temporary file): the sweep
    keeps it next to its own --out and records the new path."""

    def command(cfg, world_size):
        code = (
            "import json, os, sys\n"
            f"out = {cfg.out!r}\n"
            "grid = os.path.join(os.path.dirname(out), 'samples', 'abc.png')\n"
            "os.makedirs(os.path.dirname(grid))\n"
            "open(grid, 'wb').write(b'png')\n"
            "rec = {'schema_version': 1, 'status': 'ok', 'reason': None,\n"
            f"       'config': {{'model': 'mlp', 'dataset': 'synthetic', 'batch_size': 8,\n"
            "                  'precision': 'fp32', 'steps': 2, 'repeat': 0},\n"
            "       'run': {'world_size': 1, 'variant': 'eager'},\n"
            "       'environment': {'device_name': 'x', 'torch': 'y', 'device_type': 'cpu'},\n"
            "       'metrics': {'images_per_s': 1.0, 'sample_grid_path': grid}}\n"
            "open(out, 'a').write(json.dumps(rec) + '\\n')\n"
        )
        return [sys.executable, "-c", code]

    monkeypatch.setattr(loop, "point_command", command)
    spec = one_point_spec(tmp_path)
    assert sweep.execute(spec) == 0
    (rec,) = records(spec.out)
    kept = tmp_path / "samples" / "abc.png"
    assert rec["metrics"]["sample_grid_path"] == str(kept)
    assert kept.read_bytes() == b"png"


# --------------------------------------------------------------------------- warm starts
# One-process points forked from a server that has done the imports (bench/sweep/warm.py):
# each still its own process, recorded as such, stopped like any child, and never forked
# from a server that touched CUDA or read another environment.


def only_record(path) -> dict:
    (record,) = records(path)
    return record


def test_only_this_interpreters_bench_run_and_precompile_are_taken_over():
    run = [sys.executable, "-m", "bench.run", "--steps", "2"]
    assert warm.warm_entry(run) == ("bench.run", ["--steps", "2"])
    precompile = [sys.executable, "-m", "bench.precompile", "--model", "mlp"]
    assert warm.warm_entry(precompile) == ("bench.precompile", ["--model", "mlp"])
    assert warm.warm_entry([sys.executable, "-m", "torch.distributed.run", "x"]) is None
    assert warm.warm_entry(["/other/python", "-m", "bench.run"]) is None
    assert warm.warm_entry([sys.executable, "-c", "pass"]) is None
    assert warm.warm_entry([sys.executable, "-m"]) is None


def test_a_point_is_forked_from_the_server_and_its_record_says_so(tmp_path):
    spec = one_point_spec(tmp_path)
    assert sweep.execute(spec) == 0
    record = only_record(spec.out)
    assert record["status"] == "ok"
    assert record["run"]["process_start"] == "fork server"
    # counted from the fork: a fresh interpreter's imports alone take 2.5-4 s on a 2-core CPU
    assert record["run"]["phase_s"]["start-up"] < 1.5


def test_no_fork_server_starts_a_fresh_interpreter(tmp_path):
    spec = one_point_spec(tmp_path, fork_server=False)
    assert sweep.execute(spec) == 0
    record = only_record(spec.out)
    assert record["status"] == "ok" and record["run"]["process_start"] == "interpreter"


def test_a_forked_point_is_stopped_at_its_time_limit_like_any_child(tmp_path):
    spec = one_point_spec(tmp_path, steps=10**7, timeout_per_point=6.0)
    start = time.monotonic()
    assert sweep.execute(spec) == 1
    assert time.monotonic() - start < 45
    record = only_record(spec.out)
    assert record["status"] == "timeout"
    assert record["run"]["process_start"] == "fork server"  # the child's own record, kept
    assert "SIGTERM during timed" in record["reason"]


def test_a_server_that_loaded_the_cuda_driver_is_never_forked_from(tmp_path, monkeypatch, capsys):
    # every process maps the C library: stands for the driver a CUDA call would have loaded
    monkeypatch.setattr(warm.WarmStarter, "driver_pattern", r"/libc[.-]")
    starter = warm.WarmStarter()
    assert not starter.usable() and "initialised CUDA" in starter.reason
    spec = one_point_spec(tmp_path)
    assert sweep.execute(spec) == 0
    assert only_record(spec.out)["run"]["process_start"] == "interpreter"
    assert "fresh interpreters for every point (the fork server initialised CUDA" in (
        capsys.readouterr().err
    )


@pytest.mark.gpu
def test_a_forked_point_starts_cuda_itself_and_runs_on_the_gpu(tmp_path):
    spec = one_point_spec(tmp_path, device="cuda", precisions="bf16", variants="cuda-graph")
    assert sweep.execute(spec) == 0
    record = only_record(spec.out)
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["process_start"] == "fork server"
    assert record["run"]["cuda_graph"]["captured"] is True


def test_a_server_whose_first_forked_point_fails_where_a_fresh_one_runs_is_dropped(
    tmp_path, monkeypatch, capsys
):
    def broken_start(self, entry, stdout_path, stderr_path, env):  # a fork that cannot run
        process = self._context.Process(target=sys.exit, args=(1,))
        process.start()
        return warm._ForkedProcess(process)

    monkeypatch.setattr(warm.WarmStarter, "start", broken_start)
    spec = one_point_spec(tmp_path, batch_sizes="8,16")
    assert sweep.execute(spec) == 0
    assert [r["status"] for r in records(spec.out)] == ["ok", "ok"]
    assert [r["run"]["process_start"] for r in records(spec.out)] == ["interpreter"] * 2
    err = capsys.readouterr().err
    assert "fresh interpreters for every point (a point failed when forked (exit code 1" in err


def test_an_environment_changed_since_the_server_started_gets_a_fresh_interpreter(monkeypatch):
    starter = warm.WarmStarter()
    assert starter.usable()
    monkeypatch.setenv("GAN_BENCH_TEST_CHANGED", "1")  # what a server's imports could have read
    assert not starter.usable() and starter.reason is None
    monkeypatch.delenv("GAN_BENCH_TEST_CHANGED")
    assert starter.usable()


# ---------------------------------------------------------------------- compiling ahead
# Points that compile in a mode that times nothing while compiling are compiled ahead by
# short processes, several at once, into inductor's on-disk caches (bench/sweep/precompile.py);
# each point then runs alone as always and loads its compiled code.


def test_points_compiled_ahead_are_the_one_process_default_and_reduce_overhead_ones():
    assert sweep_spec.default_precompile_jobs(16) == 4 and sweep_spec.default_precompile_jobs(2) == 0
    assert build_spec(machine=GPU8).precompile_jobs == 4
    assert build_spec(machine=CPU2).precompile_jobs == 0
    spec = build_spec(
        machine=GPU8,
        models="dcgan64",
        batch_sizes="128",
        precisions="bf16",
        gpus="1,2",
        variants="eager,compile,compile-reduce-overhead,compile-max-autotune-no-cudagraphs,"
        "compile+channels-last+cuda-graph",
        repeats=2,
        seeds="0,1",
    )
    chosen = precompile.select(plan_runs(spec.points(), spec))
    assert {(r.point.variant, r.point.world_size) for r in chosen} == {
        ("compile", 1),
        ("compile-reduce-overhead", 1),
        ("compile+channels-last+cuda-graph", 1),
    }  # not eager, not the autotuning mode, not torchrun's workers; each point once
    assert all((r.repeat, r.seed) == (0, 0) for r in chosen)
    # a run already recorded (resume) or skipped is not compiled ahead
    point = chosen[0].point
    recorded = [plan.PlannedRun(point, 0, "done"), plan.PlannedRun(point, 0, "skip", "why")]
    assert precompile.select(recorded) == []


def test_a_precompile_runs_the_iterations_that_compile_without_quality_or_autotune_cache(
    monkeypatch,
):
    cfg = RunConfig(
        model="dcgan32", dataset="mnist5k", variant="compile+cuda-graph", steps=100,
        warmup_steps=12, eval_every=50, profile_steps=3,
    )  # fmt: skip
    short = precompile.precompile_config(cfg)
    assert (short.steps, short.warmup_steps) == (1, 4)  # 3 eager iterations, then the capture
    assert short.quality is False and short.eval_every is None and short.profile_steps == 0
    assert short.compile_mode == "default" and short.cuda_graph and short.model == "dcgan32"
    plain = precompile.precompile_config(RunConfig(variant="compile", warmup_steps=12))
    assert (plain.steps, plain.warmup_steps) == (1, 1)
    assert precompile.precompile_command(plain)[1:3] == ["-m", "bench.precompile"]

    import torch._inductor.config as inductor_config

    from bench import run

    seen = []

    def fake_run(argv):
        seen.append((argv, inductor_config.autotune_local_cache))

    monkeypatch.setattr(run, "main", fake_run)
    with inductor_config.patch(autotune_local_cache=True):  # restored after: a process-wide flag
        precompile.main(["--model", "mlp"])
    assert seen == [(["--model", "mlp"], False)]


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


def _compiled_record(model, mode, warmup_s, env=ENV, status="ok", **run):
    return {
        "status": status,
        "config": {"model": model, "compile_mode": mode},
        "run": {"phase_s": {"start-up": 9.0, "warm-up": warmup_s}, **run},
        "environment": dict(env),
    }


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


def test_points_are_compiled_ahead_a_window_at_a_time_just_before_they_run(tmp_path, monkeypatch):
    """A window of --precompile-jobs points, not the whole sweep: a sweep cut off by its
    time limit has timed what it compiled."""
    events = []

    def fake_precompiles(runs, spec, work, signals, warm, report):
        events.append(("ahead", [r.point.batch_size for r in runs]))
        return {r.point for r in runs}

    monkeypatch.setattr(loop, "run_precompiles", fake_precompiles)
    fake(monkeypatch, "pass")  # each point's own process: records "failed" (no record), fine
    real_run_point = loop._run_point

    def run_point(run, *args, **kw):
        events.append(("run", run.point.batch_size))
        return real_run_point(run, *args, **kw)

    monkeypatch.setattr(loop, "_run_point", run_point)
    spec = one_point_spec(
        tmp_path, batch_sizes="8,16,32,64,128", variants="compile", precompile_jobs=2
    )
    sweep.execute(spec)
    assert events == [
        ("ahead", [8, 16]), ("run", 8), ("run", 16),
        ("ahead", [32, 64]), ("run", 32), ("run", 64),
        ("ahead", [128]), ("run", 128),
    ]  # fmt: skip
    assert all(r["run"]["precompiled"] for r in records(spec.out))


def test_a_point_compiled_ahead_loads_its_graphs_from_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    spec = one_point_spec(tmp_path, variants="eager,compile", precompile_jobs=1)
    assert sweep.execute(spec) == 0
    eager, compiled = records(spec.out)
    assert eager["run"]["precompiled"] is False
    assert compiled["status"] == "ok" and compiled["run"]["precompiled"] is True
    caches = compiled["run"]["compile"]["caches"]
    assert caches["fx_graph"]["hits"] > 0 and caches["fx_graph"]["misses"] == 0, caches
    err = capsys.readouterr().err
    assert "compiling 1 configuration(s) ahead, 1 at a time" in err
    assert "precompile mlp/synthetic b8 fp32 ×1 compile: ok" in err
    # the eager point ran before the precompile: the first point that compiles starts it
    assert err.index("eager r0: ok") < err.index("compiling 1 configuration(s) ahead")


@pytest.mark.gpu
def test_a_point_compiled_ahead_on_the_gpu_loads_its_graphs(tmp_path, monkeypatch):
    """On a GPU the cached graphs come with their Triton kernels: the point compiles none."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    spec = one_point_spec(
        tmp_path, device="cuda", precisions="bf16", variants="compile", precompile_jobs=1
    )
    assert sweep.execute(spec) == 0
    record = only_record(spec.out)
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["precompiled"] is True
    caches = record["run"]["compile"]["caches"]["fx_graph"]
    assert caches["hits"] > 0 and caches["misses"] == 0, caches


# ------------------------------------------------------------------- points side by side
# `--concurrent N`: quality sweeps run N points at once, each its own process; their
# records say so and `compare` leaves their speed out.


def test_concurrent_points_run_side_by_side_at_most_n_at_once(tmp_path, monkeypatch):
    spans = tmp_path / "spans"
    spans.mkdir()
    code = (
        "import os, sys, time; t0 = time.monotonic(); time.sleep(1.5); "
        f"open(os.path.join({str(spans)!r}, str(os.getpid())), 'w').write("
        "f'{t0} {time.monotonic()}')"
    )
    fake(monkeypatch, code)
    spec = one_point_spec(tmp_path, batch_sizes="8,16,32", concurrent=2)
    sweep.execute(spec)
    written = records(spec.out)
    assert sorted(r["config"]["batch_size"] for r in written) == [8, 16, 32]
    assert {r["run"]["concurrency"] for r in written} == {2}
    intervals = [tuple(map(float, f.read_text().split())) for f in spans.iterdir()]
    assert len(intervals) == 3
    most = max(sum(a <= t < b for a, b in intervals) for t, _ in intervals)
    assert most == 2  # two overlapped; never three


def test_concurrent_points_are_estimated_to_take_a_share_of_the_time():
    kw = dict(machine=CPU2, models="mlp", batch_sizes="8,16,32,64", precisions="fp32",
              gpus="1", variants="eager", repeats=1)  # fmt: skip
    alone, side_by_side = build_spec(**kw), build_spec(**kw, concurrent=4)
    total = {}
    for spec in (alone, side_by_side):
        total[spec.concurrent] = sum(sweep.estimate_runs_s(plan_runs(spec.points(), spec), spec))
    assert total[4] == pytest.approx(total[1] * estimate.SHARED_SLOWDOWN / 4)


def test_ctrl_c_stops_every_concurrent_child_and_starts_no_more(tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    pids.mkdir()
    code = (
        f"import os, time; open(os.path.join({str(pids)!r}, str(os.getpid())), 'w').close(); "
        "time.sleep(60)"
    )
    fake(monkeypatch, code)
    spec = one_point_spec(tmp_path, batch_sizes="8,16,32", concurrent=2, timeout_per_point=60.0)
    assert sweep_stopped_by_ctrl_c(spec, ready=lambda: len(list(pids.iterdir())) == 2) == 130
    started = [int(p.name) for p in pids.iterdir()]
    assert len(started) == 2 and all(gone(pid) for pid in started)  # the third never started
    written = records(spec.out)
    assert len(written) == 2 and {r["status"] for r in written} == {"interrupted"}


def test_concurrent_points_give_quality_and_no_speed_in_the_comparison(tmp_path, capsys):
    spec = one_point_spec(tmp_path, batch_sizes="8,16", concurrent=2)
    assert sweep.execute(spec) == 0
    written = records(spec.out)
    assert [r["status"] for r in written] == ["ok", "ok"]
    assert all(r["run"]["concurrency"] == 2 for r in written)
    assert "speed not compared" in capsys.readouterr().out


@pytest.mark.parametrize(("gpus", "minutes"), [(1, 10), (8, 15)])
def test_quick_gpu_grid_answers_in_minutes(gpus, minutes, capsys):
    """The default tier on a GPU machine: eager, compile and the fastest stacks at each
    goal point, one precision, scaling over the GPUs present, estimated within minutes."""
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--dry-run", "--machine", f"cuda:{gpus}"])
    assert info.value.code == 0
    estimate_min = float(re.search(r"rough estimate ([\d.]+) min", capsys.readouterr().out)[1])
    assert estimate_min <= minutes
    spec = build_spec(plan_for=f"cuda:{gpus}", dry_run=True)
    points = spec.points()
    assert {p.precision for p in points} == {"bf16"}
    for model, batch in (("dcgan64", 128), ("dcgan64", 1024), ("mlp", 512)):
        variants = {p.variant for p in points if (p.model, p.batch_size) == (model, batch)}
        assert {"eager", "compile"} < variants and any("cuda-graph" in v for v in variants)
    assert sorted({p.world_size for p in points}) == [1, 2, 4, 8][: gpus.bit_length()]
    assert all(run.action == "run" for run in plan_runs(points, spec))


def test_grid_tiers_nest_and_name_a_machine_only_for_dry_runs():
    def variants(grid):
        spec = build_spec(plan_for="cuda:8", dry_run=True, grid=grid)
        return {(p.model, p.batch_size, p.variant) for p in spec.points() if p.world_size == 1}

    goals, full = variants("goals"), variants("full")
    assert goals < full
    assert {(m, b, v) for m, b, v in variants("quick") if v != "channels-last+cuda-graph"} <= goals
    for bad, words in (
        ({"plan_for": "cuda:8"}, "needs --dry-run"),
        ({"plan_for": "tpu:8", "dry_run": True}, "cuda:N"),
        ({"plan_for": "cuda:0", "dry_run": True}, "cuda:N"),
        ({"plan_for": "cpu:2", "dry_run": True, "device": "cpu"}, "leave --device out"),
        ({"grid": "huge"}, "quick, full, goals"),
    ):
        with pytest.raises(ConfigError, match=words):
            build_spec(**bad)
    cpu = build_spec(plan_for="cpu:2", dry_run=True)
    assert not cpu.machine.cuda and cpu.machine.cpu_cores == 2
