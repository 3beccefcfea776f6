"""The speed-ups of a run, applied in one function and in one order (DESIGN.md):

1. SyncBatchNorm (--sync-bn under DDP), before the kernel swap: the swap turns
   SyncBatchNorm + activation into the fused sync module, while converting after it would
   turn the fused modules back into plain SyncBatchNorm and lose their activation.
2. Kernel swaps: BatchNorm + LeakyReLU/ReLU become fused Triton modules (--kernels
   triton); the convolutions over image channels become Triton ones, D's first with its
   LeakyReLU (--conv-kernels triton), both before the memory format and the device.
3. Padded image channels (--pad-image-channels): G's image layer and D's first layer
   widened with zero weights (bench/channel_padding.py), before the memory format is set
   on the new weights and before the optimizers are built over them.
4. Memory format (--memory-format channels_last): 4-D weights in NHWC; the fused kernels
   and cuDNN keep their input's format, so activations stay NHWC from the first layer on.
5. The device.
6. Batched casts (bench/batched_casts.py: a wrapper innermost around each network), then
   DDP, then torch.compile (bench/train.py says why in that order).
7. Whole-iteration CUDA graph (bench/cuda_graph.py), outermost: it captures all of the
   above, the compiled code and the fused kernels included.

`Speedups.record` is the run record's account of what really ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bench.batched_casts import cast_parameter_names
from bench.channel_padding import ImageChannels, channel_multiple, pad_image_channels
from bench.config import MEMORY_FORMATS, RunConfig
from bench.cuda_graph import (
    CudaGraphBackend,
    GraphedStep,
    check_nccl_for_capture,
    eager_iterations_before_capture,
)
from bench.precision import PrecisionPolicy
from bench.train import build_step, optimizer_implementation
from gan_models import GANLoss, ModelPair


@dataclass
class Speedups:
    """The models and the step as the run trains them, and what was applied.
    `sample_generator` is the generator as sample grids and quality metrics see it: the
    trained one, or its view with the images' own channels when they were padded."""

    generator: nn.Module
    discriminator: nn.Module
    step: object  # GANStep, or GraphedStep around it
    graphed: GraphedStep | None
    sample_generator: nn.Module
    record: dict = field(default_factory=dict)


def memory_format_of(*modules: nn.Module) -> str:
    """The memory format the 4-D parameters (convolution weights) really have."""
    weights = [p for m in modules for p in m.parameters() if p.dim() == 4]
    if not weights:
        return "no 4-D parameters"
    # A weight of shape (C, 1, 1, 1) or (1, C, 1, 1) is both; it says nothing.
    telling = [w for w in weights if w.shape[1] > 1 and w.shape[2] * w.shape[3] > 1] or weights
    last = [w.is_contiguous(memory_format=torch.channels_last) for w in telling]
    if all(last):
        return "channels_last"
    if not any(last) and all(w.is_contiguous() for w in telling):
        return "contiguous"
    return "mixed"


def _swap_kernels(generator: nn.Module, discriminator: nn.Module) -> tuple[str, dict]:
    import kernels  # registers the ops; imports triton

    path = kernels.kernel_path()
    reports = {
        "generator": kernels.fuse_batchnorm_leaky_relu(generator),
        "discriminator": kernels.fuse_batchnorm_leaky_relu(discriminator),
    }
    fused: dict = {
        name: {"fused": list(r.fused), "unfused": [list(u) for u in r.unfused]}
        for name, r in reports.items()
    }
    fused["count"] = sum(r.count for r in reports.values())
    return path, fused


def _swap_convolutions(generator: nn.Module, discriminator: nn.Module) -> dict:
    """The image layers swapped for narrow Triton convolutions; what was swapped."""
    import kernels

    path = kernels.kernel_path()
    reports = {
        "generator": kernels.swap_narrow_convolutions(generator),
        "discriminator": kernels.swap_narrow_convolutions(discriminator),
    }
    if not all(r.count for r in reports.values()):
        raise ValueError(f"--conv-kernels triton found no image layer to swap: {reports}")
    swapped: dict = {"path": path}
    swapped |= {name: list(r.swapped) for name, r in reports.items()}
    swapped["count"] = sum(r.count for r in reports.values())
    return swapped


def _parameter_casts(cfg: RunConfig, policy: PrecisionPolicy, generator, discriminator):
    """How autocast's parameter casts ran: None without autocast."""
    if policy.autocast_dtype is None:
        return None
    count = sum(len(cast_parameter_names(m)) for m in (generator, discriminator))
    return {"batched": cfg.batched_casts, "parameters": count}


def apply_speedups(
    cfg: RunConfig,
    ctx,
    pair: ModelPair,
    *,
    loss: GANLoss,
    policy: PrecisionPolicy,
    latent_rng: torch.Generator,
) -> Speedups:
    """Apply the configured speed-ups to `pair` in the order above; build the step."""
    device = ctx.device
    generator, discriminator = pair.generator, pair.discriminator
    record: dict = {"sync_bn_applied": False, "sync_bn_reason": None}
    if cfg.sync_bn and ctx.distributed:
        generator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(generator)
        discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)
        record["sync_bn_applied"] = True
    elif cfg.sync_bn:
        record["sync_bn_reason"] = (
            "single process: SyncBatchNorm would equal BatchNorm, not applied"
        )

    record["kernel_path"], record["fused_layers"] = "torch", None
    if cfg.kernels == "triton":
        record["kernel_path"], record["fused_layers"] = _swap_kernels(generator, discriminator)
    record["narrow_convolutions"] = None
    if cfg.conv_kernels == "triton":
        record["narrow_convolutions"] = _swap_convolutions(generator, discriminator)

    record["image_channels_padded"], sample_generator = None, generator
    if cfg.pad_image_channels:
        channels = cfg.image_channels
        record["image_channels_padded"] = pad_image_channels(
            generator, discriminator, channels, channel_multiple(cfg.precision)
        )
        sample_generator = ImageChannels(generator, channels)

    memory_format = MEMORY_FORMATS[cfg.memory_format]
    generator.to(device, memory_format=memory_format)
    discriminator.to(device, memory_format=memory_format)
    record["memory_format"] = memory_format_of(generator, discriminator)

    backend = None
    if cfg.cuda_graph:
        if ctx.distributed:
            check_nccl_for_capture()
        backend = CudaGraphBackend(device)
    optimizer = optimizer_implementation(cfg.cuda_graph, cfg.precision, device.type == "cuda")
    step = build_step(
        generator,
        discriminator,
        loss=loss,
        policy=policy,
        latent_shape=pair.latent_shape,
        latent_rng=latent_rng,
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        ddp_device_ids=[device.index] if device.type == "cuda" else None,
        distributed=ctx.distributed,
        compile_mode=cfg.compile_mode,
        optimizer=optimizer,
        ddp_stream=backend.stream if backend is not None else None,
        joint_d_batch=cfg.joint_d_batch,
        batched_casts=cfg.batched_casts,
        memory_format=memory_format,
    )
    record["optimizer"] = {"name": "adam", "implementation": optimizer}
    record["compile_mode"] = None if cfg.compile_mode == "none" else cfg.compile_mode
    record["discriminator_batches"] = "joint" if cfg.joint_d_batch else "separate"
    record["parameter_casts"] = _parameter_casts(cfg, policy, generator, discriminator)
    graphed = None
    if backend is not None:
        graphed = GraphedStep(
            step,
            backend,
            eager_iterations=eager_iterations_before_capture(ctx.world_size, cfg.critic_updates),
            generators=[latent_rng],
        )
    return Speedups(generator, discriminator, graphed or step, graphed, sample_generator, record)
