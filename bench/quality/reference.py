"""The real side of every comparison, computed once per run: held-out images through the
extractor, their Gaussian statistics, k-NN radii and class histogram.

A quality curve (an evaluation every K iterations) reuses one Reference, so only the
generated samples are featurised each time.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from bench import data
from bench.quality import prdc
from bench.quality.classes import class_histogram
from bench.quality.errors import QualityError
from bench.quality.extractor import SPLIT_SEED, Extractor
from bench.quality.frechet import gaussian_stats
from bench.quality.training import to_unit_range

# Real images featurised per forward pass (uint8 on the CPU until then).
_BATCH = 500
# Offset of the synthetic reference seed from the training seed: the reference noise
# must not be the training pool itself (bench.data seeds that pool with the run's seed).
_SYNTHETIC_SEED_OFFSET = 1_000_003


class Reference:
    """Real features and statistics for one (data set, extractor, n_real).

    Attributes:
        extractor: the Extractor the features come from.
        dataset, split: where the real images come from ("mnist5k: stratified
            seeded(0) 4000/1000"; for synthetic, the noise seed).
        n_real: number of real images used.
        image_shape: (C, H, W) of the real images (the model's resolution).
        features: float32 (n_real, D) on the CPU.
        mu, sigma: float64 mean (D,) and unbiased covariance (D, D).
        radii: {k: float64 (n_real,)} k-NN radii for precision/recall and density/coverage.
        histogram: float64 (num_classes,) fraction of real images the classifier assigns to
            each class; None without a classifier.
        device: where KID and the k-NN distances are computed.
    """

    def __init__(
        self,
        *,
        extractor: Extractor,
        dataset: str,
        split: str,
        image_shape: tuple[int, int, int],
        features: torch.Tensor,
        log_probs: torch.Tensor | None,
        device: torch.device,
    ) -> None:
        self.extractor = extractor
        self.dataset = dataset
        self.split = split
        self.image_shape = tuple(image_shape)
        self.features = features
        self.device = torch.device(device)
        self.n_real = len(features)
        self.mu, self.sigma = gaussian_stats(features)
        ks = (prdc.K_PRECISION_RECALL, prdc.K_DENSITY_COVERAGE)
        self.radii = prdc.knn_radii(features, ks, device=device)
        self.histogram = None
        if log_probs is not None:
            self.histogram = class_histogram(log_probs, extractor.num_classes)

    def __repr__(self) -> str:
        return f"Reference({self.dataset!r}, {self.extractor.id}, n_real={self.n_real})"


def prepare_reference(
    dataset: str,
    data_dir: str | os.PathLike[str] | None,
    image_shape: tuple[int, int, int],
    extractor: Extractor,
    n_real: int | None = None,
    device: torch.device | str | None = None,
    *,
    seed: int = 0,
) -> Reference:
    """Featurise the held-out real images of a data set once.

    The real images are the held-out split of ``bench.data.load_labelled`` (seed
    SPLIT_SEED) at ``image_shape``, resized as the training batches are; when ``n_real``
    is smaller than the split, a seeded (``seed``) random subset of it. ``n_real`` None
    takes the whole held-out split. For synthetic data the "real" images are fresh
    uniform noise in [-1, 1) (seed ``seed`` + 1000003), ``n_real`` of them (2000 when None).
    ``device`` (default: the extractor's) is where k-NN distances are computed.

    Raises:
        bench.data.DataError: bad data set or folder.
        QualityError: the extractor's classifier was trained on a different split (its
            cache entry is stale), or fewer than 10 real images.
    """
    device = torch.device(device) if device is not None else extractor.device
    image_shape = tuple(int(d) for d in image_shape)
    if dataset == "synthetic":
        count = 2000 if n_real is None else n_real
        _check_count(count)
        generator = torch.Generator().manual_seed(seed + _SYNTHETIC_SEED_OFFSET)
        feats, logps = [], []
        for start in range(0, count, _BATCH):
            size = min(_BATCH, count - start)
            noise = torch.rand((size, *image_shape), generator=generator) * 2.0 - 1.0
            f, lp = extractor.extract(noise, _BATCH)
            feats.append(f)
            logps.append(lp)
        features = torch.cat(feats)
        log_probs = None if logps[0] is None else torch.cat(logps)
        split = f"synthetic: uniform noise seeded({seed + _SYNTHETIC_SEED_OFFSET}) {count}"
        return Reference(
            extractor=extractor,
            dataset=dataset,
            split=split,
            image_shape=image_shape,
            features=features,
            log_probs=log_probs,
            device=device,
        )

    labelled = data.load_labelled(dataset, data_dir, image_shape, seed=SPLIT_SEED)
    if extractor.split is not None and extractor.split != labelled.split:
        raise QualityError(
            f"extractor {extractor.id} was trained on split {extractor.split!r} but the data "
            f"now splits as {labelled.split!r} (the data changed?): delete its cache entry "
            "(see GAN_BENCH_CACHE) so it is retrained"
        )
    images = labelled.heldout_images
    count = len(images) if n_real is None else min(n_real, len(images))
    _check_count(count)
    if count < len(images):
        pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:count])
        images = images[torch.from_numpy(pick)]
    feats, logps = [], []
    for start in range(0, count, _BATCH):
        f, lp = extractor.extract(to_unit_range(images[start : start + _BATCH]), _BATCH)
        feats.append(f)
        if lp is not None:
            logps.append(lp)
    return Reference(
        extractor=extractor,
        dataset=dataset,
        split=labelled.split,
        image_shape=image_shape,
        features=torch.cat(feats),
        log_probs=torch.cat(logps) if logps else None,
        device=device,
    )


def reference_from_images(
    images: torch.Tensor,
    extractor: Extractor,
    *,
    dataset: str,
    split: str,
    device: torch.device | str | None = None,
) -> Reference:
    """A Reference from images already in memory: float in [-1, 1] or uint8, (N, C, H, W).

    For tests and custom comparisons; ``split`` is recorded as given.
    """
    _check_count(len(images))
    x = to_unit_range(images) if images.dtype == torch.uint8 else images
    features, log_probs = extractor.extract(x, _BATCH)
    return Reference(
        extractor=extractor,
        dataset=dataset,
        split=split,
        image_shape=tuple(images.shape[1:]),
        features=features,
        log_probs=log_probs,
        device=torch.device(device) if device is not None else extractor.device,
    )


def _check_count(count: int) -> None:
    # k-NN radii with k = 5 need more than 5 samples; 10 keeps every metric defined.
    if count < 10:
        raise QualityError(f"a quality reference needs at least 10 real images, got {count}")
