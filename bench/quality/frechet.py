"""Fréchet distance between Gaussians fitted to two feature sets, in float64.

FD = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)

(Dowson & Landau 1982; the FID of Heusel et al. 2017 is this with Inception features).
tr((S1 S2)^1/2) is computed through the symmetric matrix S1^1/2 S2 S1^1/2, which has the
same eigenvalues as S1 S2, with two symmetric eigendecompositions (torch.linalg.eigh):
no scipy.linalg.sqrtm, whose Schur route can return complex parts and needs the
"add eps to the diagonal" retry pytorch-fid carries.
"""

from __future__ import annotations

import torch


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, float64 on the CPU.

    Unbiased (divides by N - 1) like numpy.cov, which pytorch-fid uses. Needs N >= 2.
    """
    x = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {tuple(x.shape)}")
    mu = x.mean(dim=0)
    centred = x - mu
    sigma = centred.T @ centred / (x.shape[0] - 1)
    return mu, sigma


def frechet_distance(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    Tiny negative eigenvalues from rounding (covariances are PSD in exact arithmetic) are
    clamped to 0, and so is the result: a distance cannot be negative.
    """
    mu1, mu2 = (torch.as_tensor(m).to("cpu", torch.float64) for m in (mu1, mu2))
    s1, s2 = (_symmetric(torch.as_tensor(s).to("cpu", torch.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (*mu1.shape, *mu1.shape):
        raise ValueError(
            f"mismatched statistics: means {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
            f"covariances {tuple(s1.shape)} / {tuple(s2.shape)}"
        )
    root1 = psd_sqrt(s1)
    middle = _symmetric(root1 @ s2 @ root1)  # same eigenvalues as s1 @ s2
    trace_sqrt = torch.linalg.eigvalsh(middle).clamp_min(0.0).sqrt().sum()
    diff = mu1 - mu2
    fd = diff @ diff + torch.trace(s1) + torch.trace(s2) - 2.0 * trace_sqrt
    return max(float(fd), 0.0)


def fd_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


def psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """Principal square root of a symmetric positive semi-definite matrix via eigh."""
    values, vectors = torch.linalg.eigh(_symmetric(matrix))
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T


def _symmetric(matrix: torch.Tensor) -> torch.Tensor:
    # Products like A @ B @ A are symmetric only up to rounding; eigh reads one triangle.
    return (matrix + matrix.T) / 2.0
