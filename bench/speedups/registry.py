"""Every speed-up, in the order variant names list them, and what follows from them:
the run options they set (`OPTIONS`), combinations parsed and checked on demand
(`parse_variant`), the variant a configuration amounts to (`variant_name`), and why a
configuration's speed-ups cannot run (`speedup_problem`).

A variant is `eager` (the baseline every other variant is compared with) or speed-ups
joined by "+" in any order, recorded under its canonical name: the speed-ups in the
order of `SPEEDUPS`. No combination is enumerated: there are too many, and a new
speed-up would change their count everywhere it was written down.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.speedups.base import Option, SpeedUp
from bench.speedups.batched_casts import BATCHED_CASTS
from bench.speedups.channels_last import CHANNELS_LAST
from bench.speedups.compile import SPEEDUPS as COMPILE_SPEEDUPS
from bench.speedups.cuda_graph import CUDA_GRAPH
from bench.speedups.cudnn import CUDNN_EXHAUSTIVE
from bench.speedups.fused_adam import FUSED_ADAM
from bench.speedups.joint_d import JOINT_D
from bench.speedups.kernel_swaps import TRITON, TRITON_CONVS
from bench.speedups.one_kernel import TRITON_ONE_KERNEL
from bench.speedups.pad_channels import PAD_CHANNELS

BASELINE = "eager"
SPEEDUPS: dict[str, SpeedUp] = {
    s.name: s
    for s in (
        *COMPILE_SPEEDUPS,
        TRITON,
        TRITON_CONVS,
        CHANNELS_LAST,
        PAD_CHANNELS,
        JOINT_D,
        BATCHED_CASTS,
        CUDNN_EXHAUSTIVE,
        FUSED_ADAM,
        TRITON_ONE_KERNEL,
        CUDA_GRAPH,
    )
}
OPTIONS: dict[str, Option] = {o.name: o for s in SPEEDUPS.values() for o in s.options}
# The options' values in the eager baseline: what `run.variant_fields` holds when no
# speed-up is on.
BASELINE_FIELDS = {name: option.default for name, option in OPTIONS.items()}


class VariantError(ValueError):
    """A variant name that is unknown or combines speed-ups that cannot go together."""


def option_help(option: Option) -> str:
    """The option's help: its own, or that of the speed-up(s) setting it."""
    if option.help:
        return option.help
    text = "; ".join(s.help for s in SPEEDUPS.values() if option in s.options)
    return text[:1].upper() + text[1:] + "."


def conflict(speedups) -> str | None:
    """Why these speed-ups cannot run together, or None: two that set one option (two
    compile modes), or a pair that one of them names as a conflict."""
    chosen = list(speedups)
    for i, first in enumerate(chosen):
        for second in chosen[i + 1 :]:
            shared = set(first.fields) & set(second.fields)
            if shared:
                flags = ", ".join(OPTIONS[name].flag for name in sorted(shared))
                return f"{first.name} and {second.name} both set {flags}; choose one"
            why = first.conflicts.get(second.name) or second.conflicts.get(first.name)
            if why:
                return (
                    f"{first.name} ({first.flags}) and {second.name} ({second.flags}) cannot "
                    f"go together: {why}"
                )
    return None


@dataclass(frozen=True)
class Variant:
    """A valid combination: its canonical name, its speed-ups and every option's value."""

    name: str
    speedups: tuple[SpeedUp, ...]

    @property
    def fields(self) -> dict:
        return {**BASELINE_FIELDS, **{k: v for s in self.speedups for k, v in s.fields.items()}}

    @property
    def description(self) -> str:
        if not self.speedups:
            return "the baseline: no compile, torch kernels, NCHW, no graph"
        return "; ".join(s.help for s in self.speedups)


def parse_variant(name: str) -> Variant:
    """The variant named `name`: eager, or speed-ups joined by '+' in any order. Raises
    VariantError (one line for people) for an unknown speed-up, one named twice, or a
    combination that cannot run together."""
    if name.strip() == BASELINE:
        return Variant(BASELINE, ())
    parts = [p.strip() for p in name.split("+")]
    unknown = [p for p in parts if p not in SPEEDUPS]
    if unknown:
        raise VariantError(
            f"variant {name!r}: {', '.join(repr(u) for u in unknown)} is not a speed-up; a "
            f"variant is {BASELINE}, or speed-ups joined by '+': {', '.join(SPEEDUPS)}"
        )
    twice = sorted({p for p in parts if parts.count(p) > 1})
    if twice:
        raise VariantError(f"variant {name!r} names {', '.join(twice)} more than once; choose one")
    chosen = tuple(s for s in SPEEDUPS.values() if s.name in parts)
    reason = conflict(chosen)
    if reason:
        raise VariantError(f"variant {name!r}: {reason}")
    return Variant("+".join(s.name for s in chosen), chosen)


def canonical_variant(name: str) -> str:
    """The canonical name of a variant given with its speed-ups in any order."""
    return parse_variant(name).name


def enabled_speedups(cfg) -> list[SpeedUp]:
    """The speed-ups `cfg`'s options turn on, in canonical order."""
    return [s for s in SPEEDUPS.values() if s.enabled(cfg)]


def variant_name(cfg) -> str:
    """The variant `cfg`'s options amount to, or "custom" when an option holds a value no
    combination of speed-ups gives it (another cuDNN search limit, say)."""
    enabled = enabled_speedups(cfg)
    covered = {name for s in enabled for name in s.fields}
    for name, default in BASELINE_FIELDS.items():
        if name not in covered and getattr(cfg, name) != default:
            return "custom"
    if conflict(enabled):
        return "custom"
    return "+".join(s.name for s in enabled) or BASELINE


def variant_rank(name: str) -> tuple:
    """Where a variant lists: eager, then fewer speed-ups before more, then in canonical
    order; a name that is no variant last."""
    try:
        speedups = parse_variant(name).speedups
    except VariantError:
        return (1, 0, [], name)
    order = list(SPEEDUPS)
    return (0, len(speedups), [order.index(s.name) for s in speedups], name)


def speedup_problem(cfg, machine=None) -> str | None:
    """Why the speed-ups `cfg` sets cannot run, one line, or None: an option's value, two
    that cannot go together, or what one requires of the configuration and, given a
    `machine` (bench.telemetry.machine.Machine), of the machine."""
    for name, option in OPTIONS.items():
        reason = option.invalid(getattr(cfg, name))
        if reason:
            return reason
    enabled = enabled_speedups(cfg)
    reason = conflict(enabled)
    if reason:
        return reason
    for speedup in enabled:
        reason = speedup.unmet(cfg, machine)
        if reason:
            return reason
    covered = {name for s in enabled for name in s.fields}
    for name, option in OPTIONS.items():
        value = getattr(cfg, name)
        if name not in covered and value != option.default:
            reason = option.unmet(value, cfg, machine)
            if reason:
                return reason
    return None
