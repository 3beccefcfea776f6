"""RunConfig validation: every bad input is a ConfigError naming the problem and the fix."""

from __future__ import annotations

import dataclasses
import os

import pytest

from bench.cli import main
from bench.config import ConfigError, RunConfig, check_device
from bench.telemetry.machine import triton_interpret_requested


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"model": "resnet"}, ["--model", "mlp, dcgan32, dcgan64"]),
        ({"dataset": "imagenet"}, ["imagenet", "synthetic"]),
        ({"precision": "fp8"}, ["--precision", "fp32, tf32, bf16, fp16"]),
        ({"loss": "lsgan"}, ["--loss", "non-saturating", "wgan-gp"]),
        ({"device": "tpu"}, ["--device", "auto, cpu, cuda"]),
        ({"batch_size": 0}, ["--batch-size", "at least 1"]),
        ({"model": "mlp", "batch_size": 1}, ["one value per channel", "at least 2"]),
        ({"steps": 0}, ["--steps", "at least 1"]),
        ({"warmup_steps": -1}, ["--warmup-steps", "at least 0"]),
        ({"nproc": 0}, ["--nproc"]),
        ({"n_critic": 0}, ["--n-critic"]),
        ({"lr": 0.0}, ["--lr", "positive"]),
        ({"beta1": 1.0}, ["--beta1"]),
        ({"dataset": "cifar10"}, ["cifar10", "data"]),
        ({"dataset": "mnist5k", "channels": 3}, ["--channels 3", "1 channel"]),
        ({"channels": 0}, ["--channels"]),
        ({"memory_format": "nhwc"}, ["--memory-format", "contiguous, channels_last"]),
        ({"model": "mlp", "memory_format": "channels_last"}, ["mlp", "no convolutions"]),
        ({"variant": "channels-last", "model": "mlp"}, ["mlp", "dcgan32"]),
        ({"variant": "compile+fast"}, ["'fast'", "cuda-graph", "channels-last"]),
        ({"variant": "compile+compile-max-autotune"}, ["compile-max-autotune", "choose one"]),
        ({"variant": "compile-reduce-overhead+cuda-graph"}, ["graph inside a graph"]),
        ({"compile_mode": "max-autotune", "cuda_graph": True}, ["--cuda-graph", "--compile-mode"]),
        ({"joint_d_batch": True}, ["--joint-d-batch", "dcgan32", "BatchNorm", "wgan-gp"]),
        ({"variant": "joint-d", "model": "dcgan64"}, ["dcgan64's discriminator has BatchNorm"]),
        ({"variant": "joint-d+cuda-graph", "model": "mlp"}, []),
        # A variant sets all five fields: another value given beside it is a contradiction,
        # the same value is not.
        ({"variant": "cuda-graph", "memory_format": "channels_last"}, ["contradicts"]),
        ({"variant": "triton+channels-last", "kernels": "triton"}, []),
        ({"variant": "cuda-graph", "compile_mode": "reduce-overhead"}, ["contradicts"]),
        ({"profile_steps": -1}, ["--profile-steps", "at least 0"]),
        ({"cudnn_benchmark_limit": -1}, ["--cudnn-benchmark-limit", "at least 0"]),
        (
            {"variant": "cudnn-exhaustive", "cudnn_benchmark": False},
            ["--cudnn-benchmark-limit", "--no-cudnn-benchmark"],
        ),
        ({"variant": "cudnn-exhaustive", "model": "mlp"}, ["mlp", "no convolutions", "dcgan32"]),
        ({"variant": "cudnn-exhaustive", "cudnn_benchmark_limit": 5}, ["contradicts"]),
        ({"variant": "cudnn-exhaustive+cuda-graph", "model": "dcgan64"}, []),
        ({"conv_kernels": "cudnn"}, ["--conv-kernels", "torch, triton"]),
        ({"variant": "triton-convs", "model": "mlp"}, ["--conv-kernels", "mlp", "dcgan32"]),
        ({"variant": "triton-convs", "channels": 32}, ["at most 16 channels", "got 32"]),
        (
            {"conv_kernels": "triton", "pad_image_channels": True},
            ["--pad-image-channels", "one or the other"],
        ),
        ({"variant": "triton+triton-convs+channels-last+cuda-graph", "model": "dcgan64"}, []),
        ({"scaling": "linear"}, ["--scaling", "weak, strong"]),
        (
            {"scaling": "strong", "batch_size": 10, "nproc": 4},
            ["--batch-size 10", "4 processes", "global batch", "multiple of 4"],
        ),
        ({"scaling": "strong", "batch_size": 12, "nproc": 4}, []),
        # Strong scaling: BatchNorm sees the per-process share of the batch.
        (
            {"model": "mlp", "scaling": "strong", "batch_size": 2, "nproc": 2},
            ["--batch-size 2 (1 per process)", "at least 2 per process"],
        ),
    ],
)
def test_bad_config_is_one_actionable_error(kwargs, words):
    if not words:  # a combination that must be accepted
        RunConfig(**kwargs)
        return
    with pytest.raises(ConfigError) as info:
        RunConfig(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_missing_data_dir_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig(dataset="cifar10", data_dir=str(tmp_path / "nowhere"))


def test_out_must_be_a_file_records_can_be_appended_to(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        RunConfig(out=str(tmp_path))
    with pytest.raises(ConfigError, match="is empty"):
        RunConfig(out="")
    (tmp_path / "runs.jsonl").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        RunConfig(out=str(tmp_path / "runs.jsonl" / "more" / "x.jsonl"))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if not os.access(locked, os.W_OK):  # root may write anywhere
        with pytest.raises(ConfigError, match="not writable"):
            RunConfig(out=str(locked / "x.jsonl"))
    RunConfig(out=str(tmp_path / "new" / "deeper" / "runs.jsonl"))  # folders made on write
    RunConfig(out=str(tmp_path / "runs.jsonl"))


def test_dcgan_trains_with_batch_one():
    # DCGAN's smallest BatchNorm input is 4x4: a batch of one still has 16 values.
    assert RunConfig(model="dcgan64", batch_size=1).batch_size == 1


@pytest.mark.parametrize(
    ("model", "dataset", "channels", "expected"),
    [
        ("mlp", "synthetic", None, 1),
        ("dcgan32", "synthetic", None, 3),
        ("dcgan64", "synthetic", 1, 1),
        ("dcgan64", "mnist5k", None, 1),
    ],
)
def test_image_channels(model, dataset, channels, expected):
    cfg = RunConfig(model=model, dataset=dataset, channels=channels)
    assert cfg.image_channels == expected


def test_critic_updates_follow_the_loss():
    assert RunConfig().critic_updates == 1
    assert RunConfig(loss="wgan-gp").critic_updates == 5
    assert RunConfig(loss="wgan-gp", n_critic=2).critic_updates == 2


def test_cli_args_rebuild_the_same_config(tmp_path, monkeypatch):
    cfg = RunConfig(
        model="mlp",
        dataset="digits",
        batch_size=8,
        precision="bf16",
        loss="hinge",
        steps=3,
        warmup_steps=0,
        seed=5,
        device="cpu",
        nproc=2,
        out=str(tmp_path / "r.jsonl"),
        lr=1e-3,
        n_critic=2,
        cudnn_benchmark=False,
        quiet=True,
    )
    args = cfg.to_cli_args()
    assert "--nproc" not in args
    assert "--no-cudnn-benchmark" in args and "--quiet" in args
    captured = {}

    def fake_execute(config, device_type):
        captured["cfg"] = config
        return {"status": "ok"}

    monkeypatch.setattr("bench.runtime.harness.execute", fake_execute)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", *args])
    assert exit_info.value.code == 0
    assert captured["cfg"] == dataclasses.replace(cfg, nproc=1)


@pytest.mark.parametrize(
    ("kwargs", "cuda", "words"),
    [
        ({"device": "cuda"}, False, ["no CUDA GPU"]),
        ({"precision": "fp16"}, False, ["fp16", "needs a CUDA GPU", "fp32, bf16"]),
        ({"precision": "tf32", "device": "cpu"}, True, ["tf32", "CUDA"]),
        ({"sync_bn": True}, False, ["--sync-bn", "CPU"]),
        ({"variant": "cuda-graph"}, False, ["--cuda-graph", "CUDA GPU"]),
        ({"variant": "cuda-graph", "device": "cpu"}, True, ["--cuda-graph", "CUDA GPU"]),
        ({"variant": "cuda-graph", "warmup_steps": 3}, True, ["--warmup-steps", "at least 4"]),
        ({"variant": "cuda-graph", "nproc": 2}, True, ["at least 12", "2 process"]),
        ({"variant": "cudnn-exhaustive"}, False, ["--cudnn-benchmark-limit", "CUDA GPU"]),
    ],
)
def test_device_dependent_rejections(kwargs, cuda, words):
    with pytest.raises(ConfigError) as info:
        check_device(RunConfig(**kwargs), cuda_available=cuda)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("flag", ["kernels", "conv_kernels"])
def test_triton_on_cpu_needs_the_interpreter(flag, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cfg = RunConfig(model="dcgan32", **{flag: "triton"})
    name = "--" + flag.replace("_", "-")
    needs = rf"\({name} triton\) needs a CUDA GPU.*TRITON_INTERPRET=1"
    with pytest.raises(ConfigError, match=needs):
        check_device(cfg, cuda_available=False)


def test_the_interpreter_is_refused_bf16(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(ConfigError, match="interpreter has no reliable bfloat16.*fp32"):
        check_device(RunConfig(kernels="triton", precision="bf16"), cuda_available=False)
    assert check_device(RunConfig(kernels="triton", precision="bf16"), cuda_available=True)
    with pytest.raises(ConfigError, match=r"--conv-kernels triton\) with --precision bf16"):
        check_device(RunConfig(conv_kernels="triton", precision="bf16"), cuda_available=False)


@pytest.mark.parametrize(
    ("device", "cuda", "expected"),
    [("auto", False, "cpu"), ("auto", True, "cuda"), ("cpu", True, "cpu"), ("cuda", True, "cuda")],
)
def test_device_resolution(device, cuda, expected):
    assert check_device(RunConfig(device=device), cuda_available=cuda) == expected


@pytest.mark.parametrize(
    ("model", "dataset", "steps"),
    [("dcgan32", "synthetic", 100), ("mlp", "mnist5k", 5000), ("dcgan64", "digits", 2000)],
)
def test_default_steps_measure_speed_on_synthetic_and_train_on_real_data(model, dataset, steps):
    assert RunConfig(model=model, dataset=dataset).steps == steps
    assert RunConfig(model=model, dataset=dataset, steps=7).steps == 7


def test_cuda_graph_warmup_follows_critic_updates_under_ddp():
    cfg = RunConfig(variant="cuda-graph", nproc=2, n_critic=9, warmup_steps=12)
    with pytest.raises(ConfigError, match="at least 13"):
        check_device(cfg, cuda_available=True)
    cfg = RunConfig(variant="cuda-graph", nproc=2, n_critic=100, warmup_steps=500)
    with pytest.raises(ConfigError, match="100 critic updates"):
        check_device(cfg, cuda_available=True)


def test_cuda_graph_warmup_follows_torchrun_world_size(monkeypatch):
    # Under torchrun the world size comes from the environment, not --nproc.
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match="at least 12"):
        check_device(RunConfig(variant="cuda-graph"), cuda_available=True)
    cfg = RunConfig(variant="cuda-graph", warmup_steps=12)
    assert check_device(cfg, cuda_available=True) == "cuda"


@pytest.mark.parametrize(
    ("scaling", "batch", "nproc", "per_process", "global_batch"),
    [("weak", 64, 4, 64, 256), ("strong", 64, 4, 16, 64), ("strong", 64, 1, 64, 64)],
)
def test_batch_per_process_follows_the_scaling(scaling, batch, nproc, per_process, global_batch):
    cfg = RunConfig(scaling=scaling, batch_size=batch, nproc=nproc)
    assert (cfg.batch_size_per_process, cfg.global_batch_size) == (per_process, global_batch)


def test_strong_scaling_splits_over_torchruns_world_size(monkeypatch):
    # torchrun's workers are given no --nproc: the world size is in their environment.
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert RunConfig(scaling="strong", batch_size=48).batch_size_per_process == 16
    with pytest.raises(ConfigError, match="among 3 processes"):
        RunConfig(scaling="strong", batch_size=64)


def test_variant_sets_every_execution_field_and_is_named_canonically():
    cfg = RunConfig(variant="cuda-graph+channels-last+triton")
    assert cfg.variant == "triton+channels-last+cuda-graph"
    assert (cfg.compile_mode, cfg.kernels, cfg.memory_format, cfg.cuda_graph) == (
        "none",
        "triton",
        "channels_last",
        True,
    )
    assert cfg.variant_name == "triton+channels-last+cuda-graph"
    # Field by field, the same choice gets the same name.
    by_fields = RunConfig(kernels="triton", memory_format="channels_last", cuda_graph=True)
    assert by_fields.variant_name == "triton+channels-last+cuda-graph"


def test_more_processes_than_gpus_is_refused(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="2 processes on this machine need 2 GPUs.*1 visible"):
        check_device(RunConfig(device="cuda", nproc=2), cuda_available=True, cuda_devices=1)
    assert check_device(RunConfig(device="cuda", nproc=2), True, cuda_devices=2) == "cuda"
    assert check_device(RunConfig(device="cpu", nproc=2), True, cuda_devices=1) == "cpu"
    # Under torchrun: this node's processes, not --nproc (which stays 1 there).
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    with pytest.raises(ConfigError, match="8 processes"):
        check_device(RunConfig(device="cuda"), cuda_available=True, cuda_devices=4)


@pytest.mark.parametrize(
    ("value", "requested"),
    [("1", True), ("true", True), ("ON", True), (" yes ", True), ("y", True), ("0", False),
     ("false", False), ("", False), (None, False)],
)  # fmt: skip
def test_triton_interpret_is_read_as_triton_reads_it(monkeypatch, value, requested):
    if value is None:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    else:
        monkeypatch.setenv("TRITON_INTERPRET", value)
    assert triton_interpret_requested() is requested
    cfg = RunConfig(kernels="triton")
    if requested:
        assert check_device(cfg, cuda_available=False) == "cpu"
    else:
        with pytest.raises(ConfigError, match="TRITON_INTERPRET=1"):
            check_device(cfg, cuda_available=False)
