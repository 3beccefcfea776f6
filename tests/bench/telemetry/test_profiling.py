"""bench.telemetry.profiling: the summary of a profiled training iteration, on CPU and (with fake
events) the CUDA bookkeeping: busy time as a union, kernels counted per device."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.autograd import DeviceType

from bench.telemetry import profiling
from bench.telemetry.profiling import format_profile, merge_intervals, profile_iterations

ITERATIONS = 3
LINEAR_LAYERS = 3


def _training_iteration():
    """A forward + backward + SGD step of a small MLP with LINEAR_LAYERS Linear layers."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(4, 8)

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        optimizer.step()

    step()  # warm-up, as the harness profiles after its timed iterations
    return step


def test_cpu_summary_fields_and_order():
    summary = profile_iterations(_training_iteration(), device=torch.device("cpu"), iterations=3)

    json.dumps(summary)  # a record field: must serialise as is
    assert summary["profiler"] == "torch.profiler"
    assert summary["device"] == "cpu"
    assert summary["iterations"] == ITERATIONS
    assert summary["wall_ms_per_iteration"] > 0
    assert summary["sort_by"] == "self_cpu_time"
    # Device-side numbers need a device timeline: none on CPU.
    assert summary["device_busy_ms_per_iteration"] is None
    assert summary["device_idle_fraction"] is None
    assert summary["kernel_launches_per_iteration"] is None
    assert summary["top_kernels"] == []
    assert summary["trace_path"] is None and summary["trace_error"] is None

    ops = summary["top_ops"]
    assert 0 < len(ops) <= 15
    times = [op["self_ms_per_iteration"] for op in ops]
    assert times == sorted(times, reverse=True)
    for op in ops:
        assert set(op) == {
            "name",
            "calls_per_iteration",
            "self_ms_per_iteration",
            "self_cpu_ms_per_iteration",
            "share",
        }
        assert 0 <= op["share"] <= 1
        # On CPU the sort clock is the CPU clock.
        assert op["self_ms_per_iteration"] == op["self_cpu_ms_per_iteration"]
    assert sum(op["share"] for op in ops) <= 1 + 1e-9
    # The per-iteration self times cannot exceed the wall time of an iteration.
    assert sum(times) <= summary["wall_ms_per_iteration"] * 1.05


def test_calls_are_per_iteration():
    summary = profile_iterations(
        _training_iteration(), device="cpu", iterations=ITERATIONS, top=10_000
    )
    calls = {op["name"]: op["calls_per_iteration"] for op in summary["top_ops"]}
    # 9 calls over 3 iterations: 3 per iteration, one per Linear layer (wrong by a factor
    # of 3 either way if the count were not divided, or divided twice).
    assert calls["aten::linear"] == LINEAR_LAYERS
    assert calls["aten::addmm"] == LINEAR_LAYERS
    step = [name for name in calls if name.startswith("Optimizer.step")]
    assert step and all(calls[name] == 1 for name in step)
    # All operators listed when `top` allows: the shares cover the whole self time.
    assert math.isclose(sum(op["share"] for op in summary["top_ops"]), 1.0, rel_tol=1e-6)


def test_trace_written_as_json(tmp_path):
    path = tmp_path / "profiles" / "run" / "trace.json"  # parents do not exist yet
    summary = profile_iterations(
        _training_iteration(), device="cpu", iterations=1, trace_path=path, top=3
    )
    assert summary["trace_path"] == str(path)
    assert summary["trace_error"] is None
    trace = json.loads(path.read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert "aten::addmm" in names


class _IterationFailed(Exception):
    pass


def test_iteration_error_propagates_and_profiler_stops():
    error = _IterationFailed("loss is NaN")
    calls = []

    def run_iteration():
        calls.append(1)
        if len(calls) == 2:
            raise error

    with pytest.raises(_IterationFailed) as caught:
        profile_iterations(run_iteration, device="cpu", iterations=3)
    assert caught.value is error
    assert len(calls) == 2
    # The profiler was stopped on the way out: a new profile can start.
    assert not torch.autograd.profiler._is_profiler_enabled
    assert "error" not in profile_iterations(lambda: torch.ones(2) + 1, device="cpu", iterations=1)


def test_profiler_failure_returns_error(monkeypatch):
    def broken_profile(*args, **kwargs):
        raise RuntimeError("CUPTI_ERROR_NOT_INITIALIZED\nsecond line")

    monkeypatch.setattr(torch.profiler, "profile", broken_profile)
    summary = profile_iterations(lambda: None, device="cpu", iterations=2)
    assert summary == {"error": "RuntimeError: CUPTI_ERROR_NOT_INITIALIZED"}
    assert format_profile(summary) == [
        "profile: failed (RuntimeError: CUPTI_ERROR_NOT_INITIALIZED)"
    ]


@pytest.mark.parametrize("iterations, top", [(0, 15), (3, -1)])
def test_bad_arguments(iterations, top):
    with pytest.raises(ValueError, match="must be"):
        profile_iterations(lambda: None, device="cpu", iterations=iterations, top=top)


@pytest.mark.parametrize(
    "intervals, expected",
    [
        ([], []),
        ([(0.0, 1.0)], [(0.0, 1.0)]),
        ([(5.0, 6.0), (0.0, 2.0)], [(0.0, 2.0), (5.0, 6.0)]),  # disjoint, unsorted
        ([(0.0, 4.0), (2.0, 6.0)], [(0.0, 6.0)]),  # overlapping (two streams)
        ([(0.0, 10.0), (2.0, 3.0), (4.0, 5.0)], [(0.0, 10.0)]),  # nested
        ([(0.0, 1.0), (1.0, 2.0)], [(0.0, 2.0)]),  # touching
        ([(3.0, 3.0), (4.0, 2.0), (0.0, 1.0)], [(0.0, 1.0)]),  # empty and inverted dropped
        ([(0.0, 2.0), (1.0, 3.0), (7.0, 8.0), (7.5, 9.0)], [(0.0, 3.0), (7.0, 9.0)]),
    ],
)
def test_merge_intervals(intervals, expected):
    assert merge_intervals(intervals) == expected


@pytest.mark.parametrize(
    "work, share, overlapped",
    [
        ([], 0.0, None),
        ([("gemm", 0, 10)], 0.0, None),  # no collective: nothing overlaps
        ([("ncclDevKernel_AllReduce", 0, 10)], 1.0, 0.0),  # all-reduce alone on the device
        # Two NCCL kernels [0, 4] and [6, 10]; other work [2, 8] on a second stream and
        # [3, 5] nested in it: NCCL's 8 of 10 busy, [2, 4] and [6, 8] of it overlapped.
        (
            [("ncclKernel_a", 0, 4), ("ncclKernel_b", 6, 10), ("conv", 2, 8), ("bn", 3, 5)],
            0.8,
            0.5,
        ),
        # Overlapping NCCL kernels count once; touching work does not overlap.
        ([("NCCL_x", 0, 4), ("nccl_y", 2, 6), ("gemm", 6, 8), ("gemm", 10, 12)], 0.6, 0.0),
    ],
)
def test_nccl_shares_on_the_device_timeline(work, share, overlapped):
    shares = profiling.nccl_shares(work)
    assert shares["nccl_share_of_device_time"] == pytest.approx(share)
    if overlapped is None:
        assert shares["nccl_overlapped_share"] is None
    else:
        assert shares["nccl_overlapped_share"] == pytest.approx(overlapped)


def _event(name, start, end, *, device_index=0, activity="kernel", annotation=False):
    return SimpleNamespace(
        name=name,
        device_type=DeviceType.CUDA,
        device_index=device_index,
        is_user_annotation=annotation,
        activity_type=activity,
        time_range=SimpleNamespace(start=start, end=end),
    )


def _row(key, count, self_cpu_us, self_device_us, device_type=DeviceType.CPU):
    return SimpleNamespace(
        key=key,
        count=count,
        device_type=device_type,
        self_cpu_time_total=self_cpu_us,
        self_device_time_total=self_device_us,
    )


def test_cuda_summary_from_events():
    """The CUDA bookkeeping on fake profiler events (2 iterations, times in µs)."""
    events = [
        _event("gemm", 0, 400),
        _event("gemm", 1000, 1400),
        _event("nccl_allreduce", 300, 700),  # overlaps gemm on another stream
        _event("Memcpy HtoD (Pageable -> Device)", 800, 900, activity="gpu_memcpy"),
        # Not device work, or not this device's: must not count.
        _event("Optimizer.step#SGD.step", 0, 1900, activity="gpu_user_annotation"),
        _event("Optimizer.step#SGD.step", 0, 1900, activity=None, annotation=True),
        _event("Context Sync", 1400, 1900, activity="cuda_sync"),
        _event("gemm", 0, 2000, device_index=1),
        SimpleNamespace(name="aten::mm", device_type=DeviceType.CPU, activity_type="cpu_op"),
    ]
    averages = [
        _row("aten::mm", 4, 100.0, 800.0),
        _row("nccl:all_reduce", 2, 50.0, 400.0),
        _row("aten::copy_", 2, 30.0, 100.0),
        _row("aten::view", 8, 20.0, 0.0),  # launches nothing: not listed on CUDA
        _row("gemm", 2, 0.0, 800.0, device_type=DeviceType.CUDA),  # a kernel row
    ]
    summary = profiling._summarize(
        events,
        averages,
        device=torch.device("cuda:0"),
        iterations=2,
        wall_s=2e-3,  # 1 ms per iteration
        top=15,
    )
    json.dumps(summary)
    assert summary["sort_by"] == "self_device_time"
    # Union: [0, 700] + [800, 900] + [1000, 1400] = 1200 µs over 2 iterations.
    assert summary["device_busy_ms_per_iteration"] == pytest.approx(0.6)
    assert summary["device_idle_fraction"] == pytest.approx(0.4)
    # NCCL [300, 700] of the 1200 µs busy; gemm [0, 400] overlaps 100 µs of it.
    assert summary["nccl_share_of_device_time"] == pytest.approx(400 / 1200)
    assert summary["nccl_overlapped_share"] == pytest.approx(100 / 400)
    # gemm ×2 + nccl: the memcpy is device work but no kernel launch.
    assert summary["kernel_launches_per_iteration"] == pytest.approx(1.5)

    kernels = summary["top_kernels"]
    assert [k["name"] for k in kernels] == [
        "gemm",
        "nccl_allreduce",
        "Memcpy HtoD (Pageable -> Device)",
    ]
    assert kernels[0]["calls_per_iteration"] == 1
    assert kernels[0]["ms_per_iteration"] == pytest.approx(0.4)
    assert kernels[0]["share"] == pytest.approx(800 / 1300)

    ops = summary["top_ops"]
    assert [op["name"] for op in ops] == ["aten::mm", "nccl:all_reduce", "aten::copy_"]
    assert ops[0]["calls_per_iteration"] == 2
    assert ops[0]["self_ms_per_iteration"] == pytest.approx(0.4)
    assert ops[0]["self_cpu_ms_per_iteration"] == pytest.approx(0.05)
    assert ops[0]["share"] == pytest.approx(800 / 1300)

    lines = format_profile({**summary, "trace_path": None, "trace_error": None})
    assert "idle 40.0%" in lines[1] and "1.5 kernel launches/iteration" in lines[1]
    assert lines[2].startswith("top operators by self device time")
    assert "aten::mm" in lines[3]


def test_cuda_without_device_events_is_an_error():
    """No CUPTI: host events only. A profile saying "device idle" would be wrong."""
    with pytest.raises(RuntimeError, match="no CUDA kernels"):
        profiling._summarize(
            [], [], device=torch.device("cuda:0"), iterations=1, wall_s=1e-3, top=15
        )


def test_format_profile_cpu():
    summary = profile_iterations(_training_iteration(), device="cpu", iterations=2)
    lines = format_profile(summary)
    assert lines[0].startswith("profile (2 iterations")
    assert lines[1].startswith("top operators by self cpu time")
    assert len(lines) == 2 + min(5, len(summary["top_ops"]))


@pytest.mark.gpu
def test_cuda_profile(tmp_path):
    device = torch.device("cuda")
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(64, 256, device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        optimizer.step()

    step()
    summary = profile_iterations(
        step, device=device, iterations=3, trace_path=tmp_path / "trace.json"
    )
    assert "error" not in summary, summary
    json.dumps(summary)
    assert summary["sort_by"] == "self_device_time"
    assert 0 < summary["device_busy_ms_per_iteration"] <= summary["wall_ms_per_iteration"]
    assert 0 <= summary["device_idle_fraction"] <= 1
    assert summary["kernel_launches_per_iteration"] >= 1
    assert summary["top_ops"] and summary["top_kernels"]
    assert json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
