"""Runs on a SLURM cluster: the options (`SlurmOptions`, read by `gan-bench run` and
`gan-bench sweep`), the shape of a run's job (`job_shape`), the sbatch parameters
submitit is given, and `NodeCommand`, what each node of the job runs.

A run of N processes is one job: nodes = ceil(N / processes per node), one task per node,
and each task runs torchrun with a c10d rendezvous on the job's first node. One task per
node rather than one per GPU: torchrun then starts, watches and stops the workers of its
node exactly as `gan-bench run --nproc N` does on one machine, and its agent hosts the
rendezvous store through which the first failing rank claims the run's record (a store
that outlives a dead rank). It is also how torchtitan and most cluster recipes run
(`srun torchrun --nnodes N --rdzv-backend c10d ...`).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from bench.config import ConfigError, RunConfig, check_machine
from bench.runtime.distributed import torchrun_argv
from bench.telemetry.environment import checkout_pythonpath
from bench.telemetry.machine import Machine, this_host

LAUNCHERS = ("local", "slurm")
# submitit asks SLURM for this signal so many seconds before the time limit; the node
# passes it on to torchrun as SIGTERM, and the run writes its record before the kill.
WARNING_SIGNAL_S = 60
# The rendezvous port on the job's first node, derived from the job id so that jobs
# sharing a node do not collide.
_PORT_BASE, _PORT_SPAN = 20000, 20000


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how the jobs run; each field is an option of `gan-bench run` and
    `gan-bench sweep` with `--launcher slurm` (its help in the metadata)."""

    partition: str | None = field(
        default=None, metadata={"help": "SLURM partition of the jobs (default: the cluster's)."}
    )
    account: str | None = field(default=None, metadata={"help": "SLURM account to charge."})
    gpus_per_node: int | None = field(
        default=None,
        metadata={
            "help": "GPUs per node: the jobs run on CUDA, one process per GPU, ceil(world "
            "size / this) nodes. Without it the jobs run on the nodes' CPUs, one node each."
        },
    )
    cpus_per_task: int | None = field(
        default=None,
        metadata={
            "help": "CPUs of each node's task, shared by its processes (default: one per "
            "process; give more for torch.compile's workers and data loading)."
        },
    )
    time_limit: int = field(
        default=60, metadata={"help": "Each job's time limit in minutes (sbatch --time)."}
    )
    slurm_option: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "Another sbatch option as KEY=VALUE or KEY (repeatable), e.g. qos=high, "
            "constraint=h100, reservation=bench."
        },
    )
    max_jobs: int = field(default=4, metadata={"help": "Jobs in the queue at once."})
    exclusive: bool = field(
        default=True,
        metadata={"help": "A node to each job alone (sbatch --exclusive): timing needs it."},
    )

    def __post_init__(self):
        for name in ("gpus_per_node", "cpus_per_task"):
            value = getattr(self, name)
            if value is not None and value < 1:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be at least 1, got {value}")
        if self.time_limit < 1:
            raise ConfigError(f"--time-limit is in minutes, at least 1; got {self.time_limit}")
        if self.max_jobs < 1:
            raise ConfigError(f"--max-jobs must be at least 1, got {self.max_jobs}")
        self.extra_parameters()  # a malformed --slurm-option is refused here

    @property
    def device_type(self) -> str:
        return "cuda" if self.gpus_per_node else "cpu"

    def device_problem(self, device: str) -> str | None:
        """Why `--device device` contradicts where the jobs run, or None."""
        if device in ("auto", self.device_type):
            return None
        given = "--gpus-per-node given" if self.gpus_per_node else "no --gpus-per-node"
        return (
            f"--device {device} with --launcher slurm: the jobs run on {self.device_type} ({given})"
        )

    def extra_parameters(self) -> dict[str, str | bool]:
        """--slurm-option values as sbatch flags: KEY=VALUE → --KEY=VALUE, KEY → --KEY."""
        extra: dict[str, str | bool] = {}
        for item in self.slurm_option:
            key, sep, value = item.partition("=")
            key = key.strip().lstrip("-")
            if not key or not key.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(
                    f"--slurm-option {item!r}: give KEY=VALUE or KEY, e.g. qos=high or "
                    "exclusive (sbatch's long option names, without the dashes)"
                )
            extra[key.replace("-", "_")] = value.strip() if sep else True
        return extra


def slurm_options(**values) -> SlurmOptions:
    """SlurmOptions from command-line values (None: the default), checked."""
    known = {f.name for f in fields(SlurmOptions)}
    given = {k: v for k, v in values.items() if k in known and v is not None}
    if "slurm_option" in given:
        given["slurm_option"] = tuple(given["slurm_option"])
    return SlurmOptions(**given)


def launcher_options(launcher: str, **values) -> SlurmOptions | None:
    """The SLURM options of `--launcher slurm`, or None for `--launcher local`, from the
    command-line values; ConfigError on an unknown launcher, or SLURM options without it."""
    if launcher not in LAUNCHERS:
        raise ConfigError(
            f"--launcher {launcher!r} is not known; choose one of: {', '.join(LAUNCHERS)}"
        )
    options = slurm_options(**values)
    if launcher == "local":
        if options != SlurmOptions():
            raise ConfigError(
                "the SLURM options (--partition, --gpus-per-node, ...) need --launcher slurm"
            )
        return None
    return options


def check_cluster(options: SlurmOptions) -> str:
    """The partition the jobs go to (the one given, else the cluster's default);
    ConfigError unless this machine can submit jobs (sinfo answers, submitit is installed)
    and the partition given exists."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--launcher slurm needs submitit, one of gan-bench's dependencies: pip install submitit"
        ) from None
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        raise ConfigError(
            "--launcher slurm: no SLURM here (sinfo did not answer); run on a cluster's "
            "login node, or start a local one with .ci/slurm-local start"
        ) from None
    if proc.returncode != 0:
        message = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        raise ConfigError(f"--launcher slurm: sinfo failed: {message}")
    names = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    partitions = sorted({name.rstrip("*") for name in names})  # sinfo marks the default: *
    if options.partition is None:
        default = [name.rstrip("*") for name in names if name.endswith("*")]
        if not default:
            known = ", ".join(partitions) or "none"
            raise ConfigError(
                f"--launcher slurm: this cluster has no default partition; give --partition "
                f"(one of: {known})"
            )
        return default[0]
    if options.partition not in partitions:
        raise ConfigError(
            f"--partition {options.partition!r} is not a partition of this cluster; it has: "
            f"{', '.join(partitions) or 'none'}"
        )
    return options.partition


def slurm_environment(partition: str, device_type: str) -> dict:
    """The `environment` of a record written for a job whose node never described itself."""
    return {"device_name": f"SLURM partition {partition} ({device_type})", "torch": None}


def check_nodes(cfg: RunConfig, options: SlurmOptions) -> None:
    """ConfigError unless the job's nodes can run `cfg`: its device, how its processes
    fill the nodes, and what the run itself checks (precision, speed-ups, processes per
    node)."""
    problem = options.device_problem(cfg.device) or shape_problem(cfg.nproc, options)
    if problem:
        raise ConfigError(problem)
    per_node = job_shape(cfg.nproc, options).processes_per_node
    check_machine(cfg, slurm_nodes(options), per_node=per_node)


def slurm_nodes(options: SlurmOptions) -> Machine:
    """The nodes the jobs run on, as the run's checks see them: CUDA with --gpus-per-node
    GPUs each, or CPUs; the rest (Triton) as on this machine, which submits."""
    here = this_host(options.device_type, options.gpus_per_node or 0)
    return replace(here, cpu_cores=options.cpus_per_task or here.cpu_cores)


@dataclass(frozen=True)
class JobShape:
    """What one run of `world_size` processes asks SLURM for."""

    world_size: int
    nodes: int
    processes_per_node: int
    gpus_per_node: int | None
    cpus_per_task: int
    time_limit: int

    def resources(self) -> str:
        """The job's resources in sbatch's words, for --dry-run."""
        parts = [f"--nodes={self.nodes}", "--ntasks-per-node=1"]
        if self.gpus_per_node:
            parts.append(f"--gpus-per-node={self.gpus_per_node}")
        parts += [f"--cpus-per-task={self.cpus_per_task}", f"--time={self.time_limit}"]
        return " ".join(parts)


def shape_problem(world_size: int, options: SlurmOptions) -> str | None:
    """Why `world_size` processes cannot be laid out on these nodes, or None."""
    per_node = options.gpus_per_node
    if per_node and world_size > per_node and world_size % per_node:
        return (
            f"{world_size} processes do not fill nodes of {per_node} GPUs evenly; use a "
            f"multiple of {per_node} (--gpus-per-node)"
        )
    return None


def job_shape(world_size: int, options: SlurmOptions) -> JobShape:
    """nodes = ceil(world size / GPUs per node) on CUDA; one node on CPU. Call
    shape_problem first."""
    if options.gpus_per_node:
        per_node = min(world_size, options.gpus_per_node)
        nodes = -(-world_size // options.gpus_per_node)
        gpus = per_node
    else:
        per_node, nodes, gpus = world_size, 1, None
    return JobShape(
        world_size=world_size,
        nodes=nodes,
        processes_per_node=per_node,
        gpus_per_node=gpus,
        cpus_per_task=options.cpus_per_task or per_node,
        time_limit=options.time_limit,
    )


def sbatch_parameters(shape: JobShape, options: SlurmOptions, name: str, setup: list[str]):
    """The parameters of submitit's AutoExecutor (its slurm_* names) for one job."""
    params: dict = {
        "name": name,
        "nodes": shape.nodes,
        "tasks_per_node": 1,
        "cpus_per_task": shape.cpus_per_task,
        "timeout_min": shape.time_limit,
        "slurm_signal_delay_s": WARNING_SIGNAL_S,
        "slurm_setup": setup,
    }
    if shape.gpus_per_node:
        params["gpus_per_node"] = shape.gpus_per_node
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.account:
        params["slurm_account"] = options.account
    extra = options.extra_parameters()
    if options.exclusive and "exclusive" not in extra:
        extra["exclusive"] = True
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


def run_args(cfg: RunConfig) -> list[str]:
    """`bench.run`'s options for a run's job: its seed always named, so the job's script
    says it."""
    args = cfg.to_cli_args()
    if "--seed" not in args:
        args += ["--seed", str(cfg.seed)]
    return args


def node_command(module: str, args: list[str], shape: JobShape) -> NodeCommand:
    """What each node of a job runs: `module` with `args` in the shape's processes."""
    return NodeCommand(module, args, shape.processes_per_node)


def job_setup() -> list[str]:
    """Lines the job's script runs first: this checkout on the import path of the job's
    Python (submitit's bootstrap unpickles the node command) and of the runs it starts."""
    return [f"export PYTHONPATH={shlex.quote(checkout_pythonpath())}"]


def rendezvous_port(job_id: str) -> int:
    digits = "".join(ch for ch in job_id if ch.isdigit()) or "0"
    return _PORT_BASE + int(digits) % _PORT_SPAN


@dataclass
class NodeCommand:
    """What each node of a job runs (pickled by submitit, called on the node): `python -m
    module args` for a one-process job, else torchrun for this node's processes with a
    c10d rendezvous on the job's first node. SIGUSR2 (the time limit is near), SIGTERM and
    SIGINT are passed on to it as SIGTERM, so the run writes its record; returns what
    happened, for the submitter."""

    module: str
    args: list[str]
    processes_per_node: int

    def argv(self, nodes: int, head: str, job_id: str) -> list[str]:
        if nodes == 1 and self.processes_per_node == 1:
            return [sys.executable, "-m", self.module, *self.args]
        endpoint = f"{head}:{rendezvous_port(job_id)}"
        worker = ["-m", self.module, *self.args]
        return torchrun_argv(nodes, self.processes_per_node, endpoint, worker, rdzv_id=job_id)

    def __call__(self) -> dict:
        import submitit

        job = submitit.JobEnvironment()
        argv = self.argv(job.num_nodes, job.hostnames[0], str(job.job_id))
        start = time.monotonic()  # the job's environment: this checkout first (job_setup)
        proc = subprocess.Popen(argv, start_new_session=True)
        received: list[int] = []

        def forward(signum, _frame):
            received.append(signum)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

        handled = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, forward) for sig in handled}
        try:
            returncode = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return {
            "returncode": returncode,
            "signals": [signal.Signals(sig).name for sig in received],
            "node": job.hostname,
            "wall_s": time.monotonic() - start,
        }


def job_environment(env=os.environ) -> dict | None:
    """The SLURM job this process runs in, as a record's `run.slurm` says it, or None."""
    if "SLURM_JOB_ID" not in env:
        return None
    return {
        "job_id": env["SLURM_JOB_ID"],
        "nodes": int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1"))),
        "node_list": env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST")),
        "partition": env.get("SLURM_JOB_PARTITION"),
    }


def job_folder(out: str) -> Path:
    """Where a run's or a sweep's jobs keep their files: `slurm/` beside the results file
    (on a cluster, a filesystem the nodes share). Relative when `out` is: a job starts in
    the folder it was submitted from."""
    return Path(os.path.dirname(out) or ".") / "slurm"
