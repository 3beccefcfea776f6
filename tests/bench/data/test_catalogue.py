"""Tests for bench.data.catalogue: the data set names, and the checks of a choice and its
folder that run before anything is read.

Folder data sets are faked in tmp_path in their real on-disk layouts; nothing is
downloaded and nothing is written into the repo.
"""

from __future__ import annotations

import gzip
import importlib.util
import sys

import pytest

from bench.data import (
    DATASETS,
    NEEDS_DATA_DIR,
    DataError,
    catalogue,
    check_dataset,
    dataset_channels,
)
from fake_datasets import fake_cifar10, fake_mnist
from source_batches import build


def block_torchvision(monkeypatch) -> None:
    """Make torchvision look uninstalled: find_spec says None and imports fail."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "torchvision" or name.startswith("torchvision."):
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setitem(sys.modules, "torchvision", None)


# --- public constants ---------------------------------------------------------------


def test_names_and_channels():
    assert DATASETS == (
        "synthetic",
        "mnist5k",
        "digits",
        "mnist-full",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "image-folder",
    )
    assert NEEDS_DATA_DIR == {"mnist", "fashion-mnist", "cifar10", "image-folder"}
    assert [dataset_channels(n) for n in DATASETS] == [None, 1, 1, 1, 1, 1, 3, 3]
    assert issubclass(DataError, ValueError)
    with pytest.raises(DataError, match="unknown dataset 'svhn'.*synthetic.*image-folder"):
        dataset_channels("svhn")


# --- bad choices --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data_dir", "pattern"),
    [
        ("imagenet", None, r"unknown dataset 'imagenet': choose one of synthetic, mnist5k"),
        ("mnist", None, r"'mnist' reads a local folder: pass a data directory"),
        ("cifar10", "", r"'cifar10' reads a local folder"),
        ("image-folder", "/no/such/dir/anywhere", r"/no/such/dir/anywhere does not exist"),
    ],
)
def test_bad_choice(name, data_dir, pattern):
    with pytest.raises(DataError, match=pattern):
        check_dataset(name, data_dir)
    with pytest.raises(DataError, match=pattern):
        build(name, (1, 28, 28), data_dir=data_dir)


def test_data_dir_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(DataError, match="is not a directory"):
        check_dataset("cifar10", path)


def test_data_dir_ignored_where_unused(tmp_path):
    for name in ("synthetic", "mnist5k", "digits"):
        check_dataset(name, str(tmp_path / "missing"))


def test_folder_sets_need_torchvision(monkeypatch, tmp_path):
    block_torchvision(monkeypatch)
    for name in ("mnist", "fashion-mnist", "image-folder"):
        with pytest.raises(DataError, match=f"'{name}' needs torchvision"):
            check_dataset(name, tmp_path)
    # cifar10 is read without torchvision, so it gets as far as the layout check.
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        check_dataset("cifar10", tmp_path)


# --- MNIST / Fashion-MNIST layout ---------------------------------------------------


@pytest.mark.parametrize("missing", catalogue.MNIST_FILES)
def test_mnist_missing_file_is_named(tmp_path, missing):
    pytest.importorskip("torchvision")
    fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / missing).unlink()
    with pytest.raises(DataError, match=f"missing file .*{missing}$"):
        check_dataset("mnist", tmp_path)


def test_mnist_gz_only_says_to_unpack(tmp_path):
    pytest.importorskip("torchvision")
    fake_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    image_file = raw / "train-images-idx3-ubyte"
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(image_file.read_bytes()))
    image_file.unlink()
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz.*gunzip"):
        check_dataset("mnist", tmp_path)


def test_mnist_wrong_folders(tmp_path):
    pytest.importorskip("torchvision")
    with pytest.raises(DataError, match=r"expects .*MNIST/raw/ with train-images-idx3-ubyte"):
        check_dataset("mnist", tmp_path)
    fake_mnist(tmp_path, "MNIST")  # MNIST is there, FashionMNIST is not
    with pytest.raises(DataError, match=r"FashionMNIST/raw does not exist"):
        check_dataset("fashion-mnist", tmp_path)
    # Pointing at the raw folder itself: say which folder to pass instead.
    with pytest.raises(DataError, match=r"pass the folder that contains MNIST/"):
        check_dataset("mnist", tmp_path / "MNIST" / "raw")


# --- CIFAR-10 layout ----------------------------------------------------------------


def test_cifar10_missing_batch_is_named(tmp_path):
    fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataError, match=r"missing file .*cifar-10-batches-py/data_batch_4$"):
        check_dataset("cifar10", tmp_path)


def test_cifar10_wrong_folders(tmp_path):
    with pytest.raises(DataError, match=r"expects .*cifar-10-batches-py/ with data_batch_1..5"):
        check_dataset("cifar10", tmp_path)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"extract it first: tar xzf"):
        check_dataset("cifar10", tmp_path)
    fake_cifar10(tmp_path / "inner")
    with pytest.raises(DataError, match=r"pass the folder that contains cifar-10-batches-py/"):
        check_dataset("cifar10", tmp_path / "inner" / "cifar-10-batches-py")


# --- image folder layout ------------------------------------------------------------


def test_image_folder_bad_layouts(tmp_path):
    pytest.importorskip("torchvision")
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"expects class sub-folders.*found no sub-folder"):
        check_dataset("image-folder", tmp_path)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "readme.txt").write_text("")
    with pytest.raises(
        DataError, match=r"no image file in the class sub-folders .*\(cats\).*\.png"
    ):
        check_dataset("image-folder", tmp_path)
