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
from bench.variants import VARIANTS

app = typer.Typer(
    name="gan-bench",
    help="Benchmark GAN training: throughput, memory and sample quality.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Exit codes of `run`: 0 ok; 1 failed or out of memory; 3 diverged (the run worked, the GAN
# did not); 130/143 interrupted by SIGINT/SIGTERM, as a shell reports a signal death.
EXIT_CODES = {"ok": 0, "failed": 1, "oom": 1, "diverged": 3}
EXIT_USAGE = 2

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def fail_usage(message: str) -> None:
    """Report bad input as one line and exit 2."""
    typer.echo(f"gan-bench: error: {message}", err=True)
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
    steps: Annotated[int, _opt("Timed iterations.")] = _DEFAULTS["steps"],
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
        str | None, _opt("Speed-up variant: " + ", ".join(VARIANTS) + " (sets the two below).")
    ] = None,
    compile_mode: Annotated[
        str, _opt("torch.compile mode: " + ", ".join(COMPILE_MODES) + ".")
    ] = _DEFAULTS["compile_mode"],
    kernels: Annotated[
        str, _opt("BatchNorm+activation kernels: torch, or triton (fused).")
    ] = _DEFAULTS["kernels"],
    repeat: Annotated[int, _opt("Index of this run among repeats of one point (recorded).")] = 0,
    quiet: Annotated[bool, _opt("No progress bar and no summary table.")] = _DEFAULTS["quiet"],
) -> None:
    """Train one GAN for a fixed number of iterations and append one record."""
    from bench import distributed, harness, launcher  # torch is imported only when running

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
            repeat=repeat,
            quiet=quiet,
        )
        device_type = launcher.resolve_device(cfg)
        if distributed.launched_by_torchrun():
            world = int(os.environ["WORLD_SIZE"])
            if cfg.nproc not in (1, world):
                raise ConfigError(
                    f"--nproc {cfg.nproc} under torchrun, which already started {world} processes; "
                    "leave --nproc out and use torchrun's --nproc_per_node"
                )
        elif cfg.nproc > 1:
            raise typer.Exit(launcher.launch(cfg))
    except ConfigError as err:
        fail_usage(str(err))
    record = harness.execute(cfg, device_type)
    if record["status"] == "interrupted":
        signame = record["reason"].split()[0]
        raise typer.Exit(128 + (2 if signame == "SIGINT" else 15))
    raise typer.Exit(EXIT_CODES[record["status"]])


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


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click usage errors become one line and exit code 2."""
    command = typer.main.get_command(app)
    try:
        rc = command.main(args=argv, prog_name="gan-bench", standalone_mode=False)
    except UsageError as err:
        message = err.format_message()
        if not message:  # no arguments at all: the help was the answer
            sys.exit(0)
        typer.echo(f"gan-bench: error: {message}", err=True)
        sys.exit(EXIT_USAGE)
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)
