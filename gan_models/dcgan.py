"""DCGAN (Radford et al. 2015), built as pytorch/examples ``dcgan/main.py`` builds it.

Generator for 64x64 (``ngf`` = 64 by default)::

    z (N, nz, 1, 1)
      -> ConvT(nz, ngf*8, 4, 1, 0) BN ReLU    # (N, ngf*8, 4, 4)
      -> ConvT(ngf*8, ngf*4, 4, 2, 1) BN ReLU # (N, ngf*4, 8, 8)
      -> ConvT(ngf*4, ngf*2, 4, 2, 1) BN ReLU # (N, ngf*2, 16, 16)
      -> ConvT(ngf*2, ngf, 4, 2, 1) BN ReLU   # (N, ngf, 32, 32)
      -> ConvT(ngf, nc, 4, 2, 1) tanh         # (N, nc, 64, 64)

Discriminator for 64x64 (``ndf`` = 64 by default)::

    x (N, nc, 64, 64)
      -> Conv(nc, ndf, 4, 2, 1) LeakyReLU(0.2)          # (N, ndf, 32, 32)
      -> Conv(ndf, ndf*2, 4, 2, 1) BN LeakyReLU(0.2)    # (N, ndf*2, 16, 16)
      -> Conv(ndf*2, ndf*4, 4, 2, 1) BN LeakyReLU(0.2)  # (N, ndf*4, 8, 8)
      -> Conv(ndf*4, ndf*8, 4, 2, 1) BN LeakyReLU(0.2)  # (N, ndf*8, 4, 4)
      -> Conv(ndf*8, 1, 4, 1, 0)                        # (N, 1, 1, 1) -> logit (N,)

32x32 is the same network with one BN stage fewer on each side. The construction is:
``n_stages = log2(resolution) - 3`` stride-2 BN stages between the 4x4 projection and
the last stride-2 layer (3 for 64, 2 for 32), and the widest layer is
``ngf * 2**n_stages`` (ngf*8 for 64, ngf*4 for 32). So for 32x32 the generator goes
1 -> 4 -> 8 -> 16 -> 32 with widths ngf*4, ngf*2, ngf, nc, and the discriminator goes
32 -> 16 -> 8 -> 4 -> 1 with widths ndf, ndf*2, ndf*4, 1.

Differences from the example, each deliberate:

- The discriminator returns the logit, flattened to ``(N,)``; there is no final
  Sigmoid. The losses use ``*_with_logits`` / softplus forms, which are stable and
  safe under autocast (``BCELoss`` after ``sigmoid`` is refused under autocast).
- Activations are out of place (the example uses ``inplace=True``). In-place saves one
  activation-sized buffer per block, but it overwrites the BatchNorm output, which a
  swapped-in module or a forward hook may have saved for its backward (a
  version-counter error at backward time); out of place keeps the eager baseline
  free of that hazard (``torch.compile`` functionalises the graph either way).
- ``critic=True`` builds the discriminator WITHOUT BatchNorm, for WGAN-GP: Gulrajani
  et al. 2017, sec. 4 — batch normalisation maps a whole batch to a whole batch, while
  the gradient penalty is defined per sample, so the penalised critic must map each
  input to its output independently. The rest (conv + LeakyReLU) is unchanged.

Initialisation is the example's ``weights_init``: Conv/ConvTranspose weight
N(0, 0.02), BatchNorm weight N(1, 0.02) and bias 0. No conv has a bias (every conv
is followed by BatchNorm or is the first/last layer, as in the example).

Every BatchNorm2d is immediately followed by its activation module (``nn.ReLU`` in
G, ``nn.LeakyReLU(0.2)`` in D) as the next sibling in the same ``nn.Sequential``: the
kernel swap pass looks for exactly that pair.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["Discriminator", "Generator", "RESOLUTIONS", "init_weights", "n_stages"]

RESOLUTIONS: tuple[int, ...] = (32, 64)
LEAK = 0.2


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def n_stages(resolution: int) -> int:
    """Number of stride-2 BatchNorm stages between the 4x4 layer and the image layer.

    ``log2(resolution) - 3``: 3 for 64x64, 2 for 32x32.
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"DCGAN resolution must be one of {list(RESOLUTIONS)}, got {resolution!r}")
    return resolution.bit_length() - 1 - 3


def init_weights(module: nn.Module) -> None:
    """The DCGAN example's ``weights_init``; use with ``model.apply(init_weights)``.

    Conv and ConvTranspose weights ~ N(0, 0.02); BatchNorm weight ~ N(1, 0.02), bias 0.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """DCGAN generator: ``(N, latent_dim, 1, 1)`` noise to ``(N, nc, res, res)`` in [-1, 1].

    Args:
        nc: image channels (1 for MNIST-like data, 3 for RGB; any positive int).
        resolution: 32 or 64.
        latent_dim: nz, the number of noise channels.
        ngf: base width; the widest layer is ``ngf * 2**n_stages(resolution)``.
    """

    def __init__(
        self, nc: int = 3, resolution: int = 64, latent_dim: int = 100, ngf: int = 64
    ) -> None:
        super().__init__()
        self.nc = _positive_int("nc (channels)", nc)
        self.latent_dim = _positive_int("latent_dim", latent_dim)
        self.ngf = _positive_int("ngf", ngf)
        stages = n_stages(resolution)
        self.resolution = resolution

        width = ngf * 2**stages  # ngf*8 for 64, ngf*4 for 32
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        # (N, nz, 1, 1) -> (N, ngf*8, 4, 4) for 64; (N, ngf*4, 4, 4) for 32
        blocks["project"] = nn.Sequential(
            OrderedDict(
                conv=nn.ConvTranspose2d(latent_dim, width, 4, 1, 0, bias=False),
                bn=nn.BatchNorm2d(width),
                act=nn.ReLU(),
            )
        )
        size = 4
        for i in range(1, stages + 1):
            # 64: (N, ngf*8, 4, 4) -> (N, ngf*4, 8, 8) -> (N, ngf*2, 16, 16) -> (N, ngf, 32, 32)
            # 32: (N, ngf*4, 4, 4) -> (N, ngf*2, 8, 8) -> (N, ngf, 16, 16)
            blocks[f"up{i}"] = nn.Sequential(
                OrderedDict(
                    conv=nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                    bn=nn.BatchNorm2d(width // 2),
                    act=nn.ReLU(),
                )
            )
            width //= 2
            size *= 2
        assert width == ngf and size * 2 == resolution
        # (N, ngf, res/2, res/2) -> (N, nc, res, res), in [-1, 1]
        blocks["to_image"] = nn.Sequential(
            OrderedDict(conv=nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), act=nn.Tanh())
        )
        self.main = nn.Sequential(blocks)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map ``z`` of shape ``(N, latent_dim, 1, 1)`` to images ``(N, nc, res, res)``."""
        return self.main(z)


class Discriminator(nn.Module):
    """DCGAN discriminator: ``(N, nc, res, res)`` images to one logit per image, ``(N,)``.

    Args:
        nc: image channels.
        resolution: 32 or 64.
        ndf: base width; the widest layer is ``ndf * 2**n_stages(resolution)``.
        critic: if True, leave out every BatchNorm (WGAN-GP critic).
    """

    def __init__(
        self, nc: int = 3, resolution: int = 64, ndf: int = 64, *, critic: bool = False
    ) -> None:
        super().__init__()
        self.nc = _positive_int("nc (channels)", nc)
        self.ndf = _positive_int("ndf", ndf)
        stages = n_stages(resolution)
        self.resolution = resolution
        self.critic = bool(critic)

        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        # (N, nc, res, res) -> (N, ndf, res/2, res/2); no BatchNorm on the first layer
        blocks["from_image"] = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), act=nn.LeakyReLU(LEAK))
        )
        width = ndf
        for i in range(1, stages + 1):
            # 64: (N, ndf, 32, 32) -> (N, ndf*2, 16, 16) -> (N, ndf*4, 8, 8) -> (N, ndf*8, 4, 4)
            # 32: (N, ndf, 16, 16) -> (N, ndf*2, 8, 8) -> (N, ndf*4, 4, 4)
            layers: OrderedDict[str, nn.Module] = OrderedDict(
                conv=nn.Conv2d(width, width * 2, 4, 2, 1, bias=False)
            )
            if not critic:
                layers["bn"] = nn.BatchNorm2d(width * 2)
            layers["act"] = nn.LeakyReLU(LEAK)
            blocks[f"down{i}"] = nn.Sequential(layers)
            width *= 2
        # (N, ndf*8, 4, 4) for 64 / (N, ndf*4, 4, 4) for 32 -> (N, 1, 1, 1)
        blocks["to_logit"] = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(width, 1, 4, 1, 0, bias=False))
        )
        self.main = nn.Sequential(blocks)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images ``(N, nc, res, res)`` to logits ``(N,)``."""
        out = self.main(x)  # (N, 1, 1, 1)
        return out.reshape(out.shape[0])  # (N,)
