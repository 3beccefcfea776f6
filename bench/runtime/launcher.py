"""`gan-bench run --nproc N` (and `gan-bench allreduce`): start torchrun for the user on
this machine, or with `--launcher slurm` submit the run as a SLURM job and wait for it.

The child command is torchrun (`python -m bench.torchrun`: torch.distributed.run with its
failure report cut to one line) with a c10d rendezvous on a free loopback port (what
`--standalone` does, with the port chosen here so it is known), and a worker: for a run,
`-m bench.run` followed by the options that rebuild the same RunConfig in every worker.
When torchrun fails and no rank wrote the run's record (a rank killed outright, or one
stuck inside an NCCL collective until torchrun stopped it), the launcher writes it.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
import sys

import torch

from bench.config import RunConfig, check_device
from bench.runtime.distributed import torchrun_argv
from bench.runtime.slurm import SlurmOptions, check_nodes, run_args, slurm_environment
from bench.runtime.slurm_queue import run_as_job
from bench.telemetry.environment import collect_environment
from bench.telemetry.records import (
    append_record,
    bare_record,
    count_records,
    exit_code,
    records_since,
)


def resolve_device(cfg: RunConfig) -> str:
    """ "cuda" or "cpu" for this config on this machine; ConfigError if it cannot run here."""
    return check_device(cfg, torch.cuda.is_available(), torch.cuda.device_count())


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_on_this_machine(nproc: int, port: int, worker: list[str]) -> list[str]:
    """torchrun starting `nproc` processes of `worker` (`["-m", module, *options]`) here."""
    return torchrun_argv(1, nproc, f"127.0.0.1:{port}", worker)


def torchrun_command(cfg: RunConfig, port: int) -> list[str]:
    return torchrun_on_this_machine(cfg.nproc, port, ["-m", "bench.run", *cfg.to_cli_args()])


def run_child(command: list[str]) -> tuple[int, list[int]]:
    """Run `command` (torchrun) to completion: its exit code, and the signals passed on.

    SIGINT/SIGTERM sent to this process alone are passed on to torchrun, which stops its
    workers; a worker that handles them then writes its record before exiting.
    """
    child = subprocess.Popen(command)
    forwarded: list[int] = []

    def forward(signum, _frame):
        forwarded.append(signum)
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        returncode = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return returncode, forwarded


def launch(cfg: RunConfig) -> int:
    """Run torchrun to completion and return the run's exit code, from its record's status
    as a single-process run does (records.exit_code); rank 0 writes the record of an
    interrupted run (run_child)."""
    records_before = count_records(cfg.out)
    returncode, forwarded = run_child(torchrun_command(cfg, free_loopback_port()))
    written = records_since(cfg.out, records_before)
    if written:
        return exit_code(written[-1])
    if returncode == 0:  # never expected: rank 0 writes the record of every run that ends
        return 0
    record = _record_of_silent_failure(cfg, returncode, forwarded)
    append_record(cfg.out, record)
    return exit_code(record)


def silent_failure(returncode: int, signals: list[int]) -> tuple[str, str]:
    """(status, reason) of a torchrun that ended with no rank writing a record."""
    if signals:
        return (
            "interrupted",
            f"{signal.Signals(signals[0]).name} to gan-bench; no rank wrote a record",
        )
    return "failed", (
        f"torchrun exit code {returncode} and no rank wrote a record: a rank was killed "
        "(the out-of-memory killer?) or stopped while waiting in a collective; the "
        "ranks' own messages are in their output"
    )


def _record_of_silent_failure(cfg: RunConfig, returncode: int, signals: list[int]) -> dict:
    status, reason = silent_failure(returncode, signals)
    return bare_record(
        config=cfg.to_dict(),
        world_size=cfg.nproc,
        variant=cfg.variant_name,
        variant_fields=cfg.variant_fields,
        environment=collect_environment(torch.device(resolve_device(cfg)), cfg.nproc),
        status=status,
        reason=reason,
    )


def launch_on_slurm(cfg: RunConfig, options: SlurmOptions) -> int:
    """`gan-bench run --launcher slurm`: the run as one SLURM job, waited for; its record,
    amended with the job (`run.slurm`), appended to --out; the exit code from the record's
    status. Ctrl-C cancels the job (scancel) and records it."""
    check_nodes(cfg, options)
    # The nodes' device, named: a CPU job on a node with GPUs must not pick CUDA up.
    cfg = dataclasses.replace(cfg, device=options.device_type)

    def bare(status: str, reason: str, tail: list[str], partition: str) -> dict:
        record = bare_record(
            config=cfg.to_dict(),
            world_size=cfg.nproc,
            variant=cfg.variant_name,
            variant_fields=cfg.variant_fields,
            environment=slurm_environment(partition, options.device_type),
            status=status,
            reason=reason,
        )
        record["stderr_tail"] = tail
        return record

    def args(job_out: str) -> list[str]:
        return run_args(dataclasses.replace(cfg, out=job_out))

    name = f"gan-bench {cfg.model}"
    record = run_as_job(name, "bench.run", args, cfg.nproc, options, cfg.out, bare)
    append_record(cfg.out, record)
    rate = (record.get("metrics") or {}).get("images_per_s")
    said = f"{rate:,.0f} images/s" if rate else record.get("reason", "")
    print(
        f"gan-bench: SLURM job {record['run']['slurm']['job_id']} "
        f"{record['run']['slurm']['state']}: {record['status']} ({said}); record appended "
        f"to {cfg.out}",
        file=sys.stderr,
    )
    return exit_code(record)
