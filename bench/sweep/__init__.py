"""`gan-bench sweep`: run a grid of benchmark points, each in its own process.

A point is (model, dataset, batch size per process, precision, world size, variant); each
runs `--repeats` times for each of `--seeds` (one seed by default). The plan is a union of
blocks, each block a Cartesian product of axis values: the default blocks fit the machine
(a few minutes on a 2-core CPU; on GPUs the speed-up goals, precisions and scaling), and
every axis given on the command line replaces that axis in every block.

Every run is a child process (`python -m bench.run`, or torchrun for more than one process)
in its own process group, writing its record to a temporary file that the sweep then
appends to `--out`; so a crash, an OOM or a hang ends one point, never the sweep. A point
that cannot run here is recorded as `skipped` with the reason; one that dies without a
record gets a record written by the sweep (`failed`, `timeout`, `interrupted`). Resume
skips runs whose key already has an ok record. The sweep ends with the compare table.

The modules, one job each:

- `plan`: the machine, its default grid, the points, skip rules, resume keys, estimates,
  and the `--dry-run` table;
- `spec`: the options parsed and validated into a `SweepSpec`, and the machine's
  environment as records carry it;
- `child`: one child process run safely (command, environment, process group, signals,
  clean-up, stderr tail);
- `outcome`: the record of a run the sweep writes or amends;
- `warm`: the fork server one-process points start from;
- `precompile`: compiling points ahead, several at once, into inductor's on-disk caches;
- `loop`: `execute`, the loop over the plan (points one at a time, or side by side with
  --concurrent) with its progress, and `sweep_command`.

The names below are re-exported from those modules. To replace one in a test, patch it
where it is looked up (e.g. `bench.sweep.loop.run_child`), not here.
"""

from bench.sweep.child import ChildResult, point_command, run_child
from bench.sweep.loop import execute, sweep_command
from bench.sweep.outcome import outcome_record, sweep_record
from bench.sweep.plan import (
    Machine,
    PlannedRun,
    Point,
    detect_machine,
    estimate_runs_s,
    measured_compile_s,
    plan_runs,
    print_plan,
    recorded_keys,
    skip_reason,
)
from bench.sweep.spec import SweepSpec, build_spec

__all__ = [
    "ChildResult",
    "Machine",
    "PlannedRun",
    "Point",
    "SweepSpec",
    "build_spec",
    "detect_machine",
    "estimate_runs_s",
    "measured_compile_s",
    "execute",
    "outcome_record",
    "plan_runs",
    "point_command",
    "print_plan",
    "recorded_keys",
    "run_child",
    "skip_reason",
    "sweep_command",
    "sweep_record",
]
