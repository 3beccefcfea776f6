"""What torch.compile did during one run: graph breaks, recompiles, and whether inductor's
own CUDA graphs were used or skipped (and why).

Dynamo and inductor count into process-wide counters; `CompileWatch` clears them when a
run starts and reads them at the end. Inductor gives the reason for a skipped CUDA graph
only as a log line (a BatchNorm's running-statistics update is a mutated input, a classic
reason), so the watch listens on that logger while the run lasts.
"""

from __future__ import annotations

import logging
import re

# The artifact logger inductor reports CUDA-graph skips on (torch/_inductor/cudagraph_utils.py).
CUDAGRAPHS_LOGGER = "torch._inductor.cudagraph_utils.__cudagraphs"
MAX_REASONS = 10


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split())
        if message not in self.messages:
            self.messages.append(message)


def _guard_failures() -> dict:
    """Dynamo's recompile reasons per code object (absent in some torch versions)."""
    from torch._dynamo import utils

    return getattr(utils, "guard_failures", {})


_COMPILE_ID = re.compile(r"\s*\[?(\d+/\d+)")


def _one_reason_per_recompile(failures: dict) -> list[str]:
    """At each recompile of a frame, dynamo records why every compile of it in its cache
    failed its guards (newest first), so k recompiles of one frame leave k(k+1)/2 reasons.
    Each reason starts with the id of the compile it is about ("0/1: ..."), and a compile
    fails first at the recompile that replaces it: its first reason stands for that one."""
    reasons = []
    for frame_reasons in failures.values():
        seen = set()
        for reason in map(str, frame_reasons):
            match = _COMPILE_ID.match(reason)
            compile_id = match.group(1) if match else reason
            if compile_id not in seen:
                seen.add(compile_id)
                reasons.append(reason)
    return reasons


def _cache_counts(counters) -> dict:
    """Lookups in inductor's on-disk caches this run: graphs loaded compiled ("hits")
    against compiled afresh ("misses"); "bypasses": graphs the cache cannot hold. A point
    compiled ahead by the sweep (bench/sweep/precompile.py) should show hits only."""
    kinds = {"hits": "hit", "misses": "miss", "bypasses": "bypass"}
    caches = {"fx_graph": ("inductor", "fxgraph_cache"),
              "aot_autograd": ("aot_autograd", "autograd_cache")}  # fmt: skip
    return {
        name: {kind: counters[group][f"{prefix}_{suffix}"] for kind, suffix in kinds.items()}
        for name, (group, prefix) in caches.items()
    }


class CompileWatch:
    """Counters for one compiled run; `makes_cuda_graphs`: whether its compile mode puts
    inductor's CUDA graphs around the compiled graphs. `close()` detaches from the logger."""

    def __init__(self, makes_cuda_graphs: bool):
        from torch._dynamo.utils import counters

        self.makes_cuda_graphs = makes_cuda_graphs
        counters.clear()
        _guard_failures().clear()
        self._skips = _Collect()
        self._logger = logging.getLogger(CUDAGRAPHS_LOGGER)
        self._logger.addHandler(self._skips)

    def counters(self) -> dict:
        from torch._dynamo.utils import counters

        recompile_reasons = _one_reason_per_recompile(_guard_failures())
        skips = counters["inductor"]["cudagraph_skips"]
        if not self.makes_cuda_graphs:
            inductor_graphs = "not used by this mode"
        else:
            inductor_graphs = "skipped" if skips else "used"
        return {
            "graph_breaks": sum(counters["graph_break"].values()),
            "graph_break_reasons": sorted(counters["graph_break"])[:MAX_REASONS],
            "unique_graphs": counters["stats"]["unique_graphs"],
            "frames_compiled": counters["frames"]["ok"],
            "recompiles": len(recompile_reasons),
            "recompile_reasons": [" ".join(r.split())[:300] for r in recompile_reasons][
                :MAX_REASONS
            ],
            "inductor_cudagraphs": inductor_graphs,
            "cudagraph_skips": skips,
            "cudagraph_skip_reasons": self._skips.messages[:MAX_REASONS],
            "caches": _cache_counts(counters),
        }

    def close(self) -> None:
        self._logger.removeHandler(self._skips)
