"""The CPU-testable parts of the fused op's benchmark: the case list and the byte counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.kernelbench.batchnorm import benchmark_cases, bytes_moved, run_case
from bench.kernelbench.measure import PASSES, matmul_tflops
from gan_models import build_pair
from kernels import KernelUnavailableError


def _bn_input_shapes(module: nn.Module, x: torch.Tensor, batch: int) -> dict[str, tuple]:
    """Every BatchNorm input shape seen in a forward, with the batch dim set to ``batch``."""
    shapes: dict[str, tuple] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, args, out, name=name: shapes.__setitem__(name, (batch, *args[0].shape[1:]))
        )
        for name, m in module.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return shapes


def test_the_cases_the_kernels_are_judged_on_are_measured_first():
    names = [c.name for c in benchmark_cases()]
    assert names[:2] == ["large-64x64x64-nchw-bf16", "large-64x64x64-nchw-fp32"]
    dtypes = [name.rsplit("-", 1)[1] for name in names[2:]]
    assert dtypes == sorted(dtypes)  # every other bf16 case before the remaining fp32 ones
    assert len(names) == len(set(names)) == 22


def test_dcgan64_cases_are_the_models_batchnorm_shapes_at_batch_128():
    pair = build_pair("dcgan64", channels=3)
    n = 2  # shapes scale with N; a small batch keeps the CPU forward cheap
    g = _bn_input_shapes(pair.generator, torch.randn(n, *pair.latent_shape), 128)
    d = _bn_input_shapes(pair.discriminator, torch.randn(n, *pair.image_shape), 128)
    assert len(g) == 4 and len(d) == 3
    cases = benchmark_cases()
    dcgan = [c for c in cases if c.name.startswith("dcgan64")]
    assert {c.shape for c in dcgan} == set(g.values()) | set(d.values())
    for c in dcgan:  # each case names the layers it stands for
        for src in c.sources:
            role, name = src.removeprefix("dcgan64.").split(".", 1)
            assert (g if role == "G" else d)[name] == c.shape


def test_case_list_layouts_dtypes_and_extras():
    cases = benchmark_cases()
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    shapes_4d = {c.shape for c in cases if len(c.shape) == 4}
    assert (256, 64, 64, 64) in shapes_4d
    for shape in shapes_4d:
        got = {(c.layout, c.dtype) for c in cases if c.shape == shape}
        assert got == {(lay, dt) for lay in ("nchw", "channels_last") for dt in ("fp32", "bf16")}
    assert {(c.layout, c.dtype) for c in cases if c.shape == (512, 1024)} == {
        ("nc", "fp32"),
        ("nc", "bf16"),
    }


def test_bytes_moved_is_the_five_pass_minimum():
    case = next(c for c in benchmark_cases() if c.shape == (128, 512, 4, 4) and c.dtype == "bf16")
    numel = 128 * 512 * 4 * 4
    assert case.numel == numel and case.element_size == 2
    assert bytes_moved(case, "forward") == 2 * numel * 2
    assert bytes_moved(case, "backward") == 3 * numel * 2
    assert bytes_moved(case, "forward+backward") == 5 * numel * 2
    assert set(PASSES) == {"forward", "backward", "forward+backward"}
    with pytest.raises(ValueError, match="unknown pass"):
        bytes_moved(case, "sideways")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal")
def test_run_case_refuses_without_a_gpu():
    with pytest.raises(KernelUnavailableError, match="CUDA GPU"):
        run_case(benchmark_cases()[0])
    with pytest.raises(KernelUnavailableError, match="CUDA GPU"):
        matmul_tflops()


@pytest.mark.gpu
def test_matmul_rate_is_a_plausible_tflops_figure():
    fp32 = matmul_tflops(n=2048, rep_ms=20, dtype=torch.float32)
    bf16 = matmul_tflops(n=4096, rep_ms=20)
    assert 1.0 < fp32 < bf16 < 5000.0  # tensor cores: bf16 well above plain fp32


@pytest.mark.gpu
def test_run_case_on_gpu_returns_json_ready_rows():
    import json

    case = next(c for c in benchmark_cases() if c.shape == (128, 512, 4, 4))
    rows = run_case(case, rep_ms=5, warmup_ms=2)
    assert len(rows) == 9
    json.dumps(rows)
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["impl"] for r in ok} >= {"eager", "triton"}
    for r in ok:
        assert r["ms_p20"] <= r["ms_p50"] <= r["ms_p80"] and r["gb_per_s"] > 0
        if r["pass"] != "forward+backward":
            assert r["device_ms"] is None
        elif r["impl"] == "eager" and r["device_ms"] is None:
            # eager bf16 BatchNorm forward + backward could not be captured on an H100
            # (torch 2.11); the row says so rather than failing
            assert r["device_ms_reason"].startswith("not captured"), r["device_ms_reason"]
        else:  # the fused op and compiled code are always replayed from a CUDA graph too
            assert r["device_ms"] is not None and r["device_ms"] > 0, r["device_ms_reason"]


@pytest.mark.gpu
def test_a_call_that_cannot_be_captured_leaves_random_ops_working():
    """A capture that fails says why, and the process's CUDA generator still works after it
    (a failed capture would otherwise leave it refusing every later random op)."""
    from bench.kernelbench.measure import graph_replay_ms

    x = torch.ones(1 << 20, device="cuda")
    ms, reason = graph_replay_ms(lambda: x.mul_(1.0001), rep_ms=5)
    assert ms is not None and ms > 0, reason
    ms, reason = graph_replay_ms(torch.cuda.synchronize, rep_ms=5)  # not allowed while capturing
    assert ms is None and reason.startswith("not captured")
    assert torch.randn(8, device="cuda").isfinite().all()
    assert graph_replay_ms(lambda: x.mul_(1.0001), rep_ms=5)[0] is not None


def test_stubbed_launches_skip_every_kernel_and_come_back_after():
    """The fused op's host time without its launches: inside, no kernel runs (the running
    statistics, which only a kernel writes, stay as they were); after, they run again."""
    import kernels
    from bench.kernelbench.measure import launches_stubbed
    from kernels.batchnorm import ops

    real = ops.wrap_triton
    x = torch.randn((4, 6, 3, 3), requires_grad=True)
    running_mean, running_var = torch.zeros(6), torch.ones(6)

    def forward_backward():
        y = kernels.batch_norm_leaky_relu(
            x, running_mean, running_var, None, None, True, 0.1, 1e-5, 0.2
        )
        torch.autograd.grad(y.sum(), x)

    with launches_stubbed(ops):
        forward_backward()
    assert not running_mean.any() and torch.equal(running_var, torch.ones(6))
    assert ops.wrap_triton is real
    forward_backward()
    assert running_mean.abs().sum() > 0
