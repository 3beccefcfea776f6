"""The `gan-bench` command line. Commands are thin: each builds its input and calls one
library function. Bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Annotated

import typer

try:  # typer >= 0.26 carries its own copy of click
    from typer._click.exceptions import UsageError
except ImportError:  # older typer (the GPU images) depends on click itself
    from click.exceptions import UsageError

from bench.config import COMPILE_MODES, ConfigError, RunConfig
from bench.variants import SPEEDUPS

app = typer.Typer(
    name="gan-bench",
    help="Benchmark GAN training: throughput, memory and sample quality.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Bad input, before anything runs; a run's own exit codes follow its record's status
# (bench.records.exit_code).
EXIT_USAGE = 2

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def fail_usage(message: str) -> None:
    """Report bad input as one line and exit 2."""
    one_line = " ".join(str(message).split())  # messages quoting library errors may wrap
    typer.echo(f"gan-bench: error: {one_line}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _opt(help_text: str, **kwargs):
    return typer.Option(help=help_text, show_default=True, **kwargs)


@app.command()
def run(
    model: Annotated[str, _opt("Model: mlp, dcgan32, dcgan64.")] = _DEFAULTS["model"],
    dataset: Annotated[
        str, _opt("Data: synthetic, mnist5k, digits, mnist, fashion-mnist, cifar10, image-folder.")
    ] = _DEFAULTS["dataset"],
    data_dir: Annotated[
        str | None,
        _opt(
            "Root of a local data set (mnist, fashion-mnist, cifar10, image-folder); no download."
        ),
    ] = None,
    channels: Annotated[
        int | None, _opt("Image channels of synthetic data (default: 1 for mlp, 3 for DCGAN).")
    ] = None,
    batch_size: Annotated[
        int, _opt("Batch size PER PROCESS; the global batch is this times the world size.")
    ] = _DEFAULTS["batch_size"],
    precision: Annotated[
        str, _opt("fp32 (TF32 off), tf32, bf16 (autocast), fp16 (autocast + GradScaler).")
    ] = _DEFAULTS["precision"],
    loss: Annotated[str, _opt("non-saturating, minimax, hinge, wgan-gp.")] = _DEFAULTS["loss"],
    steps: Annotated[
        int | None,
        _opt(
            "Timed iterations (default: 100 on synthetic data; on real data, enough to train: "
            "mlp 5000, DCGAN 2000)."
        ),
    ] = None,
    warmup_steps: Annotated[int, _opt("Untimed iterations first.")] = _DEFAULTS["warmup_steps"],
    seed: Annotated[int, _opt("Seed for weights, data order and latents.")] = _DEFAULTS["seed"],
    device: Annotated[str, _opt("auto (CUDA when present), cpu, cuda.")] = _DEFAULTS["device"],
    sync_bn: Annotated[bool, _opt("Use SyncBatchNorm across processes (CUDA only).")] = _DEFAULTS[
        "sync_bn"
    ],
    nproc: Annotated[
        int, _opt("Processes on this machine; > 1 launches torchrun for you.")
    ] = _DEFAULTS["nproc"],
    out: Annotated[str, _opt("JSON-lines file the record is appended to.")] = _DEFAULTS["out"],
    lr: Annotated[float, _opt("Adam learning rate, both networks.")] = _DEFAULTS["lr"],
    beta1: Annotated[float, _opt("Adam beta1.")] = _DEFAULTS["beta1"],
    beta2: Annotated[float, _opt("Adam beta2.")] = _DEFAULTS["beta2"],
    n_critic: Annotated[
        int | None, _opt("D updates per iteration (default: the loss's own; 5 for wgan-gp).")
    ] = None,
    latent_dim: Annotated[int, _opt("Latent size z.")] = _DEFAULTS["latent_dim"],
    cudnn_benchmark: Annotated[
        bool, _opt("cuDNN autotuning (its cost lands in warm-up).")
    ] = _DEFAULTS["cudnn_benchmark"],
    dist_timeout_s: Annotated[
        int, _opt("Collective timeout in seconds: a dead peer ends the run.")
    ] = _DEFAULTS["dist_timeout_s"],
    variant: Annotated[
        str | None,
        _opt(
            "Speed-up variant: eager, or speed-ups joined by '+' ("
            + ", ".join(SPEEDUPS)
            + "), e.g. triton+channels-last+cuda-graph. Sets the nine options below."
        ),
    ] = None,
    compile_mode: Annotated[
        str, _opt("torch.compile mode: " + ", ".join(COMPILE_MODES) + ".")
    ] = _DEFAULTS["compile_mode"],
    kernels: Annotated[
        str, _opt("BatchNorm+activation kernels: torch, or triton (fused).")
    ] = _DEFAULTS["kernels"],
    conv_kernels: Annotated[
        str,
        _opt(
            "Convolutions over image channels (G's last, D's first with its LeakyReLU): torch, "
            "or triton (kernels sized for few channels; DCGAN)."
        ),
    ] = _DEFAULTS["conv_kernels"],
    memory_format: Annotated[
        str, _opt("Memory format of models and images: contiguous (NCHW) or channels_last.")
    ] = _DEFAULTS["memory_format"],
    pad_image_channels: Annotated[
        bool,
        _opt(
            "Zero-pad image channels to a multiple of 8 (bf16, fp16) or 4 at G's last and D's "
            "first convolution (Tensor Core alignment; DCGAN; the same losses and gradients)."
        ),
    ] = _DEFAULTS["pad_image_channels"],
    joint_d_batch: Annotated[
        bool,
        _opt(
            "D's update runs D once over real and fake concatenated (D without BatchNorm: "
            "mlp, or a wgan-gp critic)."
        ),
    ] = _DEFAULTS["joint_d_batch"],
    batched_casts: Annotated[
        bool,
        _opt(
            "autocast's parameter casts as one multi-tensor cast per network and forward, and "
            "one for their gradients (bf16/fp16; the same values)."
        ),
    ] = _DEFAULTS["batched_casts"],
    cudnn_benchmark_limit: Annotated[
        int | None,
        _opt(
            "Convolution engines cuDNN's autotuner times per convolution; 0: every one it "
            "offers (default: torch's, 10; CUDA, DCGAN)."
        ),
    ] = None,
    cuda_graph: Annotated[
        bool, _opt("Capture the whole iteration as one CUDA graph and replay it (CUDA only).")
    ] = _DEFAULTS["cuda_graph"],
    quality: Annotated[
        bool | None,
        _opt("Measure sample quality after training (default: on for real data sets)."),
    ] = None,
    quality_samples: Annotated[
        int | None, _opt("Generated images per quality evaluation (default 2000 CPU, 10000 GPU).")
    ] = None,
    eval_every: Annotated[
        int | None, _opt("FD every K timed iterations, outside the timing: a quality curve.")
    ] = None,
    target_fd: Annotated[
        float | None, _opt("Stop once FD <= X and record the time it took (needs --eval-every).")
    ] = None,
    quality_cache_dir: Annotated[
        str | None,
        _opt("Where trained extractors are cached (default $GAN_BENCH_CACHE or ~/.cache)."),
    ] = None,
    inception_weights: Annotated[
        str | None,
        _opt("Local Inception weights (pytorch-fid / torchvision / TorchScript): adds FID."),
    ] = None,
    profile_steps: Annotated[
        int,
        _opt(
            "Profile K more iterations after the timed ones (torch.profiler): top kernels, "
            "device idle time; a Chrome trace next to --out."
        ),
    ] = _DEFAULTS["profile_steps"],
    repeat: Annotated[int, _opt("Index of this run among repeats of one point (recorded).")] = 0,
    quiet: Annotated[bool, _opt("No progress bar and no summary table.")] = _DEFAULTS["quiet"],
) -> None:
    """Train one GAN for a fixed number of iterations and append one record."""
    from bench import data, distributed, harness, launcher  # torch is imported only when running
    from bench.records import exit_code

    try:
        cfg = RunConfig(
            model=model,
            dataset=dataset,
            data_dir=data_dir,
            channels=channels,
            batch_size=batch_size,
            precision=precision,
            loss=loss,
            steps=steps,
            warmup_steps=warmup_steps,
            seed=seed,
            device=device,
            sync_bn=sync_bn,
            nproc=nproc,
            out=out,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            n_critic=n_critic,
            latent_dim=latent_dim,
            cudnn_benchmark=cudnn_benchmark,
            dist_timeout_s=dist_timeout_s,
            variant=variant,
            compile_mode=compile_mode,
            kernels=kernels,
            conv_kernels=conv_kernels,
            memory_format=memory_format,
            pad_image_channels=pad_image_channels,
            joint_d_batch=joint_d_batch,
            batched_casts=batched_casts,
            cudnn_benchmark_limit=cudnn_benchmark_limit,
            cuda_graph=cuda_graph,
            quality=quality,
            quality_samples=quality_samples,
            eval_every=eval_every,
            target_fd=target_fd,
            quality_cache_dir=quality_cache_dir,
            inception_weights=inception_weights,
            profile_steps=profile_steps,
            repeat=repeat,
            quiet=quiet,
        )
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
        data.check_readable(cfg.dataset, cfg.data_dir, cfg.batch_size, world)
        if not torchrun and cfg.nproc > 1:
            raise typer.Exit(launcher.launch(cfg))
    except (ConfigError, data.DataError) as err:
        fail_usage(str(err))
    raise typer.Exit(exit_code(harness.execute(cfg, device_type)))


def _check_inception_weights(path: str) -> None:
    """A file that is not Inception weights is bad input: found before any training."""
    from bench.quality import InceptionWeightsError, load_inception

    try:
        load_inception(path)
    except InceptionWeightsError as err:
        raise ConfigError(str(err)) from None


@app.command()
def env(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Versions, devices and driver of this machine, as a record would carry them."""
    from bench.environment import environment_report

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


_GRID = " Default: this machine's grid (--dry-run shows it)."


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
        _opt("Comma list of batch sizes PER PROCESS." + _GRID),
    ] = None,
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
    concurrent: Annotated[
        int,
        _opt(
            "Points run at once, each its own process, sharing the device: for quality "
            "sweeps (parity over seeds), whose records `compare` then leaves out of every "
            "speed figure. 1: one at a time, each alone, as timing needs. One-process "
            "points only."
        ),
    ] = 1,
) -> None:
    """Run a grid of points, each in its own process; end with the compare table."""
    from bench.sweep import sweep_command

    try:
        rc = sweep_command(
            models=models,
            datasets=datasets,
            batch_sizes=batch_sizes,
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
        )
    except ConfigError as err:
        fail_usage(str(err))
    raise typer.Exit(rc)


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
    from bench.compare import compare_command

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
    from bench.report import write_report

    try:
        written = write_report(results, out_dir, baseline=baseline)
    except ConfigError as err:
        fail_usage(str(err))
    for path in written:
        typer.echo(f"wrote {path}")


@app.command()
def kernels(
    out: Annotated[str, _opt("JSON-lines file the records are appended to.")] = (
        "results/kernels.jsonl"
    ),
    dtypes: Annotated[str, _opt("Comma list: fp32, bf16.")] = "fp32,bf16",
    impls: Annotated[str, _opt("Comma list: eager, compile, triton.")] = "eager,compile,triton",
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
    quiet: Annotated[bool, _opt("No table.")] = False,
) -> None:
    """Time the fused BatchNorm+LeakyReLU kernels (or, with --convs, the narrow
    convolutions) against eager and torch.compile (CUDA)."""
    from bench.kernelbench.command import run_kernel_benchmarks

    def split(text: str) -> list[str]:
        return [part.strip() for part in text.split(",") if part.strip()]

    try:
        if rep_ms < 1:
            raise ConfigError(f"--rep-ms must be at least 1, got {rep_ms}")
        run_kernel_benchmarks(
            out=out,
            dtypes=split(dtypes),
            impls=split(impls),
            passes=split(passes),
            match=match,
            rep_ms=rep_ms,
            quiet=quiet,
            tune=tune,
            convs=convs,
        )
    except ConfigError as err:
        fail_usage(str(err))


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
