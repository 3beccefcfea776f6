"""save_sample_grid writes a valid PNG of nrow x nrow tiles of the right size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.quality.grid import PADDING, save_sample_grid


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (3, "RGB")])
def test_grid_of_64_tiles(tmp_path, channels, mode):
    h, w = 7, 9
    # Tile i is a constant image whose value encodes i, so placement can be checked.
    values = torch.linspace(-1, 1, 64)
    images = values[:, None, None, None].expand(64, channels, h, w).clone()
    path = save_sample_grid(images, tmp_path / "sub" / "grid.png")
    assert path == tmp_path / "sub" / "grid.png"
    with Image.open(path) as picture:
        picture.verify()
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.mode == mode
        assert picture.size == (8 * (w + PADDING) + PADDING, 8 * (h + PADDING) + PADDING)
        pixels = np.asarray(picture)
    if channels == 1:
        pixels = pixels[:, :, None]
    expected = ((values + 1) * 127.5).round().to(torch.uint8).numpy()
    for i in range(64):
        top, left = PADDING + (i // 8) * (h + PADDING), PADDING + (i % 8) * (w + PADDING)
        assert (pixels[top : top + h, left : left + w] == expected[i]).all()
    assert (pixels[:PADDING] == 0).all()  # black border


def test_fewer_and_more_images_than_the_grid(tmp_path):
    with Image.open(save_sample_grid(torch.zeros(10, 1, 4, 4), tmp_path / "a.png")) as picture:
        assert picture.size == (8 * 6 + 2, 2 * 6 + 2)  # two rows
    with Image.open(save_sample_grid(torch.zeros(100, 3, 4, 4), tmp_path / "b.png", 4)) as pic:
        assert pic.size == (4 * 6 + 2, 4 * 6 + 2)  # only the first 16


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="C 1 or 3"):
        save_sample_grid(torch.zeros(4, 2, 4, 4), tmp_path / "x.png")
    with pytest.raises(ValueError, match="nrow"):
        save_sample_grid(torch.zeros(4, 1, 4, 4), tmp_path / "x.png", nrow=0)
