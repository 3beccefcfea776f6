"""pytest-benchmark microbenchmarks of the host path: the fused op's forward + backward with
its launches stubbed out (planned as on a GPU), beside eager's dispatch-only call, at a
DCGAN-64 layer and the MLP GAN's BatchNorm1d.

Left out of the default run (see conftest.py). Run with::

    pytest tests/benchmarks --benchmark-only

Nothing runs on a device, so the numbers mean the same on any machine: the host's time
per call (``gan-bench kernels --host`` records them, with the goal).
"""

from __future__ import annotations

import pytest

from bench.kernelbench.batchnorm import benchmark_cases
from bench.kernelbench.host import eager_dispatch_call, fused_host_call, plan_device
from bench.kernelbench.measure import one_cpu_thread

CASES = ("dcgan64-512x4x4-nchw-bf16", "bn1d-1024-nc-bf16")


@pytest.mark.parametrize("impl", ["fused-launches-stubbed", "eager-dispatch"])
@pytest.mark.parametrize("name", CASES)
def test_host_forward_backward(benchmark, name, impl):
    case = next(c for c in benchmark_cases() if c.name == name)
    benchmark.group = f"host-{name}"
    if impl == "eager-dispatch":
        with one_cpu_thread():  # as gan-bench kernels --host times it
            benchmark(eager_dispatch_call(case))
        return
    with fused_host_call(case, gpu_sms=plan_device()[1]) as fused, one_cpu_thread():
        before = fused.count.launches
        benchmark(fused.call)
        assert fused.count.launches > before  # the stub was reached: nothing launched
