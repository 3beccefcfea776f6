"""evaluate_quality / fd_only / prepare_reference end to end on real mnist5k digits: two
halves of the data set agree, noise and a one-class "generator" do not."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bench.quality import (
    QualityError,
    default_quality_samples,
    evaluate_quality,
    fd_only,
    get_extractor,
    prepare_reference,
    reference_from_images,
)
from bench.quality.training import to_unit_range

FIELDS = {
    "fd",
    "fd_name",
    "kid_mean",
    "kid_std",
    "precision",
    "recall",
    "density",
    "coverage",
    "classifier_score",
    "classifier_score_std",
    "classes_hit",
    "num_classes",
    "class_kl",
    "mode_collapse",
    "extractor",
    "extractor_sha256",
    "extractor_kind",
    "extractor_accuracy",
    "n_real",
    "n_fake",
    "split",
    "seed",
    "seconds",
}
HALF = 1000  # images per half: enough for stable numbers, small enough for KID on 2 cores


class PoolSampler:
    """A stand-in generator: hands out consecutive images of a fixed pool, in [-1, 1]."""

    def __init__(self, pool: torch.Tensor) -> None:
        self.pool = to_unit_range(pool) if pool.dtype == torch.uint8 else pool
        self.next = 0

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        out = self.pool[self.next : self.next + n]
        self.next += n
        return out


def noise_sampler(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=generator) * 2 - 1


@pytest.fixture(scope="module")
def halves(mnist5k_all):
    images, labels = mnist5k_all
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    a, b = order[:HALF], order[HALF : 2 * HALF]
    return images[a], images[b], images[labels == 0]


@pytest.fixture(scope="module")
def half_reference(halves, mnist5k_extractor):
    return reference_from_images(
        halves[0], mnist5k_extractor, dataset="mnist5k", split="mnist5k half A"
    )


@pytest.fixture(scope="module")
def results(halves, half_reference):
    _, half_b, zeros = halves
    return {
        "half": evaluate_quality(PoolSampler(half_b), half_reference, n_samples=HALF),
        "noise": evaluate_quality(noise_sampler, half_reference, n_samples=HALF),
        "one-class": evaluate_quality(
            PoolSampler(zeros.repeat(3, 1, 1, 1)), half_reference, n_samples=HALF
        ),
    }


def test_two_halves_are_close_and_noise_is_far(results):
    half, noise = results["half"], results["noise"]
    assert half["fd"] < 0.01 * noise["fd"]
    assert half["kid_mean"] < 0.001 * noise["kid_mean"]
    assert half["kid_std"] == noise["kid_std"] == 0.0  # 1000 vs 1000: one subset, the whole
    for key in ("precision", "recall", "coverage"):
        assert half[key] > 0.8, key
        assert noise[key] < 0.05, key
    assert 0.8 < half["density"] < 1.3
    assert half["classes_hit"] == 10 and half["class_kl"] < 0.05
    assert half["classifier_score"] > 9.0
    assert not half["mode_collapse"] and noise["mode_collapse"]


def test_one_class_generator_is_flagged(results):
    one = results["one-class"]
    assert one["precision"] > 0.8  # real-looking zeros...
    assert one["recall"] < 0.2 and one["coverage"] < 0.2  # ...of one digit only
    assert one["classes_hit"] == 1 and one["num_classes"] == 10
    assert one["class_kl"] > 2.0  # log(10) = 2.30 for one class of ten
    assert one["classifier_score"] < 1.2
    assert one["mode_collapse"]


def test_record_fields_are_exact_and_json_ready(results, mnist5k_extractor):
    half = results["half"]
    assert set(half) == FIELDS
    json.dumps(half, allow_nan=False)
    assert half["fd_name"] == f"FD-lenet-mnist5k-28@{HALF}"
    assert half["extractor"] == "lenet-mnist5k-28"
    assert half["extractor_sha256"] == mnist5k_extractor.sha256
    assert half["extractor_accuracy"] == mnist5k_extractor.accuracy
    assert (half["n_real"], half["n_fake"], half["split"]) == (HALF, HALF, "mnist5k half A")
    assert isinstance(half["classes_hit"], int) and isinstance(half["mode_collapse"], bool)
    assert half["seconds"] > 0


def test_fd_only_matches_and_runs_are_reproducible(halves, half_reference, results):
    quick = fd_only(PoolSampler(halves[1]), half_reference, n_samples=HALF)
    assert quick["fd"] == pytest.approx(results["half"]["fd"], rel=1e-9)
    assert set(quick) == {
        "fd", "fd_name", "extractor", "extractor_sha256", "extractor_kind",
        "extractor_accuracy", "n_real", "n_fake", "split", "seed", "seconds",
    }  # fmt: skip
    # The generator passed to sample_fn is seeded: the same seed gives the same samples.
    a = fd_only(noise_sampler, half_reference, n_samples=50, seed=5, batch_size=16)
    b = fd_only(noise_sampler, half_reference, n_samples=50, seed=5, batch_size=16)
    c = fd_only(noise_sampler, half_reference, n_samples=50, seed=6, batch_size=16)
    assert a["fd"] == b["fd"] != c["fd"]


def test_prepare_reference_uses_the_heldout_split(mnist5k_cache):
    ext = get_extractor("mnist5k", None, (1, 32, 32), cache_dir=mnist5k_cache)
    assert not ext.trained  # the 28x28 classifier serves 32x32 models too
    full = prepare_reference("mnist5k", None, (1, 32, 32), ext)
    assert full.n_real == 1000 and full.split == ext.split
    assert full.image_shape == (1, 32, 32)
    assert full.histogram.sum() == pytest.approx(1.0)
    part = prepare_reference("mnist5k", None, (1, 32, 32), ext, n_real=300, seed=1)
    again = prepare_reference("mnist5k", None, (1, 32, 32), ext, n_real=300, seed=1)
    assert part.n_real == 300 and torch.equal(part.features, again.features)
    # Generated 32x32 digits are compared through the same resize as the real ones.
    ones = evaluate_quality(
        lambda n, g: torch.rand(n, 1, 32, 32, generator=g) * 2 - 1, part, n_samples=40
    )
    assert ones["fd_name"] == "FD-lenet-mnist5k-28@40"


def test_synthetic_data_uses_the_random_embedding():
    ext = get_extractor("synthetic", None, (3, 16, 16))
    reference = prepare_reference("synthetic", None, (3, 16, 16), ext, n_real=300)
    assert reference.split.startswith("synthetic: uniform noise seeded(")

    def same_noise(n, generator):
        return torch.rand(n, 3, 16, 16, generator=generator) * 2 - 1

    def grey(n, generator):
        return torch.zeros(n, 3, 16, 16)

    close = evaluate_quality(same_noise, reference, n_samples=300)
    far = evaluate_quality(grey, reference, n_samples=300)
    assert close["fd_name"] == "FD-randcnn-s0-c3r32@300"
    assert close["fd"] < 0.1 * far["fd"]
    for key in ("classifier_score", "classes_hit", "num_classes", "class_kl"):
        assert close[key] is None
    assert close["extractor_accuracy"] is None and close["extractor_kind"] == "random"
    assert not close["mode_collapse"] and far["mode_collapse"]


def test_bad_samples_raise(half_reference):
    with pytest.raises(QualityError, match="non-finite"):
        fd_only(lambda n, g: torch.full((n, 1, 28, 28), math.nan), half_reference, n_samples=10)
    with pytest.raises(QualityError, match="3-channel"):
        fd_only(lambda n, g: torch.zeros(n, 3, 28, 28), half_reference, n_samples=10)
    with pytest.raises(QualityError, match="expected"):
        fd_only(lambda n, g: torch.zeros(n + 1, 1, 28, 28), half_reference, n_samples=10)
    with pytest.raises(ValueError, match="at least 10"):
        fd_only(noise_sampler, half_reference, n_samples=5)


def test_default_sample_counts():
    assert default_quality_samples("cpu") == 2000
    assert default_quality_samples(torch.device("cuda", 0)) == 10000
