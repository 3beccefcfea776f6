"""FLOPs of a training iteration and what they say about the hardware (TFLOP/s, MFU)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.telemetry.hardware import peak_tflops


class _GlobalOnly:
    """Stands in for FlopCounterMode's per-module tracker.

    The tracker attributes FLOPs to modules through backward hooks, and those hooks make
    `torch.autograd.grad` fail ("A leaf node was passed to _will_engine_execute_node"),
    which the WGAN-GP penalty calls. We only need the total, which FlopCounterMode keeps
    under "Global".
    """

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs (2 per multiply-add, convolutions and matmuls) of running `fn` once."""
    counter = FlopCounterMode(display=False)
    if hasattr(counter, "mod_tracker"):
        counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return int(counter.get_total_flops())


def compute_metrics(
    flops_per_iteration: int,
    *,
    images_per_iteration: int,
    world_size: int,
    steps: int,
    timed_s: float,
    device: torch.device,
    device_name: str,
    precision: str,
) -> dict:
    """Achieved TFLOP/s (all devices and per device) and MFU against the published peak.

    `flops_per_iteration` and `images_per_iteration` are per process; every process runs
    the same work, so the global rate is world_size times the per-process one.
    """
    achieved = flops_per_iteration * world_size * steps / timed_s / 1e12
    if device.type == "cuda":
        peak, note = peak_tflops(device_name, precision)
    else:
        peak, note = None, "CPU run: no published peak for CPUs"
    return {
        "flops_per_iteration_per_process": flops_per_iteration,
        "flops_per_real_image": flops_per_iteration / images_per_iteration,
        "achieved_tflops": achieved,
        "achieved_tflops_per_device": achieved / world_size,
        "peak_tflops_per_device": peak,
        "peak_tflops_source": note if peak else None,
        "mfu": achieved / world_size / peak if peak else None,
        "mfu_reason": None if peak else note,
    }
