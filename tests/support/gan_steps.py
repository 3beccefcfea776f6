"""A GAN training step over a ModelPair for tests: `bench.train.build_step` with the pair's
own networks and latent shape, and Adam as the DCGAN paper sets it (Radford et al. 2015:
lr 2e-4, betas (0.5, 0.999)) unless a test asks for larger steps."""

from __future__ import annotations

import torch

from bench.precision import PrecisionPolicy
from bench.train import GANStep, build_step
from gan_models import GANLoss, ModelPair


def step_for(
    pair: ModelPair,
    loss: GANLoss,
    policy: PrecisionPolicy,
    latent_rng: torch.Generator,
    *,
    lr: float = 2e-4,
    **options,
) -> GANStep:
    """`build_step` for `pair`; `options` are build_step's own (optimizer, compile_mode, ...)."""
    return build_step(
        pair.generator,
        pair.discriminator,
        loss=loss,
        policy=policy,
        latent_shape=pair.latent_shape,
        latent_rng=latent_rng,
        lr=lr,
        betas=(0.5, 0.999),
        **options,
    )
