"""A verdict of `gan-bench goals`: one row of goals.md, and the records it is judged on.

Kept apart from the judgments so that each theme's module (bench.analysis.goals,
bench.analysis.kernel_goals) builds its rows without importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.telemetry.records import read_records


@dataclass
class Verdict:
    """A row of goals.md: a goal, or a figure that explains one, with what was measured."""

    theme: str
    goal: str
    figure: str
    met: bool | None  # None: not measured, or a figure that explains rather than judges

    @property
    def mark(self) -> str:
        return {True: "met", False: "MISSED", None: "—"}[self.met]


def records_of(path: Path) -> list[dict]:
    """The records of a JSON-lines file, or none where the folder lacks it."""
    if not path.is_file():
        return []
    return [r for _, r in read_records(str(path)) if isinstance(r, dict)]
