"""Class-based scores from the domain classifier's softmax: classifier score and mode
coverage.

The classifier score is the Inception Score formula (Salimans et al. 2016),
exp(E_x KL(p(y|x) || p(y))), with the data set's own classifier in place of Inception:
the mean and standard deviation over 10 equal splits of the samples, the standard
protocol (torch-fidelity's default). Its maximum is the number of classes.
"""

from __future__ import annotations

import math

import torch

SCORE_SPLITS = 10
# A class counts as hit when the generated samples classified into it are at least this
# fraction of its expected count (its share of the real held-out set, predicted the same
# way, times N): 10%, i.e. 1% of samples for 10 balanced classes (20 of 2000).
HIT_FRACTION = 0.1
# Probability floor for the real histogram in KL(generated || real), so a class the
# classifier never predicts on real data gives a large finite value, not infinity.
_FLOOR = 1e-12


def classifier_score(log_probs: torch.Tensor, splits: int = SCORE_SPLITS) -> tuple[float, float]:
    """Inception-Score formula on (N, K) class log-probabilities: (mean, std) over splits.

    Splits are consecutive, as in the reference code; ``splits`` is lowered to N when
    there are fewer samples. std uses ddof 0, as numpy's np.std in the reference.
    """
    logp = torch.as_tensor(log_probs).to("cpu", torch.float64)
    if logp.ndim != 2 or len(logp) == 0:
        raise ValueError(f"log_probs must be (N, K) with N >= 1, got {tuple(logp.shape)}")
    scores = []
    for part in torch.tensor_split(logp, min(splits, len(logp))):
        marginal = torch.logsumexp(part, dim=0) - math.log(len(part))  # log p(y)
        kl = (part.exp() * (part - marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    values = torch.tensor(scores, dtype=torch.float64)
    return float(values.mean()), float(values.std(unbiased=False))


def class_histogram(log_probs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Fraction of samples whose arg-max class is each class: (num_classes,) float64."""
    predicted = torch.as_tensor(log_probs).argmax(dim=1).cpu()
    counts = torch.bincount(predicted, minlength=num_classes).to(torch.float64)
    return counts / max(1, len(predicted))


def mode_coverage(
    fake_histogram: torch.Tensor,
    real_histogram: torch.Tensor,
    *,
    hit_fraction: float = HIT_FRACTION,
) -> tuple[int, float]:
    """(classes hit, KL(generated histogram || real histogram) in nats).

    Both histograms are class fractions summing to 1. A class is hit when its generated
    fraction is at least ``hit_fraction`` times its real fraction (classes absent from
    the real histogram cannot be hit).
    """
    p = torch.as_tensor(fake_histogram, dtype=torch.float64)
    q = torch.as_tensor(real_histogram, dtype=torch.float64)
    hit = int(((p >= hit_fraction * q) & (q > 0) & (p > 0)).sum())
    present = p > 0  # 0 log 0 = 0
    kl = (p[present] * (p[present].log() - q[present].clamp_min(_FLOOR).log())).sum()
    return hit, float(kl)
