"""Compiling points ahead, several at once, into inductor's on-disk caches."""

from __future__ import annotations

import pytest

from bench import sweep
from bench.config import RunConfig
from bench.sweep import (
    build_spec,
    loop,
    plan,
    plan_runs,
    precompile,
)
from bench.sweep import spec as sweep_spec
from sweep_specs import (
    CPU2,
    GPU8,
    fake,
    one_point_spec,
    only_record,
    records,
)


def test_points_compiled_ahead_are_the_one_process_default_and_reduce_overhead_ones():
    assert (
        sweep_spec.default_precompile_jobs(16) == 4 and sweep_spec.default_precompile_jobs(2) == 0
    )
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

    from bench import precompile as precompile_child
    from bench import run

    seen = []

    def fake_run(argv):
        seen.append((argv, inductor_config.autotune_local_cache))

    monkeypatch.setattr(run, "main", fake_run)
    with inductor_config.patch(autotune_local_cache=True):  # restored after: a process-wide flag
        precompile_child.main(["--model", "mlp"])
    assert seen == [(["--model", "mlp"], False)]


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


@pytest.mark.slow
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
