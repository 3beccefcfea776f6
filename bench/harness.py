"""One benchmark run in this process: train, time, measure, and write one record.

Order of work: process group → models → speed-ups (bench/speedups.py: SyncBN, kernel
swaps, memory format, DDP, compile, CUDA graph) → data → first iteration (timed alone:
cuDNN autotuning, lazy init, compile) → remaining warm-up (a CUDA graph is captured here) →
timed iterations → cross-rank reduction (the slowest rank decides) → FLOPs on an
untimed copy → BatchNorm buffers averaged → parameter digests → record (rank 0).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
import traceback
import uuid
from pathlib import Path

import torch

import bench
from bench import distributed
from bench.compile_watch import CompileWatch
from bench.config import MEMORY_FORMATS, RunConfig
from bench.console import StepProgress, print_summary
from bench.cuda_graph import prepare_distributed_capture
from bench.data import build_batch_source
from bench.environment import collect_environment, gpu_memory_used_mib, peak_rss_mib
from bench.flops import compute_metrics, count_flops
from bench.precision import PrecisionPolicy, make_policy
from bench.profiling import profile_iterations
from bench.quality.probe import QualityProbe, write_sample_grid
from bench.records import SCHEMA_VERSION, append_record
from bench.speedups import apply_speedups
from bench.timing import IterationTimer, percentile, synchronize
from bench.train import build_step
from gan_models import ModelPair, build_pair, get_loss

MIB = 2**20


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
            if cfg.cuda_graph:
                prepare_distributed_capture()  # must precede the process group
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
    except Exception as err:  # a failed run is still a record (DESIGN.md: failures are rows)
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


@contextlib.contextmanager
def _cudnn_autotuning(cfg: RunConfig, device: torch.device):
    """cuDNN's autotuner as `cfg` asks, for this run only: process-wide flags, restored after
    (runs in tests share a process)."""
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


def _train(cfg: RunConfig, ctx: distributed.DistContext, record: dict, phase: _Phase) -> None:
    compile_watch = CompileWatch(cfg.compile_mode) if cfg.compile_mode != "none" else None
    try:
        with _cudnn_autotuning(cfg, ctx.device):
            _train_and_measure(cfg, ctx, record, phase, compile_watch)
    finally:
        if compile_watch is not None:
            compile_watch.close()


def _train_and_measure(cfg: RunConfig, ctx, record: dict, phase: _Phase, compile_watch) -> None:
    device = ctx.device
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # Under a CUDA graph autocast may not cache casts (bench/precision.py).
    policy = make_policy(cfg.precision, device.type, autocast_cache=not cfg.cuda_graph)
    loss = get_loss(cfg.loss)
    pair = _build_pair(cfg, loss)
    # Latents differ per rank (each rank is a different slice of the global batch) but are
    # reproducible for a given seed.
    latent_rng = torch.Generator(device=device)
    latent_rng.manual_seed(cfg.seed * 1_000_003 + ctx.rank + 1)
    applied = apply_speedups(cfg, ctx, pair, loss=loss, policy=policy, latent_rng=latent_rng)
    generator, discriminator, step = applied.generator, applied.discriminator, applied.step
    padding = applied.record["image_channels_padded"]

    source = build_batch_source(
        cfg.dataset,
        data_dir=cfg.data_dir,
        image_shape=pair.image_shape,
        batch_size=cfg.batch_size,
        device=device,
        seed=cfg.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        memory_format=MEMORY_FORMATS[cfg.memory_format],
        padded_channels=padding["to"] if padding else None,
    )
    n_critic = cfg.critic_updates
    global_batch = cfg.batch_size * ctx.world_size
    record["run"] = {
        "world_size": ctx.world_size,
        "global_batch_size": global_batch,
        "batch_size_per_process": cfg.batch_size,
        "n_critic": n_critic,
        "real_images_per_iteration": n_critic * global_batch,
        "image_shape": list(pair.image_shape),
        "latent_shape": list(pair.latent_shape),
        "device": str(device),
        "backend": ctx.backend,
        "launcher": "torchrun" if distributed.launched_by_torchrun() else "single process",
        "ddp": (
            {
                "buffer_sync_in_forward": False,
                "bn_running_stats": "averaged over ranks after training",
            }
            if ctx.distributed
            else None
        ),
        "precision": policy.describe(),
        "variant": cfg.variant_name,
        "variant_fields": cfg.variant_fields,
        **applied.record,
        "cuda_graph": applied.graphed.describe() if applied.graphed else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark if device.type == "cuda" else None,
        "cudnn_benchmark_limit": (
            torch.backends.cudnn.benchmark_limit if device.type == "cuda" else None
        ),
        "cpu_threads": torch.get_num_threads(),
        "dataset_images": source.num_images,
        "generator_params": sum(p.numel() for p in generator.parameters()),
        "discriminator_params": sum(p.numel() for p in discriminator.parameters()),
    }

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

    loop = _TrainingLoop(cfg, ctx, step, source, n_critic, phase)
    with StepProgress(loop.total, enabled=ctx.is_main and not cfg.quiet) as progress:
        loop.warm_up(progress)
        if loop.first_bad is None:
            loop.timed(
                progress,
                lambda done: _quality_check(cfg, ctx, loop, probe, applied.sample_generator, done),
            )

    metrics = record["metrics"]
    metrics["warmup_s"] = loop.warmup_s
    if loop.curve:
        metrics["quality_curve"] = loop.curve
    if cfg.target_fd is not None:
        metrics["time_to_quality"] = loop.time_to_quality(cfg.target_fd)
    phase.name = "measurement"
    if loop.first_bad is not None:
        record["status"] = "diverged"
        record["reason"] = f"non-finite loss at iteration {loop.first_bad + 1} of {loop.total}"
        metrics["diverged_at_iteration"] = loop.first_bad + 1
        return

    _timing_metrics(metrics, loop, ctx, device, n_critic * global_batch)
    if cfg.profile_steps:
        # After the timing, so the profiler's overhead never reaches the timed numbers. All
        # ranks iterate (DDP's collectives need them); rank 0 writes the trace.
        phase.name = "profile"
        trace = Path(cfg.out).parent / "profiles" / f"{record['run_id']}.json"
        profile = profile_iterations(
            loop.untimed_iteration,
            device=device,
            iterations=cfg.profile_steps,
            trace_path=trace if ctx.is_main else None,
        )
        record["profile"] = profile
    phase.name = "FLOP count"
    if ctx.is_main:  # per-process work is the same on every rank: count it once
        flops = _count_iteration_flops(
            cfg, device, policy, pair.image_shape, pair.latent_shape, loss
        )
        metrics.update(
            compute_metrics(
                flops,
                images_per_iteration=n_critic * cfg.batch_size,
                world_size=ctx.world_size,
                steps=loop.steps_done,
                timed_s=metrics["timed_s"],
                device=device,
                precision=cfg.precision,
                device_name=record["environment"].get("device_name") or "",
            )
        )
    if cfg.compile_mode != "none":
        record["run"]["compile"] = compile_watch.counters()
    if applied.graphed is not None:
        record["run"]["cuda_graph"] = applied.graphed.describe()

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


class _TrainingLoop:
    """Warm-up and timed iterations: per-iteration times, data-loading times, losses.

    Losses are copied into a device tensor and read once per phase (and at quality
    checks), so the timed iterations never wait on the host.
    """

    def __init__(self, cfg: RunConfig, ctx, step, source, n_critic: int, phase: _Phase):
        self.cfg, self.ctx, self.step, self.source = cfg, ctx, step, source
        self.n_critic, self.phase = n_critic, phase
        self.total = cfg.warmup_steps + cfg.steps
        self.device = ctx.device
        self.losses = torch.zeros(self.total, 2, device=self.device)  # (d, g) per iteration
        self.load_s: list[float] = []
        self.timer = IterationTimer(self.device)
        self.first_iteration_s: float | None = None
        # Device memory peaks (allocated, reserved; MiB) of the set-up and first iteration
        # alone; None without a warm-up (or on CPU).
        self.first_iteration_peaks_mib: tuple[float, float] | None = None
        self.warmup_s = 0.0
        self.timed_s = 0.0  # timed iterations only: quality checks are left out
        self.steps_done = 0
        self.first_bad: int | None = None
        self.curve: list[dict] = []
        self.reached: dict | None = None

    def _iteration(self, i: int) -> None:
        self.phase.iteration = i + 1
        start = time.perf_counter()
        reals = self._real_batches()
        self.load_s.append(time.perf_counter() - start)
        d_loss, g_loss = self.step(reals)
        self.losses[i, 0].copy_(d_loss)  # device-side copies: no host sync in the loop
        self.losses[i, 1].copy_(g_loss)

    def _real_batches(self) -> list[torch.Tensor]:
        return [self.source.next_batch() for _ in range(self.n_critic)]

    def untimed_iteration(self) -> None:
        """One more training iteration, its losses not kept (profiling)."""
        self.step(self._real_batches())

    def warm_up(self, progress: StepProgress) -> None:
        self.phase.name = "warm-up"
        progress.begin("warm-up", self.cfg.warmup_steps)
        warmup_start = time.perf_counter()
        for i in range(self.cfg.warmup_steps):
            synchronize(self.device)
            start = time.perf_counter()
            self._iteration(i)
            synchronize(self.device)
            if i == 0:
                self.first_iteration_s = time.perf_counter() - start
                self._restart_memory_peaks()
            progress.advance("warm-up")
        self.warmup_s = time.perf_counter() - warmup_start
        self.first_bad = _first_non_finite(self.ctx, self.losses[: self.cfg.warmup_steps])

    def _restart_memory_peaks(self) -> None:
        """Set the first iteration's peaks apart: its one-off work (cuDNN's benchmark mode
        trying convolution algorithms with their workspaces, compile autotuning) is not
        what training needs. The peaks from here on include the CUDA-graph capture, whose
        allocations the replays reuse."""
        if self.device.type != "cuda":
            return
        self.first_iteration_peaks_mib = (
            torch.cuda.max_memory_allocated(self.device) / MIB,
            torch.cuda.max_memory_reserved(self.device) / MIB,
        )
        torch.cuda.reset_peak_memory_stats(self.device)

    def timed(self, progress: StepProgress, check) -> None:
        """The timed iterations; `check(done)` runs every --eval-every iterations, outside
        the timing, and returns True to stop (target reached or diverged)."""
        self.phase.name = "timed"
        progress.begin("timed", self.cfg.steps)
        warmup, every = self.cfg.warmup_steps, self.cfg.eval_every
        synchronize(self.device)
        segment_start = time.perf_counter()
        for i in range(warmup, self.total):
            self.timer.start()
            self._iteration(i)
            self.timer.stop()
            progress.advance("timed")
            self.steps_done += 1
            if every and self.steps_done % every == 0:
                synchronize(self.device)
                self.timed_s += time.perf_counter() - segment_start
                stop = check(self.steps_done)
                segment_start = time.perf_counter()
                if stop:
                    break
        else:
            synchronize(self.device)
            self.timed_s += time.perf_counter() - segment_start
        if self.first_bad is None:
            bad = _first_non_finite(self.ctx, self.losses[warmup : warmup + self.steps_done])
            self.first_bad = None if bad is None else warmup + bad

    def time_to_quality(self, target_fd: float) -> dict:
        if self.reached is not None:
            return {"target_fd": target_fd, "reached": True, **self.reached}
        return {
            "target_fd": target_fd,
            "reached": False,
            "iterations": None,
            "train_s": None,
            "note": f"not reached in {self.cfg.warmup_steps + self.steps_done} iterations",
        }


def _quality_check(cfg, ctx, loop: _TrainingLoop, probe, generator, done: int) -> bool:
    """FD at this point of training (rank 0), shared with every rank: stop or go on."""
    warmup = cfg.warmup_steps
    bad = _first_non_finite(ctx, loop.losses[warmup : warmup + done])
    if bad is not None:
        loop.first_bad = warmup + bad
        return True
    loop.phase.name = "quality check"
    # Running statistics are rank-local during training (see bench/train.py): average
    # them so the sampled G is the one the run would end with.
    distributed.average_buffers(ctx, generator)
    reached = 0.0
    if ctx.is_main:
        result = probe.fd(generator)
        point = {
            "iteration": warmup + done,
            "train_s": loop.warmup_s + loop.timed_s,
            "fd": result["fd"],
            "fd_name": result["fd_name"],
            "eval_s": result["seconds"],
        }
        loop.curve.append(point)
        if cfg.target_fd is not None and result["fd"] <= cfg.target_fd:
            reached = 1.0
            loop.reached = {
                "iterations": point["iteration"],
                **{k: point[k] for k in ("train_s", "fd", "fd_name")},
            }
    loop.phase.name = "timed"
    stop = distributed.all_reduce_max(ctx, torch.tensor([reached], dtype=torch.float64))
    return bool(stop.item())


def _timing_metrics(metrics: dict, loop: _TrainingLoop, ctx, device, images_per_iteration: int):
    """Per-iteration percentiles, throughput and memory, the slowest rank deciding."""
    durations = loop.timer.durations_ms()
    first_iteration_s = loop.first_iteration_s
    if first_iteration_s is None:  # no warm-up: the first timed iteration is the first one
        first_iteration_s = durations[0] / 1e3
    timed_load_s = loop.load_s[loop.cfg.warmup_steps :]
    cuda = device.type == "cuda"
    local = torch.tensor(
        durations
        + [
            loop.timed_s,
            sum(timed_load_s),
            first_iteration_s,
            loop.warmup_s,
            torch.cuda.max_memory_allocated(device) / MIB if cuda else -1.0,
            torch.cuda.max_memory_reserved(device) / MIB if cuda else -1.0,
            *(loop.first_iteration_peaks_mib or (-1.0, -1.0)),
            peak_rss_mib(),
        ],
        dtype=torch.float64,
    )
    slowest = distributed.all_reduce_max(ctx, local).tolist()
    steps = loop.steps_done
    durations, rest = slowest[:steps], slowest[steps:]
    timed_s, timed_load_total, first_iteration_s, warmup_s, *peaks, rss = rest
    peak_alloc, peak_reserved, first_alloc, first_reserved = (
        (value if cuda and value >= 0 else None) for value in peaks
    )
    images_per_s = steps * images_per_iteration / timed_s
    metrics.update(
        {
            "steps_timed": steps,
            "warmup_steps": loop.cfg.warmup_steps,
            "first_iteration_s": first_iteration_s,
            "warmup_s": warmup_s,
            "timed_s": timed_s,
            "iter_ms_p20": percentile(durations, 20),
            "iter_ms_p50": percentile(durations, 50),
            "iter_ms_p80": percentile(durations, 80),
            "iter_ms_min": min(durations),
            "iter_ms_max": max(durations),
            "images_per_s": images_per_s,
            "images_per_s_per_device": images_per_s / ctx.world_size,
            "iterations_per_s": steps / timed_s,
            "data_load_s_total": timed_load_total,
            "data_load_ms_p50": percentile([s * 1e3 for s in timed_load_s], 50),
            "data_load_fraction": timed_load_total / timed_s,
            "peak_allocated_mib": peak_alloc,
            "peak_reserved_mib": peak_reserved,
            "first_iteration_peak_allocated_mib": first_alloc,
            "first_iteration_peak_reserved_mib": first_reserved,
            "peak_rss_mib": rss,
        }
    )
    if cuda:
        used, why = gpu_memory_used_mib(device.index)
        metrics["device_memory_used_mib"], metrics["device_memory_reason"] = used, why
    else:
        metrics["device_memory_used_mib"] = None
        metrics["device_memory_reason"] = "CPU run: no device memory (see peak_rss_mib)"
    warmup = loop.cfg.warmup_steps
    timed_losses = loop.losses[warmup : warmup + steps].double().cpu()
    metrics["loss_d_final"], metrics["loss_g_final"] = timed_losses[-1].tolist()
    metrics["loss_d_mean"], metrics["loss_g_mean"] = timed_losses.mean(dim=0).tolist()


def _first_non_finite(ctx: distributed.DistContext, losses: torch.Tensor) -> int | None:
    """Index of the first iteration whose D or G loss is NaN/Inf on any rank, else None."""
    bad = (~torch.isfinite(losses)).any(dim=1).nonzero()
    local = float(bad[0, 0]) if bad.numel() else math.inf
    # MAX of the negated index is MIN over ranks: the earliest divergence anywhere.
    earliest = -distributed.all_reduce_max(ctx, torch.tensor([-local], dtype=torch.float64)).item()
    return None if math.isinf(earliest) else int(earliest)


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
    step = build_step(
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
        torch.rand((cfg.batch_size, *image_shape), device=device) * 2 - 1
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
