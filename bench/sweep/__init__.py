"""`gan-bench sweep`: run a grid of benchmark points, each in its own process (or, with
`--launcher slurm`, its own SLURM job).

A point is (model, dataset, batch size, precision, world size, variant, scaling: whether
the batch is per process or global); each
runs `--repeats` times for each of `--seeds` (one seed by default). The plan is a union of
blocks, each block a Cartesian product of axis values, from a tier of the default grid
(`--grid quick|full|goals`, bench.sweep.grid) sized for the machine, and every axis given
on the command line replaces that axis in every block.

Every run is a child process (`python -m bench.run`, or torchrun for more than one process)
in its own process group, writing its record to a temporary file that the sweep then
appends to `--out`; so a crash, an OOM or a hang ends one point, never the sweep. A point
that cannot run here is recorded as `skipped` with the reason; one that dies without a
record gets a record written by the sweep (`failed`, `timeout`, `interrupted`; for a SLURM
job also `oom` and `cancelled`). Resume skips runs whose key already has an ok record. The
sweep ends with the compare table.

The modules, one job each:

- `grid`: the default grids as data (tiers: quick, full, goals) and the points of a grid;
- `spec`: the options parsed and validated into a `SweepSpec`, and the machine's
  environment as records carry it;
- `plan`: skip rules, every run in its order, resume keys;
- `estimate`: what each run costs, roughly, and the `--dry-run` table;
- `child`: one child process run safely (command, environment, process group, signals,
  clean-up, stderr tail);
- `outcome`: the record of a run the sweep writes or amends;
- `warm`: the fork server one-process points start from;
- `precompile`: compiling points ahead, several at once, into inductor's on-disk caches
  (each such process is `python -m bench.precompile`);
- `loop`: `execute`, the loop over the plan (points one at a time, or side by side with
  --concurrent), and `sweep_command`;
- `progress`: what the sweep shows while it runs;
- `slurm`: the runs as SLURM jobs, up to --max-jobs in the queue, each ended job's record.

The names below are re-exported from those modules. To replace one in a test, patch it
where it is looked up (e.g. `bench.sweep.loop.run_child`), not here.
"""

from bench.sweep.child import ChildResult, point_command, run_child
from bench.sweep.estimate import estimate_runs_s, measured_compile_s, print_plan
from bench.sweep.grid import GRIDS, Point, expand
from bench.sweep.loop import execute, sweep_command
from bench.sweep.outcome import outcome_record, sweep_record
from bench.sweep.plan import PlannedRun, plan_runs, recorded_keys, skip_reason
from bench.sweep.spec import SweepSpec, build_spec
from bench.telemetry.machine import Machine, detect_machine

__all__ = [
    "GRIDS",
    "ChildResult",
    "Machine",
    "PlannedRun",
    "Point",
    "SweepSpec",
    "build_spec",
    "detect_machine",
    "estimate_runs_s",
    "execute",
    "expand",
    "measured_compile_s",
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
