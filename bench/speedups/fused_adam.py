"""torch's fused Adam for both networks: the `fused-adam` speed-up.

Adam's default implementation on CUDA is foreach: a few multi-tensor kernels per step and
parameter group, more for its bias corrections. `torch.optim.Adam(fused=True)` does the
whole update of a group in one kernel (CUDA and CPU), with its step count on the device
(`capturable`), so no step waits on the host. A CUDA graph and fp16 on CUDA already use it
(bench.speedups.cuda_graph, bench.speedups.apply); this speed-up asks for it in eager and
compiled runs alike. The same update, up to the rounding of another kernel.
"""

from __future__ import annotations

from bench.speedups.base import Build, Option, SpeedUp, Stage


def _fused(build: Build) -> None:
    build.adam = "fused"


FUSED_ADAM = SpeedUp(
    name="fused-adam",
    help="torch's fused Adam (torch.optim.Adam(fused=True)): each network's update in one "
    "multi-tensor kernel per parameter group, its step count on the device",
    options=(Option("fused_adam", bool, False),),
    fields={"fused_adam": True},
    stage=Stage.OPTIMIZER,
    hooks={Stage.OPTIMIZER: _fused},
)
