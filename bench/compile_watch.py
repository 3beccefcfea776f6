"""What torch.compile did during one run: graph breaks, recompiles, and whether inductor's
own CUDA graphs were used or skipped (and why).

Dynamo and inductor count into process-wide counters; `CompileWatch` clears them when a
run starts and reads them at the end. Inductor gives the reason for a skipped CUDA graph
only as a log line (a BatchNorm's running-statistics update is a mutated input, a classic
reason), so the watch listens on that logger while the run lasts.
"""

from __future__ import annotations

import logging

from bench.variants import COMPILE_MODES_WITH_CUDA_GRAPHS

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


class CompileWatch:
    """Counters for one run with `compile_mode`; `close()` detaches from the logger."""

    def __init__(self, compile_mode: str):
        from torch._dynamo.utils import counters

        self.compile_mode = compile_mode
        counters.clear()
        _guard_failures().clear()
        self._skips = _Collect()
        self._logger = logging.getLogger(CUDAGRAPHS_LOGGER)
        self._logger.addHandler(self._skips)

    def counters(self) -> dict:
        from torch._dynamo.utils import counters

        recompile_reasons = [str(r) for reasons in _guard_failures().values() for r in reasons]
        skips = counters["inductor"]["cudagraph_skips"]
        if self.compile_mode not in COMPILE_MODES_WITH_CUDA_GRAPHS:
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
        }

    def close(self) -> None:
        self._logger.removeHandler(self._skips)
