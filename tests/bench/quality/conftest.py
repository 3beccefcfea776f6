"""Shared fixtures for the quality tests: one mnist5k classifier per session, trained into a
temporary cache, and a guard that keeps every test away from the real ~/.cache."""

from __future__ import annotations

import pytest
import torch

from bench.data import load_labelled
from bench.quality import get_extractor


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    # Any get_extractor call without cache_dir lands here, never in the user's home.
    monkeypatch.setenv("GAN_BENCH_CACHE", str(tmp_path / "env-cache"))


@pytest.fixture(scope="session")
def mnist5k_cache(tmp_path_factory):
    """A cache folder holding the trained mnist5k classifier (trained once, ~20 s)."""
    folder = tmp_path_factory.mktemp("quality-cache")
    get_extractor("mnist5k", None, (1, 28, 28), cache_dir=folder)
    return folder


@pytest.fixture(scope="session")
def mnist5k_extractor(mnist5k_cache):
    return get_extractor("mnist5k", None, (1, 28, 28), cache_dir=mnist5k_cache)


@pytest.fixture(scope="session")
def mnist5k_all():
    """All 5000 mnist5k images (uint8, 28x28) and labels, train and held-out together."""
    data = load_labelled("mnist5k", None, (1, 28, 28))
    images = torch.cat([data.train_images, data.heldout_images])
    labels = torch.cat([data.train_labels, data.heldout_labels])
    return images, labels
