"""GAN losses against hand-computed values, and the WGAN-GP gradient penalty."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from gan_models import LOSSES, GANLoss, build_pair, get_loss, gradient_penalty


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def t(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).to(dtype)


# Moderate logits: the probability form can be evaluated directly in Python floats.
REAL = [2.0, -1.0, 0.5, 3.25]
FAKE = [-3.0, 0.0, 1.5, -0.75]


# --- registry -------------------------------------------------------------------------


def test_registry():
    assert list(LOSSES) == ["non-saturating", "minimax", "hinge", "wgan-gp"]
    for name, loss in LOSSES.items():
        assert isinstance(loss, GANLoss) and loss.name == name
        assert get_loss(name) is loss
    assert get_loss().name == "non-saturating"
    wgan = get_loss("wgan-gp")
    assert (wgan.n_critic, wgan.gp_weight, wgan.needs_critic) == (5, 10.0, True)
    for name in ("non-saturating", "minimax", "hinge"):
        loss = get_loss(name)
        assert (loss.n_critic, loss.gp_weight, loss.needs_critic) == (1, 0.0, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        wgan.n_critic = 1  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["wgan", "Hinge", "", None])
def test_get_loss_unknown_lists_allowed(bad):
    with pytest.raises(ValueError, match="unknown loss") as err:
        get_loss(bad)
    for name in LOSSES:
        assert name in str(err.value)


# --- values on moderate logits (probability form, by hand) -----------------------------


def _hand(name: str, real: list[float], fake: list[float]) -> tuple[float, float]:
    if name in ("non-saturating", "minimax"):
        d = -mean(math.log(sigmoid(r)) for r in real) - mean(
            math.log(1.0 - sigmoid(f)) for f in fake
        )
        if name == "non-saturating":
            g = -mean(math.log(sigmoid(f)) for f in fake)
        else:
            g = mean(math.log(1.0 - sigmoid(f)) for f in fake)
        return d, g
    if name == "hinge":
        d = mean(max(0.0, 1.0 - r) for r in real) + mean(max(0.0, 1.0 + f) for f in fake)
        return d, -mean(fake)
    assert name == "wgan-gp"
    return mean(fake) - mean(real), -mean(fake)


def test_hand_numbers_spot_check():
    """The helper above against numbers worked out on paper, so it is not circular."""
    d, g = _hand("hinge", REAL, FAKE)
    # relu(1 - r) = [0, 2, 0.5, 0]; relu(1 + f) = [0, 1, 2.5, 0.25]
    assert d == pytest.approx(2.5 / 4 + 3.75 / 4)
    assert g == pytest.approx(-(-3.0 + 0.0 + 1.5 - 0.75) / 4)
    d, g = _hand("non-saturating", [0.0], [0.0])
    assert d == pytest.approx(2 * math.log(2)) and g == pytest.approx(math.log(2))
    _, g = _hand("minimax", [0.0], [0.0])
    assert g == pytest.approx(-math.log(2))
    d, g = _hand("wgan-gp", REAL, FAKE)
    assert d == pytest.approx(-2.25 / 4 - 4.75 / 4) and g == pytest.approx(0.5625)


@pytest.mark.parametrize("name", list(LOSSES))
def test_values_moderate_logits(name):
    loss = get_loss(name)
    real, fake = t(REAL), t(FAKE)
    d_expect, g_expect = _hand(name, REAL, FAKE)
    d = loss.discriminator_loss(real, fake)
    g = loss.generator_loss(fake)
    assert d.shape == () and g.shape == ()
    assert d.dtype == g.dtype == torch.float32
    assert d.item() == pytest.approx(d_expect, rel=1e-6, abs=1e-6)
    assert g.item() == pytest.approx(g_expect, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("name", list(LOSSES))
def test_column_logits_same_as_flat(name):
    loss = get_loss(name)
    real, fake = t(REAL), t(FAKE)
    assert torch.equal(
        loss.discriminator_loss(real[:, None], fake[:, None]),
        loss.discriminator_loss(real, fake),
    )
    assert torch.equal(loss.generator_loss(fake[:, None]), loss.generator_loss(fake))


# --- stability at large logits ----------------------------------------------------------
#
# With x = 100, exp(-100) ~ 3.7e-44: sigmoid(100) rounds to 1 and log(1 - sigmoid(100)) is
# -inf, so the expected values are written in the exact forms
#   -log sigmoid(x) = log1p(exp(-x))        (x > 0)
#   -log sigmoid(x) = -x + log1p(exp(x))    (x < 0)

BIG = 100.0
NLS_POS = math.log1p(math.exp(-BIG))  # -log sigmoid(+100) ~ 3.7e-44
NLS_NEG = BIG + math.log1p(math.exp(-BIG))  # -log sigmoid(-100) ~ 100


@pytest.mark.parametrize(
    ("name", "d_expect", "g_expect"),
    [
        # real = [+100, -100], fake = [-100, +100]
        # L_D = mean(-log s(r)) + mean(-log(1 - s(f))) = mean(-log s(r)) + mean(-log s(-f))
        (
            "non-saturating",
            (NLS_POS + NLS_NEG) / 2 + (NLS_POS + NLS_NEG) / 2,
            (NLS_NEG + NLS_POS) / 2,
        ),
        (
            "minimax",
            (NLS_POS + NLS_NEG) / 2 + (NLS_POS + NLS_NEG) / 2,
            # mean(log(1 - s(f))) = -mean(-log s(-f)) = -(NLS_POS + NLS_NEG) / 2
            -(NLS_POS + NLS_NEG) / 2,
        ),
        # relu(1 - r) = [0, 101], relu(1 + f) = [0, 101]
        ("hinge", 101.0 / 2 + 101.0 / 2, -0.0),
        ("wgan-gp", 0.0 - 0.0, -0.0),
    ],
)
def test_values_extreme_logits(name, d_expect, g_expect):
    loss = get_loss(name)
    real = t([BIG, -BIG]).requires_grad_(True)
    fake = t([-BIG, BIG]).requires_grad_(True)
    d = loss.discriminator_loss(real, fake)
    g = loss.generator_loss(fake)
    assert torch.isfinite(d) and torch.isfinite(g)
    assert d.item() == pytest.approx(d_expect, rel=1e-6, abs=1e-6)
    assert g.item() == pytest.approx(g_expect, rel=1e-6, abs=1e-6)
    d.backward()
    assert torch.isfinite(real.grad).all() and torch.isfinite(fake.grad).all()


def test_generator_gradients_at_extreme_logits():
    """Non-saturating G keeps a gradient of ~-1/N where D rejects the fakes; minimax
    saturates there (~0), and both are finite. Gradients derived by hand:
    d/df softplus(-f)/N = -s(-f)/N ;  d/df -softplus(f)/N = -s(f)/N."""
    n = 2
    for name, expect in (
        ("non-saturating", [-sigmoid(BIG) / n, -sigmoid(-BIG) / n]),
        ("minimax", [-sigmoid(-BIG) / n, -sigmoid(BIG) / n]),
    ):
        fake = t([-BIG, BIG]).requires_grad_(True)
        get_loss(name).generator_loss(fake).backward()
        assert torch.isfinite(fake.grad).all()
        assert fake.grad.tolist() == pytest.approx(expect, rel=1e-6, abs=1e-30)
    assert expect[0] == pytest.approx(-1.9e-44, rel=0.1)  # minimax: gone at f = -100


def test_discriminator_gradients_hand():
    # d/dr softplus(-r)/N = -s(-r)/N ; d/df softplus(f)/N = s(f)/N
    real = t(REAL).requires_grad_(True)
    fake = t(FAKE).requires_grad_(True)
    get_loss("non-saturating").discriminator_loss(real, fake).backward()
    n = len(REAL)
    assert real.grad.tolist() == pytest.approx([-sigmoid(-r) / n for r in REAL], rel=1e-5)
    assert fake.grad.tolist() == pytest.approx([sigmoid(f) / n for f in FAKE], rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", list(LOSSES))
def test_other_dtype_logits_give_fp32(name, dtype):
    loss = get_loss(name)
    real, fake = t(REAL + [BIG], dtype), t(FAKE + [-BIG], dtype)
    d = loss.discriminator_loss(real, fake)
    g = loss.generator_loss(fake)
    assert d.dtype == g.dtype == torch.float32
    # the inputs here are exactly representable in fp16 and bf16
    assert real.double().tolist() == REAL + [BIG]
    d_expect, g_expect = _hand_stable(name, REAL + [BIG], FAKE + [-BIG])
    assert d.item() == pytest.approx(d_expect, rel=1e-6)
    assert g.item() == pytest.approx(g_expect, rel=1e-6, abs=1e-6)


def _hand_stable(name: str, real: list[float], fake: list[float]) -> tuple[float, float]:
    """Like _hand, with -log sigmoid(x) written as log1p(exp(-x)) / -x + log1p(exp(x))."""

    def nls(x: float) -> float:  # -log sigmoid(x)
        return math.log1p(math.exp(-x)) if x >= 0 else -x + math.log1p(math.exp(x))

    if name == "non-saturating":
        return mean(map(nls, real)) + mean(nls(-f) for f in fake), mean(map(nls, fake))
    if name == "minimax":
        return mean(map(nls, real)) + mean(nls(-f) for f in fake), -mean(nls(-f) for f in fake)
    return _hand(name, real, fake)


# --- gradient penalty ---------------------------------------------------------------------


def _quadratic_critic(x: torch.Tensor) -> torch.Tensor:
    """D(x) = 0.5 ||x||^2 per sample, so grad_x D = x and the penalty has a closed form."""
    return 0.5 * x.pow(2).flatten(1).sum(1)


def test_gradient_penalty_hand_quadratic():
    # Two samples of shape (1, 1, 2); grad at x_hat is x_hat itself.
    real = torch.tensor([[[[3.0, 4.0]]], [[[1.0, 0.0]]]])
    fake = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]]])
    alpha = torch.tensor([0.25, 0.5])
    # x_hat_0 = 0.25*[3,4] + 0.75*[1,0] = [1.5, 1.0];  x_hat_1 = 0.5*[1,0] = [0.5, 0]
    expect = ((math.sqrt(1.5**2 + 1.0**2) - 1) ** 2 + (0.5 - 1) ** 2) / 2
    gp = gradient_penalty(_quadratic_critic, real, fake, alpha=alpha)
    assert gp.shape == () and gp.dtype == torch.float32
    assert gp.item() == pytest.approx(expect, rel=1e-6)
    # alpha given already broadcastable gives the same; swapping real/fake does not
    gp4 = gradient_penalty(_quadratic_critic, real, fake, alpha=alpha.view(2, 1, 1, 1))
    assert gp4.item() == pytest.approx(expect, rel=1e-6)
    swapped = gradient_penalty(_quadratic_critic, fake, real, alpha=alpha)
    assert swapped.item() != pytest.approx(expect, rel=1e-3)


class _TinyCritic(nn.Module):
    """Per-sample nonlinear critic: conv -> LeakyReLU -> linear, output (N,)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.fc = nn.Linear(4 * 5 * 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).flatten(1)).squeeze(1)


def _reference_gp(critic, real, fake, alpha):
    """Per-sample autograd in float64: no batching trick, one gradient per sample."""
    norms = []
    for i in range(real.shape[0]):
        x = (alpha[i] * real[i : i + 1] + (1 - alpha[i]) * fake[i : i + 1]).double()
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        norms.append(g.flatten().norm())
    return ((torch.stack(norms) - 1) ** 2).mean()


def _setup(channels=3, n=5, seed=0):
    torch.manual_seed(seed)
    critic = _TinyCritic(channels)
    real = torch.randn(n, channels, 5, 5)
    fake = torch.randn(n, channels, 5, 5)
    alpha = torch.rand(n)
    return critic, real, fake, alpha


@pytest.mark.parametrize("channels", [1, 3])
def test_gradient_penalty_matches_per_sample_autograd(channels):
    critic, real, fake, alpha = _setup(channels)
    gp = gradient_penalty(critic, real, fake, alpha=alpha)
    ref = _reference_gp(critic.double(), real, fake, alpha.double())
    assert gp.item() == pytest.approx(ref.item(), rel=1e-5)
    assert gp.item() > 1e-3  # a penalty that is not trivially zero


@pytest.mark.parametrize(
    "grad_scale",
    [torch.tensor(1024.0), torch.tensor([65536.0]), torch.tensor(2.0**-10), 4096.0],
    ids=["1024", "65536-shape1", "2^-10", "float"],
)
def test_gradient_penalty_grad_scale_equals_unscaled(grad_scale):
    critic, real, fake, alpha = _setup()
    plain = gradient_penalty(critic, real, fake, alpha=alpha)
    scaled = gradient_penalty(critic, real, fake, alpha=alpha, grad_scale=grad_scale)
    assert scaled.dtype == torch.float32 and scaled.shape == ()
    torch.testing.assert_close(scaled, plain, rtol=1e-5, atol=1e-7)
    # and the parameter gradients through the double backward agree too
    g_plain = torch.autograd.grad(plain, list(critic.parameters()), allow_unused=True)
    g_scaled = torch.autograd.grad(scaled, list(critic.parameters()), allow_unused=True)
    for a, b in zip(g_plain, g_scaled, strict=True):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)


def test_gradient_penalty_double_backward_matches_reference():
    critic, real, fake, alpha = _setup()
    gp = gradient_penalty(critic, real, fake, alpha=alpha)
    gp.backward()
    got = {n: p.grad.clone() for n, p in critic.named_parameters() if p.grad is not None}
    # conv weight/bias and fc weight enter the input gradient; fc bias does not. The conv
    # bias only moves LeakyReLU's kink, whose slope is piecewise constant: its grad is 0.
    assert set(got) == {"conv.weight", "conv.bias", "fc.weight"}
    assert got["conv.weight"].abs().sum() > 0 and got["fc.weight"].abs().sum() > 0
    assert torch.count_nonzero(got["conv.bias"]) == 0

    ref_critic = _TinyCritic(3).double()
    ref_critic.load_state_dict(critic.state_dict())
    _reference_gp(ref_critic, real, fake, alpha.double()).backward()
    for n, p in ref_critic.named_parameters():
        if n in got:
            torch.testing.assert_close(got[n], p.grad.float(), rtol=1e-4, atol=1e-7)


def test_gradient_penalty_linear_critic_closed_form():
    """D(x) = w.x + b: grad = w for every sample, GP = (||w|| - 1)^2,
    dGP/dw = 2 (||w|| - 1) w / ||w||, for any alpha (so also the random one)."""
    w = torch.tensor([[0.5, -1.5, 2.0, 1.0]])  # ||w|| = sqrt(7.5)
    lin = nn.Linear(4, 1)
    with torch.no_grad():
        lin.weight.copy_(w)
    norm = math.sqrt(0.25 + 2.25 + 4.0 + 1.0)
    expect_gp = (norm - 1) ** 2
    expect_dw = [2 * (norm - 1) * v / norm for v in (0.5, -1.5, 2.0, 1.0)]

    for shape, critic in (
        ((6, 4), lambda x: lin(x).squeeze(1)),
        ((6, 1, 2, 2), lambda x: lin(x.flatten(1)).squeeze(1)),
        ((6, 1, 1, 2, 2), lambda x: lin(x.flatten(1))),  # (N, 1) output, rank 5 input
    ):
        lin.zero_grad(set_to_none=True)
        real, fake = torch.randn(shape), torch.randn(shape)
        gp = gradient_penalty(critic, real, fake)  # alpha drawn inside
        assert gp.item() == pytest.approx(expect_gp, rel=1e-6)
        gp.backward()
        assert lin.weight.grad.flatten().tolist() == pytest.approx(expect_dw, rel=1e-5)


def test_gradient_penalty_does_not_reach_generator():
    torch.manual_seed(0)
    pair = build_pair("dcgan32", channels=3, critic=True, widths={"ngf": 4, "ndf": 4})
    fake = pair.generator(torch.randn(4, *pair.latent_shape))
    real = torch.rand(4, 3, 32, 32) * 2 - 1
    gp = gradient_penalty(pair.discriminator, real, fake)
    gp.backward()
    assert all(p.grad is None for p in pair.generator.parameters())
    d_grads = [p.grad for p in pair.discriminator.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in d_grads)
    assert sum(g.abs().sum() for g in d_grads) > 0


def test_gradient_penalty_low_precision_critic_returns_fp32():
    critic, real, fake, alpha = _setup()
    ref = gradient_penalty(critic, real, fake, alpha=alpha)
    critic = critic.to(torch.bfloat16)
    gp = gradient_penalty(
        critic, real.bfloat16(), fake.bfloat16(), alpha=alpha, grad_scale=torch.tensor(256.0)
    )
    assert gp.dtype == torch.float32
    assert gp.item() == pytest.approx(ref.item(), rel=0.05)


def test_gradient_penalty_bad_arguments():
    critic, real, fake, alpha = _setup()
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, real, fake[:3])
    with pytest.raises(ValueError, match=r"alpha must have shape \(5,\)"):
        gradient_penalty(critic, real, fake, alpha=alpha[:3])
    with pytest.raises(ValueError, match="alpha must have shape"):
        gradient_penalty(critic, real, fake, alpha=torch.rand(5, 3, 1, 1))


@pytest.mark.parametrize("batch", [4, 64])
def test_gradient_penalty_under_fp16_autocast_at_the_initial_scale(batch):
    """fp16 training starts GradScaler at 2**16, above fp16's largest finite value
    (65504): the penalty must stay finite there and equal the fp32 one, its gradients too."""
    torch.manual_seed(0)
    pair = build_pair("dcgan32", channels=1, critic=True, widths={"ngf": 8, "ndf": 8})
    critic = pair.discriminator
    real, fake = torch.rand(batch, 1, 32, 32) * 2 - 1, torch.rand(batch, 1, 32, 32) * 2 - 1
    alpha = torch.rand(batch)
    ref = gradient_penalty(critic, real, fake, alpha=alpha)
    ref_grads = torch.autograd.grad(ref, list(critic.parameters()))
    scale = torch.tensor(65536.0)
    with torch.autocast("cpu", dtype=torch.float16):
        gp = gradient_penalty(critic, real, fake, alpha=alpha, grad_scale=scale)
        grads = torch.autograd.grad(gp * scale, list(critic.parameters()))
    assert torch.isfinite(gp)
    assert gp.item() == pytest.approx(ref.item(), rel=0.02)
    for got, want in zip(grads, ref_grads, strict=True):
        got = got.float() / scale
        assert torch.isfinite(got).all()
        # fp16 arithmetic: compare whole tensors (relative error of the norm), not elements
        assert (got - want).norm() <= 0.03 * want.norm()
