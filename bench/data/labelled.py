"""Labelled images with a fixed split, for the sample-quality metrics.

The quality library (bench.quality) trains a small classifier on a data set's training
split and compares generated images with the held-out split, so it needs the labels and
a split that never changes between runs. Everything here is uint8 on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.catalogue import (
    CIFAR_FOLDER,
    CIFAR_TRAIN_BATCHES,
    LABELLED_DATASETS,
    MNIST_FOLDER,
    DataError,
    check_dataset,
    check_image_shape,
    check_mnist_full,
    dataset_channels,
    expand_data_dir,
)
from bench.data.readers import (
    read_cifar_batch,
    read_digits,
    read_image_folder,
    read_mnist5k,
    read_mnist_full,
    read_mnist_like,
    resize_cover,
)

# Fraction of each class kept for training when a data set has no official split.
_TRAIN_FRACTION = 0.8


@dataclass(kw_only=True, eq=False)  # eq=False: tensors do not compare to one bool
class LabelledImages:
    """A data set's images and labels, split once into a training and a held-out part.

    Attributes:
        name: the data set name.
        train_images, heldout_images: uint8 (N, C, H, W) on the CPU, at the requested
            shape (resized as build_batch_source does: cover, then center-crop).
        train_labels, heldout_labels: int64 (N,) class indices in [0, num_classes).
        num_classes: number of classes (for image-folder: number of class sub-folders).
        split: how the split was made, recorded next to every metric, e.g.
            "mnist5k: stratified seeded(0) 4000/1000" or "mnist-full: official 60000/10000".
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    heldout_images: torch.Tensor
    heldout_labels: torch.Tensor
    num_classes: int
    split: str

    def __repr__(self) -> str:
        return (
            f"LabelledImages({self.name!r}, train={tuple(self.train_images.shape)}, "
            f"heldout={tuple(self.heldout_images.shape)}, classes={self.num_classes}, "
            f"split={self.split!r})"
        )


def load_labelled(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    image_shape: tuple[int, int, int],
    *,
    seed: int = 0,
) -> LabelledImages:
    """Load a data set with its labels, split into training and held-out images.

    The split is the official one where the data set has one (MNIST and Fashion-MNIST
    60000/10000, CIFAR-10's five data batches / test_batch); otherwise (mnist5k, digits,
    image-folder, and CIFAR-10 folders without test_batch) a stratified split: each
    class's images in a numpy ``default_rng(seed)`` permutation, the first 80% (rounded
    down) for training. The same (name, folder, seed) always gives the same split.

    Images come back as uint8 (N, C, H, W) at ``image_shape``; scale with
    ``x / 127.5 - 1`` for the [-1, 1] range the generators produce.

    Raises:
        DataError: synthetic (it has no labels), an unknown name, a bad folder, a channel
            mismatch, or mnist-full without its extra installed.
    """
    if name == "synthetic":
        raise DataError("dataset 'synthetic' is random noise and has no labels")
    if name not in LABELLED_DATASETS:
        raise DataError(
            f"unknown labelled dataset {name!r}: choose one of {', '.join(LABELLED_DATASETS)}"
        )
    image_shape = check_image_shape(image_shape)
    channels, height, width = image_shape
    wanted = dataset_channels(name)
    if channels != wanted:
        raise DataError(f"dataset {name!r} has {wanted} channel(s), not the {channels} asked for")
    if name == "mnist-full":
        check_mnist_full()
    else:
        check_dataset(name, data_dir)

    if name == "mnist5k":
        parts = _stratified(name, *read_mnist5k(), seed)
    elif name == "digits":
        parts = _stratified(name, *read_digits(), seed)
    elif name == "mnist-full":
        parts = _official(name, *read_mnist_full())
    elif name in MNIST_FOLDER:
        parts = _official(name, *read_mnist_like(name, data_dir))
    elif name == "cifar10":
        parts = _cifar10_parts(expand_data_dir(data_dir), seed)
    else:
        images, labels = read_image_folder(expand_data_dir(data_dir), height, width)
        parts = _stratified(name, images, labels, seed)

    train_x, train_y, held_x, held_y, split = parts
    num_classes = int(max(train_y.max(), held_y.max())) + 1
    if name == "image-folder":
        num_classes = _count_classes(expand_data_dir(data_dir))
    return LabelledImages(
        name=name,
        train_images=resize_cover(train_x, height, width),
        train_labels=train_y,
        heldout_images=resize_cover(held_x, height, width),
        heldout_labels=held_y,
        num_classes=num_classes,
        split=split,
    )


def _cifar10_parts(root: Path, seed: int):
    folder = root / CIFAR_FOLDER
    batches = [read_cifar_batch(folder / b) for b in CIFAR_TRAIN_BATCHES]
    images = torch.from_numpy(np.concatenate([b[0] for b in batches])).view(-1, 3, 32, 32)
    labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    if not (folder / "test_batch").is_file():
        # check_dataset does not demand test_batch; without it, split the training batches.
        return _stratified("cifar10", images, labels, seed, note="no test_batch, ")
    test, test_labels = read_cifar_batch(folder / "test_batch")
    test_images = torch.from_numpy(test).view(-1, 3, 32, 32)
    return _official("cifar10", images, labels, test_images, torch.from_numpy(test_labels))


def _count_classes(root: Path) -> int:
    return sum(1 for entry in os.scandir(root) if entry.is_dir())


def _official(name: str, train_x, train_y, test_x, test_y):
    split = f"{name}: official {len(train_x)}/{len(test_x)}"
    return train_x, train_y.to(torch.int64), test_x, test_y.to(torch.int64), split


def _stratified(name: str, images: torch.Tensor, labels: torch.Tensor, seed: int, note: str = ""):
    """Per class, a seeded permutation; the first 80% (rounded down) of each for training."""
    rng = np.random.default_rng(seed)
    labels_np = labels.numpy()
    train_idx, held_idx = [], []
    for cls in np.unique(labels_np):  # ascending class order, so the rng stream is fixed
        members = rng.permutation(np.flatnonzero(labels_np == cls))
        cut = int(len(members) * _TRAIN_FRACTION)
        train_idx.append(members[:cut])
        held_idx.append(members[cut:])
    # Sorted so the images keep the data set's own order within each part.
    train = torch.from_numpy(np.sort(np.concatenate(train_idx)))
    held = torch.from_numpy(np.sort(np.concatenate(held_idx)))
    split = f"{name}: {note}stratified seeded({seed}) {len(train)}/{len(held)}"
    return images[train], labels[train], images[held], labels[held], split
