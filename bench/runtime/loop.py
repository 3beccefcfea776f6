"""The iterations of a run: warm-up, then the timed ones with their per-iteration
times, data-loading times and losses, quality checks in between (paused timing), and the
timing metrics they give, the slowest rank deciding.

Losses are copied into a device tensor and read once per phase (and at quality checks),
so the timed iterations never wait on the host.
"""

from __future__ import annotations

import math
import time

import torch

from bench.runtime import distributed
from bench.runtime.console import StepProgress
from bench.telemetry.environment import gpu_memory_used_mib, peak_rss_mib
from bench.telemetry.timing import IterationTimer, percentile, synchronize

MIB = 2**20


class TrainingLoop:
    """Warm-up and timed iterations of `step` over `source`'s batches; `phase` (the
    harness's) is told where the run is, for the reason line of a run that fails."""

    def __init__(self, cfg, ctx, step, source, n_critic: int, phase):
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
        self.first_bad = first_non_finite(self.ctx, self.losses[: self.cfg.warmup_steps])

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
            bad = first_non_finite(self.ctx, self.losses[warmup : warmup + self.steps_done])
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


def quality_check(cfg, ctx, loop: TrainingLoop, probe, generator, done: int) -> bool:
    """FD at this point of training (rank 0), shared with every rank: stop or go on."""
    warmup = cfg.warmup_steps
    bad = first_non_finite(ctx, loop.losses[warmup : warmup + done])
    if bad is not None:
        loop.first_bad = warmup + bad
        return True
    loop.phase.name = "quality check"
    # Running statistics are rank-local during training (see bench/training/step.py): average
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


def timing_metrics(metrics: dict, loop: TrainingLoop, ctx, device, images_per_iteration: int):
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


def first_non_finite(ctx: distributed.DistContext, losses: torch.Tensor) -> int | None:
    """Index of the first iteration whose D or G loss is NaN/Inf on any rank, else None."""
    bad = (~torch.isfinite(losses)).any(dim=1).nonzero()
    local = float(bad[0, 0]) if bad.numel() else math.inf
    # MAX of the negated index is MIN over ranks: the earliest divergence anywhere.
    earliest = -distributed.all_reduce_max(ctx, torch.tensor([-local], dtype=torch.float64)).item()
    return None if math.isinf(earliest) else int(earliest)
