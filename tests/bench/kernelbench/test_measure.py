"""The measurement helpers that need no GPU: launches stubbed and counted, host time per
call in turns, freed CPU memory kept."""

from __future__ import annotations

import contextlib
import platform

import pytest
import torch

import kernels
from bench.kernelbench.measure import cpu_blocks_kept, host_us_in_turns, launches_stubbed
from kernels.batchnorm import ops


@pytest.mark.parametrize("split", [1, 4])
def test_stubbed_launches_are_counted_per_forward_backward(split):
    """One launch each way on the one-kernel path; the split path (forced) takes more."""
    x = torch.randn((4, 6, 3, 3), requires_grad=True)
    with launches_stubbed(ops) as count:
        y = kernels.batch_norm_leaky_relu(
            x, torch.zeros(6), torch.ones(6), None, None, True, 0.1, 1e-5, 0.2, _split=split
        )
        forward = count.launches
        torch.autograd.grad(y.sum(), x)
    if split == 1:
        assert (forward, count.launches) == (1, 2)
    else:
        assert forward > 1 and count.launches > 2


def test_host_time_is_taken_in_turns_each_side_in_its_context():
    """Every turn enters each side's context once and calls its function there: a few
    untimed calls, then the timed ones."""
    log: list[str] = []

    def side(name: str):
        @contextlib.contextmanager
        def enter():
            assert torch.get_num_threads() == 1
            log.append(f"enter {name}")
            yield lambda: log.append(name)
            log.append(f"leave {name}")

        return enter

    threads = torch.get_num_threads()
    us = host_us_in_turns({"a": side("a"), "b": side("b")}, calls=4, turns=2)
    assert set(us) == {"a", "b"} and all(v > 0 for v in us.values())
    one_turn = ["enter a", *["a"] * 7, "leave a", "enter b", *["b"] * 7, "leave b"]
    assert log == one_turn * 2
    assert torch.get_num_threads() == threads


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_freed_cpu_blocks_are_kept_under_glibc():
    with cpu_blocks_kept() as kept:
        big = torch.empty(1 << 24)  # 64 MiB: glibc would map it afresh
        del big
    assert kept is True
    assert torch.ones(1 << 24).sum() == 1 << 24  # allocations work after the block
