"""Speed-ups: each one object (bench.speedups.base.SpeedUp) defined once, in a module of
its own, with everything the rest of gan-bench asks of it; the registry of all of them
and the combinations (variants) they make (`registry`); and the one documented order in
which a run is built with them (`apply`).

To add a speed-up: define it in a module here (its name, help, the options it sets,
what it requires and conflicts with, its stage and hooks), list it in
`registry.SPEEDUPS`, and test it. The command line, `RunConfig`, validation, the sweep's
skip rules, `gan-bench variants`, the record and the README's table read it from there.
"""

from bench.speedups.apply import Applied, applied_speedups, prepare_process
from bench.speedups.base import Build, Option, Requirement, SpeedUp, Stage
from bench.speedups.registry import (
    BASELINE,
    BASELINE_FIELDS,
    OPTIONS,
    SPEEDUPS,
    Variant,
    VariantError,
    canonical_variant,
    conflict,
    enabled_speedups,
    option_help,
    parse_variant,
    speedup_problem,
    variant_name,
    variant_rank,
)

__all__ = [
    "BASELINE",
    "BASELINE_FIELDS",
    "OPTIONS",
    "SPEEDUPS",
    "Applied",
    "Build",
    "Option",
    "Requirement",
    "SpeedUp",
    "Stage",
    "Variant",
    "VariantError",
    "applied_speedups",
    "canonical_variant",
    "conflict",
    "enabled_speedups",
    "option_help",
    "parse_variant",
    "prepare_process",
    "speedup_problem",
    "variant_name",
    "variant_rank",
]
