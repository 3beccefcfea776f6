"""Folder data sets faked in a temporary folder in their real on-disk formats: idx files
(MNIST), pickled python batches (CIFAR-10) and class sub-folders of PNGs (image-folder)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format: magic 0x0000 08 nd (uint8 data), nd big-endian int32 dims, data."""
    magic = 0x0800 + array.ndim  # 2051 for images, 2049 for labels
    header = struct.pack(f">{1 + array.ndim}i", magic, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, folder: str = "MNIST", n_train: int = 40) -> np.ndarray:
    """torchvision's MNIST layout under root/folder/raw; returns the training images."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    write_idx(raw / "train-images-idx3-ubyte", train)
    write_idx(raw / "train-labels-idx1-ubyte", rng.integers(0, 10, n_train, dtype=np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", train[:5])
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    return train


def fake_cifar10(root: Path, per_batch: int = 6, str_keys: bool = False) -> None:
    """cifar-10-batches-py/ as the real archive unpacks; image k has red = k, green = 100,
    blue = 200 (rows are 1024 R, 1024 G, 1024 B values)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def key(k: str):
        # The real files are Python 2 pickles whose keys load as str; ones written by
        # Python 3 code (like most re-packs) have bytes keys. Both must load.
        return k if str_keys else k.encode()

    for b in range(1, 6):
        ks = np.arange((b - 1) * per_batch, b * per_batch)
        rows = np.empty((per_batch, 3072), dtype=np.uint8)
        rows[:, :1024] = ks[:, None]
        rows[:, 1024:2048] = 100
        rows[:, 2048:] = 200
        entry = {key("data"): rows, key("labels"): [int(k % 10) for k in ks]}
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps(entry))
    meta = {key("label_names"): [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def fake_image_folder(root: Path) -> None:
    """Two classes of solid-colour images, 7 in all, plus files and folders to be skipped."""
    from PIL import Image

    sizes = [(40, 30), (20, 50), (33, 33)]  # (width, height): odd aspect ratios on purpose
    for c, cls in enumerate(("cats", "dogs")):
        (root / cls).mkdir(parents=True)
        for i, size in enumerate(sizes):
            color = (60 * c + 20 * i, 128, 250)
            Image.new("RGB", size, color).save(root / cls / f"img{i}.png")
    Image.new("L", (16, 16), 90).save(root / "dogs" / "gray.PNG")  # L -> RGB, upper-case ext
    (root / "dogs" / "notes.txt").write_text("not an image")
    (root / ".ipynb_checkpoints").mkdir()  # empty folder: tolerated (allow_empty)
