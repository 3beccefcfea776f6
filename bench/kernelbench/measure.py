"""Measurement helpers of the kernel benchmarks: on a CUDA GPU, do_bench quantiles, a
call's device time replayed from a CUDA graph and its host time, and the device's own
rates (copy bandwidth, dense matmul) to set results against; on any machine, launches
stubbed out and counted, and a host time per call that needs no device.

Nothing here knows a model or an op's cases; ``batchnorm.py``, ``narrow_conv.py`` and
``host.py`` time their cases with these.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from types import ModuleType

import torch

from kernels import availability
from kernels.errors import KernelUnavailableError

__all__ = [
    "HOST_CALLS",
    "HOST_TURNS",
    "PASSES",
    "LaunchCount",
    "check_choices",
    "copy_bandwidth_gbps",
    "cpu_blocks_kept",
    "do_bench_quantiles",
    "graph_replay_ms",
    "host_ms_per_call",
    "host_us_in_turns",
    "launches_stubbed",
    "matmul_tflops",
    "one_cpu_thread",
    "require_cuda",
]

# What a benchmark times: the training forward, the backward alone, or both.
PASSES = ("forward", "backward", "forward+backward")
# Calls whose host time is averaged (``host_ms_per_call``): few enough that their launches
# (6 a fused-op forward + backward on the split path, about 10 for eager) stay well inside
# the CUDA launch queue (about 1,000 entries), which would otherwise block the host on the
# device and time the device instead.
HOST_CALLS = 50
# Turns of HOST_CALLS calls whose median ``host_us_in_turns`` takes.
HOST_TURNS = 15


def require_cuda() -> None:
    """KernelUnavailableError unless a CUDA GPU runs compiled (not interpreted) kernels."""
    if not torch.cuda.is_available():
        raise KernelUnavailableError(
            "kernel benchmarks need a CUDA GPU (the Triton interpreter is for tests, not timing)"
        )
    if availability.INTERPRETED:
        raise KernelUnavailableError(
            "kernel benchmarks refuse to time the Triton interpreter; unset TRITON_INTERPRET"
        )


def check_choices(impls: Sequence[str], allowed_impls: Sequence[str], passes: Sequence[str]):
    """ValueError naming any implementation or pass not among those allowed."""
    for value, allowed, what in ((impls, allowed_impls, "impl"), (passes, PASSES, "pass")):
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"unknown {what}(s) {bad}; allowed: {', '.join(allowed)}")


def do_bench_quantiles(
    fn: Callable[[], object], rep_ms: int, warmup_ms: int
) -> tuple[float, float, float]:
    """``triton.testing.do_bench``'s median, p20 and p80 ms of ``fn``."""
    from triton.testing import do_bench

    p50, p20, p80 = do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
    return float(p50), float(p20), float(p80)


def graph_replay_ms(fn: Callable[[], object], rep_ms: int) -> tuple[float | None, str | None]:
    """Median ms of one ``fn`` call replayed from a CUDA graph: the device's time with the
    host's launch overhead taken out, set beside do_bench's time so that a small layer shows
    whether launches or kernels cost it. ``(None, reason)`` when the call cannot be captured.

    Captured the way the harness captures a training iteration (bench.speedups.cuda_graph):
    warmed up on the side stream that then captures, with ``thread_local`` errors, because
    autograd runs the backward on its own thread. ``triton.testing.do_bench_cudagraph``
    warms up on one stream and captures on another under ``global`` errors; its capture of
    forward+backward failed on an H100 (torch 2.11), and a failed capture leaves the CUDA
    generator believing it is still capturing, so every later random op of the process
    raised "Offset increment outside graph capture" (`_end_failed_capture`)."""
    # The allocator cannot hand cached memory back to the driver while a capture runs, so
    # blocks cached by earlier cases (and their graphs' pools) are released first: on an H100
    # the last (256, 64, 64, 64) fp32 case ran out of memory in its capture without this.
    gc.collect()
    torch.cuda.empty_cache()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(stream):
            for _ in range(3):  # autograd and the allocator settle on the capture stream
                fn()
            # Calls per graph: enough for about rep_ms of device time per replay.
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(5):
                fn()
            end.record()
            end.synchronize()
            calls = max(1, min(1000, round(rep_ms / max(start.elapsed_time(end) / 5, 1e-3))))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
            for _ in range(calls):
                fn()
        graph.replay()  # the first replay uploads the graph: not timed
        times = []
        for _ in range(10):
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / calls)
    except Exception as exc:
        with contextlib.suppress(Exception):  # a device already broken: the reason says why
            _end_failed_capture()
        return None, f"not captured: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    finally:
        torch.cuda.current_stream().wait_stream(stream)
    return float(sorted(times)[len(times) // 2]), None


@contextlib.contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Torch's CPU ops on one thread inside the block. A GPU op's host path runs no CPU
    kernels; eager's on small CPU tensors would otherwise meet in the intra-op thread pool,
    whose synchronisation a shared machine stretches: on a 2-core CPU with the other core
    busy, eager's forward + backward at (2, 8, 2, 2) took 300 µs on 2 threads, 130 on 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def host_us_in_turns(
    sides: Mapping[str, Callable[[], AbstractContextManager[Callable[[], object]]]],
    *,
    calls: int = HOST_CALLS,
    turns: int = HOST_TURNS,
) -> dict[str, float]:
    """Host µs per call of each side's function, which touches no device, timed in turns so
    that a shared machine whose load changes meanwhile weighs on every side alike: each
    turn enters each side's context (which yields the function), makes a few untimed calls
    and times ``calls`` more back to back, on one CPU thread (``one_cpu_thread``). Each
    side's figure is its median over turns."""
    per_call: dict[str, list[float]] = {name: [] for name in sides}
    with one_cpu_thread():
        for _ in range(turns):
            for name, enter in sides.items():
                with enter() as fn:
                    for _ in range(3):
                        fn()
                    start = time.perf_counter()
                    for _ in range(calls):
                        fn()
                    per_call[name].append((time.perf_counter() - start) * 1e6 / calls)
    return {name: statistics.median(values) for name, values in per_call.items()}


# glibc's mallopt parameters and their defaults (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


@contextlib.contextmanager
def cpu_blocks_kept() -> Iterator[bool]:
    """Inside, freed CPU memory is kept for the next allocation, as CUDA's caching allocator
    keeps device memory; yields whether it could be (glibc only).

    glibc maps every block over 32 MiB afresh and unmaps it when freed: on a 2-core CPU
    12 µs per tensor, and 155 µs against 88 for the fused op's forward + backward at
    (128, 64, 32, 32) fp32, launches stubbed: a cost no GPU run pays, which would make a
    host time depend on the tensors' size. With mapping off and no trimming, freed blocks
    stay in the heap for reuse; after the block glibc's default limits are set again (no
    longer adapting to the sizes freed) and the heap is trimmed."""
    try:
        libc = ctypes.CDLL(None)
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        yield False
        return
    kept = bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) and mallopt(_M_MMAP_MAX, 0))
    try:
        yield kept
    finally:
        mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        malloc_trim(0)


def host_ms_per_call(fn: Callable[[], object]) -> float:
    """Host ms per call of ``fn``: the wall time of issuing HOST_CALLS calls back to back,
    the device left to catch up afterwards. Where this exceeds the device's time
    (``graph_replay_ms``), the host sets the pace, as do_bench's time then shows."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(HOST_CALLS):
        fn()
    host_s = time.perf_counter() - start
    torch.cuda.synchronize()
    return host_s * 1e3 / HOST_CALLS


class LaunchCount:
    """What an ops module's ``wrap_triton`` hands back inside ``launches_stubbed``: every
    ``kernel[grid](...)`` call is counted in ``launches`` and launches nothing."""

    def __init__(self) -> None:
        self.launches = 0

    def __call__(self, kernel) -> LaunchCount:
        return self

    def __getitem__(self, grid) -> Callable[..., None]:
        return self._launch

    def _launch(self, *args, **kwargs) -> None:
        self.launches += 1


@contextlib.contextmanager
def launches_stubbed(ops: ModuleType) -> Iterator[LaunchCount]:
    """Skip every Triton launch that module ``ops`` makes through its ``wrap_triton``
    (outputs are left unwritten), counting them: an op's host time without its launches,
    so that the two host times split the op's own Python from Triton's launcher, and how
    many launches a call makes."""
    real = ops.wrap_triton
    count = LaunchCount()
    ops.wrap_triton = count
    try:
        yield count
    finally:
        ops.wrap_triton = real


def _end_failed_capture() -> None:
    """Undo what a failed capture leaves behind. A capture that fails raises before it tells
    the CUDA generators that it ended (they are told only after a capture succeeds), so the
    default generator goes on believing it is inside one and refuses every later random op.
    A capture that succeeds, of one trivial kernel, tells them."""
    torch.cuda.synchronize()
    scratch = torch.zeros(1, device="cuda")
    with torch.cuda.graph(torch.cuda.CUDAGraph(), capture_error_mode="thread_local"):
        scratch.add_(1)
    torch.cuda.synchronize()


def copy_bandwidth_gbps(
    device: torch.device | str = "cuda", *, nbytes: int = 1 << 28, rep_ms: int = 100
) -> float:
    """Device copy bandwidth in GB/s: bytes read + written by ``dst.copy_(src)`` / median time.

    ``nbytes`` (256 MiB by default) is well beyond L2, so this is DRAM bandwidth.
    """
    require_cuda()
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms, _, _ = do_bench_quantiles(lambda: dst.copy_(src), rep_ms, 25)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def matmul_tflops(
    device: torch.device | str = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    *,
    n: int = 8192,
    rep_ms: int = 200,
) -> float:
    """Dense matmul rate the device reaches, TFLOP/s: an n x n x n product (2 n^3 FLOPs)
    over its median time. What cuBLAS sustains here, below the datasheet peak (clocks,
    power): the denominator of an MFU "of the measured matrix rate"."""
    require_cuda()
    a = torch.randn((n, n), device=device, dtype=dtype)
    b = torch.randn((n, n), device=device, dtype=dtype)
    ms, _, _ = do_bench_quantiles(lambda: a @ b, rep_ms, 50)
    return 2 * n**3 / (ms * 1e-3) / 1e12
