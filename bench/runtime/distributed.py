"""Device and process-group resolution: the one place that decides them.

Under torchrun (RANK, WORLD_SIZE and LOCAL_RANK in the environment) the process joins a
process group: NCCL on CUDA with device cuda:LOCAL_RANK, gloo on CPU, with a timeout so a
dead peer ends the run instead of hanging it. A single process never creates a group.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def torchrun_argv(
    nnodes: int, nproc_per_node: int, endpoint: str, worker: list[str], rdzv_id: str | None = None
) -> list[str]:
    """torchrun (`python -m bench.torchrun`: its failure report cut to one line) starting
    `nproc_per_node` processes of `worker` (`["-m", module, *options]`) on each of `nnodes`
    nodes, with a c10d rendezvous at `endpoint` (host:port)."""
    return [
        sys.executable,
        "-m",
        "bench.torchrun",
        "--nnodes",
        str(nnodes),
        "--nproc-per-node",
        str(nproc_per_node),
        "--rdzv-backend",
        "c10d",
        *(["--rdzv-id", rdzv_id] if rdzv_id else []),
        "--rdzv-endpoint",
        endpoint,
        *worker,
    ]


def launched_by_torchrun() -> bool:
    return all(var in os.environ for var in _TORCHRUN_VARS)


@dataclass(frozen=True)
class DistContext:
    """Where this process runs and who its peers are."""

    device: torch.device
    backend: str | None  # "nccl", "gloo", or None for a single process
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_type: str, timeout_s: int) -> DistContext:
    """Pick the device and, under torchrun, initialise the process group."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        device = (
            torch.device("cuda", torch.cuda.current_device())
            if device_type == "cuda"
            else torch.device("cpu")
        )
        return DistContext(device=device, backend=None)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    if device_type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    kwargs = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(
        backend=backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs
    )
    return DistContext(
        device=device, backend=backend, rank=rank, local_rank=local_rank, world_size=world_size
    )


# A run has one record, written by the first rank to claim it: rank 0 when the run ends
# (well or not), or a rank whose own error ended the run. Rank 0 alone could not: when
# another rank fails, rank 0 under NCCL may wait inside a collective, where no signal
# handler runs, until torchrun kills it. The claim is a counter in the process group's store
# (under torchrun its agent hosts it, so it outlives a dead rank), one per torchrun restart.
RECORD_CLAIM_KEY = "gan-bench/record-claim"


def claim_record(ctx: DistContext) -> bool:
    """True for the one process that is to write the run's record."""
    if not ctx.distributed:
        return True
    key = f"{RECORD_CLAIM_KEY}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    try:
        return dist.distributed_c10d._get_default_store().add(key, 1) == 1
    except Exception:  # the store is unreachable (its host is gone): rank 0 writes, as ever
        return ctx.is_main


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_max(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over ranks (the slowest rank decides timings and peaks)."""
    if not ctx.distributed:
        return values
    comm = values.to(ctx.device if ctx.backend == "nccl" else "cpu", copy=True)
    dist.all_reduce(comm, op=dist.ReduceOp.MAX)
    return comm.to(values.device)


def average_buffers(ctx: DistContext, module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks.

    DDP never syncs buffers in forward (see bench/training/step.py), so each rank's running
    statistics follow its own data shard during training. They only matter in eval mode,
    so they are averaged once, before anything samples from the model.
    """
    if not ctx.distributed:
        return
    for buf in module.buffers():
        if buf.is_floating_point():
            dist.all_reduce(
                buf, op=dist.ReduceOp.AVG if ctx.backend == "nccl" else dist.ReduceOp.SUM
            )
            if ctx.backend != "nccl":  # gloo has no AVG
                buf.div_(ctx.world_size)


def parameter_digest(module: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) over a module's parameters, bit for bit.

    DDP keeps replicas identical bit for bit, so equal digests on every rank prove the
    gradients were synchronised.
    """
    digest = hashlib.sha256()
    for name, param in module.named_parameters():
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def gather_objects(ctx: DistContext, obj) -> list:
    """Every rank's `obj`, in rank order (a list of one on a single process)."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out
