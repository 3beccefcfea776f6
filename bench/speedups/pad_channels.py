"""Image channels zero-padded for Tensor Core alignment: the `pad-channels` speed-up.

NVIDIA's convolution performance guide (docs.nvidia.com/deeplearning/performance/
dl-performance-convolutional, "Channels In And Out") asks for channel counts divisible by 8
(fp16, bf16) or 4 (tf32) for Tensor Core convolutions. DCGAN has two layers over image
channels (3 or 1), both at the largest spatial size of their network: D's first convolution
(image channels in) and G's last transposed convolution (image channels out). The guide
adds that 4 channels are enough for a first layer of stride 2, but on an H100 (cuDNN 9,
bf16, channels_last; results/NVIDIA-H100-80GB-HBM3) a run with both layers at 4 channels
still spent 6.3% of its device time in cuDNN's padding kernel (nhwcAddPaddingKernel, 24
calls an iteration, beside kernels named align8), so 16-bit precisions pad to 8
(`channel_multiple`). The latent's 100 channels (G's first layer) and D's single output
channel are not padded here: at 1x1 and 4x4 pixels they cost launches, not bytes.

The padding changes no loss and no gradient:
- D's first layer gets zero weights for the extra input channels, and every image it sees
  has zeros there: real batches are padded with zeros (bench/data/sources.py), and G's extra output
  channels are zero (zero weights and bias, then a zero-preserving activation: tanh(0) = 0).
- So the extra weights receive zero gradients: D's multiply an input that is zero; G's
  receive the gradient of D's input through D's extra weights, which are zero. The
  gradient penalty of WGAN-GP sees a zero gradient in the extra input channels, so it adds
  nothing there either. Adam moves a parameter whose gradients have all been zero by
  nothing (both moments stay 0), so the extra weights stay zero and the padded pair
  computes what the reference pair does, up to the rounding of another kernel.

Sample grids and quality metrics see the image's own channels (`ImageChannels`), and MFU
counts the reference model's FLOPs, not the padded zeros.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.speedups.base import Build, Option, Requirement, SpeedUp, Stage
from bench.speedups.requirements import needs_convolutions

# Tensor Core alignment of a channel count (the guide above), by precision: 8 for 16-bit
# inputs, 4 for tf32 (and fp32, whose convolutions may run as tf32).
CHANNEL_MULTIPLES = {"bf16": 8, "fp16": 8}
DEFAULT_CHANNEL_MULTIPLE = 4
_CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)
# Parameter-free modules that may follow G's image layer: each maps 0 to 0, so the padded
# output channels stay zero.
_ZERO_PRESERVING = (nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.Hardtanh, nn.Identity)


def channel_multiple(precision: str) -> int:
    """The channel multiple Tensor Core convolutions want at this precision."""
    return CHANNEL_MULTIPLES.get(precision, DEFAULT_CHANNEL_MULTIPLE)


def padded_channels(channels: int, multiple: int) -> int:
    """`channels` rounded up to a multiple of `multiple`."""
    return -(-channels // multiple) * multiple


def needs_padding(channels: int, multiple: int) -> bool:
    return padded_channels(channels, multiple) != channels


def _leaves(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules without children, in registration (= forward, for nn.Sequential) order."""
    return [(n, m) for n, m in module.named_modules() if not any(True for _ in m.children())]


def _image_layer_of_generator(generator: nn.Module, channels: int) -> tuple[str, nn.Module]:
    leaves = _leaves(generator)
    with_params = [i for i, (_, m) in enumerate(leaves) if any(True for _ in m.parameters())]
    if not with_params:
        raise ValueError("the generator has no parameters to pad")
    index = with_params[-1]
    name, layer = leaves[index]
    if not isinstance(layer, _CONVOLUTIONS) or layer.out_channels != channels:
        raise ValueError(
            f"the generator's last layer with parameters ({name}: {type(layer).__name__}) is "
            f"not a convolution with {channels} output channels"
        )
    after = [(n, m) for n, m in leaves[index + 1 :] if not isinstance(m, _ZERO_PRESERVING)]
    if after:
        n, m = after[0]
        raise ValueError(
            f"the generator's image layer {name} is followed by {n} ({type(m).__name__}), "
            "which may map a zero channel to non-zero values"
        )
    return name, layer


def _image_layer_of_discriminator(discriminator: nn.Module, channels: int):
    leaves = [(n, m) for n, m in _leaves(discriminator) if any(True for _ in m.parameters())]
    if not leaves:
        raise ValueError("the discriminator has no parameters to pad")
    name, layer = leaves[0]
    if not isinstance(layer, nn.Conv2d) or layer.in_channels != channels:
        raise ValueError(
            f"the discriminator's first layer with parameters ({name}: {type(layer).__name__})"
            f" is not a convolution over {channels}-channel images"
        )
    return name, layer


def _zero_extend(parameter: nn.Parameter, dim: int, size: int) -> nn.Parameter:
    """`parameter` with zeros appended along `dim` up to `size`."""
    data = parameter.detach()
    shape = list(data.shape)
    shape[dim] = size - shape[dim]
    grown = torch.cat((data, data.new_zeros(shape)), dim=dim)
    return nn.Parameter(grown, requires_grad=parameter.requires_grad)


def pad_image_channels(
    generator: nn.Module, discriminator: nn.Module, channels: int, multiple: int
) -> dict:
    """Widen G's image layer and D's first layer from `channels` to `padded_channels(
    channels, multiple)` image channels, the extra weights (and bias) zero; in place, before
    the optimizers are built. Returns what was padded, for the record. ValueError when the
    models do not have the structure the padding's exactness needs (module docstring)."""
    if not needs_padding(channels, multiple):
        raise ValueError(f"{channels} image channels are already a multiple of {multiple}")
    to = padded_channels(channels, multiple)
    g_name, g_layer = _image_layer_of_generator(generator, channels)
    d_name, d_layer = _image_layer_of_discriminator(discriminator, channels)
    for name, layer in ((g_name, g_layer), (d_name, d_layer)):
        if layer.groups != 1:
            raise ValueError(f"{name} is a grouped convolution: its channels cannot be padded")
    # Weight layouts: Conv2d (out, in, kh, kw); ConvTranspose2d (in, out, kh, kw).
    g_dim = 1 if isinstance(g_layer, nn.ConvTranspose2d) else 0
    g_layer.weight = _zero_extend(g_layer.weight, g_dim, to)
    if g_layer.bias is not None:
        g_layer.bias = _zero_extend(g_layer.bias, 0, to)
    g_layer.out_channels = to
    d_layer.weight = _zero_extend(d_layer.weight, 1, to)
    d_layer.in_channels = to
    return {
        "from": channels,
        "to": to,
        "generator_layer": g_name,
        "discriminator_layer": d_name,
    }


class ImageChannels(nn.Module):
    """A padded generator seen with the images' own channels: what sample grids and
    quality metrics are given. Its parameters and buffers are the generator's."""

    def __init__(self, generator: nn.Module, channels: int):
        super().__init__()
        self.generator = generator
        self.channels = channels

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)[:, : self.channels]


def _pad(build: Build) -> None:
    cfg = build.cfg
    channels = cfg.image_channels
    padded = pad_image_channels(
        build.generator, build.discriminator, channels, channel_multiple(cfg.precision)
    )
    build.record["image_channels_padded"] = padded
    build.padded_channels = padded["to"]
    build.sample_generator = ImageChannels(build.generator, channels)


def _something_to_pad(cfg, _machine) -> str | None:
    multiple = channel_multiple(cfg.precision)
    if needs_padding(cfg.image_channels, multiple):
        return None
    return (
        f"has nothing to pad: the images have {cfg.image_channels} channels, already a "
        f"multiple of {multiple} (Tensor Core alignment in {cfg.precision})"
    )


PAD_CHANNELS = SpeedUp(
    name="pad-channels",
    help="image channels zero-padded to a multiple of 8 (bf16, fp16) or 4 at G's last and "
    "D's first convolution (Tensor Core alignment; the same losses and gradients)",
    options=(Option("pad_image_channels", bool, False),),
    fields={"pad_image_channels": True},
    stage=Stage.CHANNELS,
    hooks={Stage.CHANNELS: _pad},
    requires=(
        needs_convolutions(
            "it has no convolutions, and its 28x28 = 784 inputs are already a multiple of 8"
        ),
        Requirement("image channels not a multiple of 4 (8 in bf16/fp16)", _something_to_pad),
    ),
    record_off={"image_channels_padded": None},
)
