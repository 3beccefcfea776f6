"""KID: near zero for one distribution, positive for shifted ones, seeded."""

from __future__ import annotations

import pytest
import torch

from bench.quality.kid import kernel_inception_distance, mmd2_unbiased, polynomial_kernel


def sample(n, shift=0.0, seed=0, dim=16):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) + shift


def test_same_distribution_is_near_zero_and_shift_is_positive():
    real = sample(1000, seed=0)
    same_mean, same_std = kernel_inception_distance(
        real, sample(1000, seed=1), num_subsets=20, subset_size=500
    )
    shifted_mean, _ = kernel_inception_distance(
        real, sample(1000, 1.0, seed=1), num_subsets=20, subset_size=500
    )
    assert abs(same_mean) < 3 * same_std + 1e-3
    assert abs(same_mean) < 0.01
    assert shifted_mean > 0.5
    assert shifted_mean > 50 * abs(same_mean)


def test_unbiased_estimator_matches_definition():
    x, y = sample(7, seed=2, dim=3), sample(7, 0.3, seed=3, dim=3)
    x, y = x.double(), y.double()

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    m = 7
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    assert float(mmd2_unbiased(x, y)) == pytest.approx(float(xx + yy - 2 * xy), rel=1e-12)
    assert polynomial_kernel(x, y).shape == (7, 7)


def test_seeded_and_subset_size_capped():
    a, b = sample(30, seed=4), sample(40, 0.5, seed=5)
    first = kernel_inception_distance(a, b, num_subsets=5, seed=3)
    assert first == kernel_inception_distance(a, b, num_subsets=5, seed=3)
    assert first != kernel_inception_distance(a, b, num_subsets=5, seed=4)
    # subsets of min(1000, 30, 40) = 30 rows: every real row in every subset
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(a[:1], b)


def test_whole_matrix_method_gives_the_same_estimates(monkeypatch):
    import bench.quality.kid as kid_module

    a, b = sample(60, seed=6, dim=8), sample(90, 0.2, seed=7, dim=8)
    kwargs = {"num_subsets": 7, "subset_size": 40, "seed": 1}
    by_subsets = kernel_inception_distance(a, b, method="subsets", **kwargs)
    by_whole = kernel_inception_distance(a, b, method="whole", **kwargs)
    monkeypatch.setattr(kid_module, "_BLOCK_ELEMENTS", 11 * 90)  # ragged kernel blocks
    blocked = kernel_inception_distance(a, b, method="whole", **kwargs)
    for got in (by_whole, blocked):
        assert got == pytest.approx(by_subsets, rel=1e-10)
    with pytest.raises(ValueError, match="method"):
        kernel_inception_distance(a, b, method="fast")
