"""`gan-bench kernels --host`: the fused BatchNorm + LeakyReLU op's host time per forward +
backward, its launches stubbed out and counted, against eager's dispatch of the same call,
on any machine (no GPU needed).

At DCGAN-64's small layers a forward + backward is a few microseconds of GPU work, so
the host's time per call decides the pace. Both sides are measured on CPU tensors:

- the fused op at the case's full shape, every ``kernel[grid](...)`` stubbed out and
  counted (``measure.launches_stubbed``), planned as on a GPU: the kernels count as
  compiled and the plan sees a GPU's SM count (this machine's GPU, or a nominal H100's
  132 SMs without one, ``plan_device``). Where the kernels are interpreted it is measured
  again with the interpreter's plan, the one that then runs.
- eager (``F.batch_norm`` + ``F.leaky_relu``, forward and backward) on CPU tensors of the
  case's layout and dtype at a minimal shape (``dispatch_shape``: batch 2, 8 channels,
  sides of 2): its dispatch, autograd and allocations with negligible arithmetic. On a
  2-core CPU (torch 2.14) it took 56-70 µs at such shapes with up to 64 channels, in each
  layout and dtype, and 59-64 µs at (2, 1, 1, 1): nothing left to take out. Full channel
  counts are not dispatch-only on a CPU: (2, 512, 2, 2) took 99 µs in fp32 and 140 µs in
  bf16 against 57 and 60 at (2, 8, 2, 2), its batch-norm ops' own CPU time
  (torch.profiler) 59 µs against 15; on a GPU that per-channel work runs on the device.
  Nor is the ``meta`` device: its batch norm runs Python decompositions, 3.3-4.0 ms per
  call at the full shapes (aten::mul alone 1.3 ms), 6 to 17 times the 0.24-0.52 ms of
  host time an H100 machine spent on the whole eager call, launches included.

Both numbers leave out the host costs only a CUDA device has (the caching allocator, the
autograd engine's handoff of the backward to the device's thread, cuDNN's descriptors, the
launches themselves): what differs between them is the work each side does per call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from bench.kernelbench.batchnorm import Case, case_tensors, impl_function
from bench.kernelbench.measure import (
    LaunchCount,
    cpu_blocks_kept,
    host_us_in_turns,
    launches_stubbed,
)
from kernels import availability
from kernels.batchnorm import calls as batchnorm_calls
from kernels.batchnorm import ops as batchnorm_ops
from kernels.batchnorm import plan as batchnorm_plan

__all__ = [
    "EAGER_METHOD",
    "FusedHostCall",
    "NOMINAL_SMS",
    "dispatch_shape",
    "eager_dispatch_call",
    "fused_host_call",
    "goal_case",
    "host_goal",
    "host_tensors",
    "plan_device",
    "run_host_case",
]

# An H100's SMs: the GPU plan's SM count on a machine without a GPU.
NOMINAL_SMS = 132
# How eager's dispatch-only time is measured (see the module's docstring).
EAGER_METHOD = "cpu-minimal-shape"
# ``dispatch_shape``'s sides: 2 values per channel at least (training needs more than 1),
# channels_last still distinct from NCHW (C and H, W above 1).
_DISPATCH_BATCH, _DISPATCH_CHANNELS, _DISPATCH_SPATIAL = 2, 8, 2


def goal_case(case: Case) -> bool:
    """Whether the goal is set on ``case``: DCGAN-64's layers at batch 128 and BN1d."""
    return case.name.startswith(("dcgan64-", "bn1d-"))


def dispatch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The minimal shape eager's dispatch is measured at: batch 2, at most 8 channels, each
    spatial side at most 2; as many dims as ``shape``."""
    n, c, *spatial = shape
    return (
        min(n, _DISPATCH_BATCH),
        min(c, _DISPATCH_CHANNELS),
        *(min(s, _DISPATCH_SPATIAL) for s in spatial),
    )


def plan_device() -> tuple[str, int]:
    """The GPU the fused op is planned for, and its SM count: this machine's CUDA device,
    or a nominal H100 without one."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return props.name, props.multi_processor_count
    return f"nominal H100 ({NOMINAL_SMS} SMs)", NOMINAL_SMS


@contextlib.contextmanager
def _planned_as_on_a_gpu(sms: int) -> Iterator[None]:
    """The fused op on CPU tensors takes the path and the plan it takes on a GPU of ``sms``
    SMs: the kernels count as compiled (the op plans from ``availability.INTERPRETED``),
    CPU tensors pass the op's device check, and the plan's SM count is ``sms``. Only under
    ``launches_stubbed``: no kernel could run on these tensors."""
    saved = availability.INTERPRETED, availability.require_runnable, batchnorm_plan.sm_count
    availability.INTERPRETED = False
    availability.require_runnable = lambda device: None
    batchnorm_plan.sm_count = lambda device: sms
    batchnorm_calls.forget()  # calls kept with the interpreter's plan
    try:
        yield
    finally:
        availability.INTERPRETED, availability.require_runnable, batchnorm_plan.sm_count = saved
        batchnorm_calls.forget()  # ... and those kept with the GPU's


def host_tensors(case: Case, shape: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
    """``case_tensors`` on the CPU at ``shape`` (default the case's), and a gradient ``dy``."""
    small = case if shape is None else dataclasses.replace(case, shape=shape)
    t = case_tensors(small, "cpu")
    return {**t, "dy": torch.randn_like(t["x"])}


def _forward_backward(fn: Callable, t: dict[str, torch.Tensor]) -> Callable[[], object]:
    """One training forward + backward of ``fn``, as ``run_case`` times it."""
    wrt = (t["x"], t["weight"], t["bias"])
    return lambda: torch.autograd.grad(fn(t["x"]), wrt, t["dy"])


class FusedHostCall(NamedTuple):
    """``fused_host_call``'s: the call, its launches so far, whether freed CPU memory is
    kept for reuse (``measure.cpu_blocks_kept``)."""

    call: Callable[[], object]
    count: LaunchCount
    blocks_kept: bool


@contextlib.contextmanager
def fused_host_call(
    case: Case,
    *,
    gpu_sms: int | None,
    tensors: dict[str, torch.Tensor] | None = None,
    impl: str = "triton",
) -> Iterator[FusedHostCall]:
    """The fused op's forward + backward on CPU tensors of ``case`` (``host_tensors``, or
    ``tensors``), for use inside the block, with its launches stubbed and counted: planned
    as on a GPU of ``gpu_sms`` SMs, or (None) as the op plans here, which needs the
    interpreter. ``impl``: one of ``FUSED_IMPLS`` (its default plan, or one kernel each
    way). Freed memory is kept for reuse, as on a GPU, so that the time does not depend on
    the tensors' size."""
    t = host_tensors(case) if tensors is None else tensors
    fused = impl_function(impl, case, t)
    planned = _planned_as_on_a_gpu(gpu_sms) if gpu_sms else contextlib.nullcontext()
    with launches_stubbed(batchnorm_ops) as count, planned, cpu_blocks_kept() as kept:
        yield FusedHostCall(_forward_backward(fused, t), count, kept)


def eager_dispatch_call(case: Case) -> Callable[[], object]:
    """Eager's forward + backward on CPU tensors of ``case``'s layout and dtype at
    ``dispatch_shape``: its dispatch with negligible arithmetic."""
    t = host_tensors(case, dispatch_shape(case.shape))
    return _forward_backward(impl_function("eager", case, t), t)


def _launches(
    case: Case, t: dict[str, torch.Tensor], gpu_sms: int | None, impl: str
) -> tuple[int, bool]:
    """Launches per forward + backward (after a first call, which plans), and whether freed
    memory was kept."""
    with fused_host_call(case, gpu_sms=gpu_sms, tensors=t, impl=impl) as fused:
        fused.call()
        before = fused.count.launches
        fused.call()
        return fused.count.launches - before, fused.blocks_kept


@contextlib.contextmanager
def _call_of(
    fused: contextlib.AbstractContextManager[FusedHostCall],
) -> Iterator[Callable[[], object]]:
    """``fused``'s call alone, for ``measure.host_us_in_turns``."""
    with fused as entered:
        yield entered.call


@functools.cache
def host_goal() -> tuple[float, int]:
    """The project's host-path goal at every DCGAN-64 batch-128 case and BN1d, from the
    goals file (results/goals.json, as `gan-bench goals` judges it): the fused op's host
    time at most this fraction of eager's dispatch, in at most this many launches per
    forward + backward."""
    from bench.analysis.goals_file import load_goals

    (goal,) = [g for theme in load_goals() for g in theme.of_kind("host-ratio")]
    return goal["max_host_ratio"], goal["max_launches_per_call"]


def _goal(case: Case, ratio: float, launches: int) -> bool | None:
    """Whether the goal holds at ``case`` (None where none is set)."""
    if not goal_case(case):
        return None
    max_ratio, max_launches = host_goal()
    return ratio <= max_ratio and launches <= max_launches


def run_host_case(case: Case, *, gpu: tuple[str, int]) -> dict:
    """One JSON-ready row for ``case``: the fused op's host µs per forward + backward
    (launches stubbed, planned for ``gpu``, a ``plan_device()``), eager's dispatch µs,
    their ratio, launches per call; the same with the one-kernel plan (``one_kernel_*``);
    and where the kernels are interpreted the same with the interpreter's plan. The sides
    are timed in turns (``measure.host_us_in_turns``). A measurement that fails is a row
    with ``status="failed"``."""
    head = {"case": case.name, "shape": list(case.shape), "layout": case.layout,
            "dtype": case.dtype}  # fmt: skip
    # The GPU's default plan, its one-kernel plan (triton-one-kernel), and where the
    # kernels are interpreted the interpreter's: (SMs planned for, implementation).
    plans = {"gpu": (gpu[1], "triton"), "one-kernel": (gpu[1], "triton-one-kernel")}
    if availability.INTERPRETED:
        plans["interpreter"] = (None, "triton")
    try:
        t = host_tensors(case)
        launches = {plan: _launches(case, t, *how) for plan, how in plans.items()}
        eager = eager_dispatch_call(case)
        sides = {
            plan: lambda how=how: _call_of(
                fused_host_call(case, gpu_sms=how[0], tensors=t, impl=how[1])
            )
            for plan, how in plans.items()
        }
        us = host_us_in_turns({**sides, "eager": lambda: contextlib.nullcontext(eager)})
    except Exception as exc:  # a failed case is a row, not a crash
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        return {**head, "status": "failed", "reason": reason}
    (count, kept), ratio = launches["gpu"], us["gpu"] / us["eager"]
    one_count, one_ratio = launches["one-kernel"][0], us["one-kernel"] / us["eager"]
    interpreter = launches.get("interpreter")
    return {
        **head,
        "host_us": us["gpu"],
        "launches_per_call": count,
        "plan_device": gpu[0],
        "plan_sms": gpu[1],
        "cpu_blocks_kept": kept,
        "eager_dispatch_us": us["eager"],
        "eager_method": EAGER_METHOD,
        "eager_shape": list(dispatch_shape(case.shape)),
        "host_ratio": ratio,
        "goal_met": _goal(case, ratio, count),
        "one_kernel_host_us": us["one-kernel"],
        "one_kernel_launches_per_call": one_count,
        "one_kernel_host_ratio": one_ratio,
        "one_kernel_goal_met": _goal(case, one_ratio, one_count),
        "kernels_interpreted": availability.INTERPRETED,
        "interpreter_host_us": us.get("interpreter"),
        "interpreter_launches_per_call": interpreter[0] if interpreter else None,
        "status": "ok",
        "reason": None,
    }
