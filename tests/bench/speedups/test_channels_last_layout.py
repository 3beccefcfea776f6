"""channels-last keeps every tensor of a training iteration in NHWC: no convolution whose
operands ATen would first copy to another layout, no copy that changes one.

ATen's convolution reads its memory format off (input, weight) and makes every operand
contiguous in it before cuDNN runs; an operand in another layout costs a copy of the
activation (and on an H100, cuDNN's own nchwToNhwc on top), invisible from Python. The
audit below watches the dispatcher during whole training iterations through the harness
and asks ATen's own decision (`torch._C._conv_determine_backend_memory_format`) at each
convolution, forward and backward, for the backend this device uses.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.config import RunConfig
from bench.runtime import harness, loop

aten = torch.ops.aten
CONVOLUTIONS = (aten.convolution.default, aten.convolution_backward.default)
COPIES = (aten._to_copy.default, aten.clone.default, aten.copy_.default)


def _layout(t: torch.Tensor) -> str:
    nchw, nhwc = t.is_contiguous(), t.is_contiguous(memory_format=torch.channels_last)
    if nchw and nhwc:
        return "either"  # 1x1 planes or a single channel: both orders are the same memory
    return "nchw" if nchw else "nhwc" if nhwc else "strided"


def _shape(t: torch.Tensor) -> str:
    return f"{tuple(t.shape)} {_layout(t)}"


class LayoutAudit(TorchDispatchMode):
    """While active (`paused` off): each 4-D convolution that ATen runs in another format
    than channels_last or with an operand it must copy first, and each copy that changes a
    4-D tensor's layout, one line each in `findings`; `convolutions` counts those watched."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device
        self.paused = False
        self.convolutions = 0
        self.findings: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self.paused:
            if func in CONVOLUTIONS:
                self._check_convolution(func, args)
            elif func in COPIES:
                self._check_copy(func, args, out)
        return out

    def _check_convolution(self, func, args) -> None:
        backward = func is aten.convolution_backward.default
        grad, (x, w, *rest) = (args[0], args[1:]) if backward else (None, args)
        if x.dim() != 4:
            return
        self.convolutions += 1
        # after the bias (forward) or bias sizes (backward)
        stride, padding, dilation, transposed, output_padding, groups = rest[1:7]
        if self.device.type == "cuda":
            backend = torch._C._select_conv_backend(
                x, w, stride=stride, padding=padding, dilation=dilation, transposed=transposed,
                output_padding=output_padding, groups=groups, bias=None, bias_sizes=None,
            )  # fmt: skip
        else:  # what cuDNN would be given: the decision depends on the tensors alone
            kinds = torch._C._ConvBackend
            backend = kinds.CudnnTranspose if transposed else kinds.Cudnn
        chosen = torch._C._conv_determine_backend_memory_format(x, w, backend)
        operands = {"input": x, "weight": w} | ({"grad_output": grad} if backward else {})
        copied = [name for name, t in operands.items() if not t.is_contiguous(memory_format=chosen)]
        if chosen != torch.channels_last or copied:
            described = ", ".join(f"{name} {_shape(t)}" for name, t in operands.items())
            self.findings.append(
                f"{func}: ATen runs it {chosen}, copying {copied or 'nothing'} ({described})"
            )

    def _check_copy(self, func, args, out) -> None:
        source = args[1] if func is aten.copy_.default else args[0]
        if not (isinstance(source, torch.Tensor) and source.dim() == 4):
            return
        before, after = _layout(source), _layout(out)
        if "either" not in (before, after) and before != after:
            self.findings.append(f"{func}: {_shape(source)} -> {after}")


def _audit_training(cfg: RunConfig, device: str, monkeypatch) -> LayoutAudit:
    """Run `cfg` through the harness, the audit watching its training iterations (batches
    drawn, forward, backward, optimizer steps): not the set-up, which converts the models
    to channels_last once, nor the FLOP count, whose reference pair is NCHW by design."""
    audit = LayoutAudit(torch.device(device))
    audit.paused = True
    iteration = loop.TrainingLoop._iteration

    def audited_iteration(loop, i):
        audit.paused = False
        try:
            iteration(loop, i)
        finally:
            audit.paused = True

    monkeypatch.setattr(loop.TrainingLoop, "_iteration", audited_iteration)
    with audit:
        record = harness.execute(cfg, device)
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["memory_format"] == "channels_last"
    return audit


@pytest.mark.parametrize(
    ("model", "layers", "variant", "precision"),
    [
        ("dcgan64", 5, "channels-last+pad-channels+batched-casts", "bf16"),
        ("dcgan32", 4, "triton+channels-last", "fp32"),  # the fused kernels' outputs
    ],
)
def test_a_channels_last_iteration_stays_nhwc(
    model, layers, variant, precision, tmp_path, monkeypatch
):
    cfg = RunConfig(
        model=model, variant=variant, precision=precision, device="cpu", batch_size=4,
        steps=1, warmup_steps=1, quality=False, quiet=True, out=str(tmp_path / "r.jsonl"),
    )  # fmt: skip
    audit = _audit_training(cfg, "cpu", monkeypatch)
    # Each iteration: G's convolutions forward and backward, D's forward and backward three
    # times (real and fake in D's update, fake in G's); two iterations.
    assert audit.convolutions == 2 * (layers * 2 + layers * 2 * 3)
    assert audit.findings == []


def test_the_audit_sees_an_nchw_operand(tmp_path):
    """The check itself: a channels_last convolution given an NCHW input is reported."""
    audit = LayoutAudit(torch.device("cpu"))
    weight = torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 8, 8)
    with audit:
        torch.nn.functional.conv2d(x, weight)
        x.contiguous(memory_format=torch.channels_last)
    assert len(audit.findings) == 2, audit.findings
    assert "copying ['input']" in audit.findings[0] and "(2, 4, 8, 8) nchw" in audit.findings[0]
    assert "-> nhwc" in audit.findings[1]


@pytest.mark.gpu
def test_the_best_channels_last_iteration_stays_nhwc_on_cuda(tmp_path, monkeypatch):
    """On cuDNN (bf16, the fused kernels): an H100 profile of this variant at batch 1024
    showed layout copies around D's last convolution (results/NVIDIA-H100-80GB-HBM3)."""
    cfg = RunConfig(
        model="dcgan64", variant="triton+channels-last+pad-channels+batched-casts",
        precision="bf16", device="cuda", batch_size=16, steps=1, warmup_steps=1,
        quality=False, quiet=True, out=str(tmp_path / "r.jsonl"),
    )  # fmt: skip
    audit = _audit_training(cfg, "cuda", monkeypatch)
    assert audit.findings == []
