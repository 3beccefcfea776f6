"""The sweep's grids: tiers by machine, every axis with its eager baseline, options that
replace an axis, and what the GPU tiers answer and cost."""

from __future__ import annotations

import re

import pytest

from bench.cli import main
from bench.config import ConfigError
from bench.speedups.compile import cost_rank
from bench.sweep import (
    Machine,
    Point,
    build_spec,
    plan,
    plan_runs,
    skip_reason,
)
from sweep_specs import (
    CPU2,
    GPU8,
    small_spec,
)


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
