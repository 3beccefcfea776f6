"""cuDNN's autotuner searching every convolution engine: the `cudnn-exhaustive` speed-up.

With `cudnn.benchmark` on (the run's default, as in the PyTorch DCGAN example), cuDNN
times candidate engines for each new convolution shape and keeps the fastest; by default
it times the first 10 its heuristics rank (`torch.backends.cudnn.benchmark_limit`).
`cudnn-exhaustive` sets the limit to 0: every engine it offers, timed in the warm-up.
The limit is a process-wide switch, set for the run and restored after it by the
settings stage (bench.speedups.apply); any other limit can be given as the option.
"""

from __future__ import annotations

from bench.speedups.base import Option, Requirement, SpeedUp, Stage
from bench.speedups.requirements import needs_convolutions, needs_cuda


def _autotuner_on(cfg, _machine) -> str | None:
    if cfg.cudnn_benchmark:
        return None
    return "bounds cuDNN's autotuner, which --no-cudnn-benchmark turns off; give one or the other"


def _whole_number(value) -> str | None:
    return (
        None
        if value is None or value >= 0
        else f"must be at least 0 (0: every engine), got {value}"
    )


CUDNN_BENCHMARK_LIMIT = Option(
    "cudnn_benchmark_limit",
    int | None,
    None,
    "Convolution engines cuDNN's autotuner times per convolution; 0: every one it offers "
    "(default: torch's, 10; CUDA, DCGAN).",
    check=_whole_number,
    requires=(
        needs_cuda("on CPU no convolution goes through cuDNN"),
        needs_convolutions("it has no convolutions, and cuDNN autotunes only those"),
        Requirement("--cudnn-benchmark", _autotuner_on),
    ),
)

CUDNN_EXHAUSTIVE = SpeedUp(
    name="cudnn-exhaustive",
    help="cuDNN's autotuner times every convolution engine it offers, not only the first 10 "
    "its heuristics rank (torch.backends.cudnn.benchmark_limit = 0; CUDA only)",
    options=(CUDNN_BENCHMARK_LIMIT,),
    fields={"cudnn_benchmark_limit": 0},
    stage=Stage.SETTINGS,
)
