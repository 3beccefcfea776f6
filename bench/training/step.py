"""One GAN training iteration: D's objective, the step, its optimizers and latents.

An iteration is n_critic discriminator updates followed by one generator update, the
structure of Goodfellow et al. 2014 (Algorithm 1) and of WGAN-GP (n_critic = 5).

DDP and BatchNorm. The discriminator sees a real and a fake batch before one backward.
Calling a DDP module twice per backward with broadcast_buffers=True re-broadcasts the
BatchNorm running statistics in place between the two calls, which corrupts the saved
state autograd needs ("modified by an inplace operation") and is a classic DDP GAN bug.
We avoid both halves of the problem deliberately:
- D's two batches go through ONE DDP forward: `DiscriminatorObjective` runs D on the real
  and on the fake batch separately (each keeps its own BatchNorm statistics, as in the
  reference DCGAN, never a mixed real+fake batch) and returns the loss.
- broadcast_buffers=False on G and D (bench.speedups.apply, where DDP is built):
  running statistics only matter in eval mode, so they are averaged over ranks once at
  the end (bench.runtime.distributed.average_buffers).
In the generator update D is frozen (requires_grad off) and called without its DDP
wrapper, so no D weight gradients are computed or all-reduced for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.training.precision import PrecisionPolicy
from gan_models import GANLoss, batch_coupled_layers, gradient_penalty


class DiscriminatorObjective(nn.Module):
    """D's loss on one real and one fake batch: a single forward for DDP to track.

    `joint`: D runs once over the two batches concatenated (as BigGAN-PyTorch's G_D does)
    instead of once over each: half the launches of D's forward and backward, and matrix
    products twice as tall. Exact only for a D whose samples do not interact (no
    BatchNorm: `gan_models.batch_coupled_layers`); with BatchNorm it would normalise real
    and fake with shared statistics, another objective, so it is refused.
    """

    def __init__(
        self,
        discriminator: nn.Module,
        loss: GANLoss,
        policy: PrecisionPolicy,
        joint: bool = False,
    ):
        super().__init__()
        coupled = batch_coupled_layers(discriminator) if joint else []
        if coupled:
            raise ValueError(
                "a joint real+fake forward needs a discriminator whose samples do not "
                f"interact; these layers use batch statistics: {', '.join(coupled)}"
            )
        self.discriminator = discriminator
        self.loss = loss
        self.policy = policy
        self.joint = joint

    def forward(self, real: torch.Tensor, fake: torch.Tensor, grad_scale=None) -> torch.Tensor:
        with self.policy.autocast():
            if self.joint:
                logits = self.discriminator(torch.cat((real, fake)))
                real_logits, fake_logits = logits.split((real.shape[0], fake.shape[0]))
            else:
                real_logits = self.discriminator(real)
                fake_logits = self.discriminator(fake)
        loss = self.loss.discriminator_loss(real_logits, fake_logits)
        if self.loss.gp_weight:
            penalty = _eager_gradient_penalty(
                self.discriminator, real, fake, grad_scale, self.policy
            )
            loss = loss + self.loss.gp_weight * penalty
        return loss


@torch.compiler.disable(reason="the gradient penalty differentiates twice")
def _eager_gradient_penalty(discriminator, real, fake, grad_scale, policy: PrecisionPolicy):
    """The gradient penalty, never compiled: its loss is a gradient, so D's update
    differentiates twice, which code compiled through AOTAutograd refuses ("torch.compile
    with aot_autograd does not currently support double backward", torch 2.11-2.14). Under
    torch.compile the rest of D's objective is compiled around it (a graph break, counted
    in the record's run.compile)."""
    with policy.autocast():
        return gradient_penalty(discriminator, real, fake, grad_scale=grad_scale)


def draw_latents(
    n: int,
    latent_shape: tuple[int, ...],
    rng: torch.Generator,
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """n standard normal latents of `latent_shape`; for a channels_last model, (C, H, W)
    latents drawn in NHWC memory order and viewed as NCHW.

    Why: a DCGAN latent is (n, 100, 1, 1), and a tensor with 1x1 spatial dims is contiguous
    in both formats, which c10's suggest_memory_format settles as NCHW. cuDNN's transposed
    convolution computes its weight gradient in the format its activations suggest (ATen
    cudnn/ConvShared.cpp), so with an NCHW-strided latent G's first weight gradient came
    out NCHW, while inductor, which predicts it from the channels_last weight, expected
    NHWC: compile + channels-last failed its stride check on an H100 (torch 2.11;
    results/NVIDIA-H100-80GB-HBM3/README.md). Drawn NHWC the strides are (H·W·C, 1, W·C, C),
    which both read as channels_last. For 1x1 latents both memory orders are the same, so
    every memory format trains on the very same values."""
    if memory_format != torch.channels_last or len(latent_shape) != 3:
        return torch.randn((n, *latent_shape), device=device, generator=rng)
    c, h, w = latent_shape
    return torch.randn((n, h, w, c), device=device, generator=rng).permute(0, 3, 1, 2)


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for param in module.parameters():
        param.requires_grad_(flag)


@dataclass
class GANStep:
    """Runs one training iteration; knows nothing of timing, data loading or processes.

    `generator` and `d_objective` may be DDP-wrapped and compiled; `discriminator` is the
    D used (frozen, without DDP, compiled or not) in the generator update.
    """

    generator: nn.Module
    discriminator: nn.Module
    d_objective: nn.Module
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    g_scaler: torch.amp.GradScaler
    d_scaler: torch.amp.GradScaler
    loss: GANLoss
    policy: PrecisionPolicy
    latent_shape: tuple[int, ...]
    latent_rng: torch.Generator
    latent_memory_format: torch.memory_format = torch.contiguous_format

    def _latent(self, n: int, device: torch.device) -> torch.Tensor:
        return draw_latents(
            n, self.latent_shape, self.latent_rng, device, self.latent_memory_format
        )

    def __call__(self, real_batches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration over len(real_batches) D updates; returns detached (d_loss, g_loss)."""
        fake = None
        for i, real in enumerate(real_batches):
            z = self._latent(real.shape[0], real.device)
            last = i == len(real_batches) - 1
            # The last D update's fakes are kept with their graph and reused by the G update,
            # as the PyTorch DCGAN example does: one G forward per iteration when n_critic = 1.
            with self.policy.autocast(), torch.set_grad_enabled(last):
                fake = self.generator(z)
            grad_scale = None
            if self.d_scaler.is_enabled() and self.loss.gp_weight:
                grad_scale = self.d_scaler._get_scale_async()  # a tensor: no host sync
            d_loss = self.d_objective(real, fake.detach(), grad_scale)
            self.d_optimizer.zero_grad(set_to_none=True)
            self.d_scaler.scale(d_loss).backward()
            self.d_scaler.step(self.d_optimizer)
            self.d_scaler.update()

        _set_requires_grad(self.discriminator, False)
        try:
            with self.policy.autocast():
                fake_logits = self.discriminator(fake)
            g_loss = self.loss.generator_loss(fake_logits)
            self.g_optimizer.zero_grad(set_to_none=True)
            self.g_scaler.scale(g_loss).backward()
            self.g_scaler.step(self.g_optimizer)
            self.g_scaler.update()
        finally:
            _set_requires_grad(self.discriminator, True)
        return d_loss.detach(), g_loss.detach()


# How Adam runs: "default" is torch's choice (foreach kernels on CUDA), the eager baseline's.
# A CUDA graph needs the step count on the device (capturable=True: Adam refuses to be
# captured without it) and gets "fused": two multi-tensor ops per parameter group and dtype
# (the step count, then the whole update) where capturable foreach Adam runs 17 (torch
# 2.11-2.14; its bias corrections are tensor ops too), each one launch or more. Under fp16,
# GradScaler hands the fused kernel its scale and inf flag as tensors; with any other Adam
# it reads the inf flag on the host at every step (torch/amp/grad_scaler.py
# _maybe_opt_step: .item()), a sync in every timed iteration, so fp16 on CUDA is fused too.
ADAM_OPTIONS = {"default": {}, "fused": {"fused": True, "capturable": True}}


def make_optimizers(
    generator: nn.Module,
    discriminator: nn.Module,
    lr: float,
    betas: tuple[float, float],
    implementation: str = "default",
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for both networks (Radford et al. 2015: lr 2e-4, beta1 0.5)."""
    if implementation not in ADAM_OPTIONS:
        raise ValueError(f"optimizer implementation {implementation!r} is not known")
    options = ADAM_OPTIONS[implementation]
    return (
        torch.optim.Adam(generator.parameters(), lr=lr, betas=betas, **options),
        torch.optim.Adam(discriminator.parameters(), lr=lr, betas=betas, **options),
    )


def make_step(
    generator: nn.Module,
    discriminator: nn.Module,
    *,
    loss: GANLoss,
    policy: PrecisionPolicy,
    latent_shape: tuple[int, ...],
    latent_rng: torch.Generator,
    lr: float,
    betas: tuple[float, float],
    g_forward: nn.Module | None = None,
    d_objective: nn.Module | None = None,
    d_frozen: nn.Module | None = None,
    adam: str = "default",
    latent_memory_format: torch.memory_format = torch.contiguous_format,
) -> GANStep:
    """A ready-to-run step training `generator` and `discriminator` with Adam (its
    implementation `adam`, ADAM_OPTIONS). The step calls G as `g_forward`, D's loss as
    `d_objective` and D in the generator update as `d_frozen`: by default the networks
    themselves (no speed-up); the speed-ups pass them wrapped, under DDP, compiled
    (bench.speedups.apply). `latent_memory_format`: the networks' (see draw_latents)."""
    g_opt, d_opt = make_optimizers(generator, discriminator, lr, betas, adam)
    return GANStep(
        generator=generator if g_forward is None else g_forward,
        discriminator=discriminator if d_frozen is None else d_frozen,
        d_objective=(
            DiscriminatorObjective(discriminator, loss, policy)
            if d_objective is None
            else d_objective
        ),
        g_optimizer=g_opt,
        d_optimizer=d_opt,
        g_scaler=policy.make_scaler(),
        d_scaler=policy.make_scaler(),
        loss=loss,
        policy=policy,
        latent_shape=latent_shape,
        latent_rng=latent_rng,
        latent_memory_format=latent_memory_format,
    )
