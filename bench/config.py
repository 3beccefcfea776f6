"""The run configuration: one typed dataclass, validated once.

`gan-bench run` and `python -m bench.run` both build a `RunConfig` from the same Typer
options (bench/cli.py); nothing else parses flags. Validation that needs no hardware
happens in `__post_init__`; what depends on the device (fp16 on CPU, `--device cuda`
without a GPU, `--sync-bn` on CPU) happens in `check_device`, also before any work.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass

import torch

from bench import data
from bench.channel_padding import channel_multiple, needs_padding
from bench.cuda_graph import required_warmup_steps
from bench.variants import (
    COMPILE_MODES_WITH_CUDA_GRAPHS,
    VARIANT_FIELDS,
    VARIANTS,
    VariantError,
    canonical_variant,
    variant_name,
)
from gan_models import LOSSES, MODELS

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
COMPILE_MODES = ("none", "default", "max-autotune", "reduce-overhead", "max-autotune-no-cudagraphs")
KERNELS = ("torch", "triton")
# The most image channels --conv-kernels triton swaps layers for: the kernels' default,
# kernels.narrow_conv.modules.DEFAULT_MAX_CHANNELS (not imported here: it imports triton).
NARROW_CONV_MAX_CHANNELS = 16
# --memory-format names and the torch memory formats they stand for.
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
DEVICES = ("auto", "cpu", "cuda")
# Precisions that only make sense on a CUDA device: TF32 is an Ampere+ tensor-core mode, and
# fp16 training needs a GradScaler, whose CPU path we do not benchmark.
CUDA_ONLY_PRECISIONS = ("tf32", "fp16")
# Precisions that train under autocast (bench/precision.py).
AUTOCAST_PRECISIONS = ("bf16", "fp16")
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


@dataclass(kw_only=True)
class RunConfig:
    """Everything that defines one benchmark run. Field names match the CLI options."""

    model: str = "dcgan32"
    dataset: str = "synthetic"
    data_dir: str | None = None
    # Image channels for the synthetic data set; real data sets bring their own.
    channels: int | None = None
    batch_size: int = 64  # per process; the global batch is batch_size * world size
    precision: str = "fp32"
    loss: str = "non-saturating"
    steps: int | None = None  # timed iterations; None: see default_steps()
    warmup_steps: int = 10  # untimed iterations before the timed ones
    seed: int = 0
    device: str = "auto"
    sync_bn: bool = False
    nproc: int = 1
    out: str = "results/runs.jsonl"
    lr: float = 2e-4  # Adam, both networks (Radford et al. 2015)
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int | None = None  # discriminator updates per iteration; None: the loss's own
    latent_dim: int = 100
    cudnn_benchmark: bool = True  # as the PyTorch DCGAN example; autotuning happens in warm-up
    # Convolution engines cuDNN's autotuner times per convolution, in its heuristics' order
    # (torch.backends.cudnn.benchmark_limit); 0: every one it offers; None: torch's own (10).
    # A variant field (cudnn-exhaustive); CUDA only.
    cudnn_benchmark_limit: int | None = None
    dist_timeout_s: int = 120  # collective timeout: a dead peer ends the run, never a hang
    # How an iteration executes. A --variant sets these (bench/variants.py); they can also
    # be given one by one, and the record names the variant they amount to.
    variant: str | None = None
    compile_mode: str = "none"  # torch.compile mode for G and D; "none": eager
    kernels: str = "torch"  # "triton": BatchNorm+LeakyReLU/ReLU swapped for fused kernels
    # "triton": the convolutions over image channels (G's last, D's first with its LeakyReLU)
    # swapped for Triton kernels sized for few channels (kernels/narrow_conv.py)
    conv_kernels: str = "torch"
    memory_format: str = "contiguous"  # "channels_last": models and images in NHWC
    # Image channels zero-padded to a multiple of 8 (bf16, fp16) or 4 at G's last and D's
    # first convolution (Tensor Core alignment; the same losses and gradients:
    # bench/channel_padding.py)
    pad_image_channels: bool = False
    # D's update runs D once over the real and fake batches concatenated (a D without
    # BatchNorm only: there it changes no loss or gradient; bench/train.py)
    joint_d_batch: bool = False
    # autocast's per-layer parameter casts done as one multi-tensor cast per network and
    # forward, and one for their gradients (bf16/fp16; the same values: bench/batched_casts.py)
    batched_casts: bool = False
    cuda_graph: bool = False  # the whole iteration captured once and replayed (CUDA only)
    # Sample quality (bench/quality), measured outside the timed region. None: on for real
    # data sets, off for synthetic data.
    quality: bool | None = None
    quality_samples: int | None = None  # generated images per evaluation; None: by device
    eval_every: int | None = None  # timed iterations between FD checks (a quality curve)
    target_fd: float | None = None  # stop once FD <= this (time-to-quality)
    quality_cache_dir: str | None = None  # trained extractors; None: $GAN_BENCH_CACHE or ~/.cache
    inception_weights: str | None = None  # a local Inception file: adds real FID
    # Iterations profiled with torch.profiler after the timed ones (0: none): where the time
    # of an iteration goes. They train too, so they add to the iterations a run trains.
    profile_steps: int = 0
    repeat: int = 0  # which repeat of a sweep point this run is; recorded, changes nothing
    quiet: bool = False

    def __post_init__(self) -> None:
        _choice("--model", self.model, tuple(MODELS))
        _choice("--compile-mode", self.compile_mode, COMPILE_MODES)
        _choice("--kernels", self.kernels, KERNELS)
        _choice("--conv-kernels", self.conv_kernels, KERNELS)
        _choice("--memory-format", self.memory_format, tuple(MEMORY_FORMATS))
        _choice("--precision", self.precision, PRECISIONS)
        _choice("--loss", self.loss, tuple(LOSSES))
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
        min_batch = MIN_BATCH_FOR_BATCHNORM.get(self.model, 1)
        if self.batch_size < min_batch:
            raise ConfigError(
                f"--batch-size {self.batch_size} leaves one value per channel for {self.model}'s "
                f"BatchNorm in training; use at least {min_batch}"
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
        self._check_speedups()  # after --channels: padding depends on the image channels
        self._check_quality()
        check_results_path(self.out)

    def _apply_variant(self) -> None:
        try:
            self.variant = canonical_variant(self.variant)
        except VariantError as err:
            raise ConfigError(f"--{err}") from None
        for name, value in VARIANTS[self.variant].fields.items():
            given = getattr(self, name)
            if given != VARIANT_FIELDS[name] and given != value:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"--variant {self.variant} sets {flag} {value}, which contradicts "
                    f"{flag} {given}; give one or the other"
                )
            setattr(self, name, value)

    def _check_speedups(self) -> None:
        """Speed-ups that cannot apply to this model, or not together (given field by field
        as well as by --variant)."""
        if self.memory_format == "channels_last" and self.model == "mlp":
            raise ConfigError(
                "--memory-format channels_last changes nothing for mlp: it has no convolutions "
                "and its activations are 2-D; use it with dcgan32 or dcgan64"
            )
        if self.pad_image_channels and self.model == "mlp":
            raise ConfigError(
                "--pad-image-channels changes nothing for mlp: it has no convolutions, and its "
                "28x28 = 784 inputs are already a multiple of 8; use it with dcgan32 or dcgan64"
            )
        if self.conv_kernels == "triton":
            if self.model == "mlp":
                raise ConfigError(
                    "--conv-kernels triton swaps convolutions, and mlp has none; use it with "
                    "dcgan32 or dcgan64"
                )
            if self.image_channels > NARROW_CONV_MAX_CHANNELS:
                raise ConfigError(
                    f"--conv-kernels triton takes images of at most {NARROW_CONV_MAX_CHANNELS} "
                    f"channels (its kernels are sized for few), got {self.image_channels}"
                )
            if self.pad_image_channels:
                raise ConfigError(
                    "--conv-kernels triton computes the image layers with their own channel "
                    "count, and --pad-image-channels pads it for cuDNN: padded, the Triton "
                    "convolutions would only do more work; give one or the other"
                )
        multiple = channel_multiple(self.precision)
        if self.pad_image_channels and not needs_padding(self.image_channels, multiple):
            raise ConfigError(
                f"--pad-image-channels: the images have {self.image_channels} channels, "
                f"already a multiple of {multiple} (Tensor Core alignment in {self.precision});"
                " there is nothing to pad"
            )
        if self.joint_d_batch and MODELS[self.model].discriminator_couples_samples(
            LOSSES[self.loss].needs_critic
        ):
            raise ConfigError(
                f"--joint-d-batch: {self.model}'s discriminator has BatchNorm, which would "
                "normalise real and fake images with shared batch statistics, another "
                "objective than two batches; use it with mlp, or with --loss wgan-gp (a critic "
                "without BatchNorm)"
            )
        if self.cudnn_benchmark_limit is not None:
            if self.cudnn_benchmark_limit < 0:
                raise ConfigError(
                    "--cudnn-benchmark-limit must be at least 0 (0: every engine), got "
                    f"{self.cudnn_benchmark_limit}"
                )
            if not self.cudnn_benchmark:
                raise ConfigError(
                    "--cudnn-benchmark-limit bounds cuDNN's autotuner, which "
                    "--no-cudnn-benchmark turns off; give one or the other"
                )
            if self.model == "mlp":
                raise ConfigError(
                    "--cudnn-benchmark-limit changes nothing for mlp: it has no convolutions, "
                    "and cuDNN autotunes only those; use it with dcgan32 or dcgan64"
                )
        if self.batched_casts and self.precision not in AUTOCAST_PRECISIONS:
            raise ConfigError(
                f"--batched-casts batches autocast's casts, and --precision {self.precision} "
                f"has no autocast; use it with {' or '.join(AUTOCAST_PRECISIONS)}"
            )
        if self.cuda_graph and self.compile_mode in COMPILE_MODES_WITH_CUDA_GRAPHS:
            raise ConfigError(
                f"--cuda-graph captures the whole iteration, and --compile-mode "
                f"{self.compile_mode} makes CUDA graphs of its own (a graph inside a graph); "
                "use --compile-mode default or max-autotune-no-cudagraphs with --cuda-graph"
            )

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
        """The execution fields a variant sets (compile mode, kernels, memory format, padded
        image channels, joint D batch, batched casts, cuDNN's search limit, graph)."""
        return {name: getattr(self, name) for name in VARIANT_FIELDS}

    @property
    def variant_name(self) -> str:
        """The registered variant these execution fields amount to, or "custom"."""
        return variant_name(self.variant_fields)

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
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "nproc" or value == field.default or value is None:
                continue
            flag = "--" + field.name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, str(value)]
        return args


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


def triton_interpret_requested() -> bool:
    """TRITON_INTERPRET read as Triton reads it (1, true, on, yes, y; any case): Triton's
    kernels then run on the CPU through its interpreter. (kernels.availability knows
    whether they really were built so; importing it here would import triton.)"""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes", "y")


def _check_triton(flag: str, device_type: str, precision: str) -> None:
    """`flag triton` (the fused BatchNorm or the narrow convolutions) can run here."""
    if importlib.util.find_spec("triton") is None:
        raise ConfigError(f"{flag} triton needs the triton package, which is not installed")
    if device_type == "cpu" and not triton_interpret_requested():
        raise ConfigError(
            f"{flag} triton needs a CUDA GPU, or TRITON_INTERPRET=1 to run Triton's "
            f"interpreter on the CPU (slow: for tests); or use {flag} torch"
        )
    if device_type == "cpu" and precision == "bf16":
        # The interpreter runs kernels in numpy, which has no bfloat16. Called eagerly the
        # op still lands within bf16's rounding, but called from inductor's CPU code (a
        # compiled DCGAN generator) its gradients come back NaN, and not when the tensors
        # are read before the call: an interpreter effect, not the kernels' arithmetic
        # (tests/bench/test_train.py checks the same compiled generator on a GPU).
        raise ConfigError(
            f"{flag} triton with --precision bf16 needs a CUDA GPU: Triton's CPU "
            "interpreter has no reliable bfloat16 arithmetic; use --precision fp32 on CPU"
        )


def check_device(cfg: RunConfig, cuda_available: bool, cuda_devices: int | None = None) -> str:
    """Resolve `--device auto` and reject combinations the device cannot run.

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
    # Under torchrun the processes of this node are in the environment, else --nproc.
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", cfg.nproc))
    if device_type == "cuda" and cuda_devices is not None and per_node > cuda_devices:
        raise ConfigError(
            f"{per_node} processes on this machine need {per_node} GPUs, one each; "
            f"{cuda_devices} visible: use --nproc {cuda_devices} or fewer"
        )
    if device_type == "cpu" and cfg.precision in CUDA_ONLY_PRECISIONS:
        raise ConfigError(
            f"--precision {cfg.precision} needs a CUDA GPU; on CPU use one of: fp32, bf16"
        )
    for flag, value in (("--kernels", cfg.kernels), ("--conv-kernels", cfg.conv_kernels)):
        if value == "triton":
            _check_triton(flag, device_type, cfg.precision)
    if cfg.cuda_graph:
        if device_type == "cpu":
            raise ConfigError(
                "--cuda-graph captures CUDA work and needs a CUDA GPU; on CPU there is nothing "
                "to capture: drop --cuda-graph (or the cuda-graph variant)"
            )
        # Under torchrun the world size is in the environment before the config is built.
        world_size = int(os.environ.get("WORLD_SIZE", cfg.nproc))
        try:
            needed = required_warmup_steps(world_size, cfg.critic_updates)
        except ValueError as err:
            raise ConfigError(f"--cuda-graph: {err}; use fewer --n-critic or no graph") from None
        if cfg.warmup_steps < needed:
            raise ConfigError(
                f"--cuda-graph needs --warmup-steps of at least {needed} with {world_size} "
                f"process(es): {needed - 1} eager iteration(s) before the capture, then the "
                "capture itself, all outside the timing"
            )
    if device_type == "cpu" and cfg.cudnn_benchmark_limit is not None:
        raise ConfigError(
            "--cudnn-benchmark-limit tunes cuDNN's convolution autotuner and needs a CUDA GPU; "
            "on CPU no convolution goes through cuDNN: drop it (or the cudnn-exhaustive variant)"
        )
    if device_type == "cpu" and cfg.sync_bn:
        raise ConfigError(
            "--sync-bn needs CUDA: torch's SyncBatchNorm has no CPU (gloo) implementation; "
            "drop --sync-bn on CPU"
        )
    return device_type
