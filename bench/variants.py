"""Named speed-up variants: each is a complete set of the RunConfig fields that select
how an iteration executes. `eager` is the baseline every other variant is compared with.

Variants compose: a name is one or more speed-ups joined by "+" ("triton+channels-last+
cuda-graph"), at most one compile mode among them, written in the canonical order
compile mode, triton, triton-convs, channels-last, pad-channels, joint-d, batched-casts,
cudnn-exhaustive, cuda-graph.
`VARIANTS` holds every valid combination; `canonical_variant` accepts the speed-ups in
any order.

A record carries the variant name and its fields. A run configured field by field gets
the name of the variant whose fields it matches, or "custom".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

# The RunConfig fields a variant sets, with the baseline's values.
VARIANT_FIELDS = {
    "compile_mode": "none",
    "kernels": "torch",
    "conv_kernels": "torch",
    "memory_format": "contiguous",
    "pad_image_channels": False,
    "joint_d_batch": False,
    "batched_casts": False,
    "cudnn_benchmark_limit": None,  # None: torch's own limit
    "cuda_graph": False,
}


@dataclass(frozen=True)
class SpeedUp:
    """One composable speed-up: a name, what it does, and the fields it sets."""

    name: str
    description: str
    fields: dict


# One group per field: a variant takes at most one speed-up of each group.
COMPILE_SPEEDUPS = (
    SpeedUp("compile", "torch.compile, default mode", {"compile_mode": "default"}),
    SpeedUp(
        "compile-max-autotune",
        "torch.compile mode=max-autotune (Triton autotuning and inductor's CUDA graphs)",
        {"compile_mode": "max-autotune"},
    ),
    SpeedUp(
        "compile-reduce-overhead",
        "torch.compile mode=reduce-overhead (inductor's CUDA graphs)",
        {"compile_mode": "reduce-overhead"},
    ),
    SpeedUp(
        "compile-max-autotune-no-cudagraphs",
        "torch.compile mode=max-autotune-no-cudagraphs (Triton autotuning, no graphs)",
        {"compile_mode": "max-autotune-no-cudagraphs"},
    ),
)
SPEEDUP_GROUPS = (
    COMPILE_SPEEDUPS,
    (SpeedUp("triton", "fused Triton BatchNorm+LeakyReLU kernels", {"kernels": "triton"}),),
    (
        SpeedUp(
            "triton-convs",
            "the convolutions over image channels (D's first, with its LeakyReLU fused in, "
            "and G's last) as Triton implicit-GEMM kernels sized for their few channels",
            {"conv_kernels": "triton"},
        ),
    ),
    (
        SpeedUp(
            "channels-last",
            "models and images in channels_last (NHWC) memory format",
            {"memory_format": "channels_last"},
        ),
    ),
    (
        SpeedUp(
            "pad-channels",
            "image channels zero-padded to a multiple of 8 (bf16, fp16) or 4 at G's last and "
            "D's first convolution (Tensor Core alignment; the same losses and gradients)",
            {"pad_image_channels": True},
        ),
    ),
    (
        SpeedUp(
            "joint-d",
            "D runs once over the real and fake batches concatenated, not once over each "
            "(discriminators without BatchNorm only: the same losses and gradients)",
            {"joint_d_batch": True},
        ),
    ),
    (
        SpeedUp(
            "batched-casts",
            "autocast's parameter casts as one multi-tensor cast per network and forward, and "
            "one for their gradients (bf16/fp16; the same values)",
            {"batched_casts": True},
        ),
    ),
    (
        SpeedUp(
            "cudnn-exhaustive",
            "cuDNN's autotuner times every convolution engine it offers, not only the first "
            "10 its heuristics rank (torch.backends.cudnn.benchmark_limit = 0; CUDA only)",
            {"cudnn_benchmark_limit": 0},
        ),
    ),
    (
        SpeedUp(
            "cuda-graph",
            "the whole training iteration captured once as a CUDA graph and replayed",
            {"cuda_graph": True},
        ),
    ),
)
SPEEDUPS = {s.name: s for group in SPEEDUP_GROUPS for s in group}

# Compile modes that put inductor's own CUDA graphs (cudagraph trees) around the compiled
# graphs. Inside a whole-iteration capture they would be graphs captured in a graph, which
# cudagraph trees refuse; either one of them is the graph, not both.
COMPILE_MODES_WITH_CUDA_GRAPHS = ("reduce-overhead", "max-autotune")


class VariantError(ValueError):
    """A variant name that is unknown or combines speed-ups that cannot go together."""


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    fields: dict = field(default_factory=dict)

    def __post_init__(self):
        unknown = set(self.fields) - set(VARIANT_FIELDS)
        if unknown:
            raise ValueError(f"variant {self.name}: unknown fields {sorted(unknown)}")
        # Complete the field set so that matching a config against a variant is exact.
        object.__setattr__(self, "fields", {**VARIANT_FIELDS, **self.fields})


def _conflict(speedups: tuple[SpeedUp, ...]) -> str | None:
    """Why these speed-ups cannot run together, or None."""
    fields = {k: v for s in speedups for k, v in s.fields.items()}
    if fields.get("cuda_graph") and fields.get("compile_mode") in COMPILE_MODES_WITH_CUDA_GRAPHS:
        return (
            f"cuda-graph captures the whole iteration, and compile mode {fields['compile_mode']} "
            "makes CUDA graphs of its own: a graph inside a graph; use "
            "compile-max-autotune-no-cudagraphs+cuda-graph or compile+cuda-graph instead"
        )
    if fields.get("conv_kernels") == "triton" and fields.get("pad_image_channels"):
        return (
            "triton-convs computes the image layers with their own channel count, and "
            "pad-channels pads that count for cuDNN's Tensor Core kernels: padded, the Triton "
            "convolutions would only do more work; use one or the other"
        )
    return None


def _combine(speedups: tuple[SpeedUp, ...]) -> Variant:
    return Variant(
        "+".join(s.name for s in speedups),
        "; ".join(s.description for s in speedups),
        {k: v for s in speedups for k, v in s.fields.items()},
    )


def _all_variants() -> dict[str, Variant]:
    baseline = Variant("eager", "the baseline: no compile, torch kernels, NCHW, no graph")
    variants = {"eager": baseline}
    for choice in itertools.product(*[(None, *group) for group in SPEEDUP_GROUPS]):
        speedups = tuple(s for s in choice if s is not None)
        if speedups and _conflict(speedups) is None:
            variant = _combine(speedups)
            variants[variant.name] = variant
    # Fewer speed-ups first, so listings read from the simple to the combined.
    order = list(SPEEDUPS)

    def rank(name: str) -> tuple:
        parts = [] if name == "eager" else name.split("+")
        return (len(parts), [order.index(p) for p in parts])

    return dict(sorted(variants.items(), key=lambda kv: rank(kv[0])))


VARIANTS: dict[str, Variant] = _all_variants()


def canonical_variant(name: str) -> str:
    """The registered name of a variant given with its speed-ups in any order.

    Raises VariantError (a message for people) for an unknown speed-up, two of one kind
    (two compile modes), or a combination that cannot run (see `_conflict`).
    """
    parts = [p.strip() for p in name.split("+")]
    if name.strip() == "eager":
        return "eager"
    unknown = [p for p in parts if p not in SPEEDUPS]
    if unknown:
        raise VariantError(
            f"variant {name!r}: {', '.join(repr(u) for u in unknown)} is not a speed-up; a "
            f"variant is eager, or speed-ups joined by '+': {', '.join(SPEEDUPS)}"
        )
    chosen = []
    for group in SPEEDUP_GROUPS:
        picked = [s for s in group if s.name in parts]
        if len(picked) > 1 or (picked and parts.count(picked[0].name) > 1):
            raise VariantError(
                f"variant {name!r} names {' and '.join(s.name for s in picked)} more than "
                "once or together; choose one"
            )
        chosen += picked
    reason = _conflict(tuple(chosen))
    if reason:
        raise VariantError(f"variant {name!r}: {reason}")
    return "+".join(s.name for s in chosen)


def variant_name(fields: dict) -> str:
    """The registered variant whose fields equal `fields`, else "custom"."""
    for variant in VARIANTS.values():
        if all(fields.get(k) == v for k, v in variant.fields.items()):
            return variant.name
    return "custom"
