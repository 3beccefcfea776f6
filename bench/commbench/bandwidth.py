"""All-reduce arithmetic, as nccl-tests defines it (its doc/PERFORMANCE.md).

An all-reduce of S bytes that takes t seconds has algorithm bandwidth S / t. A ring
all-reduce over n ranks sends and receives 2(n - 1)/n × S bytes per rank, whatever the
algorithm really used, so bus bandwidth = algorithm bandwidth × 2(n - 1)/n is the figure
comparable with the links' peak and across world sizes. GB/s here are 10^9 bytes/s.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

GB = 1e9
NETWORKS = ("generator", "discriminator")


def bus_factor(world_size: int) -> float:
    """2(n - 1)/n: the bytes each rank moves per byte all-reduced, in a ring."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return 2 * (world_size - 1) / world_size


def algbw_gbps(size_bytes: int, time_s: float) -> float:
    """Algorithm bandwidth: the bytes all-reduced per second, in GB/s."""
    if time_s <= 0:
        raise ValueError(f"time_s must be positive, got {time_s}")
    return size_bytes / time_s / GB


def busbw_gbps(size_bytes: int, time_s: float, world_size: int) -> float:
    """Bus bandwidth: algorithm bandwidth × 2(n - 1)/n, in GB/s."""
    return algbw_gbps(size_bytes, time_s) * bus_factor(world_size)


@dataclass(frozen=True)
class Measured:
    """One allreduce record: where it was measured and its time per size."""

    environment: str  # as run rows name theirs (bench.analysis.records.environment_label)
    backend: str
    world_size: int
    dtype: str
    points: tuple[tuple[int, float], ...]  # (bytes, seconds), by size, sizes distinct


def points_of(sizes) -> tuple[tuple[int, float], ...] | None:
    """(bytes, time_s) per entry of an allreduce record's `sizes`, sorted by size; None
    when an entry lacks them or garbles them, or there is none."""
    if not isinstance(sizes, list) or not sizes:
        return None
    points = {}
    for entry in sizes:
        size = entry.get("bytes") if isinstance(entry, dict) else None
        time_s = entry.get("time_s") if isinstance(entry, dict) else None
        if (
            not isinstance(size, int)
            or isinstance(size, bool)
            or size <= 0
            or isinstance(time_s, bool)
            or not isinstance(time_s, (int, float))
            or not math.isfinite(time_s)
            or time_s <= 0
        ):
            return None
        points[size] = float(time_s)
    return tuple(sorted(points.items()))


def time_at(points: Sequence[tuple[int, float]], size_bytes: int) -> float:
    """Seconds an all-reduce of `size_bytes` takes, from the measured (bytes, seconds).

    Between two measured sizes, log time is linear in log size: exact both where time is
    flat (latency-bound) and where it grows in proportion to size (bandwidth-bound), where
    linear interpolation in log size alone would overstate the time by up to 6% over a
    doubling. Below the smallest size, the smallest's time (latency does not shrink);
    above the largest, the largest's bandwidth (a larger message only adds bytes).
    """
    if not points:
        raise ValueError("no measured sizes")
    sizes = [size for size, _ in points]
    if size_bytes <= sizes[0]:
        return points[0][1]
    if size_bytes >= sizes[-1]:
        return points[-1][1] * size_bytes / sizes[-1]
    i = bisect.bisect_left(sizes, size_bytes)
    (s0, t0), (s1, t1) = points[i - 1], points[i]
    if size_bytes == s1:
        return t1
    w = (math.log(size_bytes) - math.log(s0)) / (math.log(s1) - math.log(s0))
    return math.exp(math.log(t0) + w * (math.log(t1) - math.log(t0)))


def _positive_ints(values) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    )


def implied_allreduce_s(communication: dict, points: Sequence[tuple[int, float]]) -> float | None:
    """Seconds per iteration a run's gradient all-reduces take at the measured times:
    per network, its buckets' times summed, times the backward passes per iteration
    (all-reduce calls per iteration / buckets). None when the run's `communication`
    block lacks a network's buckets or calls, or garbles them."""
    total = 0.0
    for name in NETWORKS:
        block = communication.get(name)
        if not isinstance(block, dict):
            return None
        buckets, calls = block.get("bucket_bytes"), block.get("allreduce_calls_per_iteration")
        if (
            not _positive_ints(buckets)
            or isinstance(calls, bool)
            or not isinstance(calls, (int, float))
            or not math.isfinite(calls)
            or calls < 0
        ):
            return None
        if not buckets:
            if calls:
                return None  # all-reduces with no bucket to size them by
            continue
        passes = calls / len(buckets)
        total += passes * sum(time_at(points, size) for size in buckets)
    return total
