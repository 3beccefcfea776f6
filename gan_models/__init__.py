"""GAN models and losses: plain ``nn.Module``s, no device, process group or timing.

``build_pair`` is the one way the harness gets a generator/discriminator pair;
``get_loss`` / ``LOSSES`` name the objectives. All discriminators return one logit
per image, shape ``(N,)``.

Models (``MODELS``):

- ``mlp``: the fully connected GAN of the classic tutorials, native 28x28 (MNIST);
  ``image_size`` may change the square size. Latent ``(N, latent_dim)``.
- ``dcgan32`` / ``dcgan64``: DCGAN as in pytorch/examples, 32x32 or 64x64.
  Latent ``(N, latent_dim, 1, 1)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gan_models import dcgan, mlp
from gan_models.losses import DEFAULT_LOSS, LOSSES, GANLoss, get_loss, gradient_penalty

__all__ = [
    "DEFAULT_LOSS",
    "GANLoss",
    "LOSSES",
    "MODELS",
    "ModelPair",
    "ModelSpec",
    "batch_coupled_layers",
    "build_pair",
    "get_loss",
    "gradient_penalty",
]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its name, native square resolution, a one-line summary,
    whether its discriminator (as opposed to its WGAN-GP critic) has BatchNorm, which
    couples the samples of a batch in training (``batch_coupled_layers``), and whether its
    networks are convolutional (images in and out of convolutions) or fully connected."""

    name: str
    resolution: int
    description: str
    discriminator_batchnorm: bool
    convolutional: bool

    def discriminator_couples_samples(self, critic: bool) -> bool:
        """Whether D's output for one sample depends on the others of its batch in
        training: BatchNorm's batch statistics (the critic is built without them)."""
        return self.discriminator_batchnorm and not critic


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "mlp",
            28,
            "MLP GAN of the classic tutorials (G 256-512-1024 with BatchNorm1d, "
            "D 256-512-1024), MNIST-native 28x28",
            discriminator_batchnorm=False,
            convolutional=False,
        ),
        ModelSpec(
            "dcgan32",
            32,
            "DCGAN (pytorch/examples), 32x32, ngf=ndf=64",
            discriminator_batchnorm=True,
            convolutional=True,
        ),
        ModelSpec(
            "dcgan64",
            64,
            "DCGAN (pytorch/examples), 64x64, ngf=ndf=64",
            discriminator_batchnorm=True,
            convolutional=True,
        ),
    )
}

_WIDTH_KEYS: dict[str, tuple[str, ...]] = {
    "mlp": ("g_hidden", "d_hidden"),
    "dcgan32": ("ngf", "ndf"),
    "dcgan64": ("ngf", "ndf"),
}


@dataclass
class ModelPair:
    """A generator and a discriminator built to fit each other.

    Attributes:
        generator: maps ``(N, *latent_shape)`` noise to ``(N, *image_shape)`` in [-1, 1].
        discriminator: maps ``(N, *image_shape)`` to logits ``(N,)``.
        image_shape: ``(C, H, W)``.
        latent_shape: per-sample noise shape: ``(latent_dim,)`` for mlp,
            ``(latent_dim, 1, 1)`` for dcgan.
    """

    generator: nn.Module
    discriminator: nn.Module
    image_shape: tuple[int, int, int]
    latent_shape: tuple[int, ...]


def batch_coupled_layers(module: nn.Module) -> list[str]:
    """Names of the submodules whose training-mode output for one sample depends on the
    other samples of the batch: every BatchNorm (``_BatchNorm``: BatchNorm1d/2d/3d,
    SyncBatchNorm, and the fused BatchNorm+activation modules, which subclass it).
    Normalisations per sample (LayerNorm, GroupNorm, InstanceNorm) are not listed. A
    network without such layers gives the same outputs, losses and gradients whether two
    batches go through it one after the other or concatenated."""
    return [name for name, m in module.named_modules() if isinstance(m, _BatchNorm)]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def build_pair(
    name: str,
    *,
    channels: int,
    latent_dim: int = 100,
    critic: bool = False,
    image_size: int | None = None,
    widths: Mapping[str, object] | None = None,
) -> ModelPair:
    """Build the generator/discriminator pair registered as ``name``.

    Args:
        name: a key of ``MODELS``: ``mlp``, ``dcgan32`` or ``dcgan64``.
        channels: image channels (1 or 3 usually; any positive int).
        latent_dim: noise length (mlp) or noise channels (dcgan).
        critic: build the discriminator without BatchNorm (for WGAN-GP; see
            ``GANLoss.needs_critic``). The MLP discriminator has none anyway.
        image_size: square image size. For mlp any size >= 1 (default 28); for dcgan
            only None or the model's resolution.
        widths: optional overrides: for mlp ``{"g_hidden": (...), "d_hidden": (...)}``,
            for dcgan ``{"ngf": int, "ndf": int}``.

    Raises:
        ValueError: unknown name or width key, or a bad size/width/channel count; the
            message lists what is allowed.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    spec = MODELS[name]
    channels = _positive_int("channels", channels)
    latent_dim = _positive_int("latent_dim", latent_dim)
    widths = dict(widths or {})
    unknown = sorted(set(widths) - set(_WIDTH_KEYS[name]), key=str)
    if unknown:
        raise ValueError(
            f"unknown widths key(s) {unknown} for model {name!r}; "
            f"allowed: {', '.join(_WIDTH_KEYS[name])}"
        )

    if name == "mlp":
        size = spec.resolution if image_size is None else _positive_int("image_size", image_size)
        image_shape = (channels, size, size)
        g_hidden = widths.get("g_hidden", mlp.DEFAULT_HIDDEN)
        d_hidden = widths.get("d_hidden", mlp.DEFAULT_HIDDEN)
        return ModelPair(
            generator=mlp.Generator(latent_dim, image_shape, hidden=g_hidden),
            discriminator=mlp.Discriminator(image_shape, hidden=d_hidden, critic=critic),
            image_shape=image_shape,
            latent_shape=(latent_dim,),
        )

    if image_size is not None and image_size != spec.resolution:
        raise ValueError(
            f"model {name!r} is built for {spec.resolution}x{spec.resolution} only, got "
            f"image_size={image_size!r}; allowed: None or {spec.resolution} "
            f"(dcgan32 for 32, dcgan64 for 64)"
        )
    res = spec.resolution
    return ModelPair(
        generator=dcgan.Generator(channels, res, latent_dim, ngf=widths.get("ngf", 64)),
        discriminator=dcgan.Discriminator(channels, res, ndf=widths.get("ndf", 64), critic=critic),
        image_shape=(channels, res, res),
        latent_shape=(latent_dim, 1, 1),
    )
