"""fused-adam: torch's fused Adam in eager and compiled runs, recorded as such, training
as Adam's default implementation does."""

from __future__ import annotations

import pytest
import torch

from bench.cli import main
from bench.config import RunConfig
from bench.telemetry.records import read_records
from gan_steps import built


def _train(variant: str, steps: int = 3):
    """The MLP GAN's losses and parameters after `steps` iterations under `variant`."""
    cfg = RunConfig(device="cpu", model="mlp", variant=variant)
    batches = torch.Generator().manual_seed(1)
    with built(cfg) as applied:
        losses = [
            torch.stack(applied.step([torch.rand((8, 1, 28, 28), generator=batches) * 2 - 1]))
            for _ in range(steps)
        ]
        account = applied.account()
        optimizers = (applied.step.g_optimizer, applied.step.d_optimizer)
        params = [p.detach().clone() for p in applied.generator.parameters()]
    return torch.stack(losses), params, account, optimizers


def test_fused_adam_trains_as_adam_does():
    want_losses, want_params, eager, default = _train("eager")
    got_losses, got_params, fused, optimizers = _train("fused-adam")
    assert eager["optimizer"] == {"name": "adam", "implementation": "default"}
    assert fused["optimizer"] == {"name": "adam", "implementation": "fused"}
    assert fused["variant"] == "fused-adam" and fused["variant_fields"]["fused_adam"] is True
    for optimizer in optimizers:
        assert all(group["fused"] for group in optimizer.param_groups)
    for optimizer in default:
        assert not any(group["fused"] for group in optimizer.param_groups)
    # The same update in another kernel: equal up to float rounding.
    torch.testing.assert_close(got_losses, want_losses, rtol=1e-4, atol=1e-5)
    for got, want in zip(got_params, want_params, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_a_run_with_fused_adam_records_it(tmp_path):
    out = tmp_path / "runs.jsonl"
    args = ["run", "--variant", "fused-adam", "--model", "mlp", "--steps", "5",
            "--warmup-steps", "1", "--quiet", "--out", str(out)]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0
    ((_, record),) = read_records(str(out))
    assert record["status"] == "ok"
    assert record["run"]["optimizer"]["implementation"] == "fused"
    assert record["run"]["variant"] == "fused-adam"


def test_fused_adam_goes_with_compile_and_a_graph():
    assert RunConfig(variant="compile+fused-adam").variant_name == "compile+fused-adam"
    cfg = RunConfig(variant="cuda-graph+fused-adam+triton")
    assert cfg.variant == "triton+fused-adam+cuda-graph"


@pytest.mark.gpu
def test_fused_adam_compiled_on_cuda(tmp_path):
    from bench.runtime.harness import execute

    cfg = RunConfig(
        model="dcgan32", variant="compile+fused-adam", batch_size=8, steps=2, warmup_steps=1,
        device="cuda", quiet=True, out=str(tmp_path / "r.jsonl"),
    )  # fmt: skip
    torch._dynamo.reset()
    record = execute(cfg, "cuda")
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["optimizer"]["implementation"] == "fused"
