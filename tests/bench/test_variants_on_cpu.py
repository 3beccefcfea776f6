"""Every registered variant, on this CPU: it trains, or a sweep records why it cannot."""

from __future__ import annotations

import pytest

from bench.config import RunConfig
from bench.harness import execute
from bench.sweep import Machine, build_spec, plan_runs
from bench.variants import VARIANTS

# A CPU with Triton's interpreter on, as the test session has it (tests/conftest.py).
CPU = Machine("cpu", gpu_count=0, cpu_cores=2, triton_installed=True, triton_interpret=True)


def _model(variant: str) -> str:
    # channels_last needs convolutions; the MLP GAN is the cheapest model otherwise.
    return "dcgan32" if "channels-last" in variant else "mlp"


def _plan(variant: str):
    spec = build_spec(
        machine=CPU,
        models=_model(variant),
        datasets="synthetic",
        batch_sizes="4",
        precisions="fp32",
        gpus="1",
        variants=variant,
        repeats=1,
    )
    (run,) = plan_runs(spec.points(), spec)
    return run


RUNNABLE = [v for v in VARIANTS if _plan(v).action == "run"]
SKIPPED = [v for v in VARIANTS if v not in RUNNABLE]


def test_the_cpu_runs_what_it_can_and_skips_only_gpu_work():
    assert set(RUNNABLE) == {
        "eager",
        "compile",
        "triton",
        "channels-last",
        "compile+triton",
        "compile+channels-last",
        "triton+channels-last",
        "compile+triton+channels-last",
    }
    for variant in SKIPPED:
        reason = _plan(variant).reason
        assert reason and ("CUDA" in reason or "GPU" in reason), (variant, reason)


@pytest.mark.parametrize("variant", RUNNABLE)
def test_every_runnable_variant_trains_on_cpu(variant, tmp_path):
    cfg = RunConfig(
        model=_model(variant),
        variant=variant,
        device="cpu",
        batch_size=4,
        steps=2,
        warmup_steps=1,
        quiet=True,
        out=str(tmp_path / "r.jsonl"),
    )
    record = execute(cfg, "cpu")
    assert record["status"] == "ok", record["reason"]
    run = record["run"]
    assert run["variant"] == variant
    assert run["kernel_path"] == ("triton-interpreter" if "triton" in variant else "torch")
    assert run["memory_format"] == (
        "channels_last" if "channels-last" in variant else "no 4-D parameters"
    )
    if "compile" in variant:
        assert run["compile"]["frames_compiled"] >= 1
        assert run["compile"]["recompiles"] is not None
    else:
        assert "compile" not in run
    assert run["cuda_graph"] is None
