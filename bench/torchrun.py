"""torchrun as `gan-bench run --nproc N` starts it: `python -m torch.distributed.run`, with
its own failure report (a traceback of torchrun itself, then a table of the workers' exit
codes) cut to one line. The workers have already said what went wrong, and the run's record
holds it; the launcher (bench/runtime/launcher.py) turns the record's status into the exit code.
"""

from __future__ import annotations

import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except ChildFailedError as err:
        codes = ", ".join(
            f"rank {rank}: {failure.exitcode}" for rank, failure in sorted(err.failures.items())
        )
        print(f"gan-bench: torchrun: worker exit codes {codes}", file=sys.stderr, flush=True)
        return 1
    except SignalException as err:  # torchrun stopped its workers on SIGINT/SIGTERM
        print(f"gan-bench: torchrun: stopped by {err.sigval.name}", file=sys.stderr, flush=True)
        return 128 + int(err.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(_run(sys.argv[1:]))
