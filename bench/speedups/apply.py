"""A run built in one documented order, each speed-up at its stage (torchtitan's
`parallelize` habit): `prepare_process` before the process group starts, then
`applied_speedups`, which holds the process-wide settings for the run's length and
builds the networks and the training step, stage by stage (bench.speedups.base.Stage):

1. process: what the process group reads from the environment (a CUDA graph under DDP
   needs NCCL's async error handling off before the group starts);
2. settings: process-wide library switches for the run, restored after it: cuDNN's
   autotuner (--cudnn-benchmark) and how many engines it times (cudnn-exhaustive);
3. SyncBatchNorm (--sync-bn under DDP), before the kernel swaps: the swap turns
   SyncBatchNorm + activation into the fused sync module, while converting after it
   would turn the fused modules back into plain SyncBatchNorm and lose their activation;
4. kernels: layers swapped for Triton kernels (triton, triton-convs), before the layout
   and the device;
5. channels: image layers widened with zero weights (pad-channels), before the layout is
   set on the new weights and before the optimizers are built over them;
6. memory format (channels-last), then 7. the device: one copy into both;
8. precision: autocast and GradScaler (autocast's cast cache off under a CUDA graph);
9. wrappers innermost around each network (batched-casts), seen by DDP and compile;
10. objective: D's loss over its real and fake batches, separate or joint (joint-d);
11. DDP, each module with a communication hook that counts its all-reduces and then
    all-reduces as DDP does by default (bench.training.communication), then
12. torch.compile around it (dynamo's DDPOptimizer then splits graphs at bucket
    boundaries, so communication overlaps compute);
13. optimizer: Adam's implementation (fused under a CUDA graph, and for fp16 on CUDA);
14. graph: the whole iteration captured as a CUDA graph (cuda-graph), outermost, so it
    captures all of the above, the compiled code and the fused kernels included.

Each stage writes its part of the record's account of what really ran (`Applied.account`,
read once, when the run is over).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from bench.speedups.base import Build, Stage
from bench.speedups.batched_casts import parameter_casts
from bench.speedups.channels_last import memory_format_of
from bench.speedups.registry import OPTIONS, SPEEDUPS, enabled_speedups, variant_name
from bench.training.communication import Communication
from bench.training.precision import PrecisionPolicy, make_policy
from bench.training.step import DiscriminatorObjective, make_step
from gan_models import GANLoss, ModelPair

# DDP does not re-broadcast BatchNorm buffers in every forward (bench.training.step says
# why). Newer torch renames broadcast_buffers to forward_sync_buffers; buffers are still
# synced once at construction, which we want: every rank starts from rank 0's statistics.
DDP_OPTIONS = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
    else {"broadcast_buffers": False}
)


def _hooks(cfg, stage: Stage, build: Build | None) -> None:
    """The hooks of the speed-ups `cfg` turns on at `stage`, in canonical order."""
    for speedup in enabled_speedups(cfg):
        hook = speedup.hooks.get(stage)
        if hook is not None:
            hook(build)


def prepare_process(cfg) -> None:
    """Stage 1, before the process group starts: nothing is built yet."""
    _hooks(cfg, Stage.PROCESS, None)


@contextlib.contextmanager
def _cudnn_settings(cfg, device: torch.device) -> Iterator[None]:
    """cuDNN's autotuner as `cfg` asks, for this run only: process-wide flags, restored
    after (runs in tests share a process)."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.benchmark_limit
    cudnn.benchmark = cfg.cudnn_benchmark
    if cfg.cudnn_benchmark_limit is not None:
        cudnn.benchmark_limit = cfg.cudnn_benchmark_limit
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.benchmark_limit = saved


def _sync_batchnorm(build: Build) -> None:
    build.record["sync_bn_applied"], build.record["sync_bn_reason"] = False, None
    if not build.cfg.sync_bn:
        return
    if not build.ctx.distributed:
        build.record["sync_bn_reason"] = (
            "single process: SyncBatchNorm would equal BatchNorm, not applied"
        )
        return
    convert = torch.nn.SyncBatchNorm.convert_sync_batchnorm
    build.generator = convert(build.generator)
    build.discriminator = convert(build.discriminator)
    build.sample_generator = build.generator
    build.record["sync_bn_applied"] = True


def _to_device(build: Build) -> None:
    for network in (build.generator, build.discriminator):
        network.to(build.ctx.device, memory_format=build.memory_format)
    build.record["memory_format"] = memory_format_of(build.generator, build.discriminator)


def _objective(build: Build) -> None:
    d_run = build.wrap(build.discriminator)
    build.g_forward = build.wrap(build.generator)
    build.d_objective = DiscriminatorObjective(d_run, build.loss, build.policy, build.joint_d_batch)
    build.d_frozen = d_run
    build.record["discriminator_batches"] = "joint" if build.joint_d_batch else "separate"
    build.record["parameter_casts"] = parameter_casts(build)


def _ddp(build: Build) -> None:
    if not build.ctx.distributed:
        return
    device = build.ctx.device
    ids = [device.index] if device.type == "cuda" else None
    stream = torch.cuda.stream(build.ddp_stream) if build.ddp_stream is not None else nullcontext()
    with stream:
        build.g_forward = DDP(build.g_forward, device_ids=ids, **DDP_OPTIONS)
        build.d_objective = DDP(build.d_objective, device_ids=ids, **DDP_OPTIONS)
    build.communication = Communication(build.ctx.backend, build.ctx.world_size)
    build.communication.install("generator", build.g_forward)
    build.communication.install("discriminator", build.d_objective)


def _default_adam(build: Build) -> None:
    # fp16 on CUDA: GradScaler hands fused Adam its scale and inf flag as tensors, where
    # with any other Adam it reads the flag on the host at every step (a sync per
    # iteration; bench.training.step.ADAM_OPTIONS).
    fp16_on_cuda = build.cfg.precision == "fp16" and build.ctx.device.type == "cuda"
    build.adam = "fused" if fp16_on_cuda else "default"


def _step(build: Build) -> None:
    cfg = build.cfg
    build.step = make_step(
        build.generator,
        build.discriminator,
        loss=build.loss,
        policy=build.policy,
        latent_shape=build.latent_shape,
        latent_rng=build.latent_rng,
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        g_forward=build.g_forward,
        d_objective=build.d_objective,
        d_frozen=build.d_frozen,
        adam=build.adam,
        latent_memory_format=build.memory_format,
    )
    build.record["optimizer"] = {"name": "adam", "implementation": build.adam}


def _precision(build: Build) -> None:
    if build.policy is None:  # else posed by the caller
        build.policy = make_policy(
            build.cfg.precision, build.ctx.device.type, autocast_cache=build.autocast_cache
        )


# The stages' own work, around the speed-ups' hooks: `before` runs ahead of them (defaults
# the hooks may change), `after` once they have run (what is built from their choices).
_BEFORE = {Stage.SYNC_BN: _sync_batchnorm, Stage.OPTIMIZER: _default_adam}
_AFTER = {
    Stage.DEVICE: _to_device,
    Stage.PRECISION: _precision,
    Stage.OBJECTIVE: _objective,
    Stage.DDP: _ddp,
    Stage.OPTIMIZER: _step,
}


@dataclass
class Applied:
    """The run as built: the networks (their parameters are the ones trained), G as
    samples see it, the step to call each iteration, its precision, the images' layout,
    and the account of what ran."""

    build: Build

    @property
    def generator(self):
        return self.build.generator

    @property
    def discriminator(self):
        return self.build.discriminator

    @property
    def sample_generator(self):
        return self.build.sample_generator

    @property
    def step(self):
        return self.build.step

    @property
    def graphed(self):
        return self.build.graphed

    @property
    def policy(self):
        return self.build.policy

    @property
    def communication(self) -> Communication | None:
        """DDP's all-reduces, counted by the hooks installed with it; None without DDP."""
        return self.build.communication

    @property
    def memory_format(self) -> torch.memory_format:
        return self.build.memory_format

    @property
    def padded_channels(self) -> int | None:
        return self.build.padded_channels

    def account(self) -> dict:
        """The record's `run` entries on what really ran, with those only known once the
        run is over (graph replays, compile counters)."""
        cfg, device = self.build.cfg, self.build.ctx.device
        cuda = device.type == "cuda"
        return {
            "precision": self.build.policy.describe(),
            "variant": variant_name(cfg),
            "variant_fields": {name: getattr(cfg, name) for name in OPTIONS},
            **self.build.record,
            **{key: read() for key, read in self.build.late_record.items()},
            "cudnn_benchmark": torch.backends.cudnn.benchmark if cuda else None,
            "cudnn_benchmark_limit": torch.backends.cudnn.benchmark_limit if cuda else None,
        }


@contextlib.contextmanager
def applied_speedups(
    cfg,
    ctx,
    pair: ModelPair,
    *,
    loss: GANLoss,
    latent_rng: torch.Generator,
    policy: PrecisionPolicy | None = None,
) -> Iterator[Applied]:
    """`pair` and its training step built in the documented order (stages 2-14) for the
    process `ctx` (device, rank, world size); the settings of stage 2 hold until the with
    block ends. `cfg`: a RunConfig, or anything with its fields. `policy`: a precision
    policy the caller poses (autocast's cache, in tests), else made from cfg.precision."""
    build = Build(
        cfg=cfg,
        ctx=ctx,
        loss=loss,
        latent_shape=pair.latent_shape,
        latent_rng=latent_rng,
        generator=pair.generator,
        discriminator=pair.discriminator,
        sample_generator=pair.generator,
        memory_format=torch.contiguous_format,
        policy=policy,
    )
    for speedup in SPEEDUPS.values():  # what the record says of those that are off
        build.record.update(speedup.record_off)
    with _cudnn_settings(cfg, ctx.device):  # the settings stage's own work, for the run
        try:
            for stage in list(Stage)[1:]:  # the process stage ran before the process group
                if stage in _BEFORE:
                    _BEFORE[stage](build)
                _hooks(cfg, stage, build)
                if stage in _AFTER:
                    _AFTER[stage](build)
            yield Applied(build)
        finally:
            for close in build.cleanup:
                close()
