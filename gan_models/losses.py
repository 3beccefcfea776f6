"""GAN losses computed from discriminator logits, plus the WGAN-GP gradient penalty.

Every loss takes raw logits (the discriminators here end without a sigmoid) and uses
``F.softplus`` instead of ``log(sigmoid(.))``: with ``sigmoid(x) = 1 / (1 + e^-x)``,

    -log D(x)      = -log sigmoid(x)      = softplus(-x)
    -log(1 - D(x)) = -log sigmoid(-x)     = softplus(x)

and softplus stays finite with the right gradient at any logit, where
``log(1 - sigmoid(100))`` is ``log(0) = -inf`` in float32. Logits are cast to float32
first, so the losses are float32 scalars even when the model ran in bf16/fp16.

Each loss is *minimised*: the harness steps D on ``discriminator_loss`` and G on
``generator_loss``. For WGAN-GP, ``discriminator_loss`` is the Wasserstein part only;
the harness adds ``gp_weight * gradient_penalty(critic, real, fake)`` itself, because
the penalty needs the critic and the images, not just the logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_LOSS",
    "GANLoss",
    "LOSSES",
    "get_loss",
    "gradient_penalty",
]

Tensor = torch.Tensor


def _ns_discriminator(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    # -E log D(x) - E log(1 - D(G(z)))
    return F.softplus(-real_logits.float()).mean() + F.softplus(fake_logits.float()).mean()


def _ns_generator(fake_logits: Tensor) -> Tensor:
    # -E log D(G(z)): the non-saturating generator loss of Goodfellow et al. 2014, sec. 3
    return F.softplus(-fake_logits.float()).mean()


def _minimax_generator(fake_logits: Tensor) -> Tensor:
    # E log(1 - D(G(z))) = -E softplus(fake): the original saturating form, minimised by G.
    # Its gradient vanishes when D confidently rejects the fakes (fake logits << 0).
    return -F.softplus(fake_logits.float()).mean()


def _hinge_discriminator(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def _wasserstein_generator(fake_logits: Tensor) -> Tensor:
    # Shared by hinge and WGAN: G raises the critic's score of its samples.
    return -fake_logits.float().mean()


def _wasserstein_discriminator(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    # E D(G(z)) - E D(x); the gradient penalty is added by the caller (see module doc).
    return fake_logits.float().mean() - real_logits.float().mean()


@dataclass(frozen=True)
class GANLoss:
    """One GAN objective.

    Attributes:
        name: the registry key.
        discriminator_loss: ``(real_logits, fake_logits) -> float32 scalar`` to minimise.
        generator_loss: ``fake_logits -> float32 scalar`` to minimise.
        n_critic: discriminator steps per generator step.
        gp_weight: weight of the gradient penalty (lambda); 0 means none. When it is
            non-zero the caller adds ``gp_weight * gradient_penalty(...)`` to the
            discriminator loss.
        needs_critic: True when the discriminator must be built without BatchNorm
            (``build_pair(..., critic=True)``), as the gradient penalty is per sample.
    """

    name: str
    discriminator_loss: Callable[[Tensor, Tensor], Tensor]
    generator_loss: Callable[[Tensor], Tensor]
    n_critic: int = 1
    gp_weight: float = 0.0
    needs_critic: bool = False


LOSSES: dict[str, GANLoss] = {
    loss.name: loss
    for loss in (
        GANLoss("non-saturating", _ns_discriminator, _ns_generator),
        GANLoss("minimax", _ns_discriminator, _minimax_generator),
        GANLoss("hinge", _hinge_discriminator, _wasserstein_generator),
        # Gulrajani et al. 2017, Algorithm 1: lambda = 10, n_critic = 5.
        GANLoss(
            "wgan-gp",
            _wasserstein_discriminator,
            _wasserstein_generator,
            n_critic=5,
            gp_weight=10.0,
            needs_critic=True,
        ),
    )
}

DEFAULT_LOSS = "non-saturating"


def get_loss(name: str = DEFAULT_LOSS) -> GANLoss:
    """Return the registered loss called ``name``; ValueError naming the allowed ones."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}") from None


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    *,
    alpha: Tensor | None = None,
    grad_scale: Tensor | float | None = None,
) -> Tensor:
    """WGAN-GP gradient penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` (Gulrajani et al. 2017).

    ``x_hat = alpha * real + (1 - alpha) * fake`` with one ``alpha ~ U[0, 1]`` per sample,
    shaped ``(N, 1, ..., 1)`` to broadcast over inputs of any rank. The input gradient
    is taken with ``create_graph=True``, so backpropagating the result reaches the
    critic's parameters (double backward). ``real`` and ``fake`` are detached: the
    penalty trains the critic only.

    Args:
        critic: maps ``(N, ...)`` inputs to ``(N,)`` (or ``(N, 1)``) scores. It must treat
            samples independently (no BatchNorm), since the gradients of the summed
            scores are used as per-sample gradients.
        real, fake: same-shaped batches.
        alpha: optional interpolation weights, ``(N,)`` or already broadcastable
            (``(N, 1, ..., 1)``); drawn from U[0, 1] when omitted.
        grad_scale: optional scale for fp16 training with ``torch.amp.GradScaler``: the
            scaler's current scale as a device tensor of shape ``()`` or ``(1,)`` (a
            Python float works too, but ``scaler.get_scale()`` itself syncs). The mean
            critic score is multiplied by it before differentiating, so small input
            gradients do not underflow in fp16, and the gradient is unscaled (in
            float32) before the norm: the "gradient penalty" recipe in the PyTorch AMP
            examples, done on tensors so nothing waits on the device. If the scale is
            too large the gradient overflows to inf, the penalty is inf, and the
            scaler skips the step and lowers the scale, as for any overflow.

    Returns:
        A float32 scalar (the norm is computed in float32 whatever the input dtype).
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake must have the same shape, got {tuple(real.shape)} "
            f"and {tuple(fake.shape)}"
        )
    if real.dim() < 1:
        raise ValueError("real and fake must have a batch dimension")
    real = real.detach()
    fake = fake.detach()
    n = real.shape[0]
    bshape = (n,) + (1,) * (real.dim() - 1)
    if alpha is None:
        alpha = torch.rand(bshape, device=real.device, dtype=real.dtype)
    else:
        alpha = alpha.detach().to(device=real.device, dtype=real.dtype)
        if alpha.dim() == 1 and alpha.shape[0] == n:
            alpha = alpha.view(bshape)
        elif alpha.dim() != real.dim() or alpha.shape[0] != n or alpha[0].numel() != 1:
            raise ValueError(f"alpha must have shape ({n},) or {bshape}, got {tuple(alpha.shape)}")
    x_hat = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)

    out = critic(x_hat)
    if grad_scale is None:
        # Each sample's score depends on its own input only: one backward of the summed
        # scores gives every per-sample gradient.
        outputs, grad_outputs = out, torch.ones_like(out)
    else:
        # As the AMP recipe does, differentiate the scaled *mean* score, like a loss: the
        # gradient entering the critic is then scale / N per score, the magnitude
        # GradScaler tunes its scale for. Scaling each score by the scale itself would send
        # the scale into the critic's fp16 output, where GradScaler's initial 2**16 is
        # already inf (fp16's largest finite value is 65504). Float32 before scaling, so
        # the scaled mean cannot overflow either.
        factor = grad_scale / out.numel()
        outputs, grad_outputs = out.float().sum() * factor, None
    (grad,) = torch.autograd.grad(
        outputs=outputs,
        inputs=x_hat,
        grad_outputs=grad_outputs,
        create_graph=True,
    )
    grad = grad.float()
    if grad_scale is not None:
        grad = grad / factor
    norm = torch.linalg.vector_norm(grad.reshape(n, -1), ord=2, dim=1)  # (N,)
    return ((norm - 1.0) ** 2).mean()
