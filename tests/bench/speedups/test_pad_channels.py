"""pad-channels: image channels zero-padded to a multiple of 4 or 8 change no loss and no
gradient, the extra weights stay zero through training, and samples keep their channels."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from bench.data import build_batch_source
from bench.speedups.pad_channels import (
    ImageChannels,
    channel_multiple,
    pad_image_channels,
    padded_channels,
)
from bench.training.precision import make_policy
from gan_models import build_pair, get_loss
from gan_steps import step_for


def test_padded_channel_counts():
    assert [padded_channels(c, 4) for c in (1, 3, 4, 5, 8)] == [4, 4, 4, 8, 8]
    assert [padded_channels(c, 8) for c in (1, 3, 4, 8, 9)] == [8, 8, 8, 8, 16]
    # 16-bit Tensor Core convolutions want 8 channels, tf32 ones 4
    assert [channel_multiple(p) for p in ("bf16", "fp16", "tf32", "fp32")] == [8, 8, 4, 4]


@pytest.mark.parametrize(("model", "channels", "to"), [("dcgan32", 3, 4), ("dcgan64", 1, 8)])
def test_padding_widens_the_two_image_layers_with_zeros(model, channels, to):
    torch.manual_seed(0)
    pair = build_pair(model, channels=channels)
    reference = copy.deepcopy(pair)
    padded = pad_image_channels(pair.generator, pair.discriminator, channels, to)
    assert padded == {
        "from": channels,
        "to": to,
        "generator_layer": "main.to_image.conv",
        "discriminator_layer": "main.from_image.conv",
    }
    g_weight = pair.generator.main.to_image.conv.weight  # ConvTranspose2d: (in, out, kh, kw)
    d_weight = pair.discriminator.main.from_image.conv.weight  # Conv2d: (out, in, kh, kw)
    assert g_weight.shape[1] == to and d_weight.shape[1] == to
    assert torch.equal(g_weight[:, :channels], reference.generator.main.to_image.conv.weight)
    assert not g_weight[:, channels:].any() and not d_weight[:, channels:].any()

    z = torch.randn((4, *pair.latent_shape))
    images = pair.generator(z)
    assert images.shape[1] == to and not images[:, channels:].any()
    torch.testing.assert_close(images[:, :channels], reference.generator(z), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        pair.discriminator(images), reference.discriminator(images[:, :channels]), atol=1e-5, rtol=0
    )


def _zero_padded(images: torch.Tensor, channels: int) -> torch.Tensor:
    n, c, h, w = images.shape
    return torch.cat((images, images.new_zeros((n, channels - c, h, w))), dim=1)


def _train(pair, loss, reals, padded_to=None):
    """One GAN step in float64 per entry of `reals` (its n_critic real batches); the
    losses."""
    policy, rng = make_policy("fp32", "cpu"), torch.Generator().manual_seed(0)
    step = step_for(pair, loss, policy, rng, lr=2e-3)  # large steps: a drift shows at once
    losses = []
    torch.manual_seed(1)  # the gradient penalty's interpolation weights
    for batches in reals:
        if padded_to:
            batches = [_zero_padded(r, padded_to) for r in batches]
        losses.append(torch.stack(step(batches)))
    return torch.stack(losses)


@pytest.fixture
def float64_default():
    """Latents and interpolation weights drawn in float64, as the models run."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("loss_name", ["non-saturating", "hinge", "wgan-gp"])
def test_padded_pair_trains_as_the_reference_pair(loss_name, float64_default):
    """In float64, three iterations of Adam (n_critic 5 under WGAN-GP, its penalty
    included): the same losses and weights, and the extra weights exactly zero."""
    loss = get_loss(loss_name)
    torch.manual_seed(0)
    reference = build_pair("dcgan32", channels=3, critic=loss.needs_critic)
    reference.generator.double()
    reference.discriminator.double()
    padded = copy.deepcopy(reference)
    pad_image_channels(padded.generator, padded.discriminator, 3, 8)
    data = torch.Generator().manual_seed(2)
    reals = [
        [
            torch.rand((4, 3, 32, 32), generator=data, dtype=torch.float64) * 2 - 1
            for _ in range(loss.n_critic)
        ]  # fmt: skip
        for _ in range(3)
    ]
    want = _train(reference, loss, reals)
    got = _train(padded, loss, reals, padded_to=8)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    for net in ("generator", "discriminator"):
        ref_params = dict(getattr(reference, net).named_parameters())
        for name, param in getattr(padded, net).named_parameters():
            ref = ref_params[name]
            if param.shape != ref.shape:  # the padded layer: compare its original channels
                extra = param[:, ref.shape[1] :]
                assert not extra.any(), f"{net}.{name}: extra weights moved"
                param = param[:, : ref.shape[1]]
            torch.testing.assert_close(param, ref, rtol=1e-9, atol=1e-12, msg=f"{net}.{name}")


def test_structures_the_padding_cannot_keep_exact_are_refused():
    pair = build_pair("dcgan32", channels=3)
    with pytest.raises(ValueError, match="already a multiple of 4"):
        pad_image_channels(pair.generator, pair.discriminator, 4, 4)
    with pytest.raises(ValueError, match="not a convolution with 2 output channels"):
        pad_image_channels(pair.generator, pair.discriminator, 2, 4)
    # A layer after the image layer that may turn a zero channel into something else.
    generator = nn.Sequential(nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Sigmoid())
    with pytest.raises(ValueError, match=r"followed by 1 \(Sigmoid\)"):
        pad_image_channels(generator, pair.discriminator, 3, 4)
    discriminator = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1))
    with pytest.raises(ValueError, match="not a convolution over 3-channel images"):
        pad_image_channels(pair.generator, discriminator, 3, 4)


def test_samples_keep_the_images_own_channels():
    pair = build_pair("dcgan32", channels=3)
    pad_image_channels(pair.generator, pair.discriminator, 3, 4)
    view = ImageChannels(pair.generator, 3)
    z = torch.randn((2, *pair.latent_shape))
    view.eval()
    assert not pair.generator.training  # eval() reaches the trained generator
    torch.testing.assert_close(view(z), pair.generator(z)[:, :3], rtol=0, atol=0)
    assert view(z).shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    ("dataset", "shape"), [("synthetic", (3, 32, 32)), ("digits", (1, 32, 32))]
)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_real_batches_are_padded_with_zero_channels(dataset, shape, memory_format):
    def source(padded):
        return build_batch_source(
            dataset, data_dir=None, image_shape=shape, batch_size=4, device=torch.device("cpu"),
            seed=0, memory_format=memory_format, padded_channels=padded,
        )  # fmt: skip

    plain, padded = source(None).next_batch(), source(4).next_batch()
    assert padded.shape == (4, 4, *shape[1:])
    assert padded.is_contiguous(memory_format=memory_format)
    assert not padded[:, shape[0] :].any()
    assert torch.equal(padded[:, : shape[0]], plain)


def test_a_padded_run_records_the_padding_and_samples_rgb(tmp_path):
    from PIL import Image

    from bench.config import RunConfig
    from bench.runtime.harness import execute

    cfg = RunConfig(
        model="dcgan32", variant="pad-channels", device="cpu", batch_size=2, steps=1,
        warmup_steps=0, quiet=True, out=str(tmp_path / "r.jsonl"),
    )  # fmt: skip
    record = execute(cfg, "cpu")
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["image_channels_padded"]["to"] == 4
    assert record["config"]["pad_image_channels"] is True
    assert Image.open(record["metrics"]["sample_grid_path"]).mode == "RGB"
