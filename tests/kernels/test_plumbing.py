"""KernelSite: which launches go straight to a kept compiled kernel, and which take Triton's
``@jit`` path. A stand-in for Triton's runtime here (no GPU needed); on a GPU,
tests/kernels/batchnorm/test_host_overhead.py launches the real kernels both ways."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from kernels import _plumbing
from kernels._plumbing import KernelSite


class FakeCompiled:
    """What a ``@jit`` launch returns: the compiled kernel, with Triton's launcher API."""

    function, packed_metadata = "function", "packed metadata"

    def __init__(self):
        self.runs = []

    def launch_metadata(self, grid, stream, *args):
        return ("launch metadata", grid, stream)

    def run(self, *args):
        self.runs.append(args)


class FakeKernel:
    """A ``@jit`` function of two tensors, an int and a constexpr; each launch compiles."""

    arg_names = ["x_ptr", "y_ptr", "n", "BLOCK"]
    pre_run_hooks = []

    def __init__(self):
        self.jit_launches = []

    def __getitem__(self, grid):
        def launch(*args, **options):
            self.jit_launches.append((grid, args, options))
            return FakeCompiled()

        return launch


@pytest.fixture
def runtime(monkeypatch):
    """Triton's runtime as KernelSite sees it; ``runtime.device`` is the current device."""
    state = SimpleNamespace(device=0)
    driver = SimpleNamespace(
        active=SimpleNamespace(
            get_current_device=lambda: state.device,
            get_current_stream=lambda device: f"stream of {device}",
        )
    )
    knobs = SimpleNamespace(
        runtime=SimpleNamespace(launch_enter_hook="enter", launch_exit_hook="exit")
    )
    monkeypatch.setattr(_plumbing, "_HANDLES", (FakeCompiled, driver, knobs))
    return state


def _args(x=None, y=None, n=10):
    return (torch.zeros(8) if x is None else x, torch.zeros(8) if y is None else y, n)


def test_the_second_launch_runs_the_compiled_kernel_as_jit_would(runtime):
    kernel = FakeKernel()
    site = KernelSite(kernel, (3, 2), {"BLOCK": 64, "num_warps": 8})
    first = _args()
    site.launch(kernel, first)
    assert kernel.jit_launches == [((3, 2), first, {"BLOCK": 64, "num_warps": 8})]
    second = _args()
    site.launch(kernel, second)
    assert len(kernel.jit_launches) == 1
    (handle,) = site._handles.values()
    assert handle.runs == [
        (3, 2, 1, "stream of 0", "function", "packed metadata",
         ("launch metadata", (3, 2), "stream of 0"), "enter", "exit", *second, 64),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda: _args(x=torch.zeros(9)[1:]), id="misaligned-tensor"),
        pytest.param(lambda: _args(y=torch.zeros(8, dtype=torch.float16)), id="other-dtype"),
        pytest.param(lambda: _args(n=1), id="other-int"),
    ],
)
def test_arguments_triton_would_specialise_otherwise_take_the_jit_path(runtime, other):
    """A tensor at an address that is not 16-byte aligned, of another dtype, or another
    value of a scalar (1 is a constexpr to Triton): another compiled kernel may serve it."""
    kernel = FakeKernel()
    site = KernelSite(kernel, (1,), {"BLOCK": 64})
    site.launch(kernel, _args())
    site.launch(kernel, other())
    assert len(kernel.jit_launches) == 2
    site.launch(kernel, other())  # kept for its own key from then on
    assert len(kernel.jit_launches) == 2 and len(site._handles) == 2


def test_another_current_device_takes_the_jit_path(runtime):
    kernel = FakeKernel()
    site = KernelSite(kernel, (1,), {"BLOCK": 64})
    site.launch(kernel, _args())
    runtime.device = 1
    site.launch(kernel, _args())
    assert len(kernel.jit_launches) == 2


def test_a_wrapped_or_stubbed_launcher_is_always_called(runtime):
    """``wrap_triton`` hands over torch.library's tracing wrapper, or a test's stub: the
    launch is theirs, whatever was kept for the kernel."""
    kernel, stub = FakeKernel(), FakeKernel()
    site = KernelSite(kernel, (1,), {"BLOCK": 64})
    site.launch(kernel, _args())
    for _ in range(2):
        site.launch(stub, _args())
    assert len(stub.jit_launches) == 2 and len(kernel.jit_launches) == 1


def test_what_is_not_a_compiled_kernel_is_not_kept(runtime):
    class Interpreted(FakeKernel):
        def __getitem__(self, grid):
            return lambda *args, **options: self.jit_launches.append(args)  # returns None

    kernel = Interpreted()
    site = KernelSite(kernel, (1,), {"BLOCK": 64})
    for _ in range(2):
        site.launch(kernel, _args())
    assert len(kernel.jit_launches) == 2 and not site._handles


def test_a_constexpr_left_to_its_default_keeps_the_jit_path(runtime):
    """The compiled kernel takes every parameter: one that the launch leaves to its
    default is not known here, so the site never keeps a handle."""
    kernel = FakeKernel()
    site = KernelSite(kernel, (1,), {})
    for _ in range(2):
        site.launch(kernel, _args())
    assert len(kernel.jit_launches) == 2 and site._handles is None


def test_kernels_with_pre_run_hooks_and_runtimes_without_the_api_take_the_jit_path(
    runtime, monkeypatch
):
    hooked = FakeKernel()
    hooked.pre_run_hooks = [lambda *args, **kwargs: None]
    sites = [KernelSite(hooked, (1,), {"BLOCK": 64})]
    monkeypatch.setattr(_plumbing, "_HANDLES", None)  # the interpreter, an older Triton
    plain = FakeKernel()
    sites.append(KernelSite(plain, (1,), {"BLOCK": 64}))
    for site in sites:
        for _ in range(2):
            site.launch(site.kernel, _args())
        assert site._handles is None and len(site.kernel.jit_launches) == 2
