"""Training a feature classifier: seeded, single-threaded on CPU, and restoring every
global it touches (thread count, RNG state, cuDNN flags).

Determinism: the same seed, data, device type and torch build give the same weights.
Initialisation draws from torch's CPU RNG inside ``fork_rng``; shuffling, augmentation
and dropout draw from private generators, so the caller's RNG streams are untouched.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

# Training knobs, shared by both architectures. Adam with a one-cycle schedule converges
# in few epochs (Smith & Topin 2017); batch 64 keeps many updates per epoch on 4000 images.
BATCH_SIZE = 64
MAX_LR = 3e-3
DROPOUT = 0.3  # on the penultimate features, training only
# Epochs: about 50k images seen in total, 3 to 15 epochs (mnist5k: 13, full MNIST: 3).
_IMAGES_SEEN = 50_000
_MIN_EPOCHS, _MAX_EPOCHS = 3, 15
# CPU threads while training. One thread makes the weights independent of the machine's
# core count (reduction order changes with threads) and avoids oversubscription: on a
# busy 2-core machine mnist5k took 20 s with 1 thread and 118 s with 2.
TRAIN_THREADS = 1
# Images per forward pass when measuring held-out accuracy.
_EVAL_BATCH = 1000


def build_seeded(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module with torch's CPU RNG seeded, leaving the global RNG state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return factory()


def default_epochs(num_train: int) -> int:
    """Epochs for a training set of ``num_train`` images (about 50k images seen)."""
    return min(_MAX_EPOCHS, max(_MIN_EPOCHS, math.ceil(_IMAGES_SEEN / max(1, num_train))))


@contextlib.contextmanager
def training_context(device: torch.device) -> Iterator[None]:
    """Single-threaded CPU and deterministic cuDNN for the duration; restored afterwards."""
    threads = torch.get_num_threads()
    cudnn = torch.backends.cudnn
    flags = (cudnn.deterministic, cudnn.benchmark)
    try:
        if device.type == "cpu":
            torch.set_num_threads(TRAIN_THREADS)
        else:
            cudnn.deterministic, cudnn.benchmark = True, False
        yield
    finally:
        torch.set_num_threads(threads)
        cudnn.deterministic, cudnn.benchmark = flags


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1] (0 -> -1, 255 -> 1), as bench.data scales real batches."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


def train_classifier(
    model: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    heldout_images: torch.Tensor,
    heldout_labels: torch.Tensor,
    *,
    seed: int,
    device: torch.device,
    epochs: int | None = None,
    flip: bool = False,
) -> dict:
    """Train ``model`` (with ``features`` and ``head``) in place; return what happened.

    Images are uint8 (N, C, R, R) at the model's resolution, labels int64. Augmentation:
    a random affine per image (rotation within 10 degrees, scale 0.9-1.1, shift within
    R/14 pixels: 2 px at 28) and, with ``flip``, a random horizontal flip (RGB photos).

    Returns:
        {"heldout_accuracy": float, "train_seconds": float, "epochs": int}; the model is
        left in eval mode on ``device``.
    """
    device = torch.device(device)
    epochs = default_epochs(len(train_images)) if epochs is None else epochs
    start = time.perf_counter()
    with training_context(device):
        model.to(device).train()
        shuffle = torch.Generator().manual_seed(seed)
        noise = torch.Generator(device=device).manual_seed(seed + 1)
        steps_per_epoch = max(1, len(train_images) // BATCH_SIZE)
        optimizer = torch.optim.Adam(model.parameters(), lr=MAX_LR)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=MAX_LR, total_steps=epochs * steps_per_epoch
        )
        for _ in range(epochs):
            order = torch.randperm(len(train_images), generator=shuffle)
            for step in range(steps_per_epoch):
                index = order[step * BATCH_SIZE : (step + 1) * BATCH_SIZE]
                x = to_unit_range(train_images[index].to(device))
                x = _augment(x, noise, flip)
                features = model.features(x)
                keep = torch.rand(features.shape, generator=noise, device=device) >= DROPOUT
                features = features * keep / (1.0 - DROPOUT)  # inverted dropout
                loss = F.cross_entropy(model.head(features), train_labels[index].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        model.eval()
        accuracy = heldout_accuracy(model, heldout_images, heldout_labels, device)
    return {
        "heldout_accuracy": accuracy,
        "train_seconds": time.perf_counter() - start,
        "epochs": epochs,
    }


@torch.no_grad()
def heldout_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> float:
    """Fraction of uint8 ``images`` that ``model`` (in eval mode) classifies as ``labels``."""
    correct = 0
    for start in range(0, len(images), _EVAL_BATCH):
        x = to_unit_range(images[start : start + _EVAL_BATCH].to(device))
        predicted = model(x).argmax(dim=1).cpu()
        correct += int((predicted == labels[start : start + _EVAL_BATCH]).sum())
    return correct / max(1, len(images))


def _augment(x: torch.Tensor, generator: torch.Generator, flip: bool) -> torch.Tensor:
    n, device = x.shape[0], x.device

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(shape or (n,), generator=generator, device=device) * (high - low) + low

    angle = uniform(-math.radians(10), math.radians(10))
    scale = uniform(0.9, 1.1)
    # affine_grid works in [-1, 1] coordinates: a shift of 2/14 there is R/14 pixels.
    shift = uniform(-1 / 7, 1 / 7, n, 2)
    mirror = torch.ones(n, device=device)
    if flip:
        mirror = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = scale * torch.cos(angle) * mirror
    theta[:, 0, 1] = -scale * torch.sin(angle)
    theta[:, 1, 0] = scale * torch.sin(angle) * mirror
    theta[:, 1, 1] = scale * torch.cos(angle)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Shift to [0, 2] so zero padding means black (-1) after shifting back.
    return F.grid_sample(x + 1.0, grid, align_corners=False, padding_mode="zeros") - 1.0
