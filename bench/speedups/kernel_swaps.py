"""Layers swapped for the Triton kernels of `kernels/`: the `triton` speed-up (every
BatchNorm followed by a LeakyReLU or ReLU becomes one fused module) and `triton-convs`
(the convolutions over image channels, D's first with the LeakyReLU after it and G's
last, become implicit-GEMM kernels sized for their few channels, where cuDNN tiles 64
output channels and most of each tile is zeros).

Both swap modules in place before the memory format is set and the networks move to the
device: the fused modules keep BatchNorm's parameters and state_dict, the narrow
convolutions the torch modules' own. The record says which layers were swapped, on which
path the kernels ran (compiled for a GPU, or Triton's CPU interpreter), and, per fused
layer, whether its last training call took one kernel each way or the split path.
"""

from __future__ import annotations

from bench.speedups.base import Build, Option, Requirement, SpeedUp, Stage
from bench.speedups.requirements import TRITON_RUNS, needs_convolutions

KERNEL_CHOICES = ("torch", "triton")
KERNELS = Option(
    "kernels",
    str,
    "torch",
    "BatchNorm+activation kernels: torch, or triton (fused).",
    choices=KERNEL_CHOICES,
)
CONV_KERNELS = Option(
    "conv_kernels",
    str,
    "torch",
    "Convolutions over image channels (G's last, D's first with its LeakyReLU): torch, or "
    "triton (kernels sized for few channels; DCGAN).",
    choices=KERNEL_CHOICES,
)
# The most image channels triton-convs swaps layers for: the kernels' own default
# (kernels' swap_narrow_convolutions, not imported here: it imports triton).
NARROW_CONV_MAX_CHANNELS = 16


def fused_modules(network) -> dict:
    """The fused BatchNorm + activation modules of `network`, by name."""
    import kernels

    types = (
        kernels.BatchNormLeakyReLU1d,
        kernels.BatchNormLeakyReLU2d,
        kernels.SyncBatchNormLeakyReLU,
    )
    return {name: m for name, m in network.named_modules() if isinstance(m, types)}


def _swap_fused(build: Build) -> None:
    import kernels  # registers the ops; imports triton

    networks = {"generator": build.generator, "discriminator": build.discriminator}
    reports = {name: kernels.fuse_batchnorm_leaky_relu(net) for name, net in networks.items()}
    modules = {name: fused_modules(net) for name, net in networks.items()}

    def fused_layers() -> dict:
        # Read when the run ends: each layer's path is that of its last training call.
        fused: dict = {
            name: {
                "fused": list(r.fused),
                "unfused": [list(u) for u in r.unfused],
                "paths": {layer: m.last_path() for layer, m in modules[name].items()},
            }
            for name, r in reports.items()
        }
        fused["count"] = sum(r.count for r in reports.values())
        return fused

    build.record["kernel_path"] = kernels.kernel_path()
    build.late_record["fused_layers"] = fused_layers


def _swap_narrow(build: Build) -> None:
    import kernels

    reports = {
        "generator": kernels.swap_narrow_convolutions(build.generator),
        "discriminator": kernels.swap_narrow_convolutions(build.discriminator),
    }
    if not all(r.count for r in reports.values()):
        raise ValueError(f"--conv-kernels triton found no image layer to swap: {reports}")
    swapped: dict = {"path": kernels.kernel_path()}
    swapped |= {name: list(r.swapped) for name, r in reports.items()}
    swapped["count"] = sum(r.count for r in reports.values())
    build.record["narrow_convolutions"] = swapped


def _narrow_enough(cfg, _machine) -> str | None:
    if cfg.image_channels <= NARROW_CONV_MAX_CHANNELS:
        return None
    return (
        f"takes images of at most {NARROW_CONV_MAX_CHANNELS} channels (its kernels are "
        f"sized for few), got {cfg.image_channels}"
    )


TRITON = SpeedUp(
    name="triton",
    help="fused Triton BatchNorm+LeakyReLU kernels",
    options=(KERNELS,),
    fields={"kernels": "triton"},
    stage=Stage.KERNELS,
    hooks={Stage.KERNELS: _swap_fused},
    requires=TRITON_RUNS,
    record_off={"kernel_path": "torch", "fused_layers": None},
)
TRITON_CONVS = SpeedUp(
    name="triton-convs",
    help="the convolutions over image channels (D's first, with its LeakyReLU fused in, and "
    "G's last) as Triton implicit-GEMM kernels sized for their few channels",
    options=(CONV_KERNELS,),
    fields={"conv_kernels": "triton"},
    stage=Stage.KERNELS,
    hooks={Stage.KERNELS: _swap_narrow},
    requires=(
        needs_convolutions("it swaps convolutions, and the model has none"),
        Requirement(f"at most {NARROW_CONV_MAX_CHANNELS} image channels", _narrow_enough),
        *TRITON_RUNS,
    ),
    conflicts={
        "pad-channels": "triton-convs computes the image layers with their own channel count, "
        "and pad-channels pads that count for cuDNN's Tensor Core kernels: padded, the Triton "
        "convolutions would only do more work; use one or the other",
    },
    record_off={"narrow_convolutions": None},
)
