"""Single-process runs end to end, in this process: the record and every status path."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch

from bench.config import RunConfig
from bench.runtime import harness
from bench.telemetry.records import SCHEMA_VERSION, read_records
from gan_models import LOSSES, GANLoss
from gan_steps import mlp_iteration_flops

CPU = "cpu"


def run(tmp_path, **overrides) -> tuple[dict, list]:
    settings = {
        "model": "mlp",
        "batch_size": 8,
        "steps": 3,
        "warmup_steps": 1,
        "quiet": True,
        "device": "cpu",
        "out": str(tmp_path / "runs.jsonl"),
    }
    settings.update(overrides)
    cfg = RunConfig(**settings)
    record = harness.execute(cfg, CPU)
    lines = [obj for _, obj in read_records(cfg.out)]
    return record, lines


def test_record_is_complete_and_consistent(tmp_path):
    record, lines = run(tmp_path, steps=4, warmup_steps=2)
    assert lines == [json.loads(json.dumps(record))]  # exactly one line: this record
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["status"] == "ok" and record["reason"] is None
    run_info, metrics, env = record["run"], record["metrics"], record["environment"]
    assert record["config"]["model"] == "mlp" and record["config"]["steps"] == 4
    assert run_info["world_size"] == 1 and run_info["backend"] is None
    assert run_info["global_batch_size"] == 8 and run_info["real_images_per_iteration"] == 8
    assert run_info["image_shape"] == [1, 28, 28] and run_info["latent_shape"] == [100]
    assert run_info["kernel_path"] == "torch" and run_info["precision"]["name"] == "fp32"
    assert env["device_type"] == "cpu" and env["torch"] == torch.__version__
    assert metrics["iter_ms_min"] <= metrics["iter_ms_p20"] <= metrics["iter_ms_p50"]
    assert metrics["iter_ms_p50"] <= metrics["iter_ms_p80"] <= metrics["iter_ms_max"]
    assert metrics["images_per_s"] == pytest.approx(4 * 8 / metrics["timed_s"])
    assert metrics["images_per_s_per_device"] == metrics["images_per_s"]
    assert metrics["first_iteration_s"] > 0 and metrics["warmup_s"] >= metrics["first_iteration_s"]
    assert 0 <= metrics["data_load_fraction"] < 1
    assert metrics["peak_rss_mib"] > 0 and metrics["peak_allocated_mib"] is None
    assert metrics["first_iteration_peak_allocated_mib"] is None
    assert metrics["device_memory_used_mib"] is None and metrics["device_memory_reason"]
    assert metrics["mfu"] is None and "CPU" in metrics["mfu_reason"]
    assert math.isfinite(metrics["loss_d_final"]) and math.isfinite(metrics["loss_g_final"])
    assert metrics["params_identical_across_ranks"] is True
    assert len(metrics["param_digests"]) == 1
    phases = run_info["phase_s"]  # in the order entered, each timed
    assert list(phases) == [
        "start-up", "setup", "warm-up", "timed", "measurement", "FLOP count", "finish",
        "sample grid",
    ]  # fmt: skip
    assert all(seconds >= 0 for seconds in phases.values())
    assert phases["timed"] >= metrics["timed_s"]
    assert run_info["process_start"] == "interpreter"


def test_flops_match_the_analytic_count(tmp_path):
    record, _ = run(tmp_path, batch_size=16)
    metrics = record["metrics"]
    assert metrics["flops_per_iteration_per_process"] == mlp_iteration_flops(16)
    assert metrics["flops_per_real_image"] == mlp_iteration_flops(16) / 16
    assert metrics["achieved_tflops"] == pytest.approx(
        mlp_iteration_flops(16) * 3 / metrics["timed_s"] / 1e12
    )


def test_wgan_gp_counts_n_critic_real_batches(tmp_path):
    record, _ = run(tmp_path, loss="wgan-gp", model="dcgan32", batch_size=4, steps=2)
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["n_critic"] == 5
    assert record["run"]["real_images_per_iteration"] == 20
    assert record["metrics"]["images_per_s"] == pytest.approx(2 * 20 / record["metrics"]["timed_s"])


def test_bf16_autocast_on_cpu(tmp_path):
    record, _ = run(tmp_path, model="dcgan32", precision="bf16", batch_size=4, steps=2)
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["precision"]["autocast_dtype"] == "bfloat16"


def test_real_data_run(tmp_path):
    record, _ = run(
        tmp_path, dataset="digits", model="dcgan32", batch_size=4, steps=2, quality=False
    )
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["dataset_images"] == 1797
    assert record["run"]["image_shape"] == [1, 32, 32]


def test_no_warmup_takes_the_first_timed_iteration(tmp_path):
    record, _ = run(tmp_path, warmup_steps=0)
    metrics = record["metrics"]
    assert metrics["first_iteration_s"] * 1e3 >= metrics["iter_ms_min"]
    assert metrics["warmup_s"] < metrics["first_iteration_s"]


def test_runs_are_reproducible_for_a_seed(tmp_path):
    first, _ = run(tmp_path, seed=3, out=str(tmp_path / "a.jsonl"))
    second, _ = run(tmp_path, seed=3, out=str(tmp_path / "b.jsonl"))
    third, _ = run(tmp_path, seed=4, out=str(tmp_path / "c.jsonl"))
    assert first["metrics"]["param_digests"] == second["metrics"]["param_digests"]
    assert first["metrics"]["param_digests"] != third["metrics"]["param_digests"]


def test_non_finite_loss_is_diverged_with_its_iteration(tmp_path, monkeypatch):
    base = LOSSES["non-saturating"]
    calls = {"n": 0}

    def generator_loss(fake_logits):
        calls["n"] += 1
        loss = base.generator_loss(fake_logits)
        return loss * float("nan") if calls["n"] >= 3 else loss

    nan_loss = GANLoss(
        name="nan-at-3", discriminator_loss=base.discriminator_loss, generator_loss=generator_loss
    )
    monkeypatch.setattr(harness, "get_loss", lambda name: nan_loss)
    record, lines = run(tmp_path, steps=5, warmup_steps=1)
    assert record["status"] == "diverged"
    assert record["metrics"]["diverged_at_iteration"] == 3
    assert "iteration 3 of 6" in record["reason"]
    assert lines[0]["status"] == "diverged"


def test_divergence_in_warmup_skips_the_timed_steps(tmp_path, monkeypatch):
    base = LOSSES["non-saturating"]
    nan_loss = GANLoss(
        name="nan",
        discriminator_loss=lambda r, f: base.discriminator_loss(r, f) * math.inf,
        generator_loss=base.generator_loss,
    )
    monkeypatch.setattr(harness, "get_loss", lambda name: nan_loss)
    record, _ = run(tmp_path, steps=50, warmup_steps=2)
    assert record["status"] == "diverged"
    assert record["metrics"]["diverged_at_iteration"] == 1
    assert "timed_s" not in record["metrics"]


def test_an_exception_becomes_a_failed_record(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(harness, "build_batch_source", broken)
    record, lines = run(tmp_path)
    assert record["status"] == "failed"
    assert record["reason"] == "RuntimeError during setup: disk on fire"
    assert list(record["run"]["phase_s"]) == ["start-up", "setup"]  # up to the failure
    assert lines[0]["status"] == "failed"
    assert "disk on fire" in capsys.readouterr().err  # the traceback goes to stderr


@pytest.mark.parametrize(("rank", "written"), [("0", True), ("1", False)])
def test_a_process_group_that_never_started_is_recorded_once(tmp_path, monkeypatch, rank, written):
    # Every rank fails alike (an NCCL init error, a bad device ordinal): rank 0's record.
    def no_group(*args, **kwargs):
        raise RuntimeError("NCCL error: unhandled system error")

    monkeypatch.setattr(harness.distributed, "setup", no_group)
    monkeypatch.setenv("RANK", rank)
    cfg = RunConfig(model="mlp", device="cpu", quiet=True, out=str(tmp_path / "runs.jsonl"))
    record = harness.execute(cfg, CPU)
    assert record["status"] == "failed" and "NCCL error" in record["reason"]
    assert (tmp_path / "runs.jsonl").exists() is written


def test_a_stop_signal_after_a_failure_waits_for_the_record(tmp_path, monkeypatch):
    """torchrun sends SIGTERM to the other ranks once one exits: one arriving while this
    rank is about to write the record is delivered only after the record is written."""
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    real_append = harness.append_record

    def append_after_sigterm(path, record):
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once, were it not held
        real_append(path, record)
        assert received == []  # still held while the record is written

    def broken(*args, **kwargs):
        raise RuntimeError("connection reset by peer")

    monkeypatch.setattr(harness, "build_batch_source", broken)
    monkeypatch.setattr(harness, "append_record", append_after_sigterm)
    try:
        record, lines = run(tmp_path)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert record["status"] == "failed" and [line["status"] for line in lines] == ["failed"]
    assert received == [signal.SIGTERM]  # delivered once the record was written


def test_out_of_memory_becomes_an_oom_record(tmp_path, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(harness, "build_batch_source", oom)
    record, _ = run(tmp_path)
    assert record["status"] == "oom"
    assert "Tried to allocate 2.00 GiB" in record["reason"]


def test_triton_kernels_through_the_interpreter(tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("on a GPU the kernels compile; this checks the CPU interpreter path")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    record, _ = run(tmp_path, kernels="triton", batch_size=4, steps=2)
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["kernel_path"] == "triton-interpreter"
    assert record["run"]["variant"] == "triton"
    fused = record["run"]["fused_layers"]
    assert fused["count"] == 3  # the MLP generator's three BatchNorm1d + LeakyReLU
    assert fused["discriminator"] == {"fused": [], "unfused": [], "paths": {}}
    paths = fused["generator"]["paths"]  # the interpreter: one kernel each way, always
    assert list(paths) == ["main.block1.bn", "main.block2.bn", "main.block3.bn"]
    assert all(path == {"path": "one-kernel", "launches": 2} for path in paths.values())


def test_synthetic_runs_skip_quality_but_keep_a_sample_grid(tmp_path):
    from PIL import Image

    record, _ = run(tmp_path)
    assert "quality" not in record
    grid = record["metrics"]["sample_grid_path"]
    assert grid.startswith(str(tmp_path / "samples"))
    with Image.open(grid) as image:  # 8 x 8 tiles of 28 px, 2 px padding
        assert image.size == (8 * 28 + 9 * 2, 8 * 28 + 9 * 2)


QUALITY_RUN = {"dataset": "mnist5k", "batch_size": 16, "steps": 4, "quality_samples": 100}


def test_quality_curve_and_time_to_quality(tmp_path):
    record, _ = run(tmp_path, eval_every=2, target_fd=1e9, **QUALITY_RUN)
    assert record["status"] == "ok", record["reason"]
    metrics = record["metrics"]
    # FD <= 1e9 holds at the first check: training stops there, after 1 + 2 iterations.
    assert metrics["steps_timed"] == 2
    assert [p["iteration"] for p in metrics["quality_curve"]] == [3]
    ttq = metrics["time_to_quality"]
    assert ttq["reached"] is True and ttq["iterations"] == 3
    assert 0 < ttq["train_s"] <= metrics["warmup_s"] + metrics["timed_s"] + 1e-9
    quality = record["quality"]
    assert quality["fd_name"] == "FD-lenet-mnist5k-28@100"
    for key in ("fd", "kid_mean", "precision", "recall", "density", "coverage"):
        assert math.isfinite(quality[key])
    assert 0 <= quality["classes_hit"] <= quality["num_classes"] == 10
    assert quality["extractor_accuracy"] >= 0.96 and len(quality["extractor_sha256"]) == 64


def test_unreached_target_trains_every_step(tmp_path):
    record, _ = run(tmp_path, eval_every=2, target_fd=1e-9, **QUALITY_RUN)
    metrics = record["metrics"]
    assert metrics["steps_timed"] == 4
    assert [p["iteration"] for p in metrics["quality_curve"]] == [3, 5]
    assert metrics["time_to_quality"]["reached"] is False


def test_flops_are_counted_without_cudnn_autotuning(tmp_path, monkeypatch):
    """The FLOP count runs the reference pair once more, in its own layout: autotuning its
    convolutions there would cost seconds and measure nothing. The run's setting returns."""
    seen = []
    count = harness.count_flops

    def counting(fn):
        seen.append(torch.backends.cudnn.benchmark)
        return count(fn)

    monkeypatch.setattr(harness, "count_flops", counting)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    record, _ = run(tmp_path, model="dcgan32", batch_size=2, steps=1, warmup_steps=0)
    assert record["status"] == "ok" and record["metrics"]["flops_per_iteration_per_process"] > 0
    assert seen == [False] and torch.backends.cudnn.benchmark is True
