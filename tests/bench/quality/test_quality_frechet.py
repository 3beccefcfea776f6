"""Fréchet distance: closed forms, zero on identical inputs, and agreement with scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.quality.frechet import fd_from_features, frechet_distance, gaussian_stats, psd_sqrt


def test_diagonal_gaussians_closed_form():
    # For diagonal covariances tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (s1 - s2)^2 (std devs).
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([0.5, -1.0, 0.0])
    std1, std2 = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([3.0, 0.5, 0.5])
    fd = frechet_distance(mu1, torch.diag(std1**2), mu2, torch.diag(std2**2))
    expected = float(((mu1 - mu2) ** 2).sum() + ((std1 - std2) ** 2).sum())
    assert fd == pytest.approx(expected, rel=1e-12)


def test_identical_features_give_zero():
    x = torch.randn(500, 64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    assert abs(fd_from_features(x, x)) < 1e-6
    mu, sigma = gaussian_stats(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)


def test_singular_covariances_are_fine():
    # Fewer samples than dimensions: rank-deficient covariances, tiny negative eigenvalues.
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(20, 64, generator=g), torch.randn(20, 64, generator=g)
    fd = fd_from_features(a, b)
    assert np.isfinite(fd) and fd > 0
    assert abs(fd_from_features(a, a)) < 1e-6


@pytest.mark.parametrize("dim", [1, 5, 40])
def test_agrees_with_scipy_sqrtm(dim):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(dim)
    a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
    s1, s2 = a @ a.T + 0.1 * np.eye(dim), b @ b.T + 0.1 * np.eye(dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real  # pytorch-fid's formula
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    # And an independent eigenvalue route: tr sqrt(S1 S2) = sum sqrt(eig(S1 S2)).
    eig = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    by_eig = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * eig
    fd = frechet_distance(*(torch.from_numpy(v) for v in (mu1, s1, mu2, s2)))
    assert fd == pytest.approx(expected, rel=1e-8, abs=1e-8)
    assert fd == pytest.approx(by_eig, rel=1e-8, abs=1e-8)


def test_stats_are_float64_and_unbiased():
    x = torch.randn(100, 3, dtype=torch.float32, generator=torch.Generator().manual_seed(2))
    mu, sigma = gaussian_stats(x)
    assert mu.dtype == sigma.dtype == torch.float64
    np.testing.assert_allclose(sigma.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-12)


def test_psd_sqrt_squares_back():
    a = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    s = a @ a.T
    root = psd_sqrt(s)
    torch.testing.assert_close(root @ root, s)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="N >= 2"):
        gaussian_stats(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3))
