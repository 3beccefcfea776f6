"""Requirements several speed-ups share: a CUDA GPU, a convolutional model, autocast, and
Triton kernels that can run. Each is a `Requirement`: a label for tables and a check that
says, for a configuration on a machine (None: not known yet), why it is not met."""

from __future__ import annotations

from bench.speedups.base import Requirement
from gan_models import MODELS

# Precisions that train under autocast (bench.training.precision).
AUTOCAST_PRECISIONS = ("bf16", "fp16")


def needs_cuda(why: str) -> Requirement:
    """A CUDA GPU; `why` says what the speed-up would do without one."""

    def reason(_cfg, machine) -> str | None:
        if machine is None or machine.cuda:
            return None
        return f"needs a CUDA GPU: {why}"

    return Requirement("CUDA", reason)


def needs_convolutions(what: str) -> Requirement:
    """A model with convolutions; `what` says what the speed-up does to them."""

    def reason(cfg, _machine) -> str | None:
        if MODELS[cfg.model].convolutional:
            return None
        models = " or ".join(name for name, spec in MODELS.items() if spec.convolutional)
        return f"changes nothing for {cfg.model}: {what}; use it with {models}"

    return Requirement("a DCGAN (convolutions)", reason)


def needs_autocast(what: str) -> Requirement:
    def reason(cfg, _machine) -> str | None:
        if cfg.precision in AUTOCAST_PRECISIONS:
            return None
        return (
            f"{what}, and --precision {cfg.precision} has no autocast; use it with "
            + " or ".join(AUTOCAST_PRECISIONS)
        )

    return Requirement("bf16 or fp16 (autocast)", reason)


def _triton_reason(_cfg, machine) -> str | None:
    if machine is None:
        return None
    if not machine.triton_installed:
        return "needs the triton package, which is not installed"
    if not machine.cuda and not machine.triton_interpret:
        return (
            "needs a CUDA GPU, or TRITON_INTERPRET=1 to run Triton's interpreter on the CPU "
            "(slow: for tests)"
        )
    return None


def _interpreter_bf16_reason(cfg, machine) -> str | None:
    # The interpreter runs kernels in numpy, which has no bfloat16. Called eagerly the op
    # still lands within bf16's rounding, but called from inductor's CPU code (a compiled
    # DCGAN generator) its gradients come back NaN, and not when the tensors are read
    # before the call: an interpreter effect, not the kernels' arithmetic.
    if machine is None or machine.cuda or cfg.precision != "bf16":
        return None
    return (
        "with --precision bf16 needs a CUDA GPU: Triton's CPU interpreter has no reliable "
        "bfloat16 arithmetic; use --precision fp32 on CPU"
    )


# Triton kernels that can run here: compiled for a GPU, or interpreted on the CPU in fp32.
TRITON_RUNS = (
    Requirement("triton; CUDA, or TRITON_INTERPRET=1", _triton_reason),
    Requirement("no bf16 on CPU", _interpreter_bf16_reason),
)
