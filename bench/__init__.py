"""gan-bench's harness: configuration, distributed setup, training loop, timing, records, CLI."""

import time

# When this process first imported the package, before torch: a run's record counts its
# start-up (imports, mostly torch's) from here (bench/runtime/harness.py, run.phase_s).
IMPORTED_AT = time.perf_counter()

# How this process started: "interpreter" (python -m bench.run, gan-bench run, a torchrun
# worker) or "fork server" (a sweep point forked from bench/sweep/warm.py's server, whose
# start-up then counts from the fork). Records carry it as run.process_start.
PROCESS_START = "interpreter"
