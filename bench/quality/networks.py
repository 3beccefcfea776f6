"""The feature networks: a LeNet-like CNN for grey digits, a small VGG-like CNN for RGB,
and a fixed random CNN for data without labels.

Each exposes ``features(x)`` (the penultimate activations the metrics use) and, for the
classifiers, ``head`` mapping features to class logits. Inputs are float32 (N, C, R, R) in
[-1, 1] at the network's own resolution R. Construction uses torch's global RNG: callers
that need a seed build under ``torch.random.fork_rng`` (see bench.quality.training).
"""

from __future__ import annotations

import torch
from torch import nn

# Length of the penultimate feature vector, per architecture.
LENET_FEATURES = 128
VGG_FEATURES = 256
RANDOM_FEATURES = 256


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class LeNet(nn.Module):
    """LeNet-like classifier for 28x28 grey images (three 3x3 conv blocks, then 128 units).

    About 2 M multiply-adds per image: 13 epochs of mnist5k train in 20-28 s on one CPU
    core (98.4% held-out), 3 epochs of full MNIST in 70-135 s (99.38%), measured on a busy
    2-core Xeon with torch 2.14.
    """

    resolution = 28

    def __init__(self, channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(channels, 16),  # (N, 16, 28, 28)
            nn.MaxPool2d(2),  # (N, 16, 14, 14)
            *_conv_bn_relu(16, 32),  # (N, 32, 14, 14)
            nn.MaxPool2d(2),  # (N, 32, 7, 7)
            *_conv_bn_relu(32, 64),  # (N, 64, 7, 7)
            nn.MaxPool2d(2),  # (N, 64, 3, 3)
            nn.Flatten(),  # (N, 576)
            nn.Linear(64 * 3 * 3, LENET_FEATURES),
            nn.ReLU(),  # (N, 128): the features
        )
        self.head = nn.Linear(LENET_FEATURES, num_classes)  # (N, num_classes) logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SmallVGG(nn.Module):
    """VGG-like classifier for 32x32 RGB images (five 3x3 conv layers, then 256 units)."""

    resolution = 32

    def __init__(self, channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(channels, 32),  # (N, 32, 32, 32)
            *_conv_bn_relu(32, 32),
            nn.MaxPool2d(2),  # (N, 32, 16, 16)
            *_conv_bn_relu(32, 64),
            *_conv_bn_relu(64, 64),
            nn.MaxPool2d(2),  # (N, 64, 8, 8)
            *_conv_bn_relu(64, 128),
            nn.MaxPool2d(2),  # (N, 128, 4, 4)
            nn.Flatten(),  # (N, 2048)
            nn.Linear(128 * 4 * 4, VGG_FEATURES),
            nn.ReLU(),  # (N, 256): the features
        )
        self.head = nn.Linear(VGG_FEATURES, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class RandomCNN(nn.Module):
    """Untrained CNN with fixed random weights: a generic embedding for unlabelled data.

    He-normal weights and no normalisation keep activations at a stable scale through the
    ReLUs; a 2x2 average pool of the last map keeps coarse layout in the 256 features.
    Random conv features separate image distributions usefully but are no substitute for
    a trained network: compare their FD only with itself.
    """

    resolution = 32

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),  # (N, 32, 32, 32)
            nn.ReLU(),
            nn.AvgPool2d(2),  # (N, 32, 16, 16)
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),  # (N, 64, 8, 8)
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),  # (N, 64, 2, 2)
            nn.Flatten(),  # (N, 256): the features
        )
        for module in self.body:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


ARCHITECTURES: dict[str, type[nn.Module]] = {"lenet": LeNet, "vgg": SmallVGG}


def classifier_arch(channels: int) -> str:
    """The classifier architecture for images with this many channels: lenet or vgg."""
    if channels == 1:
        return "lenet"
    if channels == 3:
        return "vgg"
    raise ValueError(f"no classifier architecture for {channels}-channel images (1 or 3)")
