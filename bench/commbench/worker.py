"""`python -m bench.commbench.worker OPTIONS`, in every process under torchrun: time
all-reduces of each size as nccl-tests does, and rank 0 appends the one record.

Per size: `warmup` untimed all-reduces, then `iters` timed ones, each after a barrier so
that every rank starts together; on CUDA each is timed by events around it on the
stream, on CPU by perf_counter around the call and its wait. The time of an iteration is
the slowest rank's; the record keeps the median over iterations.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import traceback

import torch
import torch.distributed as dist

from bench.commbench.bandwidth import algbw_gbps, busbw_gbps
from bench.commbench.spec import (
    ITEMSIZE,
    WORKER_MODULE,
    AllReduceSpec,
    new_record,
    resolve_backend,
)
from bench.config import ConfigError
from bench.runtime import distributed
from bench.telemetry.environment import collect_environment
from bench.telemetry.records import append_record, exit_code

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# distributed.setup picks the process group from the device: NCCL on CUDA, gloo on CPU.
DEVICE_OF_BACKEND = {"nccl": "cuda", "gloo": "cpu"}


def time_allreduce(ctx: distributed.DistContext, size: int, spec: AllReduceSpec) -> list[float]:
    """This rank's seconds per timed all-reduce of `size` bytes."""
    # Zeros stay zeros however often they are summed: no overflow in 16-bit types.
    buffer = torch.zeros(size // ITEMSIZE[spec.dtype], dtype=DTYPES[spec.dtype], device=ctx.device)
    for _ in range(spec.warmup):
        dist.all_reduce(buffer)
    if ctx.device.type == "cuda":
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(spec.iters)
        ]
        for start, end in events:
            dist.barrier()
            start.record()
            dist.all_reduce(buffer)
            end.record()
        torch.cuda.synchronize(ctx.device)
        return [start.elapsed_time(end) / 1e3 for start, end in events]
    seconds = []
    for _ in range(spec.iters):
        dist.barrier()
        begin = time.perf_counter()
        dist.all_reduce(buffer, async_op=True).wait()
        seconds.append(time.perf_counter() - begin)
    return seconds


def measure(spec: AllReduceSpec, ctx: distributed.DistContext) -> list[dict]:
    """Per size (smallest first): bytes, elements, median seconds, algorithm and bus
    bandwidth, the slowest rank deciding each iteration."""
    rows = []
    for size in spec.sizes:
        mine = torch.tensor(time_allreduce(ctx, size, spec), dtype=torch.float64)
        slowest = distributed.all_reduce_max(ctx, mine).tolist()
        time_s = statistics.median(slowest)
        rows.append(
            {
                "bytes": size,
                "elements": size // ITEMSIZE[spec.dtype],
                "time_s": time_s,
                "algbw_gbps": algbw_gbps(size, time_s),
                "busbw_gbps": busbw_gbps(size, time_s, ctx.world_size),
            }
        )
    return rows


def execute(spec: AllReduceSpec, backend: str) -> dict:
    """Measure in this process; rank 0 appends the record (ok, or failed with its reason)."""
    world_size = int(os.environ["WORLD_SIZE"])
    rank = int(os.environ["RANK"])
    device_type = DEVICE_OF_BACKEND[backend]
    local = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local) if device_type == "cuda" else torch.device("cpu")
    record = new_record(spec, backend, world_size, collect_environment(device, world_size))
    record["run"]["processes_per_node"] = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    ctx = None
    try:
        ctx = distributed.setup(device_type, spec.dist_timeout_s)
        record["sizes"] = measure(spec, ctx)
        record["status"] = "ok"
    except KeyboardInterrupt:
        record["status"], record["reason"] = "interrupted", "SIGINT during the all-reduces"
    except Exception as err:  # a failed measurement is still a record
        traceback.print_exc(file=sys.stderr)
        first_line = (str(err).strip().splitlines() or [""])[0]
        record["status"], record["reason"] = "failed", f"{type(err).__name__}: {first_line}"
    if rank == 0:
        append_record(spec.out, record)
    if ctx is not None and record["status"] == "ok":
        distributed.barrier(ctx)  # no rank tears the group down while rank 0 still writes
        distributed.teardown(ctx)
    return record


def main(argv: list[str]) -> int:
    """The worker's exit code: 2 for bad options or a machine that cannot run them (one
    line, nothing written), else the record's (bench.telemetry.records.exit_code)."""
    try:
        if not distributed.launched_by_torchrun():
            raise ConfigError(
                f"python -m {WORKER_MODULE} runs under torchrun (or: gan-bench allreduce --nproc N)"
            )
        spec = AllReduceSpec.from_cli_args(argv, nproc=int(os.environ["WORLD_SIZE"]))
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", spec.nproc))
        backend = resolve_backend(
            spec.backend, torch.cuda.is_available(), torch.cuda.device_count(), per_node
        )
    except ConfigError as err:
        print(f"gan-bench: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return exit_code(execute(spec, backend))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
