"""The run configuration: one typed dataclass, validated once.

`gan-bench run` and `python -m bench.run` both build a `RunConfig`, from options made out
of its fields (bench/cli.py reads each field's help here); nothing else parses flags.
The speed-ups' options are fields too, added from the speed-up registry
(bench.speedups.OPTIONS), so a new speed-up's option needs no line here. Validation that
needs no hardware happens in `__post_init__`; what depends on the machine (fp16 on CPU,
`--device cuda` without a GPU, a speed-up that needs CUDA) happens in `check_device`,
also before any work.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from bench import data
from bench.speedups import (
    BASELINE_FIELDS,
    OPTIONS,
    VariantError,
    option_help,
    parse_variant,
    speedup_problem,
    variant_name,
)
from bench.telemetry.machine import Machine, this_host
from gan_models import LOSSES, MODELS

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
# weak: --batch-size is each process's, so the global batch grows with the processes;
# strong: --batch-size is the global batch, split among them.
SCALINGS = ("weak", "strong")
# Precisions that only make sense on a CUDA device: TF32 is an Ampere+ tensor-core mode, and
# fp16 training needs a GradScaler, whose CPU path we do not benchmark.
CUDA_ONLY_PRECISIONS = ("tf32", "fp16")
# BatchNorm in training mode needs more than one value per channel. The MLP generator's
# BatchNorm1d sees exactly batch_size values per channel; DCGAN's smallest BatchNorm input is
# 4x4, so even a batch of one gives 16 values.
MIN_BATCH_FOR_BATCHNORM = {"mlp": 2}


# Timed iterations when --steps is not given. Synthetic data measures speed: 100 iterations
# give stable percentiles. A real data set also measures quality, so the default trains long
# enough for the samples to look like the data (mlp on mnist5k: recognisable digits,
# a couple of minutes on a 2-core CPU).
SYNTHETIC_STEPS = 100
TRAINING_STEPS = {"mlp": 5000, "dcgan32": 2000, "dcgan64": 2000}


def default_steps(model: str, dataset: str) -> int:
    return SYNTHETIC_STEPS if dataset == "synthetic" else TRAINING_STEPS[model]


class ConfigError(ValueError):
    """Bad user input: printed as one line, exit code 2, nothing run or written."""


def _choice(flag: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{flag} {value!r} is not known; choose one of: {', '.join(allowed)}")


def _opt(default, help_text: str):
    """A field with its command-line help."""
    return field(default=default, metadata={"help": help_text})


def _with_speedup_options(cls):
    """One field per speed-up option, from the registry, before @dataclass reads the class:
    what it sets, its type, its baseline default and its help."""
    for option in OPTIONS.values():
        cls.__annotations__[option.name] = option.type
        setattr(cls, option.name, _opt(option.default, option_help(option)))
    return cls


@dataclass(kw_only=True)
@_with_speedup_options
class RunConfig:
    """Everything that defines one benchmark run. Field names match the command-line options;
    the speed-up options (compile_mode, kernels, memory_format, cuda_graph, ...) come from
    bench.speedups.OPTIONS."""

    model: str = _opt("dcgan32", "Model: " + ", ".join(MODELS) + ".")
    dataset: str = _opt(
        "synthetic", "Data: " + ", ".join(data.DATASETS) + " (local folders are never downloaded)."
    )
    data_dir: str | None = _opt(
        None, "Root of a local data set (mnist, fashion-mnist, cifar10, image-folder)."
    )
    # Image channels for the synthetic data set; real data sets bring their own.
    channels: int | None = _opt(
        None, "Image channels of synthetic data (default: 1 for mlp, 3 for DCGAN)."
    )
    batch_size: int = _opt(
        64,
        "Batch size: PER PROCESS under --scaling weak (the global batch is this times the "
        "world size), the global batch under --scaling strong.",
    )
    scaling: str = _opt(
        "weak",
        "weak: --batch-size is per process; strong: --batch-size is the global batch, "
        "divided evenly among the processes.",
    )
    precision: str = _opt(
        "fp32", "fp32 (TF32 off), tf32, bf16 (autocast), fp16 (autocast + GradScaler)."
    )
    loss: str = _opt("non-saturating", "Loss: " + ", ".join(LOSSES) + ".")
    steps: int | None = _opt(
        None,
        "Timed iterations (default: 100 on synthetic data; on real data, enough to train: "
        "mlp 5000, DCGAN 2000).",
    )
    warmup_steps: int = _opt(10, "Untimed iterations first.")
    seed: int = _opt(0, "Seed for weights, data order and latents.")
    device: str = _opt("auto", "auto (CUDA when present), cpu, cuda.")
    sync_bn: bool = _opt(False, "Use SyncBatchNorm across processes (CUDA only).")
    nproc: int = _opt(1, "Processes on this machine; > 1 launches torchrun for you.")
    out: str = _opt("results/runs.jsonl", "JSON-lines file the record is appended to.")
    lr: float = _opt(2e-4, "Adam learning rate, both networks (Radford et al. 2015).")
    beta1: float = _opt(0.5, "Adam beta1.")
    beta2: float = _opt(0.999, "Adam beta2.")
    n_critic: int | None = _opt(
        None, "D updates per iteration (default: the loss's own; 5 for wgan-gp)."
    )
    latent_dim: int = _opt(100, "Latent size z.")
    # As the PyTorch DCGAN example; autotuning happens in warm-up.
    cudnn_benchmark: bool = _opt(True, "cuDNN autotuning (its cost lands in warm-up).")
    # A dead peer ends the run, never a hang.
    dist_timeout_s: int = _opt(120, "Collective timeout in seconds: a dead peer ends the run.")
    variant: str | None = _opt(
        None,
        "Speed-up variant: eager, or speed-ups joined by '+' (`gan-bench variants` lists "
        "them), e.g. triton+channels-last+cuda-graph. Sets the speed-up options below.",
    )
    # Sample quality (bench/quality), measured outside the timed region. None: on for real
    # data sets, off for synthetic data.
    quality: bool | None = _opt(
        None, "Measure sample quality after training (default: on for real data sets)."
    )
    quality_samples: int | None = _opt(
        None, "Generated images per quality evaluation (default 2000 CPU, 10000 GPU)."
    )
    eval_every: int | None = _opt(
        None, "FD every K timed iterations, outside the timing: a quality curve."
    )
    target_fd: float | None = _opt(
        None, "Stop once FD <= X and record the time it took (needs --eval-every)."
    )
    quality_cache_dir: str | None = _opt(
        None, "Where trained extractors are cached (default $GAN_BENCH_CACHE or ~/.cache)."
    )
    inception_weights: str | None = _opt(
        None, "Local Inception weights (pytorch-fid / torchvision / TorchScript): adds FID."
    )
    # They train too, so they add to the iterations a run trains.
    profile_steps: int = _opt(
        0,
        "Profile K more iterations after the timed ones (torch.profiler): top kernels, "
        "device idle time; a Chrome trace next to --out.",
    )
    repeat: int = _opt(0, "Index of this run among repeats of one point (recorded).")
    quiet: bool = _opt(False, "No progress bar and no summary table.")

    def __post_init__(self) -> None:
        _choice("--model", self.model, tuple(MODELS))
        _choice("--precision", self.precision, PRECISIONS)
        _choice("--loss", self.loss, tuple(LOSSES))
        _choice("--scaling", self.scaling, SCALINGS)
        if self.variant is not None:
            self._apply_variant()
        _choice("--device", self.device, DEVICES)
        try:
            data.check_dataset(self.dataset, self.data_dir)
        except data.DataError as err:
            raise ConfigError(str(err)) from None
        if self.steps is None:
            self.steps = default_steps(self.model, self.dataset)
        for flag, value, low in (
            ("--batch-size", self.batch_size, 1),
            ("--steps", self.steps, 1),
            ("--warmup-steps", self.warmup_steps, 0),
            ("--nproc", self.nproc, 1),
            ("--latent-dim", self.latent_dim, 1),
            ("--dist-timeout-s", self.dist_timeout_s, 1),
            ("--repeat", self.repeat, 0),
            ("--profile-steps", self.profile_steps, 0),
        ):
            if value < low:
                raise ConfigError(f"{flag} must be at least {low}, got {value}")
        if self.n_critic is not None and self.n_critic < 1:
            raise ConfigError(f"--n-critic must be at least 1, got {self.n_critic}")
        world = self.world_size
        if self.scaling == "strong" and self.batch_size % world:
            raise ConfigError(
                f"--batch-size {self.batch_size} does not divide evenly among {world} "
                f"processes (--scaling strong: it is the global batch); use a multiple of {world}"
            )
        min_batch = MIN_BATCH_FOR_BATCHNORM.get(self.model, 1)
        if self.batch_size_per_process < min_batch:
            per_process = (
                f" ({self.batch_size_per_process} per process)" if self.scaling == "strong" else ""
            )
            raise ConfigError(
                f"--batch-size {self.batch_size}{per_process} leaves one value per channel for "
                f"{self.model}'s BatchNorm in training; use at least {min_batch} per process"
            )
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        for flag, beta in (("--beta1", self.beta1), ("--beta2", self.beta2)):
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"{flag} must be in [0, 1), got {beta}")
        own = data.dataset_channels(self.dataset)
        if self.channels is not None:
            if self.channels < 1:
                raise ConfigError(f"--channels must be at least 1, got {self.channels}")
            if own is not None and self.channels != own:
                raise ConfigError(
                    f"--channels {self.channels} does not match {self.dataset}, "
                    f"which has {own} channel(s); leave --channels out for real data"
                )
        # After --channels: padding depends on the image channels.
        problem = speedup_problem(self)
        if problem:
            raise ConfigError(problem)
        self._check_quality()
        check_results_path(self.out)

    def _apply_variant(self) -> None:
        try:
            variant = parse_variant(self.variant)
        except VariantError as err:
            raise ConfigError(f"--{err}") from None
        self.variant = variant.name
        for name, value in variant.fields.items():
            given = getattr(self, name)
            if given != BASELINE_FIELDS[name] and given != value:
                option = OPTIONS[name]
                raise ConfigError(
                    f"--variant {self.variant} sets {option.flag_text(value)}, which "
                    f"contradicts {option.flag_text(given)}; give one or the other"
                )
            setattr(self, name, value)

    def _check_quality(self) -> None:
        if self.quality_samples is not None and self.quality_samples < 10:
            raise ConfigError(f"--quality-samples must be at least 10, got {self.quality_samples}")
        if self.eval_every is not None and self.eval_every < 1:
            raise ConfigError(f"--eval-every must be at least 1, got {self.eval_every}")
        if self.target_fd is not None:
            if not self.target_fd > 0:
                raise ConfigError(f"--target-fd must be positive, got {self.target_fd}")
            if self.eval_every is None:
                raise ConfigError("--target-fd needs --eval-every K: how often FD is checked")
        wants_quality = self.eval_every is not None or self.inception_weights is not None
        if wants_quality and self.quality is False:
            raise ConfigError("--eval-every, --target-fd and --inception-weights need quality on")
        if self.inception_weights is not None and not os.path.isfile(self.inception_weights):
            raise ConfigError(f"--inception-weights {self.inception_weights!r}: no such file")

    @property
    def quality_enabled(self) -> bool:
        """Quality is measured: asked for, implied by a quality option, or real data."""
        if self.quality is not None:
            return self.quality
        implied = self.eval_every is not None or self.inception_weights is not None
        return implied or self.dataset != "synthetic"

    @property
    def variant_fields(self) -> dict:
        """The values of the speed-up options (compile mode, kernels, memory format, ...)."""
        return {name: getattr(self, name) for name in OPTIONS}

    @property
    def variant_name(self) -> str:
        """The variant these speed-up options amount to, or "custom"."""
        return variant_name(self)

    @property
    def image_channels(self) -> int:
        """Channels of the training images: the data set's own, else --channels, else the
        model family's usual data (MNIST-like for the MLP GAN, RGB for DCGAN)."""
        own = data.dataset_channels(self.dataset)
        if own is not None:
            return own
        if self.channels is not None:
            return self.channels
        return 1 if self.model == "mlp" else 3

    @property
    def world_size(self) -> int:
        """The run's processes: torchrun's WORLD_SIZE in its workers (given no --nproc),
        else --nproc."""
        return int(os.environ.get("WORLD_SIZE", self.nproc))

    @property
    def batch_size_per_process(self) -> int:
        """Real images each process takes per discriminator update (per_process_batch)."""
        return per_process_batch(self.batch_size, self.world_size, self.scaling)

    @property
    def global_batch_size(self) -> int:
        """Real images all processes take per discriminator update."""
        return self.batch_size_per_process * self.world_size

    @property
    def critic_updates(self) -> int:
        """Discriminator updates per iteration (n_critic)."""
        return self.n_critic if self.n_critic is not None else LOSSES[self.loss].n_critic

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_cli_args(self) -> list[str]:
        """The options that rebuild this config in a child process (`python -m bench.run`).

        --nproc stays behind: the workers are the processes. (It could not travel anyway:
        torchrun's argument parser takes `--nproc` for an abbreviation of its own
        `--nproc-per-node`, even after the script name.)
        """
        args: list[str] = []
        for field_ in dataclasses.fields(self):
            value = getattr(self, field_.name)
            if field_.name == "nproc" or value == field_.default or value is None:
                continue
            flag = "--" + field_.name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, str(value)]
        return args


def per_process_batch(batch_size: int, world_size: int, scaling: str) -> int:
    """Real images each process takes per discriminator update: `batch_size` under weak
    scaling, its even share of it under strong scaling."""
    return batch_size // world_size if scaling == "strong" else batch_size


def batch_label(batch_size: int, scaling: str) -> str:
    """A batch as given, marked when it is the global batch (strong scaling)."""
    return f"{batch_size} global" if scaling == "strong" else str(batch_size)


def check_results_path(path: str) -> None:
    """ConfigError unless records can be appended to `path`: checked before a run starts,
    so that a bad path is one line at once rather than a record lost after training."""
    if not path.strip():
        raise ConfigError("--out is empty; give a .jsonl file path")
    if os.path.isdir(path):
        raise ConfigError(f"--out {path!r} is a directory; give a .jsonl file path")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise ConfigError(f"--out {path!r} is not writable")
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # missing folders are created when the record is written
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"--out {path!r}: {parent!r} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {path!r}: the folder {parent!r} is not writable")


def check_device(cfg: RunConfig, cuda_available: bool, cuda_devices: int | None = None) -> str:
    """Resolve `--device auto` and reject what this machine cannot run.

    `cuda_devices`: the GPUs visible here, when known (each process of a node takes one).
    Returns "cuda" or "cpu". Raises ConfigError before any work is done.
    """
    if cfg.device == "cuda" and not cuda_available:
        raise ConfigError(
            "--device cuda was asked for, but no CUDA GPU is visible; use --device cpu"
        )
    device_type = (
        "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and cuda_available) else "cpu"
    )
    gpus = int(cuda_available) if cuda_devices is None else cuda_devices
    return check_machine(cfg, this_host(device_type, gpus), gpus_known=cuda_devices is not None)


def check_machine(
    cfg: RunConfig, machine: Machine, gpus_known: bool = True, per_node: int | None = None
) -> str:
    """ConfigError unless `machine` can run `cfg`; its device type ("cuda" or "cpu").
    `gpus_known`: whether `machine.gpu_count` is a count (else only whether there is one).
    `per_node`: the run's processes on each machine (default: all of them on this one)."""
    # Under torchrun the processes of this node are in the environment, else --nproc.
    if per_node is None:
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", cfg.nproc))
    if machine.cuda and gpus_known and per_node > machine.gpu_count:
        raise ConfigError(
            f"{per_node} processes on this machine need {per_node} GPUs, one each; "
            f"{machine.gpu_count} visible: use --nproc {machine.gpu_count} or fewer"
        )
    if not machine.cuda and cfg.precision in CUDA_ONLY_PRECISIONS:
        raise ConfigError(
            f"--precision {cfg.precision} needs a CUDA GPU; on CPU use one of: fp32, bf16"
        )
    if not machine.cuda and cfg.sync_bn:
        raise ConfigError(
            "--sync-bn needs CUDA: torch's SyncBatchNorm has no CPU (gloo) implementation; "
            "drop --sync-bn on CPU"
        )
    problem = speedup_problem(cfg, machine)
    if problem:
        raise ConfigError(problem)
    return machine.device_type
