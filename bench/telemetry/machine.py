"""The machine runs are planned and checked for: where points run (CUDA or CPU), how many
GPUs and host cores there are, and whether Triton's kernels can run (installed; compiled
for a GPU or interpreted on the CPU). Detected here, or named for a machine other than
this one (`gan-bench sweep --dry-run --machine cuda:8`), so a plan can be sized from a
laptop."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Machine:
    """What a run or a sweep can use here."""

    device_type: str  # "cuda" or "cpu": where every run goes
    gpu_count: int
    cpu_cores: int
    triton_installed: bool
    triton_interpret: bool  # TRITON_INTERPRET=1: Triton kernels run on the CPU (slowly)
    named: bool = False  # given by name for planning (`named_machine`), not this machine

    @property
    def cuda(self) -> bool:
        return self.device_type == "cuda"


def triton_interpret_requested() -> bool:
    """TRITON_INTERPRET read as Triton reads it (1, true, on, yes, y; any case): Triton's
    kernels then run on the CPU through its interpreter. (kernels' own availability check
    knows whether they really were built so; asking it would import triton.)"""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes", "y")


def usable_cpu_cores() -> int:
    """The cores this process may use (cgroups, taskset), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def this_host(device_type: str, gpus: int) -> Machine:
    """This host's cores and Triton, running on `device_type` with `gpus` GPUs."""
    return Machine(
        device_type=device_type,
        gpu_count=gpus,
        cpu_cores=usable_cpu_cores(),
        triton_installed=importlib.util.find_spec("triton") is not None,
        triton_interpret=triton_interpret_requested(),
    )


def detect_machine(device: str = "auto") -> Machine:
    """This machine; `device` is auto (CUDA when present), cpu or cuda. Whether a GPU
    that was asked for is present is the caller's to check (`gpu_count`)."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return this_host("cuda" if gpus and device != "cpu" else "cpu", gpus)


# Host cores assumed per GPU for a machine named, not detected: an 8-GPU server has
# 100-200 cores, and the sweep's compile-ahead jobs scale with them.
CORES_PER_NAMED_GPU = 16


def named_machine(text: str) -> Machine:
    """A machine given as `cuda:N` (N GPUs, Triton compiled for them) or `cpu:N` (N cores,
    Triton's interpreter off). ValueError, for people, on anything else."""
    kind, _, count = text.strip().partition(":")
    if kind not in ("cuda", "cpu") or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"--machine {text!r}: give cuda:N (N GPUs) or cpu:N (N cores), e.g. cuda:8"
        )
    n = int(count)
    if kind == "cuda":
        return Machine("cuda", n, n * CORES_PER_NAMED_GPU, True, False, named=True)
    return Machine("cpu", 0, n, True, False, named=True)
