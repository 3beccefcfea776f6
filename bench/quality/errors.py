"""The two ways a quality evaluation fails, so callers can tell bad input from a bad model."""

from __future__ import annotations


class QualityError(RuntimeError):
    """The evaluation cannot give trustworthy numbers: a feature classifier below its
    required held-out accuracy, non-finite generated images, too few samples."""


class InceptionWeightsError(ValueError):
    """An Inception weights file is missing or is not a model load_inception accepts."""
