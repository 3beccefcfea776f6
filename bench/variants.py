"""Named speed-up variants: each is a complete set of the RunConfig fields that select
how an iteration executes. `eager` is the baseline every other variant is compared with.

A record carries the variant name and its fields. A run configured field by field gets
the name of the variant whose fields it matches, or "custom".
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The RunConfig fields a variant sets, with the baseline's values.
VARIANT_FIELDS = {"compile_mode": "none", "kernels": "torch"}


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


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("eager", "the baseline: no compile, torch kernels, NCHW, no graph"),
        Variant("compile", "torch.compile, default mode", {"compile_mode": "default"}),
        Variant(
            "compile-max-autotune",
            "torch.compile mode=max-autotune (Triton autotuning, CUDA graphs)",
            {"compile_mode": "max-autotune"},
        ),
        Variant(
            "compile-reduce-overhead",
            "torch.compile mode=reduce-overhead (CUDA graphs)",
            {"compile_mode": "reduce-overhead"},
        ),
        Variant("triton", "fused Triton BatchNorm+LeakyReLU kernels", {"kernels": "triton"}),
        Variant(
            "compile+triton",
            "torch.compile default over the fused Triton kernels",
            {"compile_mode": "default", "kernels": "triton"},
        ),
    )
}


def variant_name(fields: dict) -> str:
    """The registered variant whose fields equal `fields`, else "custom"."""
    for variant in VARIANTS.values():
        if all(fields.get(k) == v for k, v in variant.fields.items()):
            return variant.name
    return "custom"
