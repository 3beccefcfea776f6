"""Per-iteration timing without host syncs inside the timed steps.

On CUDA each iteration is bracketed by CUDA events and the elapsed times are read once,
after the last step (torchbench and gpt-fast do the same); on CPU, where work is
synchronous, `time.perf_counter` brackets it.
"""

from __future__ import annotations

import time

import torch


class IterationTimer:
    """Collects one duration per iteration; `durations_ms()` syncs once at the end."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._marks: list = []

    def _mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        self._marks.append([self._mark(), None])

    def stop(self) -> None:
        self._marks[-1][1] = self._mark()

    def durations_ms(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [start.elapsed_time(end) for start, end in self._marks]
        return [(end - start) * 1e3 for start, end in self._marks]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
