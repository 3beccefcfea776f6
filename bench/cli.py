"""The `gan-bench` command line. Commands are thin: each builds its input and calls one
library function. Bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import typing
from typing import Annotated

import typer

try:  # typer >= 0.26 carries its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # older typer (the GPU images) depends on click itself
    from click.exceptions import UsageError

from bench.config import ConfigError, RunConfig, check_results_path
from bench.speedups import SPEEDUPS

app = typer.Typer(
    name="gan-bench",
    help="Benchmark GAN training: throughput, memory and sample quality.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Bad input, before anything runs; a run's own exit codes follow its record's status
# (bench.telemetry.records.exit_code).
EXIT_USAGE = 2


def fail_usage(message: str) -> None:
    """Report bad input as one line and exit 2."""
    one_line = " ".join(str(message).split())  # messages quoting library errors may wrap
    typer.echo(f"gan-bench: error: {one_line}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _opt(help_text: str, **kwargs):
    return typer.Option(help=help_text, show_default=True, **kwargs)


def _config_options() -> inspect.Signature:
    """`gan-bench run`'s options: one per RunConfig field, with the field's help and
    default (the speed-up options among them come from the speed-up registry)."""
    hints = typing.get_type_hints(RunConfig)
    return inspect.Signature(
        [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=f.default,
                annotation=Annotated[hints[f.name], _opt(f.metadata.get("help", ""))],
            )
            for f in dataclasses.fields(RunConfig)
        ]
    )


def _cluster_parameters() -> list[inspect.Parameter]:
    """`--launcher` and the SLURM options of `run` and `sweep`: one per SlurmOptions field,
    with its help (None: its default)."""
    from bench.runtime.slurm import LAUNCHERS, SlurmOptions

    hints = typing.get_type_hints(SlurmOptions)
    launcher = inspect.Parameter(
        "launcher",
        inspect.Parameter.KEYWORD_ONLY,
        default="local",
        annotation=Annotated[
            str,
            _opt(
                f"Where runs go: {' or '.join(LAUNCHERS)}. local: this machine (torchrun for "
                "several processes); slurm: a SLURM job per run, through submitit, shaped "
                "by the options below."
            ),
        ],
    )
    params = [launcher]
    for f in dataclasses.fields(SlurmOptions):
        hint = hints[f.name]
        if f.name == "slurm_option":
            hint = list[str] | None  # repeatable
        elif f.default is not None and not isinstance(f.default, bool):
            hint = hint | None
        default = f.default if isinstance(f.default, bool) else None
        text = f.metadata["help"]
        if f.default not in (None, ()) and not isinstance(f.default, bool):
            text += f" (default: {f.default})"
        annotation = Annotated[hint, _opt(text)]
        params.append(
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )  # fmt: skip
        )
    return params


def _with_cluster_options(command) -> None:
    """Give `command` (whose last parameter is **cluster) the cluster options."""
    # The annotations evaluated (this module's are strings): typer reads the options in them.
    hints = typing.get_type_hints(command, include_extras=True)
    own = [
        p.replace(annotation=hints[p.name])
        for p in inspect.signature(command).parameters.values()
        if p.kind != p.VAR_KEYWORD
    ]
    command.__signature__ = inspect.Signature([*own, *_cluster_parameters()])


def _cluster(values: dict):
    """SlurmOptions for `--launcher slurm`, None for local; ConfigError."""
    from bench.runtime.slurm import launcher_options

    return launcher_options(values.pop("launcher", "local"), **values)


def run(**options) -> None:
    """Train one GAN for a fixed number of iterations and append one record."""
    from bench import data
    from bench.runtime import distributed, harness, launcher  # torch only when running
    from bench.telemetry.records import exit_code

    cluster = {k: options.pop(k) for k in list(options) if k not in RunConfig.__dataclass_fields__}
    try:
        slurm = _cluster(cluster)
        cfg = RunConfig(**options)
        if slurm is not None:  # checked against the job's nodes, not this machine
            check_results_path(cfg.out)
            if cfg.inception_weights is not None:
                _check_inception_weights(cfg.inception_weights)
            data.check_readable(cfg.dataset, cfg.data_dir, cfg.batch_size_per_process, cfg.nproc)
            raise typer.Exit(launcher.launch_on_slurm(cfg, slurm))
        device_type = launcher.resolve_device(cfg)
        if cfg.inception_weights is not None:
            _check_inception_weights(cfg.inception_weights)
        torchrun = distributed.launched_by_torchrun()
        world = int(os.environ["WORLD_SIZE"]) if torchrun else cfg.nproc
        if torchrun and cfg.nproc not in (1, world):
            raise ConfigError(
                f"--nproc {cfg.nproc} under torchrun, which already started {world} processes; "
                "leave --nproc out and use torchrun's --nproc_per_node"
            )
        data.check_readable(cfg.dataset, cfg.data_dir, cfg.batch_size_per_process, world)
        if not torchrun and cfg.nproc > 1:
            raise typer.Exit(launcher.launch(cfg))
    except (ConfigError, data.DataError) as err:
        fail_usage(str(err))
    raise typer.Exit(exit_code(harness.execute(cfg, device_type)))


run.__signature__ = inspect.Signature(
    [*_config_options().parameters.values(), *_cluster_parameters()]
)
app.command()(run)


def _check_inception_weights(path: str) -> None:
    """A file that is not Inception weights is bad input: found before any training."""
    from bench.quality import InceptionWeightsError, load_inception

    try:
        load_inception(path)
    except InceptionWeightsError as err:
        raise ConfigError(str(err)) from None


@app.command()
def variants(
    name: Annotated[
        str | None,
        typer.Argument(help="A variant to check, e.g. compile+cuda-graph+triton (any order)."),
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The table in Markdown (the README's).")
    ] = False,
) -> None:
    """The speed-ups (name, what it does, requires, conflicts); with NAME, whether that
    combination is valid and why not."""
    from bench.speedups import VariantError, parse_variant
    from bench.speedups import table as speedup_table

    if name is not None:
        try:
            variant = parse_variant(name)
        except VariantError as err:
            fail_usage(str(err))
        for line in speedup_table.describe(variant):
            typer.echo(line)
        return
    if markdown:
        typer.echo(speedup_table.markdown(), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gan-bench speed-ups: a variant is eager, or these joined by '+'")
    for i, column in enumerate(speedup_table.COLUMNS):
        table.add_column(column, no_wrap=i == 0, overflow="fold")
    for cells in speedup_table.rows():
        table.add_row(*cells)
    Console(width=None if sys.stdout.isatty() else 160).print(table)


@app.command()
def env(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Versions, devices and driver of this machine, as a record would carry them."""
    from bench.telemetry.environment import environment_report

    report = environment_report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="gan-bench env", show_header=False)
    for key, value in report.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    Console().print(table)


_GRID = " Default: the --grid tier for this machine (--dry-run shows it)."


@app.command()
def sweep(
    models: Annotated[
        str | None,
        _opt("Comma list of models: mlp, dcgan32, dcgan64." + _GRID),
    ] = None,
    datasets: Annotated[
        str | None,
        _opt("Comma list of data sets (as `run --dataset`)." + _GRID),
    ] = None,
    batch_sizes: Annotated[
        str | None,
        _opt("Comma list of batch sizes: per process, or global with --scaling strong." + _GRID),
    ] = None,
    scaling: Annotated[
        str,
        _opt(
            "weak: --batch-sizes are per process; strong: they are global batches, divided "
            "evenly among each point's processes (a point they do not divide is skipped)."
        ),
    ] = RunConfig.scaling,
    precisions: Annotated[
        str | None,
        _opt("Comma list of fp32, tf32, bf16, fp16." + _GRID),
    ] = None,
    gpus: Annotated[
        str | None,
        _opt("Comma list of world sizes (GPUs; processes on CPU)." + _GRID),
    ] = None,
    variants: Annotated[
        str | None,
        _opt(
            "Comma list of variants: eager, or speed-ups joined by '+' ("
            + ", ".join(SPEEDUPS)
            + ")."
            + _GRID
        ),
    ] = None,
    steps: Annotated[
        int | None, _opt("Timed iterations per run. (default: 20 on CPU, 100 on GPU)")
    ] = None,
    warmup_steps: Annotated[
        int | None, _opt("Untimed iterations first. (default: 3 on CPU, 12 on GPU)")
    ] = None,
    repeats: Annotated[
        int | None, _opt("Runs of each point (median and spread). (default: 2 CPU, 3 GPU)")
    ] = None,
    out: Annotated[
        str, _opt("JSON-lines file the records are appended to (the one `run` uses).")
    ] = "results/runs.jsonl",
    timeout_per_point: Annotated[
        float | None, _opt("Seconds before a run is stopped. (default: 300 CPU, 1800 GPU)")
    ] = None,
    resume: Annotated[bool, _opt("Skip runs that already have an ok record in --out.")] = True,
    dry_run: Annotated[bool, _opt("Print the plan and its rough cost; run nothing.")] = False,
    device: Annotated[str, _opt("auto (CUDA when present), cpu, cuda.")] = "auto",
    data_dir: Annotated[str | None, _opt("Root of local data sets, as `run --data-dir`.")] = None,
    seeds: Annotated[
        str | None,
        _opt(
            "Comma list of seeds (whole numbers >= 0); every point runs once per seed and "
            "repeat, for quality parity in `compare`. (default: 0)"
        ),
    ] = None,
    fork_server: Annotated[
        bool,
        _opt(
            "Fork one-process points from a server that has imported torch and the harness "
            "once (seconds less start-up per point); --no-fork-server starts each in a fresh "
            "interpreter."
        ),
    ] = True,
    precompile_jobs: Annotated[
        int | None,
        _opt(
            "Points using torch.compile default or reduce-overhead compiled ahead, this "
            "many at once, each by a short process that fills inductor's on-disk caches; "
            "each point then runs alone and loads its compiled code. 0: each point compiles "
            "in its own run. (default: one per 4 CPU cores, at most 4)"
        ),
    ] = None,
    grid: Annotated[
        str,
        _opt(
            "Tier of the default grid: quick (minutes: eager, compile and the fastest stacks "
            "at the goal points, scaling), full (every speed-up, precisions, scaling), goals "
            "(the goal points over the variants the goals are judged on)."
        ),
    ] = "quick",
    plan_for: Annotated[
        str | None,
        typer.Option(
            "--machine",
            help="With --dry-run: plan for another machine, cuda:N (N GPUs) or cpu:N "
            "(N cores), e.g. to size a GPU or cluster job from a laptop.",
        ),
    ] = None,
    concurrent: Annotated[
        int,
        _opt(
            "Points run at once, each its own process, sharing the device: for quality "
            "sweeps (parity over seeds), whose records `compare` then leaves out of every "
            "speed figure. 1: one at a time, each alone, as timing needs. One-process "
            "points only."
        ),
    ] = 1,
    **cluster,
) -> None:
    """Run a grid of points, each in its own process (or SLURM job); end with the compare
    table."""
    from bench.sweep import sweep_command

    try:
        rc = sweep_command(
            slurm=_cluster(cluster),
            models=models,
            datasets=datasets,
            batch_sizes=batch_sizes,
            scaling=scaling,
            precisions=precisions,
            gpus=gpus,
            variants=variants,
            steps=steps,
            warmup_steps=warmup_steps,
            repeats=repeats,
            out=out,
            timeout_per_point=timeout_per_point,
            resume=resume,
            dry_run=dry_run,
            device=device,
            data_dir=data_dir,
            seeds=seeds,
            fork_server=fork_server,
            precompile_jobs=precompile_jobs,
            concurrent=concurrent,
            grid=grid,
            plan_for=plan_for,
        )
    except ConfigError as err:
        fail_usage(str(err))
    raise typer.Exit(rc)


_with_cluster_options(sweep)


@app.command()
def compare(
    results: Annotated[list[str], typer.Argument(help="JSON-lines results files.")],
    baseline: Annotated[str, _opt("Variant the others are compared with.")] = "eager",
    fmt: Annotated[
        str, typer.Option("--format", help="table, markdown, csv or json.", show_default=True)
    ] = "table",
    fail_below: Annotated[
        float | None, _opt("Exit 1 when an ok variant's speed-up is under this ratio.")
    ] = None,
    fail_on_quality: Annotated[
        bool,
        typer.Option(
            "--fail-on-quality",
            help="Exit 1 when a variant's FD or KID lies outside the baseline's "
            "seed-to-seed spread (needs >= 3 seeds on both sides).",
        ),
    ] = False,
) -> None:
    """Variants against a baseline: throughput, speed-up, memory, quality, scaling."""
    from bench.analysis.compare import compare_command

    try:
        rc = compare_command(
            results,
            baseline=baseline,
            fmt=fmt,
            fail_below=fail_below,
            fail_on_quality=fail_on_quality,
        )
    except ConfigError as err:
        fail_usage(str(err))
    raise typer.Exit(rc)


@app.command()
def report(
    results: Annotated[list[str], typer.Argument(help="JSON-lines results files.")],
    out_dir: Annotated[str, _opt("Folder for the PNG plots and report.md.")] = "results/report",
    baseline: Annotated[str, _opt("Variant the others are compared with.")] = "eager",
) -> None:
    """PNG plots and a markdown summary (with the compare table) of results."""
    from bench.analysis.report import write_report

    try:
        written = write_report(results, out_dir, baseline=baseline)
    except ConfigError as err:
        fail_usage(str(err))
    for path in written:
        typer.echo(f"wrote {path}")


@app.command()
def goals(
    out_dir: Annotated[str, typer.Argument(help="The folder .ci/measure-gpu wrote.")],
    best: Annotated[
        tuple[str, int] | None,
        typer.Option(
            metavar="MODEL BATCH",
            help="Print only the fastest variant sweep.jsonl holds at this goal point (one "
            "GPU), or an empty line: the variant to profile. Writes nothing.",
        ),
    ] = None,
) -> None:
    """Each performance goal (results/goals.json), met or missed; writes OUT_DIR/goals.md."""
    from bench.analysis.goals import goals_command

    try:
        goals_command(out_dir, best=best)
    except ConfigError as err:
        fail_usage(str(err))


@app.command()
def kernels(
    out: Annotated[
        str | None,
        _opt(
            "JSON-lines file the records are appended to (default: results/kernels.jsonl, "
            "with --host results/kernel-host.jsonl)."
        ),
    ] = None,
    dtypes: Annotated[str, _opt("Comma list: fp32, bf16.")] = "fp32,bf16",
    impls: Annotated[
        str | None,
        _opt(
            "Comma list: eager, compile, triton, and for the fused BatchNorm also "
            "triton-one-kernel (the op asked for one kernel each way). Default: all of the "
            "benchmark's."
        ),
    ] = None,
    passes: Annotated[str, _opt("Comma list: forward, backward, forward+backward.")] = (
        "forward,backward,forward+backward"
    ),
    match: Annotated[
        str | None, _opt("Only cases whose name contains one of these texts (comma list).")
    ] = None,
    rep_ms: Annotated[int, _opt("do_bench time budget per measurement, ms.")] = 100,
    tune: Annotated[
        bool,
        _opt("Time the fused op under each launch tuning (tile, programs/SM, warps, stages, ...)."),
    ] = False,
    convs: Annotated[
        bool,
        _opt(
            "Time the narrow convolutions (DCGAN-64's image layers, bf16) against cuDNN and "
            "torch.compile instead (--dtypes is not read; --tune times their launch tunings)."
        ),
    ] = False,
    host: Annotated[
        bool,
        _opt(
            "Measure the host instead, on any machine (CPU included): the fused op's µs per "
            "forward + backward with its launches stubbed and counted, planned as on a GPU, "
            "against eager's dispatch-only µs (--impls, --passes, --rep-ms are not read)."
        ),
    ] = False,
    quiet: Annotated[bool, _opt("No table.")] = False,
) -> None:
    """Time the fused BatchNorm+LeakyReLU kernels (or, with --convs, the narrow
    convolutions) against eager and torch.compile (CUDA); with --host, the fused op's host
    time against eager's dispatch (any machine)."""
    from bench.kernelbench.command import run_kernel_benchmarks

    def split(text: str) -> list[str]:
        return [part.strip() for part in text.split(",") if part.strip()]

    try:
        if rep_ms < 1:
            raise ConfigError(f"--rep-ms must be at least 1, got {rep_ms}")
        run_kernel_benchmarks(
            out=out or ("results/kernel-host.jsonl" if host else "results/kernels.jsonl"),
            dtypes=split(dtypes),
            impls=None if impls is None else split(impls),
            passes=split(passes),
            match=match,
            rep_ms=rep_ms,
            quiet=quiet,
            tune=tune,
            convs=convs,
            host=host,
        )
    except ConfigError as err:
        fail_usage(str(err))


@app.command()
def allreduce(
    nproc: Annotated[
        int, _opt("Processes (torchrun here, or a SLURM job's), one per GPU with nccl.")
    ] = 2,
    backend: Annotated[str, _opt("auto (nccl on CUDA, gloo on CPU), gloo, nccl.")] = "auto",
    sizes: Annotated[
        str | None,
        _opt(
            "Comma list of message sizes in bytes (KiB, MiB, GiB allowed). Default: every "
            "power of two from 4 KiB to 64 MiB, spanning the GANs' gradient buckets."
        ),
    ] = None,
    dtype: Annotated[str, _opt("float32, bfloat16, float16.")] = "float32",
    iters: Annotated[int, _opt("Timed all-reduces per size (the median is kept).")] = 20,
    warmup: Annotated[int, _opt("Untimed all-reduces per size first.")] = 5,
    out: Annotated[str, _opt("JSON-lines file the record is appended to.")] = (
        "results/allreduce.jsonl"
    ),
    **cluster,
) -> None:
    """The fabric's all-reduce time, algorithm and bus bandwidth per message size, over
    N processes (nccl-tests' convention); one record appended to --out."""
    from bench.commbench.command import allreduce_command
    from bench.commbench.spec import DEFAULT_SIZES, AllReduceSpec, parse_sizes

    try:
        spec = AllReduceSpec(
            backend=backend,
            sizes=DEFAULT_SIZES if sizes is None else parse_sizes(sizes),
            dtype=dtype,
            iters=iters,
            warmup=warmup,
            out=out,
            nproc=nproc,
        )
        rc = allreduce_command(spec, _cluster(cluster))
    except ConfigError as err:
        fail_usage(str(err))
    raise typer.Exit(rc)


_with_cluster_options(allreduce)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click usage errors become one line and exit code 2."""
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=argv, prog_name="gan-bench", standalone_mode=False)
    except UsageError as err:
        message = err.format_message()
        if not message or type(err).__name__ == "NoArgsIsHelpError":
            # No arguments at all: the help is the answer (typer's vendored click has
            # printed it already; click >= 8.2 carries it in the message).
            if message:
                typer.echo(message)
            sys.exit(0)
        typer.echo(f"gan-bench: error: {message}", err=True)
        sys.exit(EXIT_USAGE)
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)
