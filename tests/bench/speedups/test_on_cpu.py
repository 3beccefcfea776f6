"""Each speed-up, and the combinations whose parts meet in one run, on this CPU: it trains,
or a sweep records why it cannot (GPU work)."""

from __future__ import annotations

import pytest
import torch

from bench.config import RunConfig
from bench.runtime.harness import execute
from bench.speedups import SPEEDUPS, canonical_variant
from bench.sweep import Machine, build_spec, plan_runs

# A CPU with Triton's interpreter on, as the test session has it (tests/conftest.py).
CPU = Machine("cpu", gpu_count=0, cpu_cores=2, triton_installed=True, triton_interpret=True)

# Where speed-ups meet: the fused kernels keep NHWC and padded channels, the narrow
# convolutions beside them, casts batched around a joint D, and compiled code around the
# swapped and padded layers and around the wrappers (each compile costs seconds here: two).
TOGETHER = (
    "triton+channels-last",
    "triton+pad-channels",
    "channels-last+pad-channels",
    "triton-convs+channels-last",
    "triton+triton-convs+channels-last",
    "triton+joint-d",
    "triton+triton-one-kernel",
    "joint-d+batched-casts",
    "compile+triton+channels-last+pad-channels",
    "compile+joint-d+batched-casts",
)
VARIANTS = (*SPEEDUPS, *TOGETHER)

# Speed-ups of convolutions: Triton's image layers, channels_last, padded image channels,
# cuDNN's search.
CONVOLUTION_SPEEDUPS = ("triton-convs", "channels-last", "pad-channels", "cudnn-exhaustive")
# Speed-ups whose point is GPU work: a CPU sweep skips them.
GPU_ONLY = (
    "compile-reduce-overhead",
    "compile-max-autotune",
    "compile-max-autotune-no-cudagraphs",
    "cudnn-exhaustive",
    "cuda-graph",
)
# Speed-ups that change another one, and what a sweep skips them for on their own.
WITH_ANOTHER = {"triton-one-kernel": "--kernels triton"}


def _convolutional(variant: str) -> bool:
    return any(s in variant.split("+") for s in CONVOLUTION_SPEEDUPS)


def _model(variant: str) -> str:
    # The convolution speed-ups need a DCGAN; the MLP GAN is the cheapest model otherwise
    # (and the one whose discriminator, without BatchNorm, takes joint-d under a sweep's
    # loss).
    return "dcgan32" if _convolutional(variant) else "mlp"


def _precision(variant: str) -> str:
    # batched-casts batches autocast's casts: bf16 (CPU autocast) has them, fp32 has none.
    return "bf16" if "batched-casts" in variant else "fp32"


def _plan(variant: str):
    spec = build_spec(
        machine=CPU,
        models=_model(variant),
        datasets="synthetic",
        batch_sizes="4",
        precisions=_precision(variant),
        gpus="1",
        variants=variant,
        repeats=1,
    )
    (run,) = plan_runs(spec.points(), spec)
    return run


RUNNABLE = [v for v in VARIANTS if _plan(v).action == "run"]


def test_the_cpu_runs_what_it_can_and_skips_only_gpu_work():
    assert all(canonical_variant(v) == v for v in TOGETHER)
    assert set(VARIANTS) - set(RUNNABLE) == {*GPU_ONLY, *WITH_ANOTHER}
    for variant in GPU_ONLY:
        reason = _plan(variant).reason
        assert "CUDA" in reason or "GPU" in reason, (variant, reason)
    for variant, other in WITH_ANOTHER.items():
        assert other in _plan(variant).reason


def test_channels_last_and_joint_d_train_a_critic_on_cpu(tmp_path):
    """The one model a CPU sweep cannot give channels-last+joint-d: DCGAN's WGAN-GP critic
    (convolutions, no BatchNorm), run directly."""
    cfg = RunConfig(
        model="dcgan32", loss="wgan-gp", variant="channels-last+joint-d", device="cpu",
        batch_size=2, steps=1, warmup_steps=0, quiet=True, out=str(tmp_path / "r.jsonl"),
    )  # fmt: skip
    record = execute(cfg, "cpu")
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["discriminator_batches"] == "joint"
    assert record["run"]["memory_format"] == "channels_last"


@pytest.mark.parametrize("variant", RUNNABLE)
def test_every_runnable_variant_trains_on_cpu(variant, tmp_path):
    cfg = RunConfig(
        model=_model(variant),
        variant=variant,
        precision=_precision(variant),
        device="cpu",
        batch_size=4,
        steps=2,
        warmup_steps=1,
        quiet=True,
        out=str(tmp_path / "r.jsonl"),
    )
    if "compile" in variant:
        # A run is a process of its own; in this one, dynamo would reuse the frames that an
        # earlier variant compiled for the same code (compile+triton's G, compile+joint-d's
        # D objective), and the record would rightly count none compiled.
        torch._dynamo.reset()
    record = execute(cfg, "cpu")
    assert record["status"] == "ok", record["reason"]
    run = record["run"]
    assert run["variant"] == variant
    speedups = variant.split("+")
    assert run["kernel_path"] == ("triton-interpreter" if "triton" in speedups else "torch")
    narrow = run["narrow_convolutions"]
    if "triton-convs" in speedups:
        assert narrow["path"] == "triton-interpreter" and narrow["count"] == 2
        assert narrow["discriminator"] == ["main.from_image.conv+main.from_image.act"]
    else:
        assert narrow is None
    formats = {"mlp": "no 4-D parameters", "dcgan32": "contiguous"}
    assert run["memory_format"] == (
        "channels_last" if "channels-last" in variant else formats[cfg.model]
    )
    assert run["discriminator_batches"] == ("joint" if "joint-d" in variant else "separate")
    casts = run["parameter_casts"]
    if cfg.precision == "fp32":
        assert casts is None  # no autocast, no casts
    else:
        assert casts["batched"] == ("batched-casts" in variant) and casts["parameters"] > 0
    padded = run["image_channels_padded"]
    multiple = 4 if cfg.precision == "fp32" else 8  # Tensor Core alignment
    assert (padded and (padded["from"], padded["to"])) == (
        (3, multiple) if "pad-channels" in variant else None
    )
    if "compile" in variant:
        assert run["compile"]["frames_compiled"] >= 1
        assert run["compile"]["recompiles"] is not None
    else:
        assert "compile" not in run
    assert run["cuda_graph"] is None
