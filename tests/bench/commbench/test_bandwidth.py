"""The all-reduce arithmetic: nccl-tests' bandwidths, the time between measured sizes, and
the time a run's gradient buckets imply."""

from __future__ import annotations

import math

import pytest

from bench.commbench.bandwidth import (
    algbw_gbps,
    bus_factor,
    busbw_gbps,
    implied_allreduce_s,
    points_of,
    time_at,
)

# 1 MiB in 100 µs (latency-bound below it), then 10 GB/s: 4 MiB in 419.4304 µs.
POINTS = ((4096, 1e-4), (1 << 20, 1e-4), (4 << 20, (4 << 20) / 1e10))


@pytest.mark.parametrize(("world", "factor"), [(1, 0.0), (2, 1.0), (4, 1.5), (8, 1.75)])
def test_bus_factor_is_the_ring_traffic(world, factor):
    assert bus_factor(world) == pytest.approx(factor)


def test_bandwidths_of_one_all_reduce():
    # 64 MiB in 10 ms over 8 ranks: 6.71 GB/s of algorithm bandwidth, × 1.75 on the bus.
    assert algbw_gbps(64 << 20, 0.01) == pytest.approx(6.7108864)
    assert busbw_gbps(64 << 20, 0.01, 8) == pytest.approx(6.7108864 * 1.75)
    assert busbw_gbps(1 << 20, 1e-3, 2) == pytest.approx(algbw_gbps(1 << 20, 1e-3))
    with pytest.raises(ValueError):
        algbw_gbps(4096, 0.0)


def test_time_at_a_measured_size_is_its_time():
    for size, seconds in POINTS:
        assert time_at(POINTS, size) == pytest.approx(seconds)


def test_time_between_sizes_is_log_log_linear():
    # Flat between 4 KiB and 1 MiB; in proportion to size between 1 and 4 MiB, where 2 MiB
    # sits half-way in log size: the geometric mean of the two times.
    assert time_at(POINTS, 64 << 10) == pytest.approx(1e-4)
    two = time_at(POINTS, 2 << 20)
    assert two == pytest.approx(math.sqrt(1e-4 * (4 << 20) / 1e10))
    # 3 MiB on the 10 GB/s stretch of a power law: time ∝ size^k with k from the two ends.
    k = math.log(POINTS[2][1] / 1e-4) / math.log(4)
    assert time_at(POINTS, 3 << 20) == pytest.approx(1e-4 * 3**k)


def test_time_outside_the_measured_sizes():
    assert time_at(POINTS, 100) == pytest.approx(1e-4)  # no faster than the smallest
    assert time_at(POINTS, 8 << 20) == pytest.approx((8 << 20) / 1e10)  # the largest's rate


def test_points_of_a_record_sorted_or_none_when_garbled():
    sizes = [{"bytes": 8192, "time_s": 2e-4}, {"bytes": 4096, "time_s": 1e-4}]
    assert points_of(sizes) == ((4096, 1e-4), (8192, 2e-4))
    for bad in ([], None, [{"bytes": 4096}], [{"bytes": "4096", "time_s": 1e-4}],
                [{"bytes": 4096, "time_s": 0}], [{"bytes": True, "time_s": 1e-4}]):  # fmt: skip
        assert points_of(bad) is None


def communication(g_buckets, g_calls, d_buckets, d_calls) -> dict:
    def network(buckets, calls):
        return {"allreduce_calls_per_iteration": calls, "bucket_bytes": buckets,
                "buckets": len(buckets)}  # fmt: skip

    return {"generator": network(g_buckets, g_calls), "discriminator": network(d_buckets, d_calls)}


def test_implied_time_sums_each_networks_buckets_per_backward():
    # G: one backward of buckets 1 MiB + 4 MiB; D: two backwards (n_critic 2) of 2 MiB.
    comm = communication([1 << 20, 4 << 20], 2.0, [2 << 20], 2.0)
    g = time_at(POINTS, 1 << 20) + time_at(POINTS, 4 << 20)
    d = 2 * time_at(POINTS, 2 << 20)
    assert implied_allreduce_s(comm, POINTS) == pytest.approx(g + d)


def test_implied_time_without_buckets_or_with_garbled_ones():
    assert implied_allreduce_s(communication([], 0.0, [4096], 1.0), POINTS) == pytest.approx(1e-4)
    assert implied_allreduce_s(communication([], 1.0, [4096], 1.0), POINTS) is None
    assert implied_allreduce_s(communication([0], 1.0, [4096], 1.0), POINTS) is None
    assert implied_allreduce_s(communication([4096], None, [4096], 1.0), POINTS) is None
    assert implied_allreduce_s({"generator": {}}, POINTS) is None
