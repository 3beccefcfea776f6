"""Build a batch source on the CPU and check the batches it yields."""

from __future__ import annotations

import torch

from bench.data import build_batch_source

CPU = torch.device("cpu")


def build(name: str, shape, batch_size: int = 16, *, data_dir=None, seed: int = 0, **kw):
    return build_batch_source(
        name,
        data_dir=None if data_dir is None else str(data_dir),
        image_shape=shape,
        batch_size=batch_size,
        device=CPU,
        seed=seed,
        **kw,
    )


def to_uint8(batch: torch.Tensor) -> torch.Tensor:
    """Undo the [-1, 1] scaling exactly (x = u / 127.5 - 1)."""
    return ((batch + 1.0) * 127.5).round().to(torch.uint8)


def assert_batch(batch: torch.Tensor, shape) -> None:
    assert batch.shape == shape
    assert batch.dtype == torch.float32
    assert batch.device == CPU
    assert batch.min() >= -1.0 and batch.max() <= 1.0
