"""Training steps and runs built for tests the way a run builds them: a ModelPair's
networks with the speed-ups of a run's fields applied in the documented order
(`bench.speedups.applied_speedups`), on this CPU unless a test poses another process."""

from __future__ import annotations

import contextlib
import dataclasses
from types import SimpleNamespace

import torch

from bench.config import RunConfig
from bench.speedups import applied_speedups
from bench.training.precision import PrecisionPolicy
from gan_models import GANLoss, ModelPair, build_pair, get_loss

CPU = SimpleNamespace(device=torch.device("cpu"), distributed=False, world_size=1, rank=0)


def run_fields(**fields) -> SimpleNamespace:
    """A run's fields, RunConfig's defaults but for `fields`, without its validation (tests
    pose networks of their own widths), with the values RunConfig derives from them."""
    run = SimpleNamespace(**({f.name: f.default for f in dataclasses.fields(RunConfig)} | fields))
    for derived in ("critic_updates", "image_channels"):
        setattr(run, derived, getattr(RunConfig, derived).fget(run))
    return run


@contextlib.contextmanager
def built(cfg, pair: ModelPair | None = None, *, loss: GANLoss | None = None, ctx=CPU,
          latent_rng: torch.Generator | None = None, policy: PrecisionPolicy | None = None,
          seed: int = 0):  # fmt: skip
    """`cfg`'s run built on `pair` (by default the pair `cfg` names, seeded by `seed`): the
    `Applied` of bench.speedups, its process-wide settings held for the with block."""
    loss = loss or get_loss(cfg.loss)
    if pair is None:
        torch.manual_seed(seed)
        pair = build_pair(cfg.model, channels=cfg.image_channels, critic=loss.needs_critic)
    rng = latent_rng if latent_rng is not None else torch.Generator().manual_seed(seed)
    with applied_speedups(cfg, ctx, pair, loss=loss, latent_rng=rng, policy=policy) as applied:
        yield applied


def step_for(
    pair: ModelPair,
    loss: GANLoss,
    policy: PrecisionPolicy,
    latent_rng: torch.Generator,
    *,
    lr: float = 2e-4,
    **fields,
):
    """The training step of `pair` with `policy` and the speed-up fields `fields`
    (compile_mode, joint_d_batch, batched_casts, ...), Adam as the DCGAN paper sets it
    (Radford et al. 2015: lr 2e-4, betas (0.5, 0.999)) unless a test asks for larger steps.
    The step's process-wide settings (a compile's watch) end with the call: the step
    itself stays usable."""
    cfg = run_fields(precision=policy.name, loss=loss.name, lr=lr, **fields)
    device = next(pair.generator.parameters()).device
    ctx = SimpleNamespace(device=device, distributed=False, world_size=1, rank=0)
    with built(cfg, pair, loss=loss, ctx=ctx, latent_rng=latent_rng, policy=policy) as applied:
        return applied.step


def mlp_iteration_flops(batch: int) -> int:
    """Analytic FLOPs of one non-saturating MLP iteration (matmuls only, 2 per MAC).

    G forward once; D forward on real and fake, backward for weights and inputs (not the
    first layer's input: data and detached fakes need no gradient); the G update's D
    forward, its input gradients only (D frozen), and G's backward (not z's gradient).
    """
    g = [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    d = [(784, 256), (256, 512), (512, 1024), (1024, 1)]

    def f(layers):
        return sum(2 * batch * i * o for i, o in layers)

    f_g, f_d = f(g), f(d)
    f_g1, f_d1 = f(g[:1]), f(d[:1])
    return 3 * f_g - f_g1 + 8 * f_d - 2 * f_d1
