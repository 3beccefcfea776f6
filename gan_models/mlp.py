"""The fully connected GAN of the classic GAN tutorials (MNIST-sized images).

Generator::

    z (N, latent_dim)
      -> [Linear 256 -> BatchNorm1d -> LeakyReLU(0.2)]
      -> [Linear 512 -> BatchNorm1d -> LeakyReLU(0.2)]
      -> [Linear 1024 -> BatchNorm1d -> LeakyReLU(0.2)]
      -> Linear C*H*W -> tanh -> reshape (N, C, H, W)

Discriminator::

    x (N, C, H, W) -> flatten (N, C*H*W)
      -> [Linear 256 -> LeakyReLU(0.2)] -> [Linear 512 -> LeakyReLU(0.2)]
      -> [Linear 1024 -> LeakyReLU(0.2)] -> Linear 1 -> logit (N,)

Two layers of the reference formulation are left out on purpose, because both are
bugs: a BatchNorm after the final tanh (it re-centres and re-scales the image, so the
output is no longer in [-1, 1], the range the real images are normalised to), and a
ReLU in front of each LeakyReLU (ReLU already zeroes the negative half, so the leak
never sees a negative input and the LeakyReLU is dead weight).

The reference formulation widens the discriminator in the same order as the
generator (256 -> 512 -> 1024, then 1), rather than narrowing it towards the logit as
most MLP discriminators do; that order is kept here so that timings are comparable
with it. Both width tuples are configurable.

Initialisation is torch's default for ``nn.Linear`` (Kaiming-uniform, a=sqrt(5)) and
``nn.BatchNorm1d`` (weight 1, bias 0); the tutorial does not re-initialise either.
BatchNorm1d keeps torch's default ``eps=1e-5`` and ``momentum=0.1`` (some versions of
the tutorial pass 0.8 as BatchNorm1d's second positional argument, which is ``eps``).

Every BatchNorm1d is immediately followed by its ``nn.LeakyReLU`` as the next sibling
in the same ``nn.Sequential``: the kernel swap pass looks for exactly that pair.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Discriminator", "Generator", "DEFAULT_HIDDEN"]

DEFAULT_HIDDEN: tuple[int, ...] = (256, 512, 1024)
LEAK = 0.2


def _check_widths(name: str, hidden: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(hidden)
    if not widths or not all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths
    ):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {hidden!r}")
    return widths


def _check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(f"image_shape must be three positive ints (C, H, W), got {image_shape!r}")
    return shape  # type: ignore[return-value]


class Generator(nn.Module):
    """MLP generator: ``(N, latent_dim)`` noise to ``(N, C, H, W)`` images in [-1, 1].

    Args:
        latent_dim: length of the noise vector z.
        image_shape: ``(C, H, W)`` of the generated images.
        hidden: widths of the hidden Linear+BatchNorm1d+LeakyReLU blocks.
    """

    def __init__(
        self,
        latent_dim: int = 100,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = DEFAULT_HIDDEN,
    ) -> None:
        super().__init__()
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}")
        self.latent_dim = latent_dim
        self.image_shape = _check_image_shape(image_shape)
        self.hidden = _check_widths("generator hidden", hidden)

        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        width_in = latent_dim
        for i, width in enumerate(self.hidden, start=1):
            # (N, width_in) -> (N, width). No Linear bias: the BatchNorm right after
            # subtracts the batch mean, so a bias would cancel; BN's beta takes its place.
            blocks[f"block{i}"] = nn.Sequential(
                OrderedDict(
                    linear=nn.Linear(width_in, width, bias=False),
                    bn=nn.BatchNorm1d(width),
                    act=nn.LeakyReLU(LEAK),
                )
            )
            width_in = width
        # (N, hidden[-1]) -> (N, C*H*W), in [-1, 1]
        blocks["to_image"] = nn.Sequential(
            OrderedDict(linear=nn.Linear(width_in, math.prod(self.image_shape)), act=nn.Tanh())
        )
        self.main = nn.Sequential(blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map ``z`` of shape ``(N, latent_dim)`` to images ``(N, C, H, W)``."""
        x = self.main(z)  # (N, C*H*W)
        return x.view(x.shape[0], *self.image_shape)  # (N, C, H, W)


class Discriminator(nn.Module):
    """MLP discriminator: ``(N, C, H, W)`` images to one logit per image, shape ``(N,)``.

    Args:
        image_shape: ``(C, H, W)`` of the input images.
        hidden: widths of the hidden Linear+LeakyReLU blocks, in order.
        critic: accepted for symmetry with the DCGAN discriminator (WGAN-GP wants a
            critic without BatchNorm); this network has no BatchNorm, so the flag
            changes nothing.
    """

    def __init__(
        self,
        image_shape: Sequence[int] = (1, 28, 28),
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        *,
        critic: bool = False,
    ) -> None:
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        self.hidden = _check_widths("discriminator hidden", hidden)
        self.critic = bool(critic)

        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        width_in = math.prod(self.image_shape)
        for i, width in enumerate(self.hidden, start=1):
            # (N, width_in) -> (N, width)
            blocks[f"block{i}"] = nn.Sequential(
                OrderedDict(linear=nn.Linear(width_in, width), act=nn.LeakyReLU(LEAK))
            )
            width_in = width
        # (N, hidden[-1]) -> (N, 1): a logit, no sigmoid (losses work on logits)
        blocks["to_logit"] = nn.Sequential(OrderedDict(linear=nn.Linear(width_in, 1)))
        self.main = nn.Sequential(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, C, H, W)`` (or already flat ``(N, C*H*W)``) to logits ``(N,)``."""
        out = self.main(x.flatten(1))  # (N, 1)
        return out.reshape(out.shape[0])  # (N,)
