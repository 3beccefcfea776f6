"""Sample-quality metrics for gan-bench, all computed from one feature extractor per run.

The extractor is a small classifier trained on the data set's own training split
(``get_extractor``: lenet for grey, vgg for RGB, cached on disk), a fixed-seed random CNN
for unlabelled data, or Inception weights from a file (``load_inception``). From its
penultimate features: Fréchet distance (reported as "FD-<extractor id>@N", never "FID"
unless the extractor is Inception), KID, precision / recall, density / coverage; from its
softmax: the classifier score (Inception Score formula) and mode coverage.

Typical use (what ``gan-bench run`` does after training)::

    extractor = get_extractor("mnist5k", None, (1, 28, 28), device=device)
    reference = prepare_reference("mnist5k", None, (1, 28, 28), extractor)
    quality = evaluate_quality(sample_fn, reference, n_samples=2000, seed=0)

Importing this package does no work: nothing is trained, loaded or read until called.
"""

from __future__ import annotations

from bench.quality.cache import CACHE_ENV, resolve_cache_dir
from bench.quality.errors import InceptionWeightsError, QualityError
from bench.quality.evaluate import (
    default_quality_samples,
    evaluate_quality,
    fd_name,
    fd_only,
)
from bench.quality.extractor import Extractor, get_extractor, random_extractor
from bench.quality.frechet import fd_from_features, frechet_distance, gaussian_stats
from bench.quality.grid import save_sample_grid
from bench.quality.inception import load_inception
from bench.quality.kid import kernel_inception_distance
from bench.quality.prdc import knn_radii, precision_recall_density_coverage
from bench.quality.reference import Reference, prepare_reference, reference_from_images

__all__ = [
    "CACHE_ENV",
    "Extractor",
    "InceptionWeightsError",
    "QualityError",
    "Reference",
    "default_quality_samples",
    "evaluate_quality",
    "fd_from_features",
    "fd_name",
    "fd_only",
    "frechet_distance",
    "gaussian_stats",
    "get_extractor",
    "kernel_inception_distance",
    "knn_radii",
    "load_inception",
    "precision_recall_density_coverage",
    "prepare_reference",
    "random_extractor",
    "reference_from_images",
    "resolve_cache_dir",
    "save_sample_grid",
]
