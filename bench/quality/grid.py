"""A PNG grid of sample images, written with Pillow (no torchvision)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

# Pixels between tiles and around the border, black, as torchvision's make_grid default.
PADDING = 2


def save_sample_grid(images: torch.Tensor, path: str | os.PathLike[str], nrow: int = 8) -> Path:
    """Save up to ``nrow`` x ``nrow`` images in [-1, 1], (N, C, H, W) with C 1 or 3, as one PNG.

    Tiles go row by row, ``nrow`` per row, with PADDING black pixels between and around
    them: the image is ``nrow * (W + 2) + 2`` pixels wide and ``rows * (H + 2) + 2`` high,
    rows = ceil(min(N, nrow^2) / nrow). Values map to 0..255 as (x + 1) * 127.5, clamped
    (the inverse of bench.data's scaling). Parent folders are created. Returns the path.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise ValueError(
            f"images must be (N, C, H, W) with N >= 1 and C 1 or 3, got {tuple(images.shape)}"
        )
    if nrow < 1:
        raise ValueError(f"nrow must be at least 1, got {nrow}")
    from PIL import Image  # Pillow comes with matplotlib; imported only when saving

    tiles = images[: nrow * nrow].detach().to("cpu", torch.float32)
    pixels = ((tiles + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    n, c, h, w = pixels.shape
    rows = -(-n // nrow)
    canvas = np.zeros((rows * (h + PADDING) + PADDING, nrow * (w + PADDING) + PADDING, c), np.uint8)
    for i in range(n):
        top = PADDING + (i // nrow) * (h + PADDING)
        left = PADDING + (i % nrow) * (w + PADDING)
        canvas[top : top + h, left : left + w] = pixels[i].transpose(1, 2, 0)
    path = Path(os.path.expanduser(os.fspath(path)))
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(canvas[:, :, 0], "L") if c == 1 else Image.fromarray(canvas, "RGB")
    picture.save(path, format="PNG")
    return path
