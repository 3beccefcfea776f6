"""Host time per call: eager calls skip the registered ops, and those of a kind already
seen skip its checks and host arithmetic too (``kernels.batchnorm.calls``), while tracing
and dispatch modes still see the registered op (what torch.compile and FLOP counting need).

At DCGAN's small layers a forward + backward is a few microseconds of GPU work, so the
Python between launches decides the time. Each launch through torch.library's tracing
wrapper adds 150 us of host time on a 2-core CPU, so eager calls launch the kernels without
it; on a GPU they launch the compiled kernels that their first launches produced
(``kernels._plumbing.KernelSite``).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import kernels
from kernels import _plumbing, availability
from kernels.batchnorm import calls, ops
from kernels.batchnorm.kernels import bn_apply_kernel

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
    made = []
    for name in ("_forward_impl", "_backward_impl"):
        original = getattr(ops, name)

        def spy(*args, _original=original, _name=name):
            made.append(_name)
            return _original(*args)

        monkeypatch.setattr(ops, name, spy)
    return made


@pytest.fixture
def forget_calls():
    """Kept calls made inside are forgotten after (and any made before, before)."""

    def forget():
        calls.CALLS.clear()
        calls._cached_forward_call.cache_clear()
        calls._cached_backward_call.cache_clear()

    forget()
    yield
    forget()


def _forward_backward(layout=lambda x: x):
    gen = torch.Generator().manual_seed(0)
    x = layout(torch.randn((4, 6, 3, 3), generator=gen).to(DEVICE)).requires_grad_(True)
    weight = torch.ones(6, device=DEVICE, requires_grad=True)
    bias = torch.zeros(6, device=DEVICE, requires_grad=True)
    y = kernels.batch_norm_leaky_relu(
        x, torch.zeros(6, device=DEVICE), torch.ones(6, device=DEVICE), weight, bias, True,
        0.1, 1e-5, 0.2,
    )  # fmt: skip
    y.sum().backward()
    return y, x.grad


@pytest.fixture
def checks(monkeypatch):
    calls_made = []
    real = ops.check_arguments
    monkeypatch.setattr(
        ops, "check_arguments", lambda *a, **k: calls_made.append(1) or real(*a, **k)
    )
    return calls_made


def test_eager_calls_of_a_kind_seen_before_skip_checks_and_planning(impl_calls, checks):
    """The first call of a kind is checked and planned, and kept; later ones of that kind
    launch what was kept. Neither enters the registered ops."""
    calls.CALLS.clear()
    first = _forward_backward()
    assert (impl_calls, len(checks), len(calls.CALLS)) == ([], 1, 1)
    again = _forward_backward()
    assert (impl_calls, len(checks), len(calls.CALLS)) == ([], 1, 1)
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_eager_calls_the_op_copies_for_go_to_its_implementation(impl_calls, checks):
    """An input in a layout the kernels do not read in place is copied at every call: such
    calls are not kept, and run the op's implementation directly, checked every time."""
    calls.CALLS.clear()
    for _ in range(2):
        _forward_backward(lambda x: x.transpose(2, 3))
    assert impl_calls == ["_forward_impl", "_backward_impl"] * 2
    assert (len(checks), len(calls.CALLS)) == (2, 0)


def test_dispatch_modes_see_the_registered_ops(impl_calls):
    with _OpLog() as log:
        y, dx = _forward_backward()
    assert impl_calls == []  # the ops ran their registered implementations
    assert any("gan_bench.batch_norm_leaky_relu_forward" in n for n in log.names)
    assert any("gan_bench.batch_norm_leaky_relu_backward" in n for n in log.names)
    direct_y, direct_dx = _forward_backward()
    torch.testing.assert_close(y, direct_y, rtol=0, atol=0)
    torch.testing.assert_close(dx, direct_dx, rtol=0, atol=0)


def test_eager_launches_skip_the_tracing_wrapper(monkeypatch, forget_calls):
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
        assert ops.wrap_triton(bn_apply_kernel) is bn_apply_kernel
    assert wrapped == [bn_apply_kernel]


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
            x, None, None, None, None, None, True, 0.1, 1e-5, 0.2, 0, False
        )[1]
    assert stats.shape == (6, 6) and wrapped


@pytest.mark.gpu
@pytest.mark.parametrize("split", [0, 4], ids=["one-kernel", "split"])
def test_later_launches_run_the_compiled_kernels_the_first_ones_made(monkeypatch, split):
    """A kind of call's first launches take Triton's @jit path (which compiles, or finds
    the compiled kernels); later ones go straight to those compiled kernels, with the same
    results."""
    from kernels.batchnorm import kernels as triton_kernels

    jit_runs = []
    for name in dir(triton_kernels):
        kernel = getattr(triton_kernels, name)
        if name.startswith("bn_") and hasattr(kernel, "run"):
            real = kernel.run
            monkeypatch.setattr(
                kernel, "run", lambda *a, _real=real, **k: jit_runs.append(1) or _real(*a, **k)
            )

    def forward_backward():
        x = torch.randn((4, 6, 3, 3), generator=torch.Generator().manual_seed(0)).to(DEVICE)
        x.requires_grad_(True)
        weight = torch.ones(6, device=DEVICE, requires_grad=True)
        y = kernels.batch_norm_leaky_relu(x, None, None, weight, None, True, _split=split)
        y.backward(torch.linspace(-1, 1, y.numel(), device=DEVICE).reshape(y.shape))
        return y, x.grad, weight.grad

    calls.CALLS.clear()
    first = forward_backward()
    launches = len(jit_runs)
    assert launches == (2 if split == 0 else 6)
    again = forward_backward()
    assert len(jit_runs) == launches  # no @jit launch the second time
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.skipif(not availability.INTERPRETED, reason="the interpreter stands in for a GPU")
@pytest.mark.parametrize("split", [0, 4], ids=["one-kernel", "split"])
def test_compiled_kernels_launched_directly_get_every_argument_in_order(
    monkeypatch, forget_calls, split
):
    """What a GPU launches from a kind of call's second call on, run here: each kernel's
    first launch returns a stand-in for its compiled kernel, whose launcher runs the
    interpreted kernel with the arguments KernelSite hands it (every parameter, in order,
    constexprs included). Every launch of the second call goes through it, and both calls
    give eager's results."""
    from kernels.batchnorm import kernels as triton_kernels
    from kernels.batchnorm.reference import batch_norm_leaky_relu_reference

    direct = []

    class Compiled:
        function = packed_metadata = None

        def __init__(self, kernel, run):
            self.kernel, self.jit_run = kernel, run

        def launch_metadata(self, grid, stream, *args):
            return None

        def run(self, g0, g1, g2, stream, function, metadata, launch_metadata, *args):
            direct.append(self.kernel.__name__)
            every = dict(zip(self.kernel.arg_names, args[2:], strict=True))  # after the hooks
            self.jit_run(grid=(g0, g1, g2), warmup=False, **every)

    for name in dir(triton_kernels):
        kernel = getattr(triton_kernels, name)
        if name.startswith("bn_") and name.endswith("_kernel"):

            def jit_run(*args, _kernel=kernel, _run=kernel.run, **kwargs):
                _run(*args, **kwargs)
                return Compiled(_kernel, _run)

            monkeypatch.setattr(kernel, "run", jit_run)
    runtime = SimpleNamespace(get_current_device=lambda: 0, get_current_stream=lambda d: 0)
    hooks = SimpleNamespace(runtime=SimpleNamespace(launch_enter_hook=None, launch_exit_hook=None))
    monkeypatch.setattr(_plumbing, "_HANDLES", (Compiled, SimpleNamespace(active=runtime), hooks))

    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn((5, 6, 4, 3), generator=gen, dtype=torch.float64) * 2 + 1
    dy = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    w0 = torch.rand(6, generator=gen, dtype=torch.float64) + 0.5
    b0 = torch.randn(6, generator=gen, dtype=torch.float64)
    ref_stats = [torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)]
    stats = [t.float() for t in ref_stats]
    nbt, ref_nbt = torch.tensor(0), torch.tensor(0)
    for call in range(2):
        direct.clear()
        x = x0.float().requires_grad_(True)
        w, b = w0.float().requires_grad_(True), b0.float().requires_grad_(True)
        y = kernels.batch_norm_leaky_relu(x, *stats, w, b, True, None, 1e-5, 0.2,
                                          num_batches_tracked=nbt, _split=split)  # fmt: skip
        y.backward(dy.float())
        xr, wr, br = (t.clone().requires_grad_(True) for t in (x0, w0, b0))
        yr = batch_norm_leaky_relu_reference(xr, *ref_stats, wr, br, True, None, 1e-5, 0.2,
                                             num_batches_tracked=ref_nbt)  # fmt: skip
        yr.backward(dy)
        for ours, theirs in ((y, yr), (x.grad, xr.grad), (w.grad, wr.grad), (b.grad, br.grad),
                             *zip(stats, ref_stats, strict=True)):  # fmt: skip
            torch.testing.assert_close(ours.double(), theirs, atol=1e-4, rtol=1e-4)
        assert int(nbt) == int(ref_nbt) == call + 1
        assert len(direct) == call * (2 if split == 0 else 6)
