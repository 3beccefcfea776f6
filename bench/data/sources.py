"""The batches a run trains from: one endless batch source per process.

Every source yields float32 batches of shape (batch_size, C, H, W) in [-1, 1] on the
target device, already at the model's resolution.

Timing stays out of this module: the harness times ``next_batch`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data.distributed import DistributedSampler

from bench.data.catalogue import (
    DataError,
    check_dataset,
    check_enough_images,
    check_image_shape,
    dataset_channels,
    expand_data_dir,
)
from bench.data.readers import LOADERS, image_folder_dataset, import_torchvision, resize_cover

# The synthetic pool holds this many batches; batches are slices of it, so there is no
# host-to-device copy per step, and a few distinct batches keep it from being one tensor.
_SYNTHETIC_POOL_BATCHES = 4


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
        tv_datasets, _ = import_torchvision(name)
        root = os.fspath(expand_data_dir(data_dir))
        try:
            count = len(tv_datasets.ImageFolder(root, allow_empty=True))
        except (OSError, RuntimeError, ValueError) as exc:
            raise DataError(f"dataset 'image-folder': could not list {root}: {exc!r}") from exc
    else:
        count = len(LOADERS[name](data_dir))
    check_enough_images(name, count, batch_size, world_size)


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
    ``padded_channels``, zero-padded to that many channels (bench/speedups/pad_channels.py).

    Under DDP each rank reads its own shard (DistributedSampler, drop_last); a single
    process shuffles with the same sampler and one replica. Raises DataError for a bad
    choice, a channel mismatch, or a data set too small to give each rank one full batch.
    """
    check_dataset(name, data_dir)
    image_shape = check_image_shape(image_shape)
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise DataError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    device = torch.device(device)
    channels, height, width = image_shape
    wanted = dataset_channels(name)
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
            expand_data_dir(data_dir), image_shape, batch_size, device, seed, rank, world_size
        )
    else:
        images = LOADERS[name](data_dir)  # uint8 (N, C, h, w) at the data set's own size
        check_enough_images(name, len(images), batch_size, world_size)
        images = resize_cover(images, height, width)
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
        _, height, width = image_shape
        dataset = image_folder_dataset(root, height, width)
        check_enough_images("image-folder", len(dataset), batch_size, world_size)
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
