"""Host time per call: eager calls go straight to the op's implementation, while tracing
and dispatch modes still see the registered op (what torch.compile and FLOP counting need).

At DCGAN's small layers a forward + backward is a few microseconds of GPU work, so the
Python between launches decides the time. Measured on a 2-core CPU with the kernel
launches stubbed out, (128, 512, 4, 4) forward + backward: 165 us through the registered
ops, 84 us with direct calls and cached views and plans. Each launch through
torch.library's tracing wrapper adds 150 us more, so eager calls launch the kernels
without it.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import kernels
from kernels import _plumbing, availability
from kernels.batchnorm import ops

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def impl_calls(monkeypatch):
    calls = []
    for name in ("_forward_impl", "_backward_impl"):
        original = getattr(ops, name)

        def spy(*args, _original=original, _name=name):
            calls.append(_name)
            return _original(*args)

        monkeypatch.setattr(ops, name, spy)
    return calls


def _forward_backward():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((4, 6, 3, 3), generator=gen).to(DEVICE).requires_grad_(True)
    weight = torch.ones(6, device=DEVICE, requires_grad=True)
    bias = torch.zeros(6, device=DEVICE, requires_grad=True)
    y = kernels.batch_norm_leaky_relu(
        x, torch.zeros(6, device=DEVICE), torch.ones(6, device=DEVICE), weight, bias, True,
        0.1, 1e-5, 0.2,
    )  # fmt: skip
    y.sum().backward()
    return y, x.grad


def test_eager_calls_skip_the_registered_ops(impl_calls):
    _forward_backward()
    assert impl_calls == ["_forward_impl", "_backward_impl"]


def test_dispatch_modes_see_the_registered_ops(impl_calls):
    with _OpLog() as log:
        y, dx = _forward_backward()
    assert impl_calls == []  # the ops ran their registered implementations
    assert any("gan_bench.batch_norm_leaky_relu_forward" in n for n in log.names)
    assert any("gan_bench.batch_norm_leaky_relu_backward" in n for n in log.names)
    direct_y, direct_dx = _forward_backward()
    torch.testing.assert_close(y, direct_y, rtol=0, atol=0)
    torch.testing.assert_close(dx, direct_dx, rtol=0, atol=0)


def test_eager_launches_skip_the_tracing_wrapper(monkeypatch):
    """torch.library.wrap_triton routes an eager launch through a higher-order op (150 us
    of host time per launch on a 2-core CPU, against 2 us for the plain launch): eager
    calls launch the kernels as they are, traces and dispatch modes get the wrapper."""
    wrapped = []
    monkeypatch.setattr(availability, "INTERPRETED", False)  # the compiled kernels' branch
    monkeypatch.setattr(availability, "require_runnable", lambda device: None)
    monkeypatch.setattr(
        _plumbing, "_wrap_compiled", lambda kernel: wrapped.append(kernel) or kernel
    )
    _forward_backward()  # launches the interpreted kernels as they are: no wrapper
    assert wrapped == []
    with _OpLog():
        assert ops.wrap_triton(ops.bn_apply_kernel) is ops.bn_apply_kernel
    assert wrapped == [ops.bn_apply_kernel]


def test_fake_tensors_never_reach_a_plain_launch(monkeypatch):
    """The registered op's fake implementation (torch.compile traces with fake tensors) runs
    the same code with no dispatch mode on the stack: its launches must still go through
    the wrapper, which records them instead of launching on tensors without data."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    wrapped = []

    class _Recorder:  # what the wrapper does with fake tensors: no launch
        def __getitem__(self, grid):
            return lambda *args, **kwargs: None

    monkeypatch.setattr(availability, "INTERPRETED", False)
    monkeypatch.setattr(availability, "require_runnable", lambda device: None)
    monkeypatch.setattr(
        _plumbing, "_wrap_compiled", lambda kernel: wrapped.append(kernel) or _Recorder()
    )
    with FakeTensorMode():
        x = torch.empty((4, 6, 3, 3), device=DEVICE)
        stats = torch.ops.gan_bench.batch_norm_leaky_relu_forward(
            x, None, None, None, None, None, True, 0.1, 1e-5, 0.2, 0
        )[1]
    assert stats.shape == (6, 6) and wrapped
