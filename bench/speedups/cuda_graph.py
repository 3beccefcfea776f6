"""Whole-iteration CUDA graphs: one training iteration captured once, replayed every step.

A DCGAN iteration at small batch is hundreds of short kernels: the GPU waits on the
launches. Replaying a captured graph launches all of them at once. What makes the
iteration capturable (PyTorch notes "CUDA Graphs", whole-network capture):

- Static inputs: each call copies its real batches into buffers the graph reads. Latents
  are drawn inside the graph from a generator registered with it (graph-safe RNG: every
  replay advances the generator's philox offset, so every replay draws new latents).
- Optimizers keep their step count on the device: fused Adam with capturable=True, whose
  GradScaler (fp16) checks for inf/NaN on the device instead of reading a flag on the
  host (bench/training/step.py says why fused).
- Autocast's cast cache off (bench/training/precision.py): casts cached during capture
  would live outside the graph's memory and be reused after it.
- No host syncs in the iteration (bench/training/step.py keeps losses as tensors).
- Warm-up: eager iterations first, on the stream the capture uses (cuDNN and cuBLAS
  workspaces, optimizer state, Triton autotuning and torch.compile all happen then, not
  during capture): 3 for one process (the notes' example), 11 under DDP, which the notes
  require for capturing DDP's backward (NCCL >= 2.9.6, DDP built on that side stream,
  NCCL async error handling off before the process group starts), or more, so that the
  captured iteration holds none of DDP's own timing read-backs.

`GraphedStep` wraps a training step and does all of this; a backend object does the
CUDA parts, so the scheduling and the static buffers can be tested on a CPU with a
stand-in backend. `CUDA_GRAPH`, the speed-up, prepares each stage of the run for it
(bench.speedups.apply): the process's environment before the process group, autocast's
cache, the stream DDP is built on, Adam's implementation, and the capture, outermost.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence

import torch

from bench.speedups.base import Build, Option, Requirement, SpeedUp, Stage
from bench.speedups.compile import COMPILE_MODES
from bench.speedups.requirements import needs_cuda

EAGER_ITERATIONS_BEFORE_CAPTURE = 3
DDP_EAGER_ITERATIONS_BEFORE_CAPTURE = 11
MIN_NCCL_FOR_CAPTURE = (2, 9, 6)
# DDP times its own forward and backward with CUDA events (torch/csrc/distributed/c10d:
# reducer.cpp, logger.cpp; torch 2.11-2.14). Forward f (1-based, counted per DDP module,
# only with grad enabled) first reads the events of forward f-1 when f-1 is in 1..10 or a
# multiple of kDDPRuntimeLoggingSampleRate (an event synchronize, which a capture refuses),
# then records new ones when f is in 1..10 or such a multiple: DistributedDataParallel.
# _pre_forward calls logger.set_runtime_stats_and_log() before reducer.prepare_for_forward()
# counts the forward. The captured iteration's forwards must do neither: f >= 12 (the
# notes' 11 eager iterations, for one forward per iteration) and f mod 100 not 0 or 1.
DDP_LOGGING_SAMPLE_RATE = 100
_DDP_FIRST_FORWARDS_LOGGED = 11


def _logs_during_capture(eager: int, forwards_per_iteration: int) -> bool:
    """Whether a DDP module called `forwards_per_iteration` times per iteration reads or
    records its timing events during the iteration captured after `eager` eager ones."""
    captured = range(eager * forwards_per_iteration + 1, (eager + 1) * forwards_per_iteration + 1)
    return any(
        f <= _DDP_FIRST_FORWARDS_LOGGED or f % DDP_LOGGING_SAMPLE_RATE in (0, 1) for f in captured
    )


def eager_iterations_before_capture(world_size: int, critic_updates: int = 1) -> int:
    """Eager iterations before the capture. Under DDP, G's module runs one forward per
    iteration (with grad) and D's objective one per critic update: the count is the first
    from 11 on after which neither logs DDP's timings inside the captured iteration.
    ValueError when there is none (the residues mod 100 of the captured forwards repeat
    within 100 iterations): e.g. 50 or 98 or more critic updates."""
    if world_size == 1:
        return EAGER_ITERATIONS_BEFORE_CAPTURE
    for eager in range(
        DDP_EAGER_ITERATIONS_BEFORE_CAPTURE,
        DDP_EAGER_ITERATIONS_BEFORE_CAPTURE + DDP_LOGGING_SAMPLE_RATE,
    ):
        if not any(_logs_during_capture(eager, k) for k in {1, critic_updates}):
            return eager
    raise ValueError(
        f"under DDP every iteration of {critic_updates} critic updates holds a forward at "
        f"which DDP logs its timings (each {DDP_LOGGING_SAMPLE_RATE}th and the one after), "
        "which a CUDA graph cannot hold"
    )


def required_warmup_steps(world_size: int, critic_updates: int = 1) -> int:
    """Warm-up iterations a graphed run needs: the eager ones, then the capture."""
    return eager_iterations_before_capture(world_size, critic_updates) + 1


def prepare_distributed_capture() -> None:
    """Before the process group starts: DDP's NCCL watchdog must not abort captured work
    (the notes' first DDP step). Both spellings: torch renamed the variable in 2.2."""
    os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "0"
    os.environ["NCCL_ASYNC_ERROR_HANDLING"] = "0"


def check_nccl_for_capture() -> None:
    """Raise when this NCCL cannot be captured in a graph (collectives in graphs: 2.9.6+)."""
    version = torch.cuda.nccl.version()
    if isinstance(version, int):  # very old torch: an int like 2708
        version = (version // 1000, version // 100 % 10, version % 100)
    if tuple(version) < MIN_NCCL_FOR_CAPTURE:
        need = ".".join(map(str, MIN_NCCL_FOR_CAPTURE))
        have = ".".join(map(str, version))
        raise RuntimeError(f"capturing DDP in a CUDA graph needs NCCL >= {need}; this is {have}")


class CudaGraphBackend:
    """The CUDA side: a side stream for warm-up and capture, and the capture itself."""

    def __init__(self, device: torch.device):
        if device.type != "cuda":  # check_device refuses this before any work
            raise RuntimeError(f"a CUDA graph needs a CUDA device, not {device}")
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.graph: torch.cuda.CUDAGraph | None = None  # held: its memory pool holds outputs

    @contextlib.contextmanager
    def side_stream(self):
        """Run on the capture stream, ordered after and before the current stream's work."""
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            yield
        current.wait_stream(self.stream)

    def capture(self, fn: Callable[[], object], generators: Sequence[torch.Generator]):
        """Record `fn`'s CUDA work (nothing runs) and return (replay, fn's outputs)."""
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        for generator in generators:  # before capture begins, as torch requires
            graph.register_generator_state(generator)
        # thread_local: only this thread's unsafe calls break the capture, not those of
        # threads that run beside it (NCCL's watchdog polling events, a DataLoader's
        # pin-memory thread), which touch neither this stream nor its memory.
        with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
            outputs = fn()
        self.graph = graph
        return graph.replay, outputs


class GraphedStep:
    """A training step that runs eagerly `eager_iterations` times, is captured on the
    next call and replayed from then on. Called like the step: `step(real_batches)`,
    returning its (d_loss, g_loss) tensors (static ones once captured)."""

    def __init__(
        self,
        step: Callable[[list[torch.Tensor]], tuple[torch.Tensor, torch.Tensor]],
        backend,
        *,
        eager_iterations: int,
        generators: Sequence[torch.Generator] = (),
    ):
        self.step = step
        self.backend = backend
        self.eager_iterations = eager_iterations
        self.generators = tuple(generators)
        self.eager_done = 0
        self.replays = 0
        self.capture_s: float | None = None
        self._replay: Callable[[], None] | None = None
        self._static_reals: list[torch.Tensor] = []
        self._outputs = None

    @property
    def captured(self) -> bool:
        return self._replay is not None

    def __call__(self, real_batches: list[torch.Tensor]):
        if not self.captured and self.eager_done < self.eager_iterations:
            with self.backend.side_stream():
                outputs = self.step(real_batches)
            self.eager_done += 1
            return outputs
        if not self.captured:
            self._capture(real_batches)
        if len(real_batches) != len(self._static_reals):
            raise ValueError(
                f"the graph was captured for {len(self._static_reals)} real batches per "
                f"iteration, got {len(real_batches)}"
            )
        for static, real in zip(self._static_reals, real_batches, strict=True):
            static.copy_(real)
        self._replay()
        self.replays += 1
        return self._outputs

    def _capture(self, real_batches: list[torch.Tensor]) -> None:
        # clone() keeps the memory format: a channels_last batch gets a channels_last buffer.
        self._static_reals = [real.clone() for real in real_batches]
        start = time.perf_counter()
        self._replay, self._outputs = self.backend.capture(self._static_step, self.generators)
        self.capture_s = time.perf_counter() - start

    def _static_step(self):
        """The iteration the graph records: on the static buffers only."""
        return self.step(self._static_reals)

    def describe(self) -> dict:
        """The record's account of what ran: captured or not, and how."""
        return {
            "captured": self.captured,
            "eager_iterations_before_capture": self.eager_done,
            "capture_s": self.capture_s,
            "replays": self.replays,
        }


# Adam's implementation inside a capture (bench.training.step.ADAM_OPTIONS): the step count
# on the device. A module name, so that CPU tests of a captured run with a stand-in
# backend can keep the default one.
CAPTURE_ADAM = "fused"


def _no_async_nccl_errors(_build: Build) -> None:
    prepare_distributed_capture()


def _no_cast_cache(build: Build) -> None:
    build.autocast_cache = False


def _capture_stream(build: Build) -> None:
    """DDP is built on the stream the capture runs on (the notes' requirement)."""
    if build.ctx.distributed:
        check_nccl_for_capture()
    build.graph_backend = CudaGraphBackend(build.ctx.device)
    build.ddp_stream = build.graph_backend.stream


def _capturable_adam(build: Build) -> None:
    build.adam = CAPTURE_ADAM


def _capture(build: Build) -> None:
    cfg = build.cfg
    build.graphed = GraphedStep(
        build.step,
        build.graph_backend,
        eager_iterations=eager_iterations_before_capture(build.ctx.world_size, cfg.critic_updates),
        generators=[build.latent_rng],
    )
    build.step = build.graphed
    build.late_record["cuda_graph"] = build.graphed.describe


def _enough_warmup(cfg, machine) -> str | None:
    if machine is None or not machine.cuda:  # a graph needs CUDA first (the check above)
        return None
    # Under torchrun the world size is in the environment before the config is built.
    world_size = int(os.environ.get("WORLD_SIZE", cfg.nproc))
    try:
        needed = required_warmup_steps(world_size, cfg.critic_updates)
    except ValueError as err:
        return f"cannot run: {err}; use fewer --n-critic or no graph"
    if cfg.warmup_steps >= needed:
        return None
    return (
        f"needs --warmup-steps of at least {needed} with {world_size} process(es): "
        f"{needed - 1} eager iteration(s) before the capture, then the capture itself, all "
        "outside the timing"
    )


CUDA_GRAPH = SpeedUp(
    name="cuda-graph",
    help="the whole training iteration captured once as a CUDA graph and replayed",
    options=(Option("cuda_graph", bool, False),),
    fields={"cuda_graph": True},
    stage=Stage.GRAPH,
    hooks={
        Stage.PROCESS: _no_async_nccl_errors,
        Stage.PRECISION: _no_cast_cache,
        Stage.DDP: _capture_stream,
        Stage.OPTIMIZER: _capturable_adam,
        Stage.GRAPH: _capture,
    },
    requires=(
        needs_cuda("it captures CUDA work; on CPU there is nothing to capture"),
        Requirement("enough --warmup-steps", _enough_warmup),
    ),
    conflicts={
        mode.speedup: f"cuda-graph captures the whole iteration, and compile mode {mode.mode} "
        "makes CUDA graphs of its own: a graph inside a graph; use "
        "compile-max-autotune-no-cudagraphs+cuda-graph or compile+cuda-graph instead"
        for mode in COMPILE_MODES
        if mode.cuda_graphs
    },
    record_off={"cuda_graph": None},
)
