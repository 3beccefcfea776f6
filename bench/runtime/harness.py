"""One benchmark run in this process: train, time, measure, and write one record.

Order of work: process preparation and process group → models → the speed-ups, in their
documented order (bench.speedups.apply) → data → first iteration (timed alone: cuDNN
autotuning, lazy init, compile) → remaining warm-up (a CUDA graph is captured here) →
timed iterations (bench.runtime.loop) → cross-rank reduction (the slowest rank decides) →
FLOPs on an untimed copy → BatchNorm buffers averaged → parameter digests → record
(rank 0), its account of what ran written once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
import uuid
from pathlib import Path

import torch

import bench
from bench.config import RunConfig
from bench.data import build_batch_source
from bench.quality.probe import QualityProbe, write_sample_grid
from bench.runtime import distributed, slurm
from bench.runtime.console import StepProgress, print_summary
from bench.runtime.loop import TrainingLoop, quality_check, timing_metrics
from bench.speedups import Applied, applied_speedups, prepare_process
from bench.telemetry.environment import collect_environment
from bench.telemetry.flops import compute_metrics, count_flops
from bench.telemetry.profiling import NCCL_SHARE_FIELDS, profile_iterations
from bench.telemetry.records import SCHEMA_VERSION, append_record
from bench.training.precision import PrecisionPolicy
from bench.training.step import make_step
from gan_models import ModelPair, build_pair, get_loss


class RunInterrupted(BaseException):
    """SIGINT or SIGTERM arrived; BaseException so no `except Exception` swallows it."""

    def __init__(self, signame: str):
        super().__init__(signame)
        self.signame = signame


def _raise_interrupted(signum, _frame):
    raise RunInterrupted(signal.Signals(signum).name)


class _SignalsHeld:
    """SIGINT/SIGTERM noted, not acted on, from the moment a run ends until its record is
    written: torchrun stops the other ranks with SIGTERM as soon as one exits, which would
    otherwise kill a rank half-way to writing the record. `release` restores the handlers
    and then delivers the first signal held, as if it arrived only then."""

    def __init__(self):
        self.received: list[int] = []

    def _note(self, signum, _frame):
        self.received.append(signum)

    def hold(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._note)

    def release(self, handlers: dict) -> None:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if self.received:
            signal.raise_signal(self.received[0])


class _Phase:
    """Where the run is, for the reason line of a record that did not finish, and how long
    each phase took (`seconds`, wall time; a phase entered twice adds up), the first being
    the process's start-up: the imports from bench's own to this object."""

    def __init__(self):
        self._since = time.perf_counter()
        self.seconds = {"start-up": self._since - bench.IMPORTED_AT}
        self._name = "setup"
        self.iteration = 0

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        self._close()
        self._name = name

    def _close(self) -> None:
        now = time.perf_counter()
        self.seconds[self._name] = self.seconds.get(self._name, 0.0) + now - self._since
        self._since = now

    def durations(self) -> dict[str, float]:
        """Seconds per phase so far, the current one up to now."""
        self._close()
        return dict(self.seconds)

    def __str__(self) -> str:
        return self.name if self.name == "setup" else f"{self.name}, iteration {self.iteration}"


def execute(cfg: RunConfig, device_type: str) -> dict:
    """Run one benchmark and return its record (rank 0 also appends it to cfg.out)."""
    handlers = {
        sig: signal.signal(sig, _raise_interrupted) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    phase = _Phase()
    record: dict = {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "status": None,
        "reason": None,
        "config": cfg.to_dict(),
        "run": {},
        "environment": {},
        "metrics": {},
    }
    ctx = None
    held = _SignalsHeld()
    try:
        try:
            prepare_process(cfg)  # what the process group reads must be set before it
            ctx = distributed.setup(device_type, cfg.dist_timeout_s)
            # The processes of the run, however started (torchrun workers are given no
            # --nproc: bench/config.py to_cli_args), so that the config says what ran.
            record["config"]["nproc"] = ctx.world_size
            record["environment"] = collect_environment(ctx.device, ctx.world_size)
            _train(cfg, ctx, record, phase)
        finally:
            held.hold()  # before the handlers below: nothing may stop the record now
    except RunInterrupted as err:
        record["status"], record["reason"] = "interrupted", f"{err.signame} during {phase}"
    except torch.OutOfMemoryError as err:
        record["status"] = "oom"
        record["reason"] = f"out of memory during {phase}: {str(err).splitlines()[0]}"
    except Exception as err:  # a failed run is still a record: failures are rows too
        traceback.print_exc(file=sys.stderr)
        first_line = (str(err).strip().splitlines() or [""])[0]
        record["status"] = "failed"
        record["reason"] = f"{type(err).__name__} during {phase}: {first_line}"
    record["run"]["phase_s"] = phase.durations()
    record["run"]["process_start"] = bench.PROCESS_START
    try:
        if _writes_record(ctx, record):
            append_record(cfg.out, record)
            if not cfg.quiet:
                print_summary(record, cfg.out)
        elif record["status"] != "ok":  # another rank reports the run: say what happened here
            rank = ctx.rank if ctx is not None else os.environ.get("RANK")
            print(f"gan-bench: rank {rank}: {record['reason']}", file=sys.stderr, flush=True)
    finally:
        held.release(handlers)
    if ctx is not None and record["status"] in ("ok", "diverged"):
        # Rank 0 samples and evaluates after the last training collective; the others wait
        # here so that no rank tears the process group down while a peer still holds it
        # (an early teardown on gloo can abort the exiting process). After a failure a
        # peer may be gone: just exit.
        distributed.barrier(ctx)
        distributed.teardown(ctx)
    return record


# Statuses with which a rank other than 0 reports the run: its own error ended the run (an
# interruption reaches every rank, and rank 0 reports it).
PEER_REPORTED_STATUSES = ("failed", "oom")
# Before a rank other than 0 claims the record: when every rank fails the same way at once,
# rank 0 reports it; a rank failing alone leaves rank 0 waiting for it in a collective.
PEER_CLAIM_DELAY_S = 2.0


def _writes_record(ctx: distributed.DistContext | None, record: dict) -> bool:
    """Whether this process appends the run's record (distributed.claim_record says why
    ranks other than 0 may). Without a context (the process group never started) every
    rank failed the same way: the environment's rank decides, so one record is written."""
    if ctx is None:
        return int(os.environ.get("RANK", "0")) == 0
    if not ctx.distributed:
        return True
    if not ctx.is_main:
        if record["status"] not in PEER_REPORTED_STATUSES:
            return False
        time.sleep(PEER_CLAIM_DELAY_S)
    if not distributed.claim_record(ctx):
        return False
    record["run"]["reporting_rank"] = ctx.rank
    if not ctx.is_main:
        record["reason"] = f"on rank {ctx.rank} of {ctx.world_size}: {record['reason']}"
    return True


def _train(cfg: RunConfig, ctx: distributed.DistContext, record: dict, phase: _Phase) -> None:
    device = ctx.device
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loss = get_loss(cfg.loss)
    pair = _build_pair(cfg, loss)
    # Latents differ per rank (each rank is a different slice of the global batch) but are
    # reproducible for a given seed.
    latent_rng = torch.Generator(device=device)
    latent_rng.manual_seed(cfg.seed * 1_000_003 + ctx.rank + 1)
    with applied_speedups(cfg, ctx, pair, loss=loss, latent_rng=latent_rng) as applied:
        record["run"] = _run_facts(cfg, ctx, pair, applied)
        try:
            _train_and_measure(cfg, ctx, record, phase, pair, loss, applied)
        finally:
            # What really ran, written once, whether the run finished or not.
            record["run"].update(applied.account())


def launcher_name() -> str:
    """What started this run: a SLURM job (torchrun inside it or not), torchrun, or a
    single process."""
    if slurm.job_environment() is not None:
        return "slurm"
    return "torchrun" if distributed.launched_by_torchrun() else "single process"


def _run_facts(
    cfg: RunConfig, ctx: distributed.DistContext, pair: ModelPair, applied: Applied
) -> dict:
    """The record's `run` entries that no speed-up decides; the parameter counts are those
    of the networks as trained (padded channels' zero weights included)."""
    global_batch = cfg.batch_size_per_process * ctx.world_size
    return {
        "world_size": ctx.world_size,
        "global_batch_size": global_batch,
        "batch_size_per_process": cfg.batch_size_per_process,
        "n_critic": cfg.critic_updates,
        "real_images_per_iteration": cfg.critic_updates * global_batch,
        "image_shape": list(pair.image_shape),
        "latent_shape": list(pair.latent_shape),
        "device": str(ctx.device),
        "backend": ctx.backend,
        "launcher": launcher_name(),
        **({"slurm": job} if (job := slurm.job_environment()) else {}),
        "ddp": (
            {
                "buffer_sync_in_forward": False,
                "bn_running_stats": "averaged over ranks after training",
            }
            if ctx.distributed
            else None
        ),
        "cpu_threads": torch.get_num_threads(),
        "generator_params": sum(p.numel() for p in applied.generator.parameters()),
        "discriminator_params": sum(p.numel() for p in applied.discriminator.parameters()),
    }


def _train_and_measure(
    cfg: RunConfig, ctx, record: dict, phase: _Phase, pair: ModelPair, loss, applied: Applied
) -> None:
    device = ctx.device
    generator, discriminator, step = applied.generator, applied.discriminator, applied.step
    communication = applied.communication
    if communication is not None:
        step = communication.counting(step)
    source = build_batch_source(
        cfg.dataset,
        data_dir=cfg.data_dir,
        image_shape=pair.image_shape,
        batch_size=cfg.batch_size_per_process,
        device=device,
        seed=cfg.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        memory_format=applied.memory_format,
        padded_channels=applied.padded_channels,
    )
    n_critic = cfg.critic_updates
    global_batch = cfg.batch_size_per_process * ctx.world_size
    record["run"]["dataset_images"] = source.num_images

    probe = None
    if cfg.quality_enabled:
        # Before training: the first use of a data set trains its extractor (tens of
        # seconds on a CPU, cached afterwards); the other ranks wait at the barrier.
        phase.name = "quality setup"
        if ctx.is_main:
            probe = QualityProbe(
                dataset=cfg.dataset,
                data_dir=cfg.data_dir,
                image_shape=pair.image_shape,
                latent_shape=pair.latent_shape,
                device=device,
                n_samples=cfg.quality_samples,
                seed=cfg.seed,
                cache_dir=cfg.quality_cache_dir,
                inception_weights=cfg.inception_weights,
            )
        distributed.barrier(ctx)

    loop = TrainingLoop(cfg, ctx, step, source, n_critic, phase)
    with StepProgress(loop.total, enabled=ctx.is_main and not cfg.quiet) as progress:
        loop.warm_up(progress)
        if loop.first_bad is None:
            loop.timed(
                progress,
                lambda done: quality_check(cfg, ctx, loop, probe, applied.sample_generator, done),
            )

    metrics = record["metrics"]
    metrics["warmup_s"] = loop.warmup_s
    if loop.curve:
        metrics["quality_curve"] = loop.curve
    if cfg.target_fd is not None:
        metrics["time_to_quality"] = loop.time_to_quality(cfg.target_fd)
    phase.name = "measurement"
    if communication is not None:
        metrics["communication"] = communication.summary(
            {"generator": generator, "discriminator": discriminator},
            {"generator": 1, "discriminator": n_critic},
            real_images_per_iteration=n_critic * global_batch,
        )
    if loop.first_bad is not None:
        record["status"] = "diverged"
        record["reason"] = f"non-finite loss at iteration {loop.first_bad + 1} of {loop.total}"
        metrics["diverged_at_iteration"] = loop.first_bad + 1
        return

    timing_metrics(metrics, loop, ctx, device, n_critic * global_batch)
    if cfg.profile_steps:
        # After the timing, so the profiler's overhead never reaches the timed numbers. All
        # ranks iterate (DDP's collectives need them); rank 0 writes the trace.
        phase.name = "profile"
        trace = Path(cfg.out).parent / "profiles" / f"{record['run_id']}.json.gz"
        profile = profile_iterations(
            loop.untimed_iteration,
            device=device,
            iterations=cfg.profile_steps,
            trace_path=trace if ctx.is_main else None,
        )
        record["profile"] = profile
        # The collectives' share of the device time belongs with what DDP sends.
        shares = {key: profile.pop(key) for key in NCCL_SHARE_FIELDS if key in profile}
        if shares and metrics.get("communication") is not None:
            metrics["communication"].update(shares)
    phase.name = "FLOP count"
    if ctx.is_main:  # per-process work is the same on every rank: count it once
        flops = _count_iteration_flops(
            cfg, device, applied.policy, pair.image_shape, pair.latent_shape, loss
        )
        metrics.update(
            compute_metrics(
                flops,
                images_per_iteration=n_critic * cfg.batch_size_per_process,
                world_size=ctx.world_size,
                steps=loop.steps_done,
                timed_s=metrics["timed_s"],
                device=device,
                precision=cfg.precision,
                device_name=record["environment"].get("device_name") or "",
            )
        )

    phase.name = "finish"
    distributed.average_buffers(ctx, generator)
    distributed.average_buffers(ctx, discriminator)
    digests = distributed.gather_objects(
        ctx,
        {
            "generator": distributed.parameter_digest(generator),
            "discriminator": distributed.parameter_digest(discriminator),
        },
    )
    metrics["param_digests"] = digests
    metrics["params_identical_across_ranks"] = all(d == digests[0] for d in digests)
    if ctx.is_main:
        # After the last collective: the other ranks are done and may exit meanwhile.
        phase.name = "sample grid"
        grid = Path(cfg.out).parent / "samples" / f"{record['run_id']}.png"
        metrics["sample_grid_path"] = str(
            write_sample_grid(applied.sample_generator, pair.latent_shape, device, grid)
        )
        if probe is not None:
            phase.name = "quality"
            record["quality"] = probe.evaluate(applied.sample_generator)
    record["status"] = "ok"


def _build_pair(cfg: RunConfig, loss) -> ModelPair:
    """The configured G and D (a critic without BatchNorm when the loss needs one)."""
    return build_pair(
        cfg.model, channels=cfg.image_channels, latent_dim=cfg.latent_dim, critic=loss.needs_critic
    )


def _count_iteration_flops(
    cfg: RunConfig, device: torch.device, policy: PrecisionPolicy, image_shape, latent_shape, loss
) -> int:
    """FLOPs of one training iteration of one process, counted on a fresh, untimed copy.

    A fresh pair (not the trained one, not DDP-wrapped, no SyncBN) keeps the count free of
    collectives and leaves the trained models untouched; FLOPs do not depend on weights.
    It is the reference iteration, without speed-ups: work a speed-up adds (the zeros of
    padded image channels) is not counted, so MFU stays a measure of useful work.
    """
    pair = _build_pair(cfg, loss)
    pair.generator.to(device)
    pair.discriminator.to(device)
    rng = torch.Generator(device=device)
    rng.manual_seed(cfg.seed)
    step = make_step(
        pair.generator,
        pair.discriminator,
        loss=loss,
        policy=policy,
        latent_shape=latent_shape,
        latent_rng=rng,
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
    )
    reals = [
        torch.rand((cfg.batch_size_per_process, *image_shape), device=device) * 2 - 1
        for _ in range(cfg.critic_updates)
    ]
    # FLOPs do not depend on the convolution algorithm: no cuDNN autotuning here, where the
    # reference pair's layout (NCHW) may differ from the trained one's and every
    # convolution would be timed once more, seconds of a run for nothing.
    autotune, torch.backends.cudnn.benchmark = torch.backends.cudnn.benchmark, False
    try:
        return count_flops(lambda: step(reals))
    finally:
        torch.backends.cudnn.benchmark = autotune
