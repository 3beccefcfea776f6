"""`gan-bench allreduce`: torchrun started here over `nproc` processes of the worker
(bench.commbench.worker), or a SLURM job of them, its record read back (or written here
when no rank could) and printed as a table."""

from __future__ import annotations

import dataclasses
import os
import sys

import torch

from bench.analysis.render import format_bytes
from bench.commbench.bandwidth import bus_factor
from bench.commbench.spec import (
    KIND,
    WORKER_MODULE,
    AllReduceSpec,
    new_record,
    resolve_backend,
    worker_argv,
)
from bench.config import ConfigError
from bench.runtime import launcher
from bench.runtime.slurm import SlurmOptions, shape_problem, slurm_environment
from bench.runtime.slurm_queue import run_as_job
from bench.telemetry.environment import collect_environment
from bench.telemetry.records import append_record, count_records, exit_code, records_since


def allreduce_command(spec: AllReduceSpec, slurm: SlurmOptions | None = None) -> int:
    """Measure on this machine (or, with `slurm`, in a SLURM job), append the record to
    `spec.out`, print the table; return the exit code of the record's status. ConfigError
    before anything runs when the machine cannot run `spec`."""
    if slurm is not None:
        record = _on_slurm(spec, slurm)
        append_record(spec.out, record)
        return _report(record, spec.out)
    backend = resolve_backend(
        spec.backend, torch.cuda.is_available(), torch.cuda.device_count(), spec.nproc
    )
    spec = dataclasses.replace(spec, backend=backend)  # the workers run what was checked
    before = count_records(spec.out)
    command = launcher.torchrun_on_this_machine(
        spec.nproc, launcher.free_loopback_port(), worker_argv(spec)
    )
    returncode, signals = launcher.run_child(command)
    written = [r for r in records_since(spec.out, before) if r.get("kind") == KIND]
    if written:
        record = written[-1]
    else:
        device = torch.device("cuda" if backend == "nccl" else "cpu")
        record = new_record(spec, backend, spec.nproc, collect_environment(device, spec.nproc))
        record["status"], record["reason"] = launcher.silent_failure(returncode, signals)
        append_record(spec.out, record)
    return _report(record, spec.out)


def _on_slurm(spec: AllReduceSpec, slurm: SlurmOptions) -> dict:
    """The measurement as one SLURM job of `spec.nproc` processes (bench.runtime.
    slurm_queue.run_as_job), over NCCL on GPU nodes and gloo on CPU ones unless named."""
    backend = spec.backend
    if backend == "auto":  # named for the job: a CPU job on a node with GPUs stays gloo
        backend = "nccl" if slurm.gpus_per_node else "gloo"
    if backend == "nccl" and not slurm.gpus_per_node:
        raise ConfigError("--backend nccl runs on GPUs: give --gpus-per-node")
    problem = shape_problem(spec.nproc, slurm)
    if problem:
        raise ConfigError(f"--nproc {spec.nproc}: {problem}")
    spec = dataclasses.replace(spec, backend=backend)

    def bare(status: str, reason: str, tail: list[str], partition: str) -> dict:
        environment = slurm_environment(partition, slurm.device_type)
        record = new_record(spec, backend, spec.nproc, environment)
        record.update(status=status, reason=reason, stderr_tail=tail)
        return record

    def args(job_out: str) -> list[str]:
        return dataclasses.replace(spec, out=job_out).to_cli_args()

    return run_as_job("gan-bench allreduce", WORKER_MODULE, args, spec.nproc, slurm, spec.out, bare)


def _report(record: dict, out: str) -> int:
    if record["status"] != "ok":
        print(f"gan-bench: allreduce {record['status']}: {record['reason']}", file=sys.stderr)
    else:
        print_table(record, out)
    return exit_code(record)


def print_table(record: dict, out: str) -> None:
    """The record's sizes as a rich table: time, algorithm and bus bandwidth."""
    from rich.console import Console
    from rich.table import Table

    env = record["environment"]
    world = record["world_size"]
    table = Table(
        title=f"all-reduce — {record['backend']}, {world} processes, {record['dtype']} — "
        f"{env.get('device_name')}",
        title_justify="left",
        caption=f"median of {record['iters']} iterations, the slowest rank deciding; "
        f"busbw = algbw × 2(n−1)/n = algbw × {bus_factor(world):.3g}; appended to {out}",
    )
    for header in ("size", "bytes", "time µs", "algbw GB/s", "busbw GB/s"):
        table.add_column(header, justify="right")
    for row in record["sizes"]:
        table.add_row(
            format_bytes(row["bytes"]),
            str(row["bytes"]),
            f"{row['time_s'] * 1e6:,.1f}",
            f"{row['algbw_gbps']:.3f}",
            f"{row['busbw_gbps']:.3f}",
        )
    tty = sys.stdout.isatty() or "COLUMNS" in os.environ
    Console(width=None if tty else 120).print(table)
