"""What a speed-up is: one object with everything the rest of gan-bench asks of it.

A `SpeedUp` has a name (what variants are spelled with), one help text (the CLI, `gan-bench
variants`, the README table), the run fields it sets (`Option`s, which `RunConfig` and the
command line are made from), what it requires (`Requirement`s: the reason it cannot run
with a configuration on a machine, or nothing), what it conflicts with (and why), and the
stages of the documented order where it acts (`Stage`, with a hook per stage that changes
the run being built, `Build`). Nothing here knows any particular speed-up.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Stage(enum.IntEnum):
    """The documented order in which a run is built (`bench.speedups.apply`), each stage
    after the ones its work depends on."""

    PROCESS = 1  # before the process group starts: what it reads from the environment
    SETTINGS = 2  # process-wide library switches for this run, restored after it
    SYNC_BN = 3  # SyncBatchNorm across processes (--sync-bn), before the kernel swaps
    KERNELS = 4  # layers swapped for Triton kernels, before layout and device
    CHANNELS = 5  # image layers widened, before layout and the optimizers
    MEMORY_FORMAT = 6  # weights laid out, before the device
    DEVICE = 7  # the networks moved to the process's device
    PRECISION = 8  # autocast and GradScaler
    WRAPPERS = 9  # wrappers innermost around each network, seen by DDP and compile
    OBJECTIVE = 10  # D's loss over the real and the fake batch
    DDP = 11  # DistributedDataParallel around G and D's objective
    COMPILE = 12  # torch.compile around what DDP wraps
    OPTIMIZER = 13  # Adam's implementation
    GRAPH = 14  # the whole iteration captured as a CUDA graph, outermost

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


# What a requirement is given: the run's configuration (RunConfig, or anything with its
# fields) and the machine it runs on (bench.telemetry.machine.Machine), or None when only
# the configuration is known yet (a config built before its device is resolved).
Check = Callable[[Any, Any], "str | None"]


@dataclass(frozen=True)
class Requirement:
    """What a speed-up needs, in a few words (`label`, for tables), and the check that
    says why a configuration on a machine does not have it (`reason`), or None."""

    label: str
    reason: Check


@dataclass(frozen=True)
class Option:
    """A run field that speed-ups set: its `RunConfig` and command-line name, its type,
    its baseline value (the eager run's), a help text where the speed-up's own is not
    enough (an option several speed-ups share), for a choice what it allows, for a number
    the `check` of a value, and what any value but the default requires (an option may
    take values no speed-up names, such as another cuDNN search limit)."""

    name: str
    type: Any  # the field's annotation: str, bool, int | None
    default: Any
    help: str = ""  # empty: the help of the speed-up that sets it
    choices: tuple | None = None
    check: Callable[[Any], str | None] | None = None
    requires: tuple[Requirement, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def flag_text(self, value) -> str:
        """The option as given on the command line to set `value`."""
        if value is True:
            return self.flag
        if value is False:
            return "--no-" + self.flag[2:]
        return f"{self.flag} {value}"

    def invalid(self, value) -> str | None:
        """Why `value` is no value of this option (one line), or None."""
        if self.choices is not None and value not in self.choices:
            return f"{self.flag} {value!r} is not known; choose one of: {', '.join(self.choices)}"
        reason = self.check(value) if self.check is not None else None
        return f"{self.flag} {reason}" if reason else None

    def unmet(self, value, cfg, machine=None) -> str | None:
        """Why `value` cannot run with `cfg` on `machine`, or None."""
        for requirement in self.requires:
            reason = requirement.reason(cfg, machine)
            if reason:
                return f"{self.flag_text(value)} {reason}"
        return None


@dataclass(frozen=True)
class SpeedUp:
    """One composable speed-up. `fields`: the values it gives its options (every other
    option keeps its default). `stage`: where in the documented order it acts; `hooks`:
    what it does there, and at the other stages it has to prepare (a CUDA graph needs
    things of several). `conflicts`: the other speed-ups it cannot go with, and why."""

    name: str
    help: str
    options: tuple[Option, ...]
    fields: Mapping[str, Any]
    stage: Stage
    hooks: Mapping[Stage, Callable[[Build], None]] = field(default_factory=dict)
    requires: tuple[Requirement, ...] = ()
    conflicts: Mapping[str, str] = field(default_factory=dict)
    # The record's entries when it is off; its hooks write them when it is on.
    record_off: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        names = {option.name for option in self.options}
        if set(self.fields) - names:
            raise ValueError(f"{self.name}: fields {set(self.fields) - names} have no option")

    @property
    def stages(self) -> list[Stage]:
        return sorted({self.stage, *self.hooks})

    @property
    def flags(self) -> str:
        """The options that turn it on, as given on the command line."""
        by_name = {option.name: option for option in self.options}
        return " ".join(by_name[name].flag_text(value) for name, value in self.fields.items())

    def enabled(self, cfg) -> bool:
        """Whether `cfg` (a RunConfig or anything with its fields) turns it on."""
        return all(getattr(cfg, name) == value for name, value in self.fields.items())

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        """Its own requirements, then those of the options it sets."""
        return self.requires + tuple(r for option in self.options for r in option.requires)

    def unmet(self, cfg, machine=None) -> str | None:
        """Why it cannot run with `cfg` on `machine` (one line), or None."""
        for requirement in self.requirements:
            reason = requirement.reason(cfg, machine)
            if reason:
                return f"{self.name} ({self.flags}) {reason}"
        return None


@dataclass
class Build:
    """A run as the stages build it (`bench.speedups.apply`): the networks, the pieces of
    the training step, and the record's account of what ran, which each stage writes as
    it goes. Hooks change it; nothing else does."""

    cfg: Any
    ctx: Any  # the process: device, rank, world size, whether distributed
    loss: Any
    latent_shape: tuple[int, ...]
    latent_rng: Any
    generator: Any  # the networks themselves: their parameters are the ones trained
    discriminator: Any
    sample_generator: Any  # G as sample grids and quality metrics see it
    record: dict = field(default_factory=dict)
    # Entries of the record read only once the run is over (replays, compile counters).
    late_record: dict[str, Callable[[], Any]] = field(default_factory=dict)
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    memory_format: Any = None
    padded_channels: int | None = None
    autocast_cache: bool = True
    policy: Any = None
    # Wrappers around each network (innermost first), under DDP and compile.
    wrappers: list[Callable[[Any], Any]] = field(default_factory=list)
    joint_d_batch: bool = False
    ddp_stream: Any = None  # the stream DDP is built on (a CUDA graph's capture stream)
    graph_backend: Any = None  # the CUDA graph's stream and capture
    g_forward: Any = None  # G as the step calls it: wrapped, DDP, compiled
    d_objective: Any = None  # D's loss as the step calls it
    d_frozen: Any = None  # D as the generator update calls it (frozen, no DDP)
    adam: str = "default"  # Adam's implementation (bench.training.step.ADAM_OPTIONS)
    communication: Any = None  # DDP's all-reduces counted (bench.training.communication)
    step: Any = None
    graphed: Any = None  # the step inside a CUDA graph, when captured

    def wrap(self, module):
        """`module` inside the network wrappers."""
        for wrapper in self.wrappers:
            module = wrapper(module)
        return module
