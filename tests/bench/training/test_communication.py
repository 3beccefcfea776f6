"""DDP's all-reduces counted, without processes: the hook on stand-in buckets, the
iterations it counts, and the summary against the parameters' arithmetic."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.training import communication
from bench.training.communication import AllreduceCounter, Communication, gradient_bytes


class _Bucket:
    """What DDP hands a communication hook: a flat buffer of gradients and its index."""

    def __init__(self, index: int, numel: int, dtype=torch.float32):
        self._index, self._buffer = index, torch.zeros(numel, dtype=dtype)

    def index(self) -> int:
        return self._index

    def buffer(self) -> torch.Tensor:
        return self._buffer


@pytest.fixture
def reduced(monkeypatch):
    """The buckets the default all-reduce was handed, in order, with the hook's state."""
    calls = []

    def default_allreduce(state, bucket):
        calls.append((state, bucket))
        future = torch.futures.Future()
        future.set_result(bucket.buffer())
        return future

    monkeypatch.setattr(communication, "allreduce_hook", default_allreduce)
    return calls


def _update(counter: AllreduceCounter, sizes: list[int]) -> None:
    """One backward of a DDP module whose buckets hold `sizes` float32 gradients."""
    for index, numel in enumerate(sizes):
        counter.hook(counter.process_group, _Bucket(index, numel))


def test_the_hook_counts_then_hands_the_bucket_to_the_default_allreduce(reduced):
    counter = AllreduceCounter(process_group="group")
    bucket = _Bucket(0, 10)
    future = counter.hook("group", bucket)
    assert reduced == [("group", bucket)]
    assert future.value() is bucket.buffer()
    tally = counter.take()
    assert (tally.calls, tally.bytes, tally.buckets) == (1, 40, {0: 40})
    assert counter.dtypes == {"float32"}
    assert counter.take().calls == 0  # taken: a fresh count


def test_iterations_count_after_the_first_and_only_where_python_ran(reduced):
    comm = Communication("gloo", 2)
    generator, discriminator = comm.counters["generator"], comm.counters["discriminator"]
    # The first iteration, in DDP's first layout of its buckets: set apart.
    _update(discriminator, [7])
    _update(discriminator, [7])
    _update(generator, [5])
    comm.end_iteration()
    for _ in range(3):  # n_critic 2: D's module reduces twice, G's once
        _update(discriminator, [4, 3])
        _update(discriminator, [4, 3])
        _update(generator, [2, 3])
        comm.end_iteration()
    comm.end_iteration()  # a replayed CUDA graph: no hook ran, the iteration is not counted
    g = nn.Linear(4, 1)  # 5 parameters
    d = nn.Linear(6, 1)  # 7 parameters
    summary = comm.summary(
        {"generator": g, "discriminator": d},
        {"generator": 1, "discriminator": 2},
        real_images_per_iteration=2 * 16,
    )
    assert summary["counted_iterations"] == 3
    assert summary["backend"] == "gloo" and summary["world_size"] == 2
    assert summary["gradient_dtype"] == "float32"
    assert summary["generator"] == {
        "allreduce_calls_per_iteration": 2.0,
        "allreduce_bytes_per_iteration": 20,
        "buckets": 2,
        "bucket_bytes": [8, 12],
        "expected_bytes_per_iteration": 20,
    }
    assert summary["discriminator"]["allreduce_calls_per_iteration"] == 4.0
    assert summary["discriminator"]["allreduce_bytes_per_iteration"] == 56
    assert summary["discriminator"]["bucket_bytes"] == [16, 12]  # one update's buckets
    assert summary["discriminator"]["expected_bytes_per_iteration"] == 56
    assert summary["allreduce_calls_per_iteration"] == 6.0
    assert summary["allreduce_bytes_per_iteration"] == 76
    assert summary["bytes_per_image"] == pytest.approx(76 / 32)


def test_a_single_iteration_is_counted_and_none_gives_no_summary(reduced):
    comm = Communication("gloo", 2)
    networks = {"generator": nn.Linear(1, 1), "discriminator": nn.Linear(1, 1)}
    updates = {"generator": 1, "discriminator": 1}
    assert comm.summary(networks, updates, 8) is None
    _update(comm.counters["generator"], [2])
    _update(comm.counters["discriminator"], [2])
    comm.end_iteration()
    summary = comm.summary(networks, updates, 8)
    assert summary["counted_iterations"] == 1
    assert summary["allreduce_bytes_per_iteration"] == 16


def test_the_counting_step_closes_an_iteration_even_when_it_fails(reduced):
    comm = Communication("gloo", 2)

    def step(reals):
        _update(comm.counters["generator"], [3])
        if reals is None:
            raise RuntimeError("boom")
        return reals

    counted = comm.counting(step)
    assert counted([1]) == [1]
    with pytest.raises(RuntimeError):
        counted(None)
    assert comm.first is not None and comm.counted_iterations == 1


def test_gradient_bytes_count_only_trainable_parameters():
    net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1).to(torch.float64))
    assert gradient_bytes(net) == 8 * 4 + 3 * 8
    net[0].weight.requires_grad_(False)
    assert gradient_bytes(net) == 2 * 4 + 3 * 8
