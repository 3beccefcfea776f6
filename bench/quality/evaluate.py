"""One quality evaluation of a generator against a prepared Reference: the numbers that go
into a run record's ``quality`` object.

The caller passes ``sample_fn(n, generator)`` returning n images in [-1, 1], (n, C, H, W),
on the device (the harness calls G in eval mode under torch.no_grad). Samples are drawn in
batches and only their features are kept, so N = 10000 at 64x64 never sits in memory.
Run it outside any timed region: it costs seconds to minutes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from bench.quality import prdc
from bench.quality.classes import class_histogram, classifier_score, mode_coverage
from bench.quality.errors import QualityError
from bench.quality.extractor import Extractor
from bench.quality.frechet import frechet_distance, gaussian_stats
from bench.quality.kid import kernel_inception_distance
from bench.quality.reference import Reference

SampleFn = Callable[[int, torch.Generator], torch.Tensor]

# Generated samples per evaluation: 10k on a GPU (the common FID sample count), 2k on a
# CPU, where featurising 10k and the k-NN distances would take minutes per evaluation.
GPU_SAMPLES = 10_000
CPU_SAMPLES = 2_000
DEFAULT_BATCH = 250
# mode_collapse is flagged when coverage (k = 5) falls below this, or when a classifier
# sees fewer than all classes hit. Two halves of real mnist5k give coverage 0.97; a
# "generator" emitting real zeros only gives 0.10 (lenet-mnist5k-28, 2500 vs 2500).
MODE_COLLAPSE_COVERAGE = 0.25


def default_quality_samples(device: torch.device | str) -> int:
    """Generated samples per evaluation on this device: 10000 on CUDA, 2000 otherwise."""
    return GPU_SAMPLES if torch.device(device).type == "cuda" else CPU_SAMPLES


def fd_name(extractor: Extractor, n_fake: int) -> str:
    """The metric name: FD-<extractor id>@N, or FID-<id>@N for load_inception weights only."""
    prefix = "FID" if extractor.kind == "inception" else "FD"
    return f"{prefix}-{extractor.id}@{n_fake}"


def evaluate_quality(
    sample_fn: SampleFn,
    reference: Reference,
    *,
    n_samples: int | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    device: torch.device | str | None = None,
    inception_reference: Reference | None = None,
) -> dict:
    """Every metric of generated samples against ``reference``, as a JSON-ready dict.

    Args:
        sample_fn: ``sample_fn(n, generator)`` -> float (n, C, H, W) in [-1, 1] on ``device``.
        reference: from prepare_reference; its extractor featurises the samples.
        n_samples: generated samples (default: default_quality_samples(device)).
        seed: seeds the torch.Generator passed to sample_fn (on ``device``), and KID's
            subset draws; the same seed and generator weights give the same numbers.
        batch_size: images per sample_fn call.
        device: where sample_fn's generator lives (default: the extractor's device).
        inception_reference: optionally a second Reference built with load_inception's
            extractor; the same samples then also give ``inception_fid``.

    Returns:
        fd, fd_name, kid_mean, kid_std, precision, recall, density, coverage,
        classifier_score, classifier_score_std, classes_hit, num_classes, class_kl,
        mode_collapse, extractor, extractor_sha256, extractor_kind, extractor_accuracy,
        n_real, n_fake, split, seed, seconds; classifier fields are None without a
        classifier; with ``inception_reference`` also inception_fid, inception_fid_name,
        inception_extractor, inception_sha256, inception_n_real.

    Raises:
        QualityError: sample_fn returned non-finite values or a wrong shape.
    """
    start = time.perf_counter()
    device = torch.device(device) if device is not None else reference.extractor.device
    n = default_quality_samples(device) if n_samples is None else n_samples
    extractors = [reference.extractor]
    if inception_reference is not None:
        extractors.append(inception_reference.extractor)
    outputs = generate_features(
        sample_fn,
        extractors,
        n,
        seed=seed,
        batch_size=batch_size,
        device=device,
        image_shape=reference.image_shape,
    )
    features, log_probs = outputs[0]
    ext = reference.extractor
    result: dict = {
        "fd": frechet_distance(reference.mu, reference.sigma, *gaussian_stats(features)),
        "fd_name": fd_name(ext, n),
    }
    kid_mean, kid_std = kernel_inception_distance(
        reference.features, features, seed=seed, device=reference.device
    )
    result["kid_mean"], result["kid_std"] = kid_mean, kid_std
    result.update(
        prdc.precision_recall_density_coverage(
            reference.features, features, real_radii=reference.radii, device=reference.device
        )
    )
    result.update(_class_fields(log_probs, reference))
    result["mode_collapse"] = bool(
        result["coverage"] < MODE_COLLAPSE_COVERAGE
        or (result["classes_hit"] is not None and result["classes_hit"] < result["num_classes"])
    )
    result.update(_identity(reference, n, seed))
    if inception_reference is not None:
        inc_features = outputs[1][0]
        inc = inception_reference.extractor
        result["inception_fid"] = frechet_distance(
            inception_reference.mu, inception_reference.sigma, *gaussian_stats(inc_features)
        )
        result["inception_fid_name"] = fd_name(inc, n)
        result["inception_extractor"] = inc.id
        result["inception_sha256"] = inc.sha256
        result["inception_n_real"] = inception_reference.n_real
    result["seconds"] = time.perf_counter() - start
    return result


def fd_only(
    sample_fn: SampleFn,
    reference: Reference,
    *,
    n_samples: int | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    device: torch.device | str | None = None,
) -> dict:
    """The cheap periodic check: features of ``n_samples`` generated images and their FD.

    Same arguments as evaluate_quality. Returns fd, fd_name, extractor, extractor_sha256,
    extractor_kind, extractor_accuracy, n_real, n_fake, split, seed, seconds.
    """
    start = time.perf_counter()
    device = torch.device(device) if device is not None else reference.extractor.device
    n = default_quality_samples(device) if n_samples is None else n_samples
    ((features, _),) = generate_features(
        sample_fn,
        [reference.extractor],
        n,
        seed=seed,
        batch_size=batch_size,
        device=device,
        image_shape=reference.image_shape,
    )
    result = {
        "fd": frechet_distance(reference.mu, reference.sigma, *gaussian_stats(features)),
        "fd_name": fd_name(reference.extractor, n),
    }
    result.update(_identity(reference, n, seed))
    result["seconds"] = time.perf_counter() - start
    return result


@torch.no_grad()
def generate_features(
    sample_fn: SampleFn,
    extractors: list[Extractor],
    n: int,
    *,
    seed: int,
    batch_size: int,
    device: torch.device,
    image_shape: tuple[int, ...] | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Draw ``n`` samples in batches and featurise each batch with every extractor.

    Returns one (features, log_probs) pair per extractor, as Extractor.extract does.
    """
    if n < 10:
        raise ValueError(f"n_samples must be at least 10 (k-NN metrics use k = 5), got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    generator = torch.Generator(device=device).manual_seed(seed)
    collected: list[tuple[list, list]] = [([], []) for _ in extractors]
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        images = sample_fn(size, generator)
        _check_samples(images, size, image_shape)
        for extractor, (feats, logps) in zip(extractors, collected, strict=True):
            f, lp = extractor.extract(images, batch_size)
            feats.append(f)
            if lp is not None:
                logps.append(lp)
    return [(torch.cat(f), torch.cat(lp) if lp else None) for f, lp in collected]


def _check_samples(images: object, size: int, image_shape: tuple[int, ...] | None) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) != size:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise QualityError(
            f"sample_fn({size}, generator) returned {shape}; expected ({size}, C, H, W)"
        )
    if image_shape is not None and images.shape[1] != image_shape[0]:
        raise QualityError(
            f"sample_fn returned {images.shape[1]}-channel images; the reference has "
            f"{image_shape[0]} channel(s)"
        )
    if not bool(torch.isfinite(images).all()):
        raise QualityError("sample_fn returned non-finite values (NaN/Inf): the generator diverged")


def _class_fields(log_probs: torch.Tensor | None, reference: Reference) -> dict:
    if log_probs is None or reference.histogram is None:
        return {
            "classifier_score": None,
            "classifier_score_std": None,
            "classes_hit": None,
            "num_classes": None,
            "class_kl": None,
        }
    num_classes = reference.extractor.num_classes
    score, score_std = classifier_score(log_probs)
    hit, kl = mode_coverage(class_histogram(log_probs, num_classes), reference.histogram)
    return {
        "classifier_score": score,
        "classifier_score_std": score_std,
        "classes_hit": hit,
        "num_classes": num_classes,
        "class_kl": kl,
    }


def _identity(reference: Reference, n_fake: int, seed: int) -> dict:
    info = reference.extractor.info()
    info.update(
        {"n_real": reference.n_real, "n_fake": n_fake, "split": reference.split, "seed": seed}
    )
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in info.items()
    }
