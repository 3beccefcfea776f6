"""D once over the real and fake batches concatenated: the `joint-d` speed-up.

Half of D's launches in its update, and matrix products twice as tall, as BigGAN's
reference code does (`DiscriminatorObjective`, bench.training.step). Exact only for a D
whose samples do not interact in training: with BatchNorm it would normalise real and
fake with shared batch statistics, another objective than two batches, so it is refused
there (a DCGAN discriminator; its WGAN-GP critic has no BatchNorm and takes it).
"""

from __future__ import annotations

from bench.speedups.base import Build, Option, Requirement, SpeedUp, Stage
from gan_models import LOSSES, MODELS


def _no_batch_statistics(cfg, _machine) -> str | None:
    if not MODELS[cfg.model].discriminator_couples_samples(LOSSES[cfg.loss].needs_critic):
        return None
    return (
        f"needs a D without BatchNorm: {cfg.model}'s discriminator has BatchNorm, which would "
        "normalise real and fake images with shared batch statistics, another objective "
        "than two batches; use it with mlp, or with --loss wgan-gp (a critic without "
        "BatchNorm)"
    )


def _joint(build: Build) -> None:
    build.joint_d_batch = True


JOINT_D = SpeedUp(
    name="joint-d",
    help="D runs once over the real and fake batches concatenated, not once over each "
    "(discriminators without BatchNorm only: the same losses and gradients)",
    options=(Option("joint_d_batch", bool, False),),
    fields={"joint_d_batch": True},
    stage=Stage.OBJECTIVE,
    hooks={Stage.OBJECTIVE: _joint},
    requires=(
        Requirement("a D without BatchNorm (mlp, or a wgan-gp critic)", _no_batch_statistics),
    ),
)
