"""Tests for bench.data.sources: batch sources shard, cycle and fail the way their
docstrings say.

Folder data sets are faked in tmp_path in their real on-disk formats; nothing is
downloaded and nothing is written into the repo.
"""

from __future__ import annotations

import pytest
import torch

from bench.data import BatchSource, DataError, readers
from fake_datasets import fake_cifar10, fake_image_folder, fake_mnist
from source_batches import assert_batch, build, to_uint8

# --- synthetic ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 7, 7), (4, 16, 8)])
def test_synthetic_shape_range_and_cycling(shape):
    source = build("synthetic", shape, batch_size=5)
    assert isinstance(source, BatchSource)
    assert (source.image_shape, source.batch_size, source.num_images) == (shape, 5, None)
    first = source.next_batch().clone()
    assert_batch(first, (5, *shape))
    assert first.std() > 0.3  # uniform on [-1, 1) has std 0.577: it is noise, not constant
    batches = [source.next_batch().clone() for _ in range(99)]
    for batch in batches:
        assert_batch(batch, (5, *shape))
    # The pool is a few batches long: batches differ within it and repeat after it.
    assert not torch.equal(first, batches[0])
    assert any(torch.equal(first, b) for b in batches)


def test_synthetic_reproducible_per_seed_and_rank():
    def first(seed, rank=0):
        return build("synthetic", (3, 8, 8), 4, seed=seed, rank=rank, world_size=2).next_batch()

    assert torch.equal(first(7), first(7))
    assert not torch.equal(first(7), first(8))
    assert not torch.equal(first(7, rank=0), first(7, rank=1))


def test_synthetic_accepts_any_channel_count_and_ignores_data_dir(tmp_path):
    source = build("synthetic", (2, 4, 4), 3, data_dir=tmp_path / "not-there")
    assert source.next_batch().shape == (3, 2, 4, 4)


# --- in-memory data sets ------------------------------------------------------------


def test_in_memory_order_reproducible_and_reshuffled_each_epoch():
    a = build("digits", (1, 8, 8), 256, seed=1)
    b = build("digits", (1, 8, 8), 256, seed=1)
    c = build("digits", (1, 8, 8), 256, seed=2)
    first_a, first_b, first_c = a.next_batch(), b.next_batch(), c.next_batch()
    assert torch.equal(first_a, first_b)
    assert not torch.equal(first_a, first_c)
    for _ in range(100):  # 7 batches per epoch: crosses many epochs
        batch = a.next_batch()
        assert batch.shape == (256, 1, 8, 8)


# --- sharding -----------------------------------------------------------------------


def index_images(n: int) -> torch.Tensor:
    """uint8 (n, 1, 8, 8) whose first two pixels spell the image's index."""
    images = torch.zeros((n, 1, 8, 8), dtype=torch.uint8)
    idx = torch.arange(n)
    images[:, 0, 0, 0] = idx % 256
    images[:, 0, 0, 1] = idx // 256
    return images


def indices_of(batch: torch.Tensor) -> list[int]:
    pixels = to_uint8(batch)[:, 0, 0].long()
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()


@pytest.mark.parametrize(
    ("n", "batch_size", "world_size"), [(103, 10, 2), (1000, 7, 3), (20, 10, 2), (9, 4, 1)]
)
def test_ranks_see_disjoint_shards_with_drop_last(monkeypatch, n, batch_size, world_size):
    # The real loader is swapped for index-stamped images, so every batch says which
    # images it holds; the sampling path is the public one.
    monkeypatch.setitem(readers.LOADERS, "digits", lambda data_dir: index_images(n))
    per_rank = n // world_size  # DistributedSampler(drop_last=True)
    batches_per_epoch = per_rank // batch_size  # DataLoader-style drop_last
    seen = []
    for rank in range(world_size):
        source = build("digits", (1, 8, 8), batch_size, seed=5, rank=rank, world_size=world_size)
        assert source.num_images == n
        epoch0 = [indices_of(source.next_batch()) for _ in range(batches_per_epoch)]
        epoch1 = [indices_of(source.next_batch()) for _ in range(batches_per_epoch)]
        flat0 = [i for b in epoch0 for i in b]
        assert all(len(b) == batch_size for b in epoch0 + epoch1)
        assert len(flat0) == len(set(flat0)) == batches_per_epoch * batch_size
        assert all(0 <= i < n for i in flat0)
        if per_rank > batch_size:
            assert epoch0 != epoch1  # set_epoch reshuffles
        seen.append(set(flat0))
    for r in range(world_size):
        for s in range(r + 1, world_size):
            assert not seen[r] & seen[s], f"ranks {r} and {s} share images"


def test_too_small_for_one_batch_per_rank():
    with pytest.raises(DataError, match=r"1797 images.*2000.*1000 per process x 2"):
        build("digits", (1, 8, 8), 1000, world_size=2)
    build("digits", (1, 8, 8), 898, world_size=2)  # floor(1797 / 2) = 898: just enough


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shape", "pattern"),
    [
        ("mnist5k", (3, 28, 28), r"'mnist5k' has 1 channel\(s\) but the model expects 3"),
        ("digits", (4, 8, 8), r"'digits' has 1 channel\(s\) but the model expects 4"),
    ],
)
def test_channel_mismatch(name, shape, pattern):
    with pytest.raises(DataError, match=pattern):
        build(name, shape)


def test_bad_shape_batch_and_rank():
    with pytest.raises(DataError, match="three positive ints"):
        build("synthetic", (3, 0, 8))
    with pytest.raises(DataError, match="batch size"):
        build("synthetic", (3, 8, 8), 0)
    with pytest.raises(DataError, match="rank"):
        build("synthetic", (3, 8, 8), rank=2, world_size=2)


def test_mnist_channel_mismatch(tmp_path):
    pytest.importorskip("torchvision")
    fake_mnist(tmp_path)
    with pytest.raises(DataError, match=r"'mnist' has 1 channel\(s\) but the model expects 3"):
        build("mnist", (3, 28, 28), 4, data_dir=tmp_path)


def test_cifar10_too_small_and_channels(tmp_path):
    fake_cifar10(tmp_path, per_batch=2)
    with pytest.raises(DataError, match=r"'cifar10' has 10 images .* needs 12"):
        build("cifar10", (3, 32, 32), 4, data_dir=tmp_path, world_size=3)
    with pytest.raises(DataError, match=r"'cifar10' has 3 channel\(s\) but the model expects 1"):
        build("cifar10", (1, 32, 32), 4, data_dir=tmp_path)


def test_image_folder_too_small_and_channels(tmp_path):
    pytest.importorskip("torchvision")
    fake_image_folder(tmp_path)
    with pytest.raises(DataError, match=r"'image-folder' has 7 images .* needs 8"):
        build("image-folder", (3, 16, 16), 4, data_dir=tmp_path, world_size=2)
    with pytest.raises(DataError, match=r"'image-folder' has 3 channel\(s\)"):
        build("image-folder", (1, 16, 16), 2, data_dir=tmp_path)
