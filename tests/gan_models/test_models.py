"""Shapes, structure, initialisation and argument checking of the gan_models registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gan_models
from gan_models import MODELS, ModelPair, build_pair, dcgan, mlp

BATCH = 3  # odd, and > 1 so that BatchNorm in training mode has a batch to normalise

_DCGAN = ("dcgan32", "dcgan64")
_RES = {"mlp": 28, "dcgan32": 32, "dcgan64": 64}


def _small_widths(name: str) -> dict:
    """Narrow widths so the structural tests stay fast; shapes do not depend on them."""
    if name == "mlp":
        return {"g_hidden": (16, 32, 64), "d_hidden": (16, 32, 64)}
    return {"ngf": 8, "ndf": 8}


def _sequential_pairs(model: nn.Module):
    """Yield (module, next sibling or None) for every child of every nn.Sequential."""
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            children = list(seq.children())
            for i, child in enumerate(children):
                yield child, children[i + 1] if i + 1 < len(children) else None


def _convs(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def _bns(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


# --- registry -----------------------------------------------------------------------


def test_registry_names_and_resolutions():
    assert {n: s.resolution for n, s in MODELS.items()} == _RES
    for name, spec in MODELS.items():
        assert spec.name == name and spec.description


def test_public_api_exported():
    for attr in (
        "build_pair",
        "batch_coupled_layers",
        "ModelPair",
        "ModelSpec",
        "MODELS",
        "LOSSES",
        "GANLoss",
        "get_loss",
        "gradient_penalty",
    ):
        assert attr in gan_models.__all__ and hasattr(gan_models, attr)


# --- shapes -------------------------------------------------------------------------


@pytest.mark.parametrize("critic", [False, True], ids=["gan", "critic"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(MODELS))
def test_pair_shapes_default_widths(name, channels, critic):
    torch.manual_seed(0)
    pair = build_pair(name, channels=channels, critic=critic)
    res = _RES[name]
    assert isinstance(pair, ModelPair)
    assert pair.image_shape == (channels, res, res)
    assert pair.latent_shape == ((100,) if name == "mlp" else (100, 1, 1))

    z = torch.randn(BATCH, *pair.latent_shape)
    images = pair.generator(z)
    assert images.shape == (BATCH, channels, res, res)
    assert images.dtype == torch.float32
    assert images.abs().max() <= 1.0
    # tanh output that is neither constant nor saturated: the generator is wired up
    assert images.std() > 1e-3 and images.abs().max() < 1.0

    logits = pair.discriminator(images)
    assert logits.shape == (BATCH,)
    logits_real = pair.discriminator(torch.rand(BATCH, channels, res, res) * 2 - 1)
    assert logits_real.shape == (BATCH,)
    assert torch.isfinite(logits).all() and torch.isfinite(logits_real).all()


@pytest.mark.parametrize("latent_dim", [1, 16, 128])
@pytest.mark.parametrize("name", list(MODELS))
def test_latent_dim(name, latent_dim):
    pair = build_pair(name, channels=1, latent_dim=latent_dim, widths=_small_widths(name))
    assert pair.latent_shape[0] == latent_dim
    assert pair.generator(torch.randn(BATCH, *pair.latent_shape)).shape == (
        BATCH,
        *pair.image_shape,
    )


@pytest.mark.parametrize("image_size", [1, 7, 28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_mlp_image_size(image_size, channels):
    pair = build_pair("mlp", channels=channels, image_size=image_size, widths=_small_widths("mlp"))
    assert pair.image_shape == (channels, image_size, image_size)
    images = pair.generator(torch.randn(BATCH, *pair.latent_shape))
    assert images.shape == (BATCH, channels, image_size, image_size)
    assert pair.discriminator(images).shape == (BATCH,)
    last_g = pair.generator.main[-1].linear
    first_d = pair.discriminator.main[0].linear
    assert last_g.out_features == first_d.in_features == channels * image_size**2


@pytest.mark.parametrize("critic", [False, True], ids=["gan", "critic"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", _DCGAN)
def test_dcgan_intermediate_shapes(name, channels, critic):
    """Each block doubles (G) or halves (D) the spatial size, widths as in the example."""
    res = _RES[name]
    ngf, ndf = 8, 4
    pair = build_pair(name, channels=channels, critic=critic, widths={"ngf": ngf, "ndf": ndf})
    stages = int(math.log2(res)) - 3

    seen: list[tuple[int, ...]] = []
    hooks = [
        block.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
        for block in pair.generator.main
    ]
    images = pair.generator(torch.randn(BATCH, *pair.latent_shape))
    for h in hooks:
        h.remove()
    top = ngf * 2**stages
    expect_g = [(BATCH, top >> k, 4 << k, 4 << k) for k in range(stages + 1)]
    expect_g.append((BATCH, channels, res, res))
    assert seen == expect_g
    if res == 64:
        assert expect_g[0] == (BATCH, ngf * 8, 4, 4) and expect_g[3] == (BATCH, ngf, 32, 32)

    seen.clear()
    hooks = [
        block.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
        for block in pair.discriminator.main
    ]
    pair.discriminator(images)
    for h in hooks:
        h.remove()
    expect_d = [(BATCH, ndf << k, res >> (k + 1), res >> (k + 1)) for k in range(stages + 1)]
    expect_d.append((BATCH, 1, 1, 1))
    assert seen == expect_d
    assert expect_d[-2][2:] == (4, 4)


@pytest.mark.parametrize(
    ("name", "g_out", "d_out"),
    [
        ("dcgan64", [512, 256, 128, 64], [64, 128, 256, 512, 1]),
        ("dcgan32", [256, 128, 64], [64, 128, 256, 1]),
    ],
)
def test_dcgan_default_channel_widths(name, g_out, d_out):
    pair = build_pair(name, channels=3)
    assert [c.out_channels for c in _convs(pair.generator)] == [*g_out, 3]
    assert [c.out_channels for c in _convs(pair.discriminator)] == d_out
    assert _convs(pair.generator)[0].in_channels == 100
    assert _convs(pair.discriminator)[0].in_channels == 3
    for conv in _convs(pair.generator) + _convs(pair.discriminator):
        assert conv.kernel_size == (4, 4) and conv.bias is None
    g_convs, d_convs = _convs(pair.generator), _convs(pair.discriminator)
    assert (g_convs[0].stride, g_convs[0].padding) == ((1, 1), (0, 0))
    assert all((c.stride, c.padding) == ((2, 2), (1, 1)) for c in g_convs[1:])
    assert all((c.stride, c.padding) == ((2, 2), (1, 1)) for c in d_convs[:-1])
    assert (d_convs[-1].stride, d_convs[-1].padding) == ((1, 1), (0, 0))


# --- structure: BatchNorm placement ----------------------------------------------------


@pytest.mark.parametrize("critic", [False, True], ids=["gan", "critic"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", list(MODELS))
def test_every_batchnorm_directly_followed_by_its_activation(name, channels, critic):
    pair = build_pair(name, channels=channels, critic=critic, widths=_small_widths(name))
    g_act = nn.LeakyReLU if name == "mlp" else nn.ReLU
    for model, act in ((pair.generator, g_act), (pair.discriminator, nn.LeakyReLU)):
        n_pairs = 0
        for module, nxt in _sequential_pairs(model):
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                assert type(nxt) is act, f"{type(module).__name__} followed by {nxt!r}"
                if act is nn.LeakyReLU:
                    assert nxt.negative_slope == 0.2
                assert not nxt.inplace
                n_pairs += 1
        assert n_pairs == len(_bns(model))


@pytest.mark.parametrize(
    ("name", "g_bns", "d_bns"),
    [("mlp", 3, 0), ("dcgan32", 3, 2), ("dcgan64", 4, 3)],
)
@pytest.mark.parametrize("critic", [False, True], ids=["gan", "critic"])
def test_batchnorm_counts(name, g_bns, d_bns, critic):
    pair = build_pair(name, channels=3, critic=critic, widths=_small_widths(name))
    assert len(_bns(pair.generator)) == g_bns
    assert len(_bns(pair.discriminator)) == (0 if critic else d_bns)
    # what the registry declares (RunConfig refuses joint-d from it, before building)
    coupled = gan_models.batch_coupled_layers(pair.discriminator)
    assert len(coupled) == len(_bns(pair.discriminator))
    assert MODELS[name].discriminator_couples_samples(critic) == bool(coupled)


def test_batch_coupled_layers_are_batchnorms_only():
    net = nn.Sequential(
        nn.BatchNorm1d(4), nn.SyncBatchNorm(4), nn.LayerNorm(4), nn.GroupNorm(2, 4),
        nn.InstanceNorm1d(4, track_running_stats=True), nn.Linear(4, 4),
    )  # fmt: skip
    assert gan_models.batch_coupled_layers(net) == ["0", "1"]


@pytest.mark.parametrize("name", _DCGAN)
def test_dcgan_discriminator_batchnorm_on_all_but_first_stage(name):
    for critic in (False, True):
        disc = build_pair(name, channels=3, critic=critic, widths=_small_widths(name)).discriminator
        after = [nxt for m, nxt in _sequential_pairs(disc) if isinstance(m, nn.Conv2d)]
        assert isinstance(after[0], nn.LeakyReLU)  # first conv: no BN
        assert after[-1] is None  # last conv: the logit, nothing after it
        middle = after[1:-1]
        assert len(middle) == int(math.log2(_RES[name])) - 3
        if critic:
            assert all(isinstance(m, nn.LeakyReLU) for m in middle)
            assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in disc.modules())
        else:
            assert all(isinstance(m, nn.BatchNorm2d) for m in middle)


def test_dcgan_generator_ends_in_tanh_without_batchnorm():
    for name in _DCGAN:
        gen = build_pair(name, channels=1, widths=_small_widths(name)).generator
        last = list(gen.main[-1].children())
        assert [type(m) for m in last] == [nn.ConvTranspose2d, nn.Tanh]


# --- MLP widths -----------------------------------------------------------------------


def _linear_outs(model: nn.Module) -> list[int]:
    return [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("channels", [1, 3])
def test_mlp_default_widths(channels):
    pair = build_pair("mlp", channels=channels)
    assert _linear_outs(pair.generator) == [256, 512, 1024, channels * 28 * 28]
    assert _linear_outs(pair.discriminator) == [256, 512, 1024, 1]
    assert [m.num_features for m in _bns(pair.generator)] == [256, 512, 1024]
    first = next(m for m in pair.generator.modules() if isinstance(m, nn.Linear))
    assert first.in_features == 100
    # no BatchNorm after tanh and no ReLU anywhere (the reference formulation's two bugs)
    assert not any(isinstance(m, nn.ReLU) for m in pair.generator.modules())
    assert not any(isinstance(m, nn.ReLU) for m in pair.discriminator.modules())
    assert [type(m) for m in pair.generator.main[-1].children()] == [nn.Linear, nn.Tanh]


@pytest.mark.parametrize(
    ("g_hidden", "d_hidden"),
    [((32,), (8, 16)), ((64, 32), (128,)), ((5, 6, 7, 8), (9, 10, 11))],
)
def test_mlp_widths_configurable(g_hidden, d_hidden):
    pair = build_pair(
        "mlp", channels=1, image_size=7, widths={"g_hidden": g_hidden, "d_hidden": d_hidden}
    )
    assert _linear_outs(pair.generator) == [*g_hidden, 49]
    assert _linear_outs(pair.discriminator) == [*d_hidden, 1]
    assert len(_bns(pair.generator)) == len(g_hidden)
    out = pair.discriminator(pair.generator(torch.randn(BATCH, 100)))
    assert out.shape == (BATCH,)


def test_mlp_critic_flag_is_same_network():
    torch.manual_seed(0)
    plain = build_pair("mlp", channels=1).discriminator
    torch.manual_seed(0)
    critic = build_pair("mlp", channels=1, critic=True).discriminator
    assert critic.critic and not plain.critic
    x = torch.randn(BATCH, 1, 28, 28)
    torch.testing.assert_close(plain(x), critic(x), rtol=0, atol=0)


@pytest.mark.parametrize(("ngf", "ndf"), [(4, 16), (16, 4)])
@pytest.mark.parametrize("name", _DCGAN)
def test_dcgan_widths_configurable(name, ngf, ndf):
    pair = build_pair(name, channels=3, widths={"ngf": ngf, "ndf": ndf})
    stages = int(math.log2(_RES[name])) - 3
    assert [c.out_channels for c in _convs(pair.generator)] == [
        *(ngf * 2**k for k in range(stages, -1, -1)),
        3,
    ]
    assert [c.out_channels for c in _convs(pair.discriminator)] == [
        *(ndf * 2**k for k in range(stages + 1)),
        1,
    ]


# --- initialisation -------------------------------------------------------------------


@pytest.mark.parametrize("name", _DCGAN)
def test_dcgan_init_statistics(name):
    torch.manual_seed(1234)
    pair = build_pair(name, channels=3)
    models = (pair.generator, pair.discriminator)
    convs = [c for m in models for c in _convs(m)]
    # Only layers with >= 100k weights: the sample std of n normals has relative standard
    # error ~ 1/sqrt(2n) <= 0.23%, the mean ~ 0.02/sqrt(n) <= 6.3e-5, so these bounds are
    # > 20 standard errors wide. Torch's default init (std ~ 0.009 for these shapes) fails.
    big = [c for c in convs if c.weight.numel() >= 100_000]
    assert len(big) >= 3
    for conv in big:
        w = conv.weight.detach()
        assert abs(w.std().item() - 0.02) < 0.001, conv
        assert abs(w.mean().item()) < 0.0015, conv
    assert all(c.bias is None for c in convs)

    bns = [b for m in models for b in _bns(m)]
    weights = torch.cat([b.weight.detach() for b in bns])
    # >= 832 weights (dcgan32): std standard error <= 0.0005, mean <= 0.0007, so the
    # bounds below are >= 7 standard errors wide; torch's default (all ones) fails.
    assert weights.numel() >= 800
    assert abs(weights.mean().item() - 1.0) < 0.005
    assert abs(weights.std().item() - 0.02) < 0.004
    for bn in bns:
        assert torch.count_nonzero(bn.bias) == 0
        assert torch.count_nonzero(bn.running_mean) == 0
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_dcgan_critic_init():
    torch.manual_seed(0)
    critic = build_pair("dcgan64", channels=3, critic=True).discriminator
    w = max(_convs(critic), key=lambda c: c.weight.numel()).weight.detach()
    assert w.numel() >= 1_000_000
    assert abs(w.std().item() - 0.02) < 0.001


def test_init_weights_function_matches_example():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4000)
    conv = nn.Conv2d(200, 200, 3, bias=True)
    lin = nn.Linear(5, 5)
    lin_before = lin.weight.detach().clone()
    for m in (bn, conv, lin):
        dcgan.init_weights(m)
    assert abs(bn.weight.detach().mean().item() - 1.0) < 0.003
    assert abs(bn.weight.detach().std().item() - 0.02) < 0.002
    assert abs(conv.weight.detach().std().item() - 0.02) < 0.001
    assert torch.count_nonzero(conv.bias) == 0 and torch.count_nonzero(bn.bias) == 0
    assert torch.equal(lin.weight, lin_before)  # only Conv/BatchNorm are touched


def test_mlp_uses_torch_default_init():
    torch.manual_seed(0)
    gen = build_pair("mlp", channels=1).generator
    lin = gen.main[-1].linear  # 1024 -> 784
    bound = 1.0 / math.sqrt(lin.in_features)  # kaiming_uniform(a=sqrt(5)) bound
    assert lin.weight.abs().max() <= bound
    assert abs(lin.weight.detach().std().item() - bound / math.sqrt(3)) < 0.05 * bound
    for bn in _bns(gen):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))


# --- gradients flow -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_generator_gets_gradients_through_discriminator(name):
    pair = build_pair(name, channels=3, widths=_small_widths(name))
    logits = pair.discriminator(pair.generator(torch.randn(BATCH, *pair.latent_shape)))
    gan_models.get_loss("non-saturating").generator_loss(logits).backward()
    for p in pair.generator.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list(MODELS))
def test_eval_mode_single_sample(name):
    pair = build_pair(name, channels=1, widths=_small_widths(name))
    pair.generator.eval()
    pair.discriminator.eval()
    with torch.no_grad():
        x = pair.generator(torch.randn(1, *pair.latent_shape))
        assert pair.discriminator(x).shape == (1,)


# --- argument checking ----------------------------------------------------------------


def test_unknown_model_name_lists_allowed():
    with pytest.raises(ValueError, match="unknown model 'dcgan128'") as err:
        build_pair("dcgan128", channels=3)
    for name in MODELS:
        assert name in str(err.value)


@pytest.mark.parametrize("name", _DCGAN)
@pytest.mark.parametrize("image_size", [28, 48, 128])
def test_dcgan_rejects_other_image_size(name, image_size):
    with pytest.raises(ValueError, match=rf"allowed: None or {_RES[name]}"):
        build_pair(name, channels=3, image_size=image_size)


@pytest.mark.parametrize("name", _DCGAN)
def test_dcgan_accepts_own_image_size(name):
    pair = build_pair(name, channels=3, image_size=_RES[name], widths=_small_widths(name))
    assert pair.image_shape == (3, _RES[name], _RES[name])


@pytest.mark.parametrize("resolution", [16, 48, 128])
def test_dcgan_modules_reject_resolution(resolution):
    with pytest.raises(ValueError, match=r"\[32, 64\]"):
        dcgan.Generator(3, resolution)
    with pytest.raises(ValueError, match=r"\[32, 64\]"):
        dcgan.Discriminator(3, resolution)


@pytest.mark.parametrize(
    ("name", "widths", "allowed"),
    [
        ("mlp", {"ngf": 8}, "g_hidden, d_hidden"),
        ("mlp", {"g_hidden": (8,), "hidden": (8,)}, "g_hidden, d_hidden"),
        ("dcgan32", {"g_hidden": (8,)}, "ngf, ndf"),
        ("dcgan64", {"ndf": 8, "nfg": 8}, "ngf, ndf"),
    ],
)
def test_unknown_widths_key(name, widths, allowed):
    with pytest.raises(ValueError, match=f"allowed: {allowed}"):
        build_pair(name, channels=1, widths=widths)


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("mlp", {"channels": 0}, "channels must be a positive int"),
        ("dcgan32", {"channels": -1}, "channels must be a positive int"),
        ("dcgan64", {"channels": 1.5}, "channels must be a positive int"),
        ("mlp", {"channels": 1, "latent_dim": 0}, "latent_dim must be a positive int"),
        ("mlp", {"channels": 1, "image_size": 0}, "image_size must be a positive int"),
        ("mlp", {"channels": 1, "widths": {"g_hidden": ()}}, "generator hidden"),
        ("mlp", {"channels": 1, "widths": {"d_hidden": (8, 0)}}, "discriminator hidden"),
        ("dcgan32", {"channels": 1, "widths": {"ngf": 0}}, "ngf must be a positive int"),
        ("dcgan64", {"channels": 1, "widths": {"ndf": 8.0}}, "ndf must be a positive int"),
    ],
)
def test_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_pair(name, **kwargs)


def test_mlp_module_checks_image_shape():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        mlp.Generator(100, (28, 28))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        mlp.Discriminator((1, 0, 28))
