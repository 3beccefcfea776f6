"""The fused BatchNorm kernels in one launch each way wherever they can: the
`triton-one-kernel` speed-up.

With `triton`, a BatchNorm layer whose channel blocks hold few tiles (the kernels' default:
at most 8) runs its forward and its backward as one kernel each, one program owning a
block of channels' whole reduction; larger layers take three launches each way (partial
reductions over many programs, their merge, the elementwise pass), which spread the work
over more of the GPU but cost the host three launches where one would do. This speed-up
asks the fused modules for the one-kernel path wherever one program can own a channel
block's reduction: every DCGAN-32/64 BatchNorm at batch 256 or less and every MLP
BatchNorm1d at batch 4096 or less, two launches per forward + backward. The same results
up to rounding (another order of summation); whether the device time is better is for
measurement on a GPU. The record says which path each layer took (`run.fused_layers`:
`paths`).
"""

from __future__ import annotations

from bench.speedups.base import Build, Option, Requirement, SpeedUp, Stage
from bench.speedups.kernel_swaps import fused_modules

LAUNCH_CHOICES = ("auto", "one-kernel")


def _needs_fused_kernels(cfg, _machine) -> str | None:
    if cfg.kernels == "triton":
        return None
    return (
        "needs the fused BatchNorm kernels (the triton speed-up, --kernels triton): it "
        "chooses how they launch"
    )


BN_LAUNCHES = Option(
    "bn_launches",
    str,
    "auto",
    "Launches of the fused BatchNorm kernels (--kernels triton): auto (one each way for "
    "small layers, three for larger ones), or one-kernel (one each way wherever one "
    "program can own a channel block's reduction).",
    choices=LAUNCH_CHOICES,
    requires=(Requirement("triton", _needs_fused_kernels),),
)


def _one_kernel(build: Build) -> None:
    for network in (build.generator, build.discriminator):
        for module in fused_modules(network).values():
            module.one_kernel = True


TRITON_ONE_KERNEL = SpeedUp(
    name="triton-one-kernel",
    help="the fused BatchNorm kernels in one launch each way (statistics, running statistics "
    "and activation in one program per channel block) wherever one program can own a "
    "channel block's reduction, not only for small layers",
    options=(BN_LAUNCHES,),
    fields={"bn_launches": "one-kernel"},
    stage=Stage.KERNELS,
    hooks={Stage.KERNELS: _one_kernel},
)
