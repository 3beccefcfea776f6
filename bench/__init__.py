"""gan-bench's harness: configuration, distributed setup, training loop, timing, records, CLI."""

import time

# When this process first imported the package, before torch: a run's record counts its
# start-up (imports, mostly torch's) from here (bench/harness.py, run.phase_s).
IMPORTED_AT = time.perf_counter()
