"""The goals file (results/goals.json) read and checked: the project's performance goals
by theme, each with a stable name, what it asks, and its figures.

The file maps each theme to its own fields and its goals, in the order goals.md lists them;
a goal is an object with "name", "kind", "asks" (one line) and the figures its kind needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.config import ConfigError
from bench.speedups import VariantError, canonical_variant

# The goals' figures are data, kept with the measurements they are judged on.
GOALS_FILE = Path(__file__).resolve().parents[2] / "results" / "goals.json"


def _names(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# The themes, the kinds of goal each holds and the fields each kind needs: a typo in the
# goals file is refused when it is read, not found later as a goal without a verdict.
KINDS = {
    "eager reference": {
        "eager-throughput": ("batch_size", "precision", "images_per_s"),
        "eager-peak-memory": ("batch_size", "precision", "peak_allocated_mib", "tolerance"),
    },
    "fused kernels": {
        "kernel-time": ("case", "label", "max_ms"),
        "kernel-speedup": ("case", "label", "over", "min_ratio"),
        "kernel-bandwidth": ("case", "label", "min_pct_of_copy_bandwidth"),
        "kernel-small-cases": ("dtype", "other_than"),
        "kernel-device-ratio": ("dtype", "impl", "over", "max_ratio"),
    },
    "host path": {"host-ratio": ("max_host_ratio", "max_launches_per_call")},
    "end to end": {
        "best-speedup": ("model", "batch_size", "min_speedup"),
        "best-mfu": ("model", "batch_size", "gflop_per_image", "min_mfu"),
        "variant-speedup": ("model", "batch_size", "variant", "min_speedup"),
        "best-vs-compile": ("min_ratio",),
    },
    "quality parity": {"quality-parity": ()},
}
# Fields a kind may hold, each with what it must be: a goal without one takes the kind's
# default (a small-case goal judges the op as planned, with no stretch time).
OPTIONAL = {
    "kernel-small-cases": {
        "impls": ("a list of implementation names", _names),
        "stretch_max_ms": ("a number of ms", _number),
    },
}
# Fields a theme holds for all its goals.
THEME_FIELDS = {"eager reference": ("model", "model_name"), "end to end": ("precision",)}


@dataclass
class Theme:
    """One theme of the goals file: its own fields and its goals, in the file's order."""

    name: str
    fields: dict
    goals: list[dict]

    def of_kind(self, kind: str) -> list[dict]:
        return [goal for goal in self.goals if goal["kind"] == kind]


def load_goals(path: Path = GOALS_FILE) -> list[Theme]:
    """The themes of a goals file, in its order; ConfigError when it cannot be read or a
    theme or goal is malformed."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the goals file {str(path)!r}: {err}") from None
    themes = doc.get("themes") if isinstance(doc, dict) else None
    if not isinstance(themes, dict):
        raise ConfigError(f"goals file {str(path)!r} has no object of themes")
    loaded, names = [], set()
    for theme, body in themes.items():
        if theme not in KINDS:
            raise ConfigError(f"goals theme {theme!r} is not one of: {', '.join(KINDS)}")
        if not isinstance(body, dict) or not isinstance(body.get("goals"), list):
            raise ConfigError(f"goals theme {theme!r} has no list of goals")
        lacking = [f for f in THEME_FIELDS.get(theme, ()) if f not in body]
        if lacking:
            raise ConfigError(f"goals theme {theme!r} lacks {', '.join(lacking)}")
        for goal in body["goals"]:
            name = goal.get("name") if isinstance(goal, dict) else None
            if not isinstance(name, str) or name in names:
                raise ConfigError(f"goals theme {theme!r}: a goal without a name of its own")
            names.add(name)
            kind = goal.get("kind")
            if kind not in KINDS[theme]:
                known = ", ".join(KINDS[theme])
                raise ConfigError(f"goal {name!r}: kind {kind!r} is not one of: {known}")
            lacking = [f for f in ("asks", *KINDS[theme][kind]) if f not in goal]
            if lacking:
                raise ConfigError(f"goal {name!r} lacks {', '.join(lacking)}")
            for field, (what, ok) in OPTIONAL.get(kind, {}).items():
                if field in goal and not ok(goal[field]):
                    raise ConfigError(f"goal {name!r}: {field} is not {what}")
        loaded.append(Theme(theme, body, body["goals"]))
    for theme in loaded:
        # Records carry a variant's canonical name: another spelling would match none.
        for goal in theme.of_kind("variant-speedup"):
            try:
                canonical = canonical_variant(str(goal["variant"]))
            except VariantError as err:
                raise ConfigError(f"goal {goal['name']!r}: {err}") from None
            if canonical != goal["variant"]:
                name, given = goal["name"], goal["variant"]
                raise ConfigError(f"goal {name!r}: variant {given!r} is {canonical!r} in records")
        # An MFU is judged on the variant whose speed-up its point's goal judges.
        points = {(g["model"], g["batch_size"]) for g in theme.of_kind("best-speedup")}
        for goal in theme.of_kind("best-mfu"):
            if (goal["model"], goal["batch_size"]) not in points:
                raise ConfigError(f"goal {goal['name']!r} has no best-speedup goal at its point")
    return loaded
