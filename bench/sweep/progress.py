"""What a sweep shows while it runs: a rich progress bar on a terminal, one line per run
elsewhere, and the line that says how each run ended."""

from __future__ import annotations

import sys

from bench.sweep.plan import PlannedRun


class SweepProgress:
    """A rich bar over runs (weighted by their estimated cost, for an honest ETA) with the
    last run's throughput on a terminal; one stderr line per run elsewhere (logs, CI)."""

    def __init__(self, weights: list[float], runs: int):
        self._bar = None
        self.done = 0
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("sweep"),
                BarColumn(),
                TextColumn("{task.fields[done]}/{task.fields[runs]} runs"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[last]}"),
                console=Console(stderr=True),
                refresh_per_second=2,
            )
            total = sum(weights) or 1.0
            self._task = self._bar.add_task("sweep", total=total, done=0, runs=runs, last="")

    def __enter__(self):
        if self._bar:
            self._bar.start()
        return self

    def __exit__(self, *exc):
        if self._bar:
            self._bar.stop()

    def note(self, line: str) -> None:
        """A line that is no run's outcome (the precompiles')."""
        if self._bar:
            self._bar.console.print(line, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def show(self, text: str) -> None:
        """What is going on now, at the bar's end (a terminal only): e.g. the SLURM queue."""
        if self._bar:
            self._bar.update(self._task, last=text)

    def finished(self, weight: float, line: str, last: str = "") -> None:
        if weight:
            self.done += 1
        if self._bar:
            self._bar.console.print(line, highlight=False)
            self._bar.update(self._task, advance=weight, done=self.done, last=last)
        else:
            print(line, file=sys.stderr, flush=True)


def outcome_line(
    run: PlannedRun, record: dict, wall_s: float | None, n: int, total: int, seeds: int = 1
) -> str:
    status = record["status"]
    seed = f" seed {run.seed}" if seeds > 1 else ""  # one seed: the line as it always was
    text = f"[{n}/{total}] {run.point.label} r{run.repeat}{seed}: {status}"
    rate = (record.get("metrics") or {}).get("images_per_s")
    if status == "ok" and rate is not None:
        text += f", {rate:,.0f} images/s"
    elif record.get("reason"):
        text += f" ({record['reason'][:150]})"
    if wall_s is not None:
        # The process's own start-up (its imports) beside the point's wall time: what a
        # sweep of many short points spends outside training.
        start_up = ((record.get("run") or {}).get("phase_s") or {}).get("start-up")
        text += f" [{wall_s:.1f} s" + (f", start-up {start_up:.1f} s]" if start_up else "]")
    return text
