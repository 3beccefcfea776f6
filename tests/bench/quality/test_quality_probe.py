"""The probe measures in IEEE fp32 whatever precision the run trained in (TF32 off)."""

from __future__ import annotations

import torch
from torch import nn

from bench.quality import probe as probe_module
from bench.quality.probe import QualityProbe, write_sample_grid


def _tf32() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


class _Recorder(nn.Module):
    """A tiny "generator" that notes the TF32 switches it runs under."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, z):
        self.seen.append(_tf32())
        return torch.zeros((z.shape[0], 1, 4, 4))


def test_quality_runs_without_tf32_and_restores_the_run_s_switches(tmp_path, monkeypatch):
    saved = _tf32()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = (
        True  # --precision tf32
    )
    try:
        generator = _Recorder()
        write_sample_grid(generator, (3,), torch.device("cpu"), tmp_path / "grid.png")
        probe = object.__new__(QualityProbe)  # the extractor is not needed to sample G
        probe.latent_shape, probe.device = (3,), torch.device("cpu")
        probe.n_samples, probe.seed, probe.reference = 8, 0, None
        monkeypatch.setattr(
            probe_module, "fd_only", lambda sample, *a, **k: {"fd": float(sample(8, None).sum())}
        )
        assert probe.fd(generator) == {"fd": 0.0}
        assert generator.seen == [(False, False), (False, False)]
        assert _tf32() == (True, True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
