"""Bad input at the command line: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from bench.cli import main

BAD_RUNS = [
    ["--model", "resnet"],
    ["--dataset", "imagenet"],
    ["--precision", "fp8"],
    ["--loss", "lsgan"],
    ["--device", "tpu"],
    ["--batch-size", "0"],
    ["--batch-size", "abc"],
    ["--model", "mlp", "--batch-size", "1"],
    ["--steps", "0"],
    ["--warmup-steps", "-3"],
    ["--dataset", "mnist"],
    ["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"],
    ["--precision", "fp16", "--device", "cpu"],
    ["--precision", "tf32", "--device", "cpu"],
    ["--sync-bn", "--device", "cpu"],
    ["--no-such-option"],
    ["--target-fd", "5"],
    ["--eval-every", "0"],
    ["--quality-samples", "3"],
    ["--no-quality", "--eval-every", "5"],
    ["--inception-weights", "/nonexistent/pt_inception.pth"],
    ["--inception-weights", "README.md"],
    ["--variant", "turbo"],
    ["--variant", "eager", "--compile-mode", "default"],
    ["--compile-mode", "fastest"],
    ["--kernels", "cuda"],
    ["--cudnn-benchmark-limit", "0", "--device", "cpu"],
    ["--cudnn-benchmark-limit", "-1"],
    ["--model", "mlp", "--dataset", "digits", "--batch-size", "2000"],  # 1,797 images
    ["--model", "mlp", "--dataset", "digits", "--batch-size", "1000", "--nproc", "2"],
    ["--scaling", "strong", "--batch-size", "9", "--nproc", "2"],
    ["--scaling", "both"],
]


@pytest.mark.parametrize("args", BAD_RUNS, ids=lambda a: " ".join(a))
def test_bad_input_is_one_line_exit_2_nothing_written(args, tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    with pytest.raises(SystemExit) as info:
        main(["run", *args, "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("gan-bench: error: ")
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="needs torchvision")
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_a_data_folder_with_the_right_names_but_not_the_data_is_bad_input(
    dataset, tmp_path, capsys
):
    """The layout check passes (every file is there); reading them fails before any run."""
    if dataset == "mnist":
        files = [
            f"MNIST/raw/{name}"
            for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        ]  # fmt: skip
    else:
        files = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
        files += ["cifar-10-batches-py/test_batch"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not the data set")
    out = tmp_path / "runs.jsonl"
    with pytest.raises(SystemExit) as info:
        main(["run", "--model", "mlp", "--dataset", dataset, "--data-dir", str(tmp_path),
              "--out", str(out)])  # fmt: skip
    assert info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "could not read" in err or "not a CIFAR-10 batch" in err, err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "args", [["--dtypes", "fp8"], ["--rep-ms", "0"], []], ids=["dtype", "rep-ms", "defaults"]
)
def test_kernels_command_bad_input_or_no_gpu(args, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    out = tmp_path / "kernels.jsonl"
    with pytest.raises(SystemExit) as info:
        main(["kernels", *args, "--out", str(out)])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("gan-bench: error: ")
    assert not out.exists()


def test_cuda_without_gpu_is_rejected(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    out = tmp_path / "runs.jsonl"
    with pytest.raises(SystemExit) as info:
        main(["run", "--device", "cuda", "--out", str(out)])
    assert info.value.code == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not out.exists()


def test_nproc_under_torchrun_must_match(tmp_path, capsys, monkeypatch):
    for var, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(var, value)
    with pytest.raises(SystemExit) as info:
        main(["run", "--nproc", "4", "--out", str(tmp_path / "r.jsonl")])
    assert info.value.code == 2
    assert "torchrun" in capsys.readouterr().err


def test_console_script_reports_bad_input_in_one_line(tmp_path):
    """The installed `gan-bench` entry point, as a user types it."""
    exe = shutil.which("gan-bench") or os.path.join(os.path.dirname(sys.executable), "gan-bench")
    out = tmp_path / "runs.jsonl"
    proc = subprocess.run(
        [exe, "run", "--model", "nope", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--model 'nope' is not known" in proc.stderr
    assert not out.exists()


def test_no_arguments_shows_help(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 0
    assert "run" in capsys.readouterr().out


def test_env_json(capsys):
    import json

    with pytest.raises(SystemExit) as info:
        main(["env", "--json"])
    assert info.value.code == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("python", "torch", "cuda", "device_name", "gpus", "git_sha"):
        assert key in report


def test_triton_on_cpu_without_the_interpreter_is_rejected(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    out = tmp_path / "runs.jsonl"
    with pytest.raises(SystemExit) as info:
        main(["run", "--kernels", "triton", "--out", str(out)])
    assert info.value.code == 2
    assert "TRITON_INTERPRET=1" in capsys.readouterr().err
    assert not out.exists()
