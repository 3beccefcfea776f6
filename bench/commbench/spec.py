"""One all-reduce measurement's options, validated once, and the command that starts its
worker in every process: `python -m bench.commbench.worker` followed by `to_cli_args`,
as `python -m bench.run` follows RunConfig.to_cli_args. Any launcher (torchrun started by
`gan-bench allreduce`, a cluster job) starts the worker from `worker_argv`.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass

from bench.config import ConfigError, check_results_path
from bench.telemetry.records import SCHEMA_VERSION

WORKER_MODULE = "bench.commbench.worker"
KIND = "allreduce"
BACKENDS = ("auto", "gloo", "nccl")
ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}
# Every power of two from 4 KiB to 64 MiB: DDP's buckets move with the model, its caps and
# its first iteration, so a doubling range spanning them all serves every run (README).
DEFAULT_SIZES = tuple(4096 << i for i in range(15))
_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def parse_sizes(text: str) -> tuple[int, ...]:
    """Sizes in bytes from a comma list: whole numbers, optionally with KiB, MiB or GiB."""
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"(\d+)\s*(B|KiB|MiB|GiB)?", part)
        if not match:
            raise ConfigError(f"--sizes {text!r}: give bytes as a comma list, e.g. 4096,64KiB,1MiB")
        sizes.append(int(match.group(1)) * _UNITS[match.group(2) or ""])
    return tuple(sizes)


@dataclass(frozen=True)
class AllReduceSpec:
    """What `gan-bench allreduce` measures: all-reduces of each size, over `nproc`
    processes, here or in a SLURM job (workers take the world size torchrun gives them)."""

    backend: str = "auto"  # auto: nccl on CUDA, gloo on CPU (bench.runtime.distributed)
    sizes: tuple[int, ...] = DEFAULT_SIZES
    dtype: str = "float32"
    iters: int = 20
    warmup: int = 5
    out: str = "results/allreduce.jsonl"
    dist_timeout_s: int = 120
    nproc: int = 2

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.dtype not in ITEMSIZE:
            raise ConfigError(f"--dtype {self.dtype!r}: choose one of {', '.join(ITEMSIZE)}")
        if not self.sizes:
            raise ConfigError("--sizes is empty; give bytes as a comma list, e.g. 4096,1MiB")
        itemsize = ITEMSIZE[self.dtype]
        for size in self.sizes:
            if size <= 0 or size % itemsize:
                raise ConfigError(
                    f"--sizes: {size} bytes is not a positive multiple of {itemsize} "
                    f"({self.dtype}'s size)"
                )
        # Sorted and distinct: the record's sizes and the table read smallest first.
        object.__setattr__(self, "sizes", tuple(sorted(set(self.sizes))))
        for name, least in (("iters", 1), ("warmup", 0), ("dist_timeout_s", 1)):
            if getattr(self, name) < least:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be at least {least}, got {getattr(self, name)}")
        if self.nproc < 2:
            raise ConfigError(f"--nproc {self.nproc}: an all-reduce needs at least 2 processes")
        check_results_path(self.out)

    def to_cli_args(self) -> list[str]:
        """The options that rebuild this spec in a worker (defaults left out). --nproc
        stays behind: the workers are the processes."""
        args: list[str] = []
        for field_ in dataclasses.fields(self):
            value = getattr(self, field_.name)
            if field_.name == "nproc" or value == field_.default:
                continue
            text = ",".join(map(str, value)) if field_.name == "sizes" else str(value)
            args += ["--" + field_.name.replace("_", "-"), text]
        return args

    @classmethod
    def from_cli_args(cls, argv: list[str], nproc: int) -> AllReduceSpec:
        """The spec `to_cli_args` wrote (sizes may carry units, as on the command line)."""
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "nproc"}
        values: dict = {}
        if len(argv) % 2:
            raise ConfigError(f"options come as --name value pairs, got {' '.join(argv)!r}")
        for flag, text in zip(argv[::2], argv[1::2], strict=True):
            name = flag.removeprefix("--").replace("-", "_")
            if not flag.startswith("--") or name not in fields:
                raise ConfigError(f"unknown option {flag!r}; options: {_flags(fields)}")
            if name == "sizes":
                values[name] = parse_sizes(text)
            elif fields[name].type in (int, "int"):
                if not re.fullmatch(r"-?\d+", text):
                    raise ConfigError(f"{flag} {text!r} is not a whole number")
                values[name] = int(text)
            else:
                values[name] = text
        return cls(**values, nproc=nproc)


def _flags(fields: dict) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in fields)


def worker_argv(spec: AllReduceSpec) -> list[str]:
    """The worker's module and options, for torchrun (or any launcher) to start in every
    process: `python -m bench.commbench.worker OPTIONS` is `[*python, *worker_argv]`."""
    return ["-m", WORKER_MODULE, *spec.to_cli_args()]


def resolve_backend(backend: str, cuda_available: bool, gpus_per_node: int, nproc: int) -> str:
    """The backend a spec runs on a node with these GPUs, `nproc` processes on it;
    ConfigError when that node cannot run it."""
    if backend == "auto":
        backend = "nccl" if cuda_available else "gloo"
    if backend == "nccl" and not cuda_available:
        raise ConfigError("--backend nccl needs CUDA GPUs; this machine has none (use gloo)")
    if backend == "nccl" and nproc > gpus_per_node:
        raise ConfigError(
            f"--backend nccl runs one process per GPU: {nproc} processes, {gpus_per_node} GPUs"
        )
    return backend


def new_record(spec: AllReduceSpec, backend: str, world_size: int, environment: dict) -> dict:
    """An allreduce record before its measurements: status and sizes are filled in by
    whoever writes it."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "run_id": uuid.uuid4().hex,
        "status": None,
        "reason": None,
        "environment": environment,
        "backend": backend,
        "world_size": world_size,
        "dtype": spec.dtype,
        "iters": spec.iters,
        "warmup": spec.warmup,
        "sizes": [],
        "run": {"launcher": "torchrun"},
    }
