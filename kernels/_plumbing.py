"""Plumbing shared by the op families: registration with torch.library, kernel launches,
and the host-side arithmetic of their launch plans.

- ``define_op`` registers an op's implementation (a ``triton_op`` where triton imports);
- ``wrap_triton``, ``eager_launches``, ``PlainLaunches``, ``launchable`` and
  ``direct_call`` decide how a launch reaches its kernel: through torch.library's
  tracing wrapper, or as it is for an eager call on real tensors;
- ``KernelSite``: one launch of a kernel with its grid and constexprs fixed, which on a
  GPU launches the compiled kernel that its first ``kernel[grid](...)`` produced;
- ``cdiv``, ``next_pow2``, ``sm_count``: grid arithmetic;
- ``ActiveSetting``: a process-wide setting, the families' launch tunings.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

import torch
from torch._subclasses.fake_tensor import is_fake
from torch._subclasses.functional_tensor import FunctionalTensorMode

from kernels import availability

if availability.TRITON_AVAILABLE:
    from torch.library import wrap_triton as _wrap_compiled

__all__ = [
    "ActiveSetting",
    "KernelSite",
    "PlainLaunches",
    "cdiv",
    "define_op",
    "direct_call",
    "eager_launches",
    "launchable",
    "next_pow2",
    "sm_count",
    "wrap_triton",
]

T = TypeVar("T")


class ActiveSetting(Generic[T]):
    """A process-wide setting: ``value`` is the default except inside ``use(other)``'s
    block. Read when an op runs eagerly: a graph that torch.compile traced, or a CUDA graph
    captured, keeps what its trace or capture read."""

    def __init__(self, default: T):
        self.value = default

    @contextlib.contextmanager
    def use(self, value: T) -> Iterator[T]:
        previous, self.value = self.value, value
        try:
            yield value
        finally:
            self.value = previous


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(v: int) -> int:
    return 1 << max(0, (int(v) - 1).bit_length())


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device, queried once per device and cached."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _sm_count(index)


_launch_state = threading.local()


class PlainLaunches:
    """Inside, ``wrap_triton`` hands kernels back as they are: for eager calls on real
    tensors only (``eager_launches``), never where a trace or fake tensors may see them."""

    __slots__ = ("previous",)

    def __enter__(self) -> None:
        self.previous = getattr(_launch_state, "plain", False)
        _launch_state.plain = True

    def __exit__(self, *exc) -> None:
        _launch_state.plain = self.previous


def direct_call() -> bool:
    """Whether an op's implementation can be called as a plain function.

    The registered ops exist for torch.compile (dynamo records them in its graph) and for
    dispatch modes (fake tensors, functionalization, FLOP counting), which must see the
    op. An eager call through them crosses the dispatcher's Python layers (custom op,
    autograd redispatch, triton_op backend): host time that small layers do not hide
    behind their kernels, and that a direct call skips (the BatchNorm op, with its cached
    views and plans: 165 us -> 84 us of host time per forward + backward on a 2-core CPU,
    kernel launches left out; tests/kernels/batchnorm/test_host_overhead.py).
    ``is_compiling`` first: under dynamo it is the constant True, so the C call after it is
    never traced.
    """
    if torch.compiler.is_compiling():
        return False
    return torch._C._len_torch_dispatch_stack() == 0


def eager_launches(direct: bool | None = None):
    """``PlainLaunches()`` for a direct (eager) call (``direct_call()`` when ``direct`` is
    None), else a context that changes nothing."""
    if direct is None:
        direct = direct_call()
    return PlainLaunches() if direct else contextlib.nullcontext()


def wrap_triton(kernel):
    """``torch.library.wrap_triton(kernel)``, or ``kernel`` itself inside ``PlainLaunches``.

    The wrapper exists for tracing: under torch.compile and dispatch modes it records the
    launch as a higher-order op (and launches nothing on fake tensors). Called eagerly it
    goes through that op too (unless the registered op's own backend switched it off):
    150 us of host time per launch on a 2-core CPU against 2 us for a plain
    ``kernel[grid](...)`` (the launch itself stubbed out in both), so eager calls launch
    the kernel as it is, which is what the op would run in the end. Under the interpreter
    ``@triton.jit`` gives an ``InterpretedFunction``, which tracing cannot record anyway
    (see ``_opaque``): torch 2.11 refuses to wrap it, later versions hand it back
    unwrapped, so both get it unwrapped here.
    """
    if availability.INTERPRETED or getattr(_launch_state, "plain", False):
        return kernel
    return _wrap_compiled(kernel)


def _handle_api():
    """``(CompiledKernel, driver, knobs)`` where a compiled kernel can be launched as
    ``JITFunction.run`` launches it (triton 3.3 and later: ``kernel.run(grid..., stream,
    function, packed_metadata, launch_metadata, enter_hook, exit_hook, *every_argument)``,
    constexprs included); None under the interpreter or with any other Triton."""
    if not availability.TRITON_AVAILABLE or availability.INTERPRETED:
        return None
    try:
        from triton import knobs
        from triton.compiler import CompiledKernel
        from triton.runtime import driver
    except ImportError:
        return None
    hooks = ("launch_enter_hook", "launch_exit_hook")
    if not all(hasattr(knobs.runtime, hook) for hook in hooks):
        return None
    if not callable(getattr(CompiledKernel, "launch_metadata", None)):
        return None
    return CompiledKernel, driver, knobs


_HANDLES = _handle_api()


def _specialised(arg):
    """What of an argument a compiled kernel is specialised on, or stricter."""
    if isinstance(arg, torch.Tensor):
        return arg.dtype, not arg.data_ptr() % 16
    return type(arg), arg


class KernelSite:
    """One launch site: ``kernel`` with its grid, constexprs and launch options fixed.

    ``launch(launcher, args)`` launches ``launcher[grid](*args, **options)``, where
    ``launcher`` is what ``wrap_triton(kernel)`` gave (the kernel itself for an eager call,
    torch.library's tracing wrapper, or a test's stub). Triton's ``@jit`` launch binds and
    specialises every argument and looks up its compiled kernel at each call: host time
    that small layers do not hide. So on a GPU, for the kernel itself, the compiled kernel
    that a launch returns is kept, by the current device and the arguments as Triton
    specialises on them (a tensor's dtype and whether its address is 16-byte aligned; a
    scalar by its value, stricter than Triton), and the next launch with the same key goes
    straight to it, as ``JITFunction.run`` does after its lookup. Anywhere else (the
    interpreter, a Triton without that launcher API, a kernel with pre-run hooks, a wrapped
    or stubbed launcher) every launch takes the ``@jit`` path. What the kept kernel does not
    follow: a change of Triton's process-wide options (``TRITON_DEBUG``, instrumentation)
    after its first launch.
    """

    __slots__ = ("kernel", "grid", "options", "_grid3", "_handles", "_constexprs")

    def __init__(self, kernel, grid: tuple, options: dict):
        self.kernel, self.grid, self.options = kernel, tuple(grid), options
        self._grid3 = (*self.grid, 1, 1)[:3]
        usable = _HANDLES is not None and not getattr(kernel, "pre_run_hooks", None)
        self._handles: dict | None = {} if usable else None
        self._constexprs: tuple | None = None

    def launch(self, launcher, args: tuple) -> None:
        handles = self._handles
        if handles is None or launcher is not self.kernel:
            launcher[self.grid](*args, **self.options)
            return
        compiled_kernel, driver, knobs = _HANDLES
        device = driver.active.get_current_device()
        key = (device, *[_specialised(a) for a in args])
        handle = handles.get(key)
        if handle is None:
            handle = launcher[self.grid](*args, **self.options)
            if isinstance(handle, compiled_kernel) and self._tail(len(args)) is not None:
                handles[key] = handle
            return
        stream = driver.active.get_current_stream(device)
        every = (*args, *self._constexprs)
        g0, g1, g2 = self._grid3
        handle.run(
            g0, g1, g2, stream, handle.function, handle.packed_metadata,
            handle.launch_metadata(self.grid, stream, *every),
            knobs.runtime.launch_enter_hook, knobs.runtime.launch_exit_hook, *every,
        )  # fmt: skip

    def _tail(self, given: int) -> tuple | None:
        """The constexprs' values in parameter order after the ``given`` positional
        arguments (a compiled kernel takes every parameter), or None when a parameter is
        neither (left to its default), and the site keeps the ``@jit`` path."""
        if self._constexprs is None:
            names = getattr(self.kernel, "arg_names", None)
            if names is None or any(name not in self.options for name in names[given:]):
                self._handles = None
                return None
            self._constexprs = tuple(self.options[name] for name in names[given:])
        return self._constexprs


def launchable(t: torch.Tensor) -> bool:
    """False while tracing with fake tensors under the interpreter.

    A compiled kernel wrapped by ``wrap_triton`` records itself when traced; an
    interpreted one would try to read the fake tensor's (absent) data. Shapes are all
    that tracing needs, so the launch is skipped there.
    """
    return not (availability.INTERPRETED and is_fake(t))


def _opaque(mode, func, types, args, kwargs):
    # Under the interpreter, keep the op opaque during functionalization (AOTAutograd):
    # its interpreted kernels cannot be captured as graph nodes, so the graph calls the
    # op itself, which then runs them on real tensors.
    return mode.__torch_dispatch__(func, types, args, kwargs)


def define_op(name: str, mutates_args: tuple[str, ...]):
    """Register ``fn`` as op ``name``: a triton_op where triton imports, else a custom_op."""

    def register(fn):
        if availability.TRITON_AVAILABLE:
            op = torch.library.triton_op(name, mutates_args=mutates_args)(fn)
        else:  # the op exists so that code referring to it imports; calling it raises
            op = torch.library.custom_op(name, mutates_args=mutates_args)(fn)
            op.register_fake(fn)
        if availability.INTERPRETED:
            op.register_torch_dispatch(FunctionalTensorMode, _opaque)
        return op

    return register
