"""Where the kernels can run: a CUDA GPU, the interpreter, or nowhere (an error, never a
silent fallback to eager PyTorch)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import kernels
from kernels import KernelUnavailableError, availability, kernel_path

REPO = Path(__file__).resolve().parents[2]


def test_kernel_path_here():
    expected = "triton-interpreter" if availability.INTERPRETED else "triton"
    assert kernel_path() == expected


def test_no_gpu_and_no_interpreter_raises(monkeypatch):
    monkeypatch.setattr(availability, "INTERPRETED", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(KernelUnavailableError) as err:
        kernel_path()
    message = str(err.value)
    assert "\n" not in message
    assert "CUDA GPU" in message and "TRITON_INTERPRET=1" in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(KernelUnavailableError):
        kernels.batch_norm_leaky_relu(torch.randn(2, 3, 4, 4), None, None, training=True)


def test_interpreter_requested_too_late_is_explained(monkeypatch):
    monkeypatch.setattr(availability, "INTERPRETED", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(KernelUnavailableError, match="only after the kernels were imported"):
        kernel_path()


def test_fresh_process_without_gpu_or_interpreter_refuses_cpu_tensors():
    """No TRITON_INTERPRET, no visible GPU: the op raises instead of running eager code."""
    script = textwrap.dedent(
        """
        import torch
        import kernels
        try:
            kernels.kernel_path()
        except kernels.KernelUnavailableError as exc:
            print("path:", exc)
        else:
            print("path: no error")
        try:
            kernels.batch_norm_leaky_relu(torch.randn(2, 3, 4, 4), None, None, training=True)
        except kernels.KernelUnavailableError as exc:
            print("op:", type(exc).__name__)
        else:
            print("op: ran")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "path: the Triton kernels need a CUDA GPU, or TRITON_INTERPRET=1" in out.stdout
    assert "op: KernelUnavailableError" in out.stdout


def test_cpu_tensors_with_a_gpu_present_are_refused(monkeypatch):
    monkeypatch.setattr(availability, "INTERPRETED", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(KernelUnavailableError, match="move the model and data to the GPU"):
        availability.require_runnable(torch.device("cpu"))
    availability.require_runnable(torch.device("cuda", 0))  # fine


@pytest.mark.parametrize(
    ("triton_version", "numpy_version", "refused"),
    [("3.6.0", "2.4.1", True), ("3.6.0", "2.3.5", False), ("3.7.0", "2.4.1", False)],
)
def test_interpreter_that_numpy_breaks_is_refused_with_the_reason(
    monkeypatch, triton_version, numpy_version, refused
):
    """Triton < 3.7's interpreter fails on every runtime loop bound under numpy >= 2.4."""
    import numpy
    import triton

    monkeypatch.setattr(availability, "INTERPRETED", True)
    monkeypatch.setattr(triton, "__version__", triton_version)
    monkeypatch.setattr(numpy, "__version__", numpy_version)
    availability._interpreter_problem.cache_clear()
    try:
        if refused:
            with pytest.raises(KernelUnavailableError, match="install numpy<2.4 or triton>=3.7"):
                availability.require_runnable(torch.device("cpu"))
        else:
            assert kernel_path() == "triton-interpreter"
    finally:
        availability._interpreter_problem.cache_clear()


@pytest.mark.skipif(not availability.TRITON_AVAILABLE, reason="needs triton")
def test_the_probe_tells_how_every_family_s_kernels_run():
    """availability's own @triton.jit probe stands for the kernels of both op families: they
    are defined in the same import of ``kernels``, under the same TRITON_INTERPRET."""
    from triton.runtime.jit import JITFunction

    from kernels.batchnorm import kernels as batchnorm_kernels
    from kernels.narrow_conv import kernels as narrow_conv_kernels

    for kernel in (batchnorm_kernels.bn_apply_kernel, narrow_conv_kernels.conv2d_kernel):
        assert isinstance(kernel, JITFunction) != availability.INTERPRETED
