"""`gan-bench sweep`: run a grid of benchmark points, each in its own process.

A point is (model, dataset, batch size per process, precision, world size, variant); each
runs `--repeats` times. The plan is a union of blocks, each block a Cartesian product of
axis values: the default blocks fit the machine (a few minutes on a 2-core CPU, the full
grid on GPUs), and every axis given on the command line replaces that axis in every block.

Every run is a child process (`python -m bench.run`, or torchrun for more than one process)
in its own process group, writing its record to a temporary file that the sweep then
appends to `--out`; so a crash, an OOM or a hang ends one point, never the sweep. A point
that cannot run here is recorded as `skipped` with the reason; one that dies without a
record gets a record written by the sweep (`failed`, `timeout`, `interrupted`). Resume
skips runs whose key already has an ok record. The sweep ends with the compare table.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench import compare, data, launcher
from bench.config import CUDA_ONLY_PRECISIONS, PRECISIONS, ConfigError, RunConfig, check_device
from bench.records import SCHEMA_VERSION, append_record, read_records
from bench.variants import VARIANTS
from gan_models import MODELS

_PROJECT_ROOT = Path(__file__).resolve().parent.parent

AXES = ("models", "datasets", "batch_sizes", "precisions", "world_sizes", "variants")


def _block(models, datasets, batch_sizes, precisions, world_sizes, variants) -> dict:
    return dict(
        zip(AXES, (models, datasets, batch_sizes, precisions, world_sizes, variants), strict=True)
    )


# The default plan on a CPU, sized for a 2-core machine to finish in well under 5 minutes
# even when the machine is shared. Measured there (torch 2.14, `python -m bench.run`): a
# process start costs ~5 s (torch and dynamo imports: a 1-step run takes 5.7 s), torchrun
# with 2 workers ~10 s; an eager iteration at batch 64 takes ~18 ms (mlp) and ~150 ms
# (dcgan32); a first torch.compile 20-30 s (~2 s once inductor's on-disk cache holds the
# kernels). Start-up dominates, so the plan is few points, not a Cartesian product: mostly
# mlp at batch 128, each axis at two values once, compile next to its eager baseline. A
# first 8-point version (batch × precision crossed, dcgan32 and mnist5k apart) took 4.5 min
# on a loaded machine; this one has 6 points.
CPU_DEFAULT_BLOCKS = (
    # batch size, then precision, with the cheap model on one process
    _block(("mlp",), ("synthetic",), (32, 128), ("fp32",), (1,), ("eager",)),
    _block(("mlp",), ("synthetic",), (128,), ("fp32", "bf16"), (1,), ("eager",)),
    # world sizes 1 and 2 (gloo). torchrun gives each worker OMP_NUM_THREADS=1, so both sizes
    # share the same 2 cores: the efficiency shows the cost of DDP's all-reduce, not more
    # hardware.
    _block(("mlp",), ("synthetic",), (128,), ("fp32",), (1, 2), ("eager",)),
    # eager vs compile at one point: the compare table's compile row and its baseline
    _block(("mlp",), ("synthetic",), (128,), ("fp32",), (1,), ("eager", "compile")),
    # a second model on a second data set (5,000 real MNIST digits, resized to 32x32)
    _block(("dcgan32",), ("mnist5k",), (32,), ("fp32",), (1,), ("eager",)),
)
# Timed iterations, warm-up, repeats and the per-point limit (s) when not given. CPU: 20
# timed iterations are enough for a p50 and cost ~0.5 s for mlp, little next to the 5 s
# start-up; on a loaded 2-core machine two-thread runs slow down up to 10x (dcgan32 at
# batch 32 measured 800 ms/iteration with two other test suites running), so iterations
# are kept few. 2 repeats give every point a min-max spread. The warm-up absorbs a compile
# (done in the first iteration). GPU: 100 steps, 3 repeats (the median of 3 survives one
# outlier), room for max-autotune compiles.
CPU_DEFAULTS = {"steps": 20, "warmup_steps": 3, "repeats": 2, "timeout_s": 300.0}
GPU_DEFAULTS = {"steps": 100, "warmup_steps": 10, "repeats": 3, "timeout_s": 1800.0}
GPU_BATCH_SIZES = (64, 256, 1024)
GPU_PRECISIONS = ("fp32", "tf32", "bf16")

# compile modes whose point is a CUDA graph. On CPU they are skipped, not run: inductor
# skips the graphs there (counted in cudagraph_skips), so reduce-overhead would measure
# the default compile under another name, and max-autotune would autotune inductor's C++
# GEMM templates, a CPU-only path that is not the Triton-templates-plus-graphs path the
# variant names. Either record would claim a path that did not run (the silent fallback
# DESIGN.md calls a bug) and cost another cold compile (minutes for max-autotune on 2 cores).
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")

# After SIGINT/SIGTERM (Ctrl-C, or the time limit) a child gets this long to write its
# `interrupted` record and exit; torchrun itself gives its workers up to 30 s. Then SIGKILL.
STOP_GRACE_S = 30.0
POLL_S = 0.2  # how often the sweep looks at a running child (no work in between)
STDERR_TAIL_LINES = 20


# ------------------------------------------------------------------------------- parsing


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


def parse_positive_ints(flag: str, text: str) -> tuple[int, ...]:
    """A comma list of whole numbers ≥ 1."""
    values = []
    for item in _split(flag, text):
        try:
            value = int(item)
        except ValueError:
            raise ConfigError(f"{flag}: {item!r} is not a whole number") from None
        if value < 1:
            raise ConfigError(f"{flag}: {value} must be at least 1")
        values.append(value)
    return tuple(dict.fromkeys(values))


# ------------------------------------------------------------------------------- machine


@dataclass(frozen=True)
class Machine:
    """What the sweep can run on here."""

    device_type: str  # "cuda" or "cpu": where every point runs
    gpu_count: int
    cpu_cores: int
    triton_installed: bool
    triton_interpret: bool  # TRITON_INTERPRET=1: Triton kernels run on the CPU (slowly)


def detect_machine(device: str = "auto") -> Machine:
    """This machine; `device` is auto (CUDA when present), cpu or cuda."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device {device!r} is not known; choose one of: auto, cpu, cuda")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "cuda" and not gpus:
        raise ConfigError("--device cuda was asked for, but no CUDA GPU is visible; use cpu")
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (cgroups, taskset)
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return Machine(
        device_type="cuda" if gpus and device != "cpu" else "cpu",
        gpu_count=gpus,
        cpu_cores=cores,
        triton_installed=importlib.util.find_spec("triton") is not None,
        triton_interpret=os.environ.get("TRITON_INTERPRET") == "1",
    )


def default_blocks(machine: Machine) -> list[dict]:
    """The plan when no axis is given: see CPU_DEFAULT_BLOCKS; on GPUs the full grid over
    all models, variants, three batch sizes, fp32/tf32/bf16 and world sizes 1, 2, 4, ... up
    to the GPUs present."""
    if machine.device_type == "cpu":
        return [dict(block) for block in CPU_DEFAULT_BLOCKS]
    worlds = tuple(2**k for k in range(machine.gpu_count.bit_length()))
    return [
        _block(
            tuple(MODELS), ("synthetic",), GPU_BATCH_SIZES, GPU_PRECISIONS, worlds, tuple(VARIANTS)
        )
    ]


def machine_defaults(machine: Machine) -> dict:
    return dict(CPU_DEFAULTS if machine.device_type == "cpu" else GPU_DEFAULTS)


# ---------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Point:
    model: str
    dataset: str
    batch_size: int  # per process
    precision: str
    world_size: int
    variant: str

    @property
    def label(self) -> str:
        return (
            f"{self.model}/{self.dataset} b{self.batch_size} {self.precision} "
            f"×{self.world_size} {self.variant}"
        )


@dataclass(frozen=True)
class PlannedRun:
    """One repeat of one point and what the sweep will do with it."""

    point: Point
    repeat: int
    action: str  # "run", "skip" (recorded as skipped), "done" (resume: already recorded)
    reason: str | None = None  # why skipped


def expand(blocks: list[dict], overrides: dict | None = None) -> list[Point]:
    """The points of a union of blocks, each axis in `overrides` replacing it in every
    block; duplicates dropped. Ordered so that a configuration's baseline (eager, world
    size 1) runs before its variants."""
    points: dict[Point, None] = {}
    for block in blocks:
        axes = {**block, **(overrides or {})}
        for values in itertools.product(*(axes[name] for name in AXES)):
            points[Point(*values)] = None
    variant_rank = {name: i for i, name in enumerate(VARIANTS)}
    return sorted(
        points,
        key=lambda p: (
            p.model,
            p.dataset,
            p.precision,
            p.batch_size,
            p.world_size,
            variant_rank.get(p.variant, len(variant_rank)),
        ),
    )


def skip_reason(point: Point, machine: Machine) -> str | None:
    """Why this machine cannot run `point` (a skipped record's reason), or None."""
    fields = VARIANTS[point.variant].fields
    if machine.device_type == "cuda":
        if point.world_size > machine.gpu_count:
            return f"needs {point.world_size} GPUs; this machine has {machine.gpu_count}"
    else:
        if point.world_size > machine.cpu_cores:
            return (
                f"{point.world_size} processes on {machine.cpu_cores} CPU cores: the timing "
                "would measure oversubscription"
            )
        if point.precision in CUDA_ONLY_PRECISIONS:
            return f"precision {point.precision} needs a CUDA GPU"
        if fields["compile_mode"] in CUDA_GRAPH_MODES:
            return (
                f"compile mode {fields['compile_mode']} is a CUDA-graph mode; on CPU inductor "
                "skips the graphs, so the record would name a path that did not run"
            )
    if fields["kernels"] == "triton":
        if not machine.triton_installed:
            return "triton kernels need the triton package, which is not installed"
        if machine.device_type == "cpu" and not machine.triton_interpret:
            return "triton kernels need a CUDA GPU, or TRITON_INTERPRET=1 on CPU"
    return None


def point_config(
    point: Point, repeat: int, spec: SweepSpec, out: str, check: bool = True
) -> RunConfig:
    """The RunConfig a point's child process is given. ConfigError when the combination is
    invalid (e.g. mlp at batch 1) or, with `check`, when this machine cannot run it."""
    cfg = RunConfig(
        model=point.model,
        dataset=point.dataset,
        data_dir=spec.data_dir,
        batch_size=point.batch_size,
        precision=point.precision,
        steps=spec.steps,
        warmup_steps=spec.warmup_steps,
        device=spec.machine.device_type,
        nproc=point.world_size,
        out=out,
        variant=point.variant,
        repeat=repeat,
        quiet=True,
    )
    if check:
        check_device(cfg, spec.machine.device_type == "cuda")
    return cfg


def plan_runs(
    points: list[Point], spec: SweepSpec, done: set[tuple] | None = None
) -> list[PlannedRun]:
    """Every (point, repeat), repeat-major: all points once, then all again, so that a slow
    drift of the machine (heat, a neighbour's job) spreads over the points instead of
    landing on one, and an interrupted sweep has covered every point."""
    done = done or set()
    reasons: dict[Point, str | None] = {}
    for point in points:
        reason = skip_reason(point, spec.machine)
        if reason is None:
            try:
                point_config(point, 0, spec, out=spec.out)
            except ConfigError as err:
                reason = str(err)
        reasons[point] = reason
    # This machine's environment is only needed to match recorded runs (on CUDA it costs a
    # child process).
    environment = spec.environment_key() if done else ()
    runs = []
    for repeat in range(spec.repeats):
        for point in points:
            reason = reasons[point]
            key = run_key(point, repeat, spec.steps, environment)
            if (key, "ok") in done or (reason and (key, "skipped") in done):
                runs.append(PlannedRun(point, repeat, "done"))
            elif reason:
                runs.append(PlannedRun(point, repeat, "skip", reason))
            else:
                runs.append(PlannedRun(point, repeat, "run"))
    return runs


# -------------------------------------------------------------------------------- resume


def run_key(point: Point, repeat: int, steps: int, environment: tuple) -> tuple:
    """What makes two runs the same measurement: the point, the repeat, the timed steps and
    the environment (device name, torch version)."""
    return (*dataclasses.astuple(point), steps, repeat, *environment)


def record_key(record: dict) -> tuple | None:
    """run_key of a record, or None when it lacks the fields."""
    cfg = record.get("config") or {}
    env = record.get("environment") or {}
    world = compare.record_world_size(record)
    fields = [cfg.get(k) for k in ("model", "dataset", "batch_size", "precision")]
    if world is None or any(f is None for f in fields):
        return None
    point = Point(*fields, world, compare.record_variant(record))
    return run_key(point, cfg.get("repeat") or 0, cfg.get("steps"), _env_key(env))


def _env_key(env: dict) -> tuple:
    return (env.get("device_name"), env.get("torch"))


def recorded_keys(path: str) -> set[tuple]:
    """{(run key, status)} of the ok and skipped records in `path` (corrupt lines warned)."""
    keys: set[tuple] = set()
    if not os.path.exists(path):
        return keys
    for line_no, record in read_records(path):
        if record is None:
            print(
                f"gan-bench: warning: {path} line {line_no} is not a JSON object; ignored",
                file=sys.stderr,
            )
            continue
        key = record_key(record)
        if key is not None and record.get("status") in ("ok", "skipped"):
            keys.add((key, record["status"]))
    return keys


# ------------------------------------------------------------------------------ estimate

# Seconds per real image of one eager iteration on the 2-core CPU the defaults were sized
# on (batch 64: mlp ~18 ms, dcgan32 ~150 ms; dcgan64 has 4x the pixels of dcgan32).
_CPU_S_PER_IMAGE = {"mlp": 0.3e-3, "dcgan32": 2.3e-3, "dcgan64": 9.0e-3}


def estimate_run_s(point: Point, spec: SweepSpec, compiled_before: bool) -> float:
    """A rough cost of one run in seconds, for the ETA and --dry-run (not a measurement)."""
    compiles = VARIANTS[point.variant].fields["compile_mode"] != "none"
    iterations = spec.steps + spec.warmup_steps + 1  # +1: the FLOP count's untimed iteration
    # Real data sets get a quality evaluation by default (bench/quality): ~5 s on this CPU
    # once its extractor is cached (the first one trains for ~20 s more).
    quality_s = 0.0 if point.dataset == "synthetic" else 5.0
    if spec.machine.device_type == "cpu":
        start = quality_s + (5.0 if point.world_size == 1 else 5.0 + 2.5 * point.world_size)
        # N processes share the cores one process had: each iteration ~N times slower.
        per_iteration = _CPU_S_PER_IMAGE.get(point.model, 2e-3) * point.batch_size
        work = iterations * per_iteration * point.world_size
        compile_s = (2.0 if compiled_before else 25.0) if compiles else 0.0
    else:
        start, work = quality_s + 10.0 + 3.0 * point.world_size, iterations * 0.02
        compile_s = (10.0 if compiled_before else 60.0) if compiles else 0.0
    return start + work + compile_s


def estimate_runs_s(runs: list[PlannedRun], spec: SweepSpec) -> list[float]:
    """estimate_run_s of each run to do (0 for the others); a compile is cold only the first
    time a (model, batch, precision, world size, variant) is seen: inductor caches on disk."""
    seen: set = set()
    out = []
    for run in runs:
        if run.action != "run":
            out.append(0.0)
            continue
        p = run.point
        key = (p.model, p.batch_size, p.precision, p.world_size, p.variant)
        out.append(estimate_run_s(p, spec, key in seen))
        seen.add(key)
    return out


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
    resume: bool = True
    dry_run: bool = False
    data_dir: str | None = None
    _environment: dict | None = None

    def points(self) -> list[Point]:
        return expand(self.blocks, self.overrides)

    def environment(self) -> dict:
        """This machine's environment as a record carries it (computed once)."""
        if self._environment is None:
            self._environment = machine_environment(self.machine)
        return self._environment

    def environment_key(self) -> tuple:
        return _env_key(self.environment())


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
    out: str = "results/sweep.jsonl",
    timeout_per_point: float | None = None,
    resume: bool = True,
    dry_run: bool = False,
    device: str = "auto",
    data_dir: str | None = None,
    machine: Machine | None = None,
) -> SweepSpec:
    """Parse and validate the sweep options; ConfigError (one line for the user) on any
    bad value, before anything runs."""
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
        overrides["variants"] = parse_names("--variants", variants, tuple(VARIANTS))
    if machine is None:
        machine = detect_machine(device)
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
    if os.path.isdir(out):
        raise ConfigError(f"--out {out!r} is a directory; give a .jsonl file path")
    return SweepSpec(
        machine=machine,
        blocks=default_blocks(machine),
        overrides=overrides,
        steps=values["steps"],
        warmup_steps=values["warmup_steps"],
        repeats=values["repeats"],
        timeout_s=float(values["timeout_s"]),
        out=out,
        resume=resume,
        dry_run=dry_run,
        data_dir=data_dir,
    )


# --------------------------------------------------------------------------- environment


def _child_env() -> dict:
    """The children's environment: ours, with this checkout first on the import path so that
    `-m bench.run` runs the same code as the sweep, installed or not."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_PROJECT_ROOT) + (os.pathsep + path if path else "")
    return env


def machine_environment(machine: Machine) -> dict:
    """bench.environment.collect_environment for the device the points run on.

    On CUDA it is asked in a short child process: asking here would start a CUDA context in
    the sweep's own process, holding GPU 0 memory through every point and showing in each
    child's NVML memory reading.
    """
    from bench.environment import collect_environment

    if machine.device_type == "cpu":
        return collect_environment(torch.device("cpu"))
    code = (
        "import json, torch\n"
        "from bench.environment import collect_environment\n"
        "print(json.dumps(collect_environment(torch.device('cuda', 0))))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    # The child failed: correct fields matter more than the context's memory.
    return collect_environment(torch.device("cuda", 0))


# ----------------------------------------------------------------------------- children


def point_command(cfg: RunConfig, world_size: int) -> list[str]:
    """The child command of one run: `python -m bench.run` for one process, else torchrun
    with a c10d rendezvous on a free loopback port (bench.launcher)."""
    if world_size == 1:
        return [sys.executable, "-m", "bench.run", *cfg.to_cli_args()]
    return launcher.torchrun_command(cfg, launcher.free_loopback_port())


@dataclass
class ChildResult:
    returncode: int
    wall_s: float
    timed_out: bool
    stopped_by: int | None  # the signal the sweep received (SIGINT/SIGTERM), if any
    stderr_tail: list[str]


class _SignalCatcher:
    """SIGINT/SIGTERM to the sweep are noted, not raised: the loop stops the child and
    records the point at a safe place. A second signal means: kill now."""

    def __init__(self):
        self.received: list[int] = []
        self._previous: dict = {}

    def _handler(self, signum, _frame):
        self.received.append(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _descendants(root: int) -> list[int]:
    """Process ids below `root`, from /proc (Linux; empty elsewhere). torchrun starts each
    worker in its own session, out of reach of a signal to torchrun's group."""
    children: dict[int, list[int]] = defaultdict(list)
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
            # Field 4 is the parent id; field 2 (the name) may hold spaces and parentheses.
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_all(pgid: int, pids: list[int]) -> None:
    _signal_group(pgid, signal.SIGKILL)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _tail(path: str, lines: int = STDERR_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def run_child(
    cmd: list[str], timeout_s: float, log_prefix: str, signals: _SignalCatcher
) -> ChildResult:
    """Run one child in its own process group to the end, the time limit, or a signal to
    the sweep; stdout and stderr go to files next to `log_prefix`."""
    start = time.monotonic()
    with open(log_prefix + ".stdout", "wb") as out, open(log_prefix + ".stderr", "wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=_child_env(),
            start_new_session=True,  # its own group: Ctrl-C reaches the sweep, which decides
        )
    timed_out, stopped_by, stop_at, killed = False, None, None, False
    targets: list[int] = []
    while True:
        # poll + sleep rather than wait(timeout): Popen.wait polls waitpid every 50 ms, a
        # wake-up the child's timing would share a core with.
        returncode = proc.poll()
        if returncode is not None:
            break
        time.sleep(POLL_S)
        now = time.monotonic()
        if stop_at is None and (signals.received or now - start >= timeout_s):
            if signals.received:
                stopped_by, sig = signals.received[0], signals.received[0]
            else:
                timed_out, sig = True, signal.SIGTERM
            targets = _descendants(proc.pid)
            _signal_group(proc.pid, sig)  # bench.run and torchrun write/await records on it
            stop_at = now
        elif stop_at is not None and not killed:
            if now - stop_at >= STOP_GRACE_S or len(signals.received) > 1:
                _kill_all(proc.pid, targets)
                killed = True
    if stop_at is not None:  # workers torchrun left behind, if it died first
        _kill_all(proc.pid, [pid for pid in targets if _alive(pid)])
    return ChildResult(
        returncode=returncode,
        wall_s=time.monotonic() - start,
        timed_out=timed_out,
        stopped_by=stopped_by,
        stderr_tail=_tail(log_prefix + ".stderr"),
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# ------------------------------------------------------------------------------- records


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def sweep_record(
    point: Point, repeat: int, spec: SweepSpec, status: str, reason: str, tail=None
) -> dict:
    """A record the sweep writes itself, for a run that produced none: the point's config,
    this machine's environment, the status and the reason; no metrics."""
    try:
        config = point_config(point, repeat, spec, out=spec.out, check=False).to_dict()
    except ConfigError:  # an invalid combination: the fields as planned, defaults elsewhere
        config = {f.name: f.default for f in dataclasses.fields(RunConfig)}
        config.update(
            model=point.model,
            dataset=point.dataset,
            data_dir=spec.data_dir,
            batch_size=point.batch_size,
            precision=point.precision,
            steps=spec.steps,
            warmup_steps=spec.warmup_steps,
            device=spec.machine.device_type,
            nproc=point.world_size,
            out=spec.out,
            variant=point.variant,
            repeat=repeat,
            quiet=True,
        )
    environment = {**spec.environment(), "world_size": point.world_size, "timestamp": _now()}
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "status": status,
        "reason": reason,
        "config": config,
        "run": {
            "world_size": point.world_size,
            "variant": point.variant,
            "variant_fields": dict(VARIANTS[point.variant].fields),
        },
        "environment": environment,
        "metrics": {},
    }
    if tail is not None:
        record["stderr_tail"] = tail
    return record


def _child_record(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    records = [record for _, record in read_records(path) if record is not None]
    return records[-1] if records else None


def outcome_record(
    point: Point, repeat: int, spec: SweepSpec, result: ChildResult, child: dict | None
) -> dict:
    """The record of a finished child: its own when it wrote one (status timeout when the
    sweep stopped it at the limit), else one the sweep writes with the exit status."""
    tail = result.stderr_tail
    if result.timed_out and not (child is not None and child.get("status") == "ok"):
        # (An ok record means the limit struck after the measurement, during teardown.)
        reason = f"exceeded --timeout-per-point {spec.timeout_s:g} s"
        if child is not None:
            child = {**child, "status": "timeout", "stderr_tail": tail}
            child["reason"] = reason + (f"; the run said: {child.get('reason')}")
            return child
        return sweep_record(point, repeat, spec, "timeout", reason, tail)
    if child is not None:
        if child.get("status") != "ok":
            child = {**child, "stderr_tail": tail}
        return child
    if result.stopped_by is not None:
        name = signal.Signals(result.stopped_by).name
        return sweep_record(point, repeat, spec, "interrupted", f"{name} to the sweep", tail)
    last = tail[-1] if tail else "no output on stderr"
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        reason = f"killed by {name}, not by the sweep"
        if -result.returncode == signal.SIGKILL:
            reason += " (often the kernel's out-of-memory killer)"
        status = "failed"
    else:
        reason = f"exit code {result.returncode} without a record: {last}"
        oom_words = ("OutOfMemoryError", "CUDA out of memory")
        status = "oom" if any(word in line for line in tail for word in oom_words) else "failed"
    return sweep_record(point, repeat, spec, status, reason, tail)


# ------------------------------------------------------------------------------ progress


class SweepProgress:
    """A rich bar over runs (weighted by their estimated cost, for an honest ETA) with the
    last run's throughput on a terminal; one stderr line per run elsewhere (logs, CI)."""

    def __init__(self, weights: list[float], runs: int):
        self._bar = None
        self.runs = runs
        self.done = 0
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("sweep"),
                BarColumn(),
                TextColumn("{task.fields[done]}/{task.fields[runs]} runs"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[last]}"),
                console=Console(stderr=True),
                refresh_per_second=2,
            )
            total = sum(weights) or 1.0
            self._task = self._bar.add_task("sweep", total=total, done=0, runs=runs, last="")

    def __enter__(self):
        if self._bar:
            self._bar.start()
        return self

    def __exit__(self, *exc):
        if self._bar:
            self._bar.stop()

    def finished(self, weight: float, line: str, last: str = "") -> None:
        if weight:
            self.done += 1
        if self._bar:
            self._bar.console.print(line, highlight=False)
            self._bar.update(self._task, advance=weight, done=self.done, last=last)
        else:
            print(line, file=sys.stderr, flush=True)


def _outcome_line(run: PlannedRun, record: dict, wall_s: float | None, n: int, total: int) -> str:
    status = record["status"]
    text = f"[{n}/{total}] {run.point.label} r{run.repeat}: {status}"
    rate = (record.get("metrics") or {}).get("images_per_s")
    if status == "ok" and rate is not None:
        text += f", {rate:,.0f} images/s"
    elif record.get("reason"):
        text += f" ({record['reason'][:150]})"
    if wall_s is not None:
        text += f" [{wall_s:.1f} s]"
    return text


# ---------------------------------------------------------------------------------- main


def _run_point(
    run: PlannedRun, spec: SweepSpec, work: str, index: int, signals: _SignalCatcher
) -> tuple[dict, float | None]:
    """One run in a child process: its record and the child's wall time."""
    point_out = os.path.join(work, f"run{index:04d}.jsonl")
    try:
        cfg = point_config(run.point, run.repeat, spec, out=point_out)
    except ConfigError as err:  # checked when planning; the machine changed since (TRITON_*?)
        return sweep_record(run.point, run.repeat, spec, "skipped", str(err)), None
    result = run_child(
        point_command(cfg, run.point.world_size),
        spec.timeout_s,
        os.path.join(work, f"run{index:04d}"),
        signals,
    )
    child = _child_record(point_out)
    if child is not None:
        _keep_sample_grid(child, work, spec.out)
    return outcome_record(run.point, run.repeat, spec, result, child), result.wall_s


def _keep_sample_grid(record: dict, work: str, out: str) -> None:
    """The harness writes a run's sample grid to `samples/` next to its --out: for a sweep's
    child, the temporary folder deleted at the end. Move it to `samples/` next to the
    sweep's --out, where `gan-bench run --out` would have put it, and say so in the record."""
    metrics = record.get("metrics") or {}
    path = metrics.get("sample_grid_path")
    if not isinstance(path, str) or not os.path.isfile(path):
        return
    if os.path.commonpath([os.path.abspath(path), os.path.abspath(work)]) != os.path.abspath(work):
        return
    dest = os.path.join(os.path.dirname(out), "samples", os.path.basename(path))
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    shutil.move(path, dest)
    metrics["sample_grid_path"] = dest


def print_plan(runs: list[PlannedRun], spec: SweepSpec, estimates: list[float]) -> None:
    """--dry-run: the plan per point, and what it would cost."""
    from rich.console import Console
    from rich.table import Table

    per_point: dict[Point, list[PlannedRun]] = defaultdict(list)
    for run in runs:
        per_point[run.point].append(run)
    table = Table()
    for header in ("#", "model", "dataset", "batch/proc", "precision", "procs", "variant", "do"):
        table.add_column(header, overflow="fold")
    for n, (point, planned) in enumerate(per_point.items(), start=1):
        counts = Counter(r.action for r in planned)
        skip = next((r.reason for r in planned if r.action == "skip"), None)
        action = ", ".join(f"{a} {counts[a]}" for a in ("run", "done", "skip") if counts[a])
        if skip:
            action += f" ({skip})"
        table.add_row(
            str(n),
            point.model,
            point.dataset,
            str(point.batch_size),
            point.precision,
            str(point.world_size),
            point.variant,
            action,
        )
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(
        f"gan-bench sweep plan: {spec.machine.device_type}, {spec.steps} timed + "
        f"{spec.warmup_steps} warm-up iterations, {spec.repeats} repeat(s), records to {spec.out}",
        highlight=False,
    )
    console.print(table)
    counts = Counter(r.action for r in runs)
    console.print(
        f"{len(per_point)} points × {spec.repeats} repeat(s): {counts['run']} to run, "
        f"{counts['skip']} skipped (recorded), {counts['done']} already recorded; "
        f"rough estimate {sum(estimates) / 60:.1f} min. Nothing was run or written.",
        highlight=False,
    )


def execute(spec: SweepSpec) -> int:
    """Run the plan; return 0 when every run was ok (or skipped), 1 when one was not,
    128 + the signal number when SIGINT/SIGTERM stopped the sweep."""
    points = spec.points()
    done = recorded_keys(spec.out) if spec.resume else set()
    runs = plan_runs(points, spec, done)
    estimates = estimate_runs_s(runs, spec)
    if spec.dry_run:
        print_plan(runs, spec, estimates)
        return 0
    todo = [(r, w) for r, w in zip(runs, estimates, strict=True) if r.action != "done"]
    already = len(runs) - len(todo)
    n_run = sum(1 for r, _ in todo if r.action == "run")
    print(
        f"gan-bench sweep: {len(points)} point(s) × {spec.repeats} repeat(s) on "
        f"{spec.machine.device_type}: {n_run} to run, {len(todo) - n_run} skipped, "
        f"{already} already recorded in {spec.out} (resume); "
        f"rough estimate {sum(estimates) / 60:.1f} min",
        file=sys.stderr,
        flush=True,
    )
    statuses: Counter = Counter()
    with (
        tempfile.TemporaryDirectory(prefix="gan-bench-sweep-") as work,
        _SignalCatcher() as signals,
        SweepProgress([w for _, w in todo], n_run) as progress,
    ):
        for index, (run, weight) in enumerate(todo, start=1):
            if signals.received:
                break
            if run.action == "skip":
                record = sweep_record(run.point, run.repeat, spec, "skipped", run.reason)
                wall_s = None
            else:
                record, wall_s = _run_point(run, spec, work, index, signals)
            append_record(spec.out, record)
            statuses[record["status"]] += 1
            rate = (record.get("metrics") or {}).get("images_per_s")
            last = f"last: {rate:,.0f} images/s" if rate else f"last: {record['status']}"
            progress.finished(
                weight, _outcome_line(run, record, wall_s, index, len(todo)), last=last
            )
    summary = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    print(
        f"gan-bench sweep: {summary or 'nothing to do'}; {already} already recorded; "
        f"records in {spec.out}",
        file=sys.stderr,
    )
    if signals.received:
        print(
            "gan-bench sweep: interrupted; every record written is whole. Run the same "
            "command again to resume.",
            file=sys.stderr,
        )
        return 128 + signals.received[0]
    _print_comparison(spec.out)
    return 0 if set(statuses) <= {"ok", "skipped"} else 1


def _print_comparison(path: str) -> None:
    if not os.path.exists(path):
        return
    rows = compare.load_rows([path])
    if rows:
        compare.print_table(compare.summarise(rows, "eager"))


def sweep_command(**options) -> int:
    """`gan-bench sweep`: validate the options (ConfigError before anything runs), then run
    the plan, or print it with dry_run. Returns the exit code (see `execute`)."""
    return execute(build_spec(**options))
