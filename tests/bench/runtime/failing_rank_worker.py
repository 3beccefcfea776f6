"""A torchrun worker running `bench.run` whose rank 1 fails as training starts, for the
tests of who reports a run that a rank other than 0 ended.

Usage: `torchrun ... tests/bench/runtime/failing_rank_worker.py MODE [gan-bench run options]`,
MODE saying what rank 0 does meanwhile:
- `collective`: waits in a barrier, so it fails too once rank 1 is gone (gloo);
- `stuck`: waits where no Python signal handler runs, as a rank waiting inside an NCCL
  collective does, so torchrun's SIGTERM kills it before it can write anything;
- `killed`: as `stuck`, and rank 1 is killed outright (SIGKILL, as by the out-of-memory
  killer) instead of raising: no rank writes a record.
"""

import os
import signal
import sys
import time

import torch.distributed as dist

from bench.cli import main
from bench.runtime import harness

MODE = sys.argv.pop(1)


def _train(cfg, ctx, record, phase):
    if ctx.rank == 1:
        if MODE == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        raise ValueError("boom on rank 1")
    if MODE in ("stuck", "killed"):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        time.sleep(120)
    dist.barrier()


harness._train = _train
main(["run", *sys.argv[1:]])
