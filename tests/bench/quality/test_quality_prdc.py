"""Precision / recall / density / coverage: hand-computed toy cases, a brute-force
reference, and block-wise distances that agree with one big matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import bench.quality.prdc as prdc_module
from bench.quality.prdc import knn_radii
from bench.quality.prdc import precision_recall_density_coverage as prdc

LINE = torch.arange(10, dtype=torch.float64)[:, None]  # real samples 0, 1, ..., 9 on a line


def test_knn_radii_on_a_line():
    radii = knn_radii(LINE, (3, 5))
    assert radii[3].tolist() == [3, 2, 2, 2, 2, 2, 2, 2, 2, 3]
    assert radii[5].tolist() == [5, 4, 3, 3, 3, 3, 3, 3, 4, 5]


def test_hand_computed_case():
    # fake 4.5 lies in every real ball; 20..23 lie in none. 4.5's own 3-NN ball
    # (radius 17.5) holds every real sample, so recall is 1 (the outlier effect that
    # density / coverage were designed against).
    fake = torch.tensor([[4.5], [20.0], [21.0], [22.0], [23.0]], dtype=torch.float64)
    got = prdc(LINE, fake)
    assert got["precision"] == pytest.approx(1 / 5)
    assert got["recall"] == pytest.approx(1.0)
    assert got["density"] == pytest.approx(10 / (5 * 5))  # 10 balls hold 4.5; k = 5; 5 fakes
    assert got["coverage"] == pytest.approx(1.0)


def test_far_away_fakes_score_zero_and_copies_score_one():
    far = prdc(LINE, LINE + 100)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    same = prdc(LINE, LINE.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0


def test_one_point_generator_has_low_recall_and_coverage():
    real = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    fake = real[:1].repeat(50, 1)  # one mode, copied
    got = prdc(real, fake)
    assert got["precision"] == 1.0
    assert got["recall"] <= 2 / 200  # only the copied sample (radius 0 balls)
    assert got["coverage"] <= 6 / 200  # the copied sample and at most its 5 neighbours


def brute_force(real, fake, k_pr=3, k_dc=5):
    r, f = real.numpy(), fake.numpy()
    d_rr = np.linalg.norm(r[:, None] - r[None], axis=2)
    d_ff = np.linalg.norm(f[:, None] - f[None], axis=2)
    d_fr = np.linalg.norm(f[:, None] - r[None], axis=2)
    r_pr = np.sort(d_rr, axis=1)[:, k_pr]
    r_dc = np.sort(d_rr, axis=1)[:, k_dc]
    f_pr = np.sort(d_ff, axis=1)[:, k_pr]
    return {
        "precision": (d_fr <= r_pr[None]).any(axis=1).mean(),
        "recall": (d_fr <= f_pr[:, None]).any(axis=0).mean(),
        "density": (d_fr < r_dc[None]).sum() / (k_dc * len(f)),
        "coverage": (d_fr.min(axis=0) < r_dc).mean(),
    }


@pytest.mark.parametrize("shift", [0.0, 0.5, 2.0])
def test_matches_brute_force_and_blocking(shift, monkeypatch):
    g = torch.Generator().manual_seed(1)
    real = torch.randn(120, 5, generator=g, dtype=torch.float64)
    fake = torch.randn(90, 5, generator=g, dtype=torch.float64) * 1.3 + shift
    expected = brute_force(real, fake)
    whole = prdc(real, fake)
    monkeypatch.setattr(prdc_module, "_BLOCK_ELEMENTS", 7 * 120)  # 7-row blocks, a ragged last
    blocked = prdc(real, fake)
    for key, value in expected.items():
        assert whole[key] == pytest.approx(value, abs=1e-12), key
        assert blocked[key] == pytest.approx(value, abs=1e-12), key


def test_precomputed_radii_are_used_and_errors_are_clear():
    real = torch.randn(30, 4, generator=torch.Generator().manual_seed(2))
    fake = real + 0.1
    radii = knn_radii(real, (3, 5))
    assert prdc(real, fake, real_radii=radii) == prdc(real, fake)
    with pytest.raises(ValueError, match="more than 5"):
        knn_radii(real[:5], (3, 5))
    with pytest.raises(ValueError, match="alike"):
        prdc(real, fake[:, :2])
