"""A validated sweep: the command-line options parsed into a `SweepSpec` (`build_spec`:
ConfigError, one line for the user, on any bad value, before anything runs), and the
environment of the machine the points run on, as each record carries it (`env_key`: the
part of it that makes two runs the same measurement)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass

import torch

from bench import data
from bench.config import (
    DEVICES,
    PRECISIONS,
    SCALINGS,
    ConfigError,
    RunConfig,
    check_results_path,
)
from bench.runtime.slurm import (
    SlurmOptions,
    check_cluster,
    slurm_environment,
    slurm_nodes,
)
from bench.speedups import VariantError, canonical_variant
from bench.sweep.child import child_env
from bench.sweep.grid import DEFAULT_GRID, GRIDS, Point, expand, machine_defaults
from bench.telemetry.machine import Machine, detect_machine, named_machine
from gan_models import MODELS

# ------------------------------------------------------------------------------- parsing

# The harness derives the latent generator's seed as seed * 1_000_003 + rank + 1, and
# torch.Generator.manual_seed takes at most 2**64 - 1: 32-bit seeds stay far inside, and
# a seed out of range is refused here rather than failing in every child.
MAX_SEED = 2**32 - 1


def _split(flag: str, text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    items = [item for item in items if item]
    if not items:
        raise ConfigError(f"{flag} is empty; give a comma-separated list, e.g. {flag} a,b")
    return list(dict.fromkeys(items))  # duplicates dropped, order kept


def parse_names(flag: str, text: str, allowed) -> tuple[str, ...]:
    """A comma list of names, each one of `allowed`; ConfigError names the first bad one."""
    names = _split(flag, text)
    for name in names:
        if name not in allowed:
            raise ConfigError(f"{flag}: {name!r} is not known; choose from: {', '.join(allowed)}")
    return tuple(names)


def parse_variants(text: str) -> tuple[str, ...]:
    """A comma list of variants, each eager or speed-ups joined by '+' in any order,
    returned under their registered names."""
    names = []
    for name in _split("--variants", text):
        try:
            names.append(canonical_variant(name))
        except VariantError as err:
            raise ConfigError(f"--variants: {err}") from None
    return tuple(dict.fromkeys(names))


def parse_ints(flag: str, text: str, low: int, high: int | None = None) -> tuple[int, ...]:
    """A comma list of whole numbers ≥ `low` (and ≤ `high` when given)."""
    values = []
    for item in _split(flag, text):
        try:
            value = int(item)
        except ValueError:
            raise ConfigError(f"{flag}: {item!r} is not a whole number") from None
        if value < low:
            raise ConfigError(f"{flag}: {value} must be at least {low}")
        if high is not None and value > high:
            raise ConfigError(f"{flag}: {value} must be at most {high}")
        values.append(value)
    return tuple(dict.fromkeys(values))


def parse_positive_ints(flag: str, text: str) -> tuple[int, ...]:
    """A comma list of whole numbers ≥ 1."""
    return parse_ints(flag, text, 1)


# ---------------------------------------------------------------------------------- spec


@dataclass(kw_only=True)
class SweepSpec:
    """A validated sweep: the blocks of the plan and how to run each point."""

    machine: Machine
    blocks: list[dict]
    overrides: dict
    steps: int
    warmup_steps: int
    repeats: int
    timeout_s: float
    out: str
    # Every point runs once per seed (and per repeat): seeds give `compare` the baseline's
    # seed-to-seed quality spread; repeats of one seed only measure the machine's noise.
    seeds: tuple[int, ...] = (RunConfig.seed,)
    resume: bool = True
    dry_run: bool = False
    data_dir: str | None = None
    # One-process points forked from a server that has done the imports (bench/sweep/warm.py)
    fork_server: bool = True
    # Processes that compile points ahead at once (bench/sweep/precompile.py); 0: none
    precompile_jobs: int = 0
    # Points run at once, sharing the device: for quality (their throughput is not
    # compared); 1: one at a time, each alone, as timing needs
    concurrent: int = 1
    # Whether the batch sizes are per process (weak) or global, split among the processes
    # (strong): every point's RunConfig.scaling.
    scaling: str = RunConfig.scaling
    # --launcher slurm: each run is a job on the cluster (bench/sweep/slurm.py); None: here
    slurm: SlurmOptions | None = None
    # The partition the jobs go to, by name (the cluster's default when none was given)
    partition: str | None = None
    _environment: dict | None = None

    def points(self) -> list[Point]:
        points = expand(self.blocks, self.overrides)
        return [dataclasses.replace(point, scaling=self.scaling) for point in points]

    def environment(self) -> dict:
        """The environment as a record carries it (computed once): this machine's, or for
        SLURM jobs what is known before a job reports its node's."""
        if self._environment is None:
            if self.slurm is not None:
                self._environment = slurm_environment(self.partition, self.slurm.device_type)
            else:
                self._environment = machine_environment(self.machine)
        return self._environment

    def environment_key(self) -> tuple:
        """What makes records of this sweep's machine comparable: the device name and torch,
        or for SLURM jobs the partition (records carry it in run.slurm)."""
        if self.slurm is not None:
            return slurm_key(self.partition)
        return env_key(self.environment())


def env_key(env: dict) -> tuple:
    """The environment fields that make two runs the same measurement."""
    return (env.get("device_name"), env.get("torch"))


def slurm_key(partition: str | None) -> tuple:
    """What makes two runs of SLURM jobs the same measurement: the partition they ran on
    (the nodes, not the machine the sweep was started from)."""
    return ("slurm", partition)


def record_environment_key(record: dict, slurm: bool = False) -> tuple:
    """A record's env_key, or, for a SLURM sweep (`slurm`), its job's slurm_key."""
    if not slurm:
        return env_key(record.get("environment") or {})
    job = (record.get("run") or {}).get("slurm") or {}
    return slurm_key(job.get("partition")) if job else ("not a SLURM job",)


def default_precompile_jobs(cpu_cores: int) -> int:
    """Precompile processes at once: one per 4 host cores, at most 4 (each compiles with
    a pool of Triton compile workers of its own); none on a 2-core machine, where compiling
    in parallel only shares the same cores."""
    return min(4, cpu_cores // 4)


def build_spec(
    *,
    models: str | None = None,
    datasets: str | None = None,
    batch_sizes: str | None = None,
    precisions: str | None = None,
    gpus: str | None = None,
    variants: str | None = None,
    steps: int | None = None,
    warmup_steps: int | None = None,
    repeats: int | None = None,
    out: str = "results/runs.jsonl",
    timeout_per_point: float | None = None,
    resume: bool = True,
    dry_run: bool = False,
    device: str = "auto",
    data_dir: str | None = None,
    seeds: str | None = None,
    fork_server: bool = True,
    precompile_jobs: int | None = None,
    concurrent: int = 1,
    grid: str = DEFAULT_GRID,
    plan_for: str | None = None,
    machine: Machine | None = None,
    slurm: SlurmOptions | None = None,
    scaling: str = RunConfig.scaling,
) -> SweepSpec:
    """Parse and validate the sweep options; ConfigError (one line for the user) on any
    bad value, before anything runs. `grid`: the tier of the default grid (bench.sweep.
    grid.GRIDS). `plan_for`: a machine other than this one (`cuda:8`, `cpu:2`), for a
    dry run only. `machine`: this machine as tests pose it (else detected). `slurm`: each
    run a SLURM job with these options (None: here)."""
    if grid not in GRIDS:
        raise ConfigError(f"--grid {grid!r} is not known; choose one of: {', '.join(GRIDS)}")
    if scaling not in SCALINGS:
        raise ConfigError(
            f"--scaling {scaling!r} is not known; choose one of: {', '.join(SCALINGS)}"
        )
    if plan_for is not None:
        if not dry_run:
            raise ConfigError(
                f"--machine {plan_for} plans for another machine: it needs --dry-run (the "
                "points run here, on this one)"
            )
        if device != "auto":
            raise ConfigError("--machine names the machine; leave --device out")
        try:
            machine = named_machine(plan_for)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    overrides: dict = {}
    if models is not None:
        overrides["models"] = parse_names("--models", models, tuple(MODELS))
    if datasets is not None:
        overrides["datasets"] = parse_names("--datasets", datasets, data.DATASETS)
        for name in overrides["datasets"]:
            try:
                data.check_dataset(name, data_dir)
            except data.DataError as err:
                raise ConfigError(f"--datasets: {err}") from None
    if batch_sizes is not None:
        overrides["batch_sizes"] = parse_positive_ints("--batch-sizes", batch_sizes)
    if precisions is not None:
        overrides["precisions"] = parse_names("--precisions", precisions, PRECISIONS)
    if gpus is not None:
        overrides["world_sizes"] = parse_positive_ints("--gpus", gpus)
    if variants is not None:
        overrides["variants"] = parse_variants(variants)
    seed_values = (RunConfig.seed,)
    if seeds is not None:
        seed_values = parse_ints("--seeds", seeds, 0, MAX_SEED)
    if device not in DEVICES:
        raise ConfigError(f"--device {device!r} is not known; choose one of: {', '.join(DEVICES)}")
    partition = None
    if slurm is not None:
        _check_slurm_sweep(slurm, plan_for, concurrent, device)
        if timeout_per_point is not None or precompile_jobs:
            raise ConfigError(
                "--timeout-per-point and --precompile-jobs are for points run here; a SLURM "
                "job's limit is --time-limit, and each job compiles on its own node"
            )
        partition = _partition(slurm, dry_run)
        machine = slurm_nodes(slurm)
        fork_server, precompile_jobs = False, 0  # each run is a job on a node of its own
    if machine is None:
        machine = detect_machine(device)
        if device == "cuda" and not machine.cuda:
            raise ConfigError("--device cuda was asked for, but no CUDA GPU is visible; use cpu")
    defaults = machine_defaults(machine)
    given = {
        "steps": steps,
        "warmup_steps": warmup_steps,
        "repeats": repeats,
        "timeout_s": timeout_per_point,
    }
    values = {k: defaults[k] if v is None else v for k, v in given.items()}
    for flag, name, low in (
        ("--steps", "steps", 1),
        ("--warmup-steps", "warmup_steps", 0),
        ("--repeats", "repeats", 1),
    ):
        if values[name] < low:
            raise ConfigError(f"{flag} must be at least {low}, got {values[name]}")
    if not values["timeout_s"] > 0:
        raise ConfigError(f"--timeout-per-point must be positive, got {values['timeout_s']}")
    if concurrent < 1:
        raise ConfigError(f"--concurrent must be at least 1, got {concurrent}")
    if precompile_jobs is not None and precompile_jobs < 0:
        raise ConfigError(f"--precompile-jobs must be at least 0, got {precompile_jobs}")
    if concurrent > 1:
        if precompile_jobs:
            raise ConfigError(
                "--precompile-jobs compiles ahead of points that run alone; with --concurrent "
                "the points compile side by side already: give one of the two"
            )
        precompile_jobs = 0
    elif precompile_jobs is None:
        precompile_jobs = default_precompile_jobs(machine.cpu_cores)
    check_results_path(out)
    spec = SweepSpec(
        machine=machine,
        blocks=GRIDS[grid].blocks(machine),
        overrides=overrides,
        steps=values["steps"],
        warmup_steps=values["warmup_steps"],
        repeats=values["repeats"],
        timeout_s=float(values["timeout_s"]),
        out=out,
        seeds=seed_values,
        resume=resume,
        dry_run=dry_run,
        data_dir=data_dir,
        fork_server=fork_server,
        precompile_jobs=precompile_jobs,
        concurrent=concurrent,
        slurm=slurm,
        partition=partition,
        scaling=scaling,
    )
    if concurrent > 1 and any(p.world_size > 1 for p in spec.points()):
        raise ConfigError(
            "--concurrent runs one-process points side by side; the plan has points over "
            "several processes: give --gpus 1 (torchrun's workers would share the devices)"
        )
    return spec


def _partition(slurm: SlurmOptions, dry_run: bool) -> str:
    """The jobs' partition, checked against the cluster; a dry run plans without one."""
    if dry_run and shutil.which("sinfo") is None:  # planned away from the cluster
        return slurm.partition or "the cluster's default"
    return check_cluster(slurm)


def _check_slurm_sweep(slurm: SlurmOptions, plan_for, concurrent: int, device: str) -> None:
    """ConfigError on options a SLURM sweep cannot take."""
    if plan_for is not None:
        raise ConfigError(
            "--machine plans for another machine; with --launcher slurm the nodes are "
            "given by --gpus-per-node: leave --machine out"
        )
    if concurrent > 1:
        raise ConfigError(
            "--concurrent shares one machine; SLURM jobs run side by side with --max-jobs"
        )
    problem = slurm.device_problem(device)
    if problem:
        raise ConfigError(problem)


# --------------------------------------------------------------------------- environment


def machine_environment(machine: Machine) -> dict:
    """bench.telemetry.environment.collect_environment for the device the points run on.

    On CUDA it is asked in a short child process: asking here would start a CUDA context in
    the sweep's own process, holding GPU 0 memory through every point and showing in each
    child's NVML memory reading.
    """
    from bench.telemetry.environment import collect_environment

    if machine.named:  # another machine: nothing recorded here describes it
        return {"device_name": f"{machine.device_type}:{machine.gpu_count or machine.cpu_cores} "
                "(planned for)", "torch": torch.__version__}  # fmt: skip
    if machine.device_type == "cpu":
        return collect_environment(torch.device("cpu"))
    code = (
        "import json, torch\n"
        "from bench.telemetry.environment import collect_environment\n"
        "print(json.dumps(collect_environment(torch.device('cuda', 0))))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=child_env(),
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    # The child failed: correct fields matter more than the context's memory.
    return collect_environment(torch.device("cuda", 0))
