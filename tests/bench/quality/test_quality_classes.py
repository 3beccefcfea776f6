"""Classifier score (Inception Score formula) and mode coverage on hand-made softmaxes."""

from __future__ import annotations

import math

import pytest
import torch

from bench.quality.classes import class_histogram, classifier_score, mode_coverage


def confident(labels, num_classes=10, confidence=1 - 1e-9):
    probs = torch.full((len(labels), num_classes), (1 - confidence) / (num_classes - 1))
    probs[torch.arange(len(labels)), torch.as_tensor(labels)] = confidence
    return probs.double().log()


def test_score_is_num_classes_for_confident_balanced_and_one_for_one_class():
    balanced = confident([i % 10 for i in range(1000)])
    score, std = classifier_score(balanced)
    assert score == pytest.approx(10.0, rel=1e-6)
    assert std == pytest.approx(0.0, abs=1e-6)
    one_class, _ = classifier_score(confident([3] * 1000))
    assert one_class == pytest.approx(1.0, abs=1e-6)
    uniform, _ = classifier_score(torch.full((100, 10), math.log(0.1)))
    assert uniform == pytest.approx(1.0)


def test_score_splits_and_small_inputs():
    logp = confident([0, 1] * 5, num_classes=2)
    score, _ = classifier_score(logp, splits=10)  # 10 splits of 1 sample: each scores 1
    assert score == pytest.approx(1.0, abs=1e-6)
    assert classifier_score(logp, splits=1)[0] == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(ValueError):
        classifier_score(torch.empty(0, 3))


def test_histogram_hits_and_kl():
    real = torch.full((10,), 0.1, dtype=torch.float64)
    hist = class_histogram(confident([0] * 176 + [1] * 20 + [2] * 3 + [3]), 10)
    assert hist[:4].tolist() == pytest.approx([0.88, 0.1, 0.015, 0.005])
    hit, kl = mode_coverage(hist, real)
    # a class is hit from 10% of its real share, i.e. 1% of the samples: 0, 1, 2, not 3
    assert hit == 3
    expected = sum(p * math.log(p / 0.1) for p in (0.88, 0.1, 0.015, 0.005))
    assert kl == pytest.approx(expected, rel=1e-12)
    assert mode_coverage(real, real) == (10, pytest.approx(0.0, abs=1e-15))
    one = torch.zeros(10, dtype=torch.float64)
    one[4] = 1.0
    assert mode_coverage(one, real)[0] == 1
    assert mode_coverage(one, real)[1] == pytest.approx(math.log(10))
