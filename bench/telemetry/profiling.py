"""Where the time of a training iteration goes: a `torch.profiler` summary per iteration.

A variant that misses its goal is explained by a profile, not by its throughput: which
operators and kernels take the device time, how busy the device is (an iteration made of
many short kernels leaves the device idle between launches, which is the launch-overhead
signature that CUDA graphs and fusion remove), and how many kernels one iteration launches.

`profile_iterations` runs a callable a few times under the profiler and returns a
JSON-serialisable summary with the units in its key names; `format_profile` turns that
summary into a few console lines. The module knows nothing of GANs or of the harness: the
caller profiles after its timed iterations, outside the timed region, because the profiler
slows every operator down (its wall time is not the run's iteration time).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch.autograd import DeviceType

from bench.telemetry.timing import synchronize

# Kineto activity types (FunctionEvent.activity_type) that are device work. Other CUDA-side
# events are not: "gpu_user_annotation" spans the kernels of a record_function region (it
# would count gaps as busy) and "cuda_sync" is the device waiting.
_DEVICE_WORK = {"kernel", "gpu_memcpy", "gpu_memset"}

# Console lines truncate names here; C++ kernel names run to hundreds of characters.
_NAME_CHARS = 70


def merge_intervals(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of `(start, end)` intervals as sorted, disjoint intervals.

    Kernels on concurrent streams overlap in time; the device is busy once for the overlap,
    so busy time is the length of the union, not the sum of kernel durations. Intervals
    that touch are merged; empty or inverted ones (end <= start) add nothing and are dropped.
    """
    merged: list[tuple[float, float]] = []
    for start, end in sorted((s, e) for s, e in intervals if e > s):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _length(intervals: Iterable[tuple[float, float]]) -> float:
    return sum(end - start for start, end in intervals)


def _intersection(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Length of the intersection of two lists of sorted, disjoint intervals."""
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(end - start, 0.0)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


# Device work whose name says it is a collective's: NCCL names its kernels ncclKernel_...,
# ncclDevKernel_... (all-reduce, broadcast, ...).
COLLECTIVE_MARK = "nccl"
NCCL_SHARE_FIELDS = ("nccl_share_of_device_time", "nccl_overlapped_share")


def nccl_shares(work: Iterable[tuple[str, float, float]]) -> dict:
    """How much of the device's busy time NCCL kernels take, and how much of theirs other
    device work overlaps, from (name, start, end) of each piece of device work:
    ``nccl_share_of_device_time`` (the union of NCCL intervals over the union of all) and
    ``nccl_overlapped_share`` (the part of the NCCL union that other work's union also
    covers; None without NCCL kernels). Time on the device's timeline, in any one unit."""
    nccl, other = [], []
    for name, start, end in work:
        (nccl if COLLECTIVE_MARK in name.lower() else other).append((start, end))
    nccl, other = merge_intervals(nccl), merge_intervals(other)
    busy, nccl_us = _length(merge_intervals(nccl + other)), _length(nccl)
    share = nccl_us / busy if busy > 0 else 0.0
    overlapped = _intersection(nccl, other) / nccl_us if nccl_us > 0 else None
    return dict(zip(NCCL_SHARE_FIELDS, (share, overlapped), strict=True))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    line = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return line[:300]


def _self_device_us(row) -> float:
    """Self device time in µs of a key_averages row, across torch's renames.

    `self_device_time_total` is the current name; `self_cuda_time_total` the old one (still
    present but deprecated with a FutureWarning, so it is only read when the new one is not).
    """
    for name in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(row, name, None)
        if value is not None:
            return float(value)
    return 0.0


def _device_work_kind(event, device_index: int) -> str | None:
    """ "kernel", "gpu_memcpy" or "gpu_memset" for device work on our GPU, else None."""
    if getattr(event, "device_type", None) != DeviceType.CUDA:
        return None
    if getattr(event, "is_user_annotation", False):
        return None
    # A process may see several GPUs (NCCL peers, a stray tensor); busy time is per device.
    if getattr(event, "device_index", device_index) != device_index:
        return None
    activity = getattr(event, "activity_type", None)
    if activity is None:
        # Builds whose FunctionEvent has no activity_type: kineto names copies and fills
        # "Memcpy HtoD (Pageable -> Device)", "Memset (Device)"; the rest are kernels.
        if event.name.startswith("Memcpy"):
            return "gpu_memcpy"
        if event.name.startswith("Memset"):
            return "gpu_memset"
        return "kernel"
    return activity if activity in _DEVICE_WORK else None


def _top_ops(averages: Sequence, *, cuda: bool, iterations: int, top: int) -> list[dict]:
    """Host-side operators (CPU rows of key_averages) by self device time on CUDA, by self
    CPU time on CPU. On CUDA the kernel rows are left out: each kernel's time is already the
    self device time of the operator that launched it, and `top_kernels` lists kernels."""
    rows = []
    for row in averages:
        if getattr(row, "device_type", DeviceType.CPU) != DeviceType.CPU:
            continue
        self_us = _self_device_us(row) if cuda else float(row.self_cpu_time_total)
        # An operator that launched nothing says nothing about device time.
        if cuda and self_us <= 0:
            continue
        rows.append((self_us, row))
    total_us = sum(self_us for self_us, _ in rows)
    rows.sort(key=lambda item: item[0], reverse=True)
    return [
        {
            "name": row.key,
            "calls_per_iteration": row.count / iterations,
            # Self time in the `sort_by` clock; the host cost is given as well because on
            # CUDA an op cheap on the device can still be expensive to launch.
            "self_ms_per_iteration": self_us / 1e3 / iterations,
            "self_cpu_ms_per_iteration": float(row.self_cpu_time_total) / 1e3 / iterations,
            # Of the self time of all operators, not only the listed ones.
            "share": self_us / total_us if total_us > 0 else 0.0,
        }
        for self_us, row in rows[:top]
    ]


def _summarize(
    events: Sequence,
    averages: Sequence,
    *,
    device: torch.device,
    iterations: int,
    wall_s: float,
    top: int,
) -> dict:
    """The summary dict from the profiler's events and key averages (see profile_iterations)."""
    cuda = device.type == "cuda"
    wall_ms = wall_s * 1e3 / iterations
    summary = {
        "profiler": "torch.profiler",
        "device": str(device),
        "iterations": iterations,
        "wall_ms_per_iteration": wall_ms,
        "device_busy_ms_per_iteration": None,
        "device_idle_fraction": None,
        "kernel_launches_per_iteration": None,
        "sort_by": "self_device_time" if cuda else "self_cpu_time",
        "top_ops": _top_ops(averages, cuda=cuda, iterations=iterations, top=top),
        "top_kernels": [],
    }
    if not cuda:
        return summary

    index = device.index if device.index is not None else torch.cuda.current_device()
    intervals: list[tuple[float, float]] = []
    work: list[tuple[str, float, float]] = []
    kernels = 0
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # name → [calls, µs]
    for event in events:
        kind = _device_work_kind(event, index)
        if kind is None:
            continue
        start, end = float(event.time_range.start), float(event.time_range.end)  # µs
        intervals.append((start, end))
        work.append((event.name, start, end))
        kernels += kind == "kernel"
        by_name[event.name][0] += 1
        by_name[event.name][1] += max(end - start, 0.0)
    if not intervals:
        # Without CUPTI the profiler records host events only; zeros here would read as
        # "an idle device", which is false, so the profile is reported as failed.
        raise RuntimeError("the profiler recorded no CUDA kernels (is CUPTI available?)")

    busy_ms = sum(end - start for start, end in merge_intervals(intervals)) / 1e3 / iterations
    summed_us = sum(us for _, us in by_name.values())
    ranked = sorted(by_name.items(), key=lambda item: item[1][1], reverse=True)[:top]
    summary.update(
        device_busy_ms_per_iteration=busy_ms,
        # Clamped: device and host clocks are aligned by the profiler only to within a few µs.
        device_idle_fraction=min(max(1.0 - busy_ms / wall_ms, 0.0), 1.0) if wall_ms > 0 else None,
        kernel_launches_per_iteration=kernels / iterations,
        **nccl_shares(work),
        top_kernels=[
            {
                "name": name,
                "calls_per_iteration": calls / iterations,
                "ms_per_iteration": us / 1e3 / iterations,
                # Of the summed (not merged) device work, so the shares add up to 1.
                "share": us / summed_us if summed_us > 0 else 0.0,
            }
            for name, (calls, us) in ranked
        ],
    )
    return summary


def profile_iterations(
    run_iteration: Callable[[], object],
    *,
    device: torch.device | str,
    iterations: int,
    trace_path: str | os.PathLike | None = None,
    top: int = 15,
) -> dict:
    """Run `run_iteration()` `iterations` times under torch.profiler and summarise it.

    Profiles CPU activity always and CUDA activity when `device` is CUDA, with the device
    synchronized before (earlier queued work is not ours) and after (the last kernels
    belong to the window). No profiler schedule: every asked iteration is recorded, so call
    it with the few iterations (3–10) you want in the profile, after any warm-up.

    Returns a JSON-serialisable dict (times per iteration, units in the key names):

    - ``profiler`` ("torch.profiler"), ``device`` (e.g. "cuda:0"), ``iterations``;
    - ``wall_ms_per_iteration``: synchronized `perf_counter` around the profiled loop;
      higher than unprofiled iteration time, because the profiler adds host overhead;
    - ``device_busy_ms_per_iteration``: length of the union of the kernel/memcpy/memset
      intervals on this device (concurrent streams counted once); None on CPU;
    - ``device_idle_fraction``: 1 − busy / wall; near 1 means the device waits on the host
      (launch overhead); None on CPU;
    - ``kernel_launches_per_iteration``: device kernels executed per iteration (kernels
      replayed by a CUDA graph count too, though the host launched the graph once); None
      on CPU;
    - ``sort_by``: "self_device_time" on CUDA, "self_cpu_time" on CPU;
    - ``top_ops``: up to `top` operators by `sort_by`, each ``name``,
      ``calls_per_iteration``, ``self_ms_per_iteration`` (the `sort_by` clock),
      ``self_cpu_ms_per_iteration`` and ``share`` (of all operators' self time);
    - ``nccl_share_of_device_time``, ``nccl_overlapped_share``: on CUDA, NCCL kernels'
      share of the busy time and the part of theirs other device work overlaps
      (`nccl_shares`); the harness moves them to its record's `metrics.communication`;
    - ``top_kernels``: on CUDA up to `top` device kernels (and copies) by time, each
      ``name``, ``calls_per_iteration``, ``ms_per_iteration``, ``share``; [] on CPU;
    - ``trace_path``: where the Chrome trace was written (parents created), or None;
      ``trace_error``: one line when writing it failed, else None.

    A failure of the profiler itself (a build without CUPTI, a profiler already running)
    returns ``{"error": "<one line>"}`` so that a benchmark run survives it; an exception
    raised by `run_iteration` propagates unchanged.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if top < 0:
        raise ValueError(f"top must be 0 or more, got {top}")
    device = torch.device(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)

    synchronize(device)
    failed_iteration: BaseException | None = None
    try:
        # Looked up at call time (not imported by name) so tests can replace it.
        with torch.profiler.profile(activities=activities) as prof:
            start = time.perf_counter()
            try:
                for _ in range(iterations):
                    run_iteration()
                # Errors of the caller's kernels surface here; they are the caller's too.
                synchronize(device)
            except BaseException as exc:
                failed_iteration = exc
                raise
            wall_s = time.perf_counter() - start
        summary = _summarize(
            prof.events(),
            prof.key_averages(),
            device=device,
            iterations=iterations,
            wall_s=wall_s,
            top=top,
        )
    except Exception as exc:
        if failed_iteration is None:
            return {"error": _one_line(exc)}
        if exc is failed_iteration:
            raise
        # The profiler failed while stopping after run_iteration failed: the caller's
        # error is the one that explains what happened.
        raise failed_iteration from None

    summary["trace_path"], summary["trace_error"] = None, None
    if trace_path is not None:
        path = Path(trace_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(path))
            # Some builds skip the export with only a warning (no CUPTI monitor window).
            if not path.is_file():
                raise RuntimeError("the profiler wrote no trace file")
            summary["trace_path"] = str(path)
        except Exception as exc:
            summary["trace_error"] = _one_line(exc)
    return summary


def format_profile(summary: dict) -> list[str]:
    """A few console lines: wall and busy/idle time, kernel launches, the top 5 operators."""
    if "error" in summary:
        return [f"profile: failed ({summary['error']})"]
    lines = [
        f"profile ({summary['iterations']} iterations, under the profiler): "
        f"{summary['wall_ms_per_iteration']:.3f} ms/iteration wall"
    ]
    busy = summary.get("device_busy_ms_per_iteration")
    if busy is not None:
        lines.append(
            f"device busy {busy:.3f} ms/iteration, idle {summary['device_idle_fraction']:.1%}; "
            f"{summary['kernel_launches_per_iteration']:.1f} kernel launches/iteration"
        )
    clock = summary["sort_by"].replace("_", " ")
    lines.append(f"top operators by {clock} (share, ms/iteration, calls/iteration):")
    for op in summary["top_ops"][:5]:
        name = op["name"]
        if len(name) > _NAME_CHARS:
            name = name[: _NAME_CHARS - 1] + "…"
        lines.append(
            f"  {op['share']:6.1%} {op['self_ms_per_iteration']:9.3f} ms "
            f"{op['calls_per_iteration']:6g}×  {name}"
        )
    if summary.get("trace_path"):
        lines.append(f"trace: {summary['trace_path']}")
    elif summary.get("trace_error"):
        lines.append(f"trace not written: {summary['trace_error']}")
    return lines
