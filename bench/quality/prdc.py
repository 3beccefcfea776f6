"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020)
from k-nearest-neighbour balls in feature space.

- precision: fraction of fake samples inside some real sample's k-NN ball (k = 3);
- recall: fraction of real samples inside some fake sample's k-NN ball (k = 3);
- density: per fake sample, how many real balls (k = 5) contain it, averaged, divided by k;
- coverage: fraction of real samples whose k-NN ball (k = 5) contains some fake sample.

A ball's radius is the distance to the k-th nearest other sample of the same set.
Boundaries follow each paper's reference code: "<=" for precision / recall
(kynkaanniemi/improved-precision-and-recall-metric), "<" for density / coverage
(clovaai/generative-evaluation-prdc).

Distances are Euclidean, computed with torch.cdist one block of rows at a time, so memory
stays at about _BLOCK_ELEMENTS float64 values (128 MiB) for any N (10k x 10k included).
"""

from __future__ import annotations

import torch

K_PRECISION_RECALL = 3
K_DENSITY_COVERAGE = 5
# Distance-matrix entries per block: 2^24 float64 = 128 MiB.
_BLOCK_ELEMENTS = 1 << 24


def knn_radii(
    features: torch.Tensor, ks: tuple[int, ...], *, device: torch.device | str = "cpu"
) -> dict[int, torch.Tensor]:
    """Per row, the distance to its k-th nearest other row, for each k: {k: (N,) float64}."""
    x = torch.as_tensor(features).to(device, torch.float64)
    k_max = max(ks)
    if len(x) <= k_max:
        raise ValueError(
            f"k-NN radii with k = {k_max} need more than {k_max} samples, got {len(x)}"
        )
    found = []
    for block in _blocks(len(x), len(x)):
        distances = torch.cdist(x[block], x)
        # k_max + 1 smallest: the row itself (distance 0) comes first.
        found.append(distances.topk(k_max + 1, dim=1, largest=False).values)
    nearest = torch.cat(found)
    return {k: nearest[:, k].cpu() for k in ks}


def precision_recall_density_coverage(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    k_pr: int = K_PRECISION_RECALL,
    k_dc: int = K_DENSITY_COVERAGE,
    real_radii: dict[int, torch.Tensor] | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (N, D) features.

    ``real_radii`` may pass precomputed ``knn_radii(real, (k_pr, k_dc))`` (a prepared
    reference keeps them). Returns {"precision", "recall", "density", "coverage"}.
    """
    real = torch.as_tensor(real).to(device, torch.float64)
    fake = torch.as_tensor(fake).to(device, torch.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"features must be (N, D) alike, got {tuple(real.shape)}, {tuple(fake.shape)}"
        )
    if real_radii is None or not {k_pr, k_dc} <= set(real_radii):
        real_radii = knn_radii(real, (k_pr, k_dc), device=device)
    r_real_pr = real_radii[k_pr].to(device, torch.float64)
    r_real_dc = real_radii[k_dc].to(device, torch.float64)
    r_fake_pr = knn_radii(fake, (k_pr,), device=device)[k_pr].to(device)

    fake_in_real = 0  # fake samples within some real ball (precision)
    density_hits = torch.zeros((), dtype=torch.float64, device=device)
    real_in_fake = torch.zeros(len(real), dtype=torch.bool, device=device)  # recall
    nearest_fake = torch.full((len(real),), float("inf"), dtype=torch.float64, device=device)
    for block in _blocks(len(fake), len(real)):
        distances = torch.cdist(fake[block], real)  # (block, N_real)
        fake_in_real += int((distances <= r_real_pr).any(dim=1).sum())
        density_hits += (distances < r_real_dc).sum()
        real_in_fake |= (distances <= r_fake_pr[block, None]).any(dim=0)
        nearest_fake = torch.minimum(nearest_fake, distances.min(dim=0).values)
    return {
        "precision": fake_in_real / len(fake),
        "recall": float(real_in_fake.double().mean()),
        "density": float(density_hits) / (k_dc * len(fake)),
        "coverage": float((nearest_fake < r_real_dc).double().mean()),
    }


def _blocks(rows: int, columns: int) -> list[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(1, columns))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]
