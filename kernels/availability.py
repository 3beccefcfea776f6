"""Which path the Triton kernels take here: a CUDA GPU, Triton's CPU interpreter, or none.

triton is imported here, once, inside a guard: it is a dependency only on Linux x86-64,
and ``import kernels`` must still work elsewhere (calling an op then raises
``KernelUnavailableError``). Triton decides between compiling and interpreting when a
``@triton.jit`` function is *defined*, from ``TRITON_INTERPRET`` at that moment, so the
variable must be set before ``kernels`` (or anything importing it) is imported; a probe
function defined here tells which way this import of ``kernels`` went, for every op
family's kernels alike.
"""

from __future__ import annotations

import functools
import os

import torch

from kernels.errors import KernelUnavailableError

__all__ = ["INTERPRETED", "TRITON_AVAILABLE", "kernel_path", "require_runnable"]

try:
    import triton
    from triton.runtime.jit import JITFunction
except ImportError as exc:  # no triton on this platform
    _IMPORT_ERROR: ImportError | None = exc
    TRITON_AVAILABLE = False
    INTERPRETED = False
else:

    @triton.jit
    def _probe():
        pass

    _IMPORT_ERROR = None
    TRITON_AVAILABLE = True
    # Under TRITON_INTERPRET=1, @triton.jit returns an InterpretedFunction, not a JITFunction.
    INTERPRETED = not isinstance(_probe, JITFunction)

_NEED = (
    "the Triton kernels need a CUDA GPU, or TRITON_INTERPRET=1 set before importing "
    "kernels to run on the CPU through Triton's interpreter (slow; for tests)"
)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("+")[0].split(".")[:2] if part.isdigit())


@functools.cache
def _interpreter_problem() -> str | None:
    """Why this Triton's interpreter cannot run the kernels here, or None.

    Triton before 3.7 turns one-element arrays into loop bounds with ``int()``, which
    numpy 2.4 refuses ("only 0-dimensional arrays can be converted to Python scalars",
    triton-lang/triton#9171): every kernel with a runtime loop bound then fails.
    """
    import numpy
    import triton

    if _version(triton.__version__) < (3, 7) and _version(numpy.__version__) >= (2, 4):
        return (
            f"Triton {triton.__version__}'s interpreter cannot run under numpy "
            f"{numpy.__version__} (fixed in Triton 3.7): install numpy<2.4 or triton>=3.7"
        )
    return None


def _interpret_env_set() -> bool:
    # as Triton reads it (getenv_bool)
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on", "yes", "y")


def _no_device_message() -> str:
    if _interpret_env_set() and not INTERPRETED:
        return _NEED + " (TRITON_INTERPRET=1 is set, but only after the kernels were imported)"
    return _NEED


def kernel_path() -> str:
    """Name the path the fused op runs on: ``"triton"`` or ``"triton-interpreter"``.

    ``"triton-interpreter"`` when the kernels were built under ``TRITON_INTERPRET=1``
    (that is what runs, even on a machine with a GPU); ``"triton"`` when triton is
    importable and a CUDA GPU is present.

    Raises:
        KernelUnavailableError: triton is not importable, or there is neither a CUDA
            GPU nor the interpreter. There is no fallback to eager PyTorch.
    """
    if _IMPORT_ERROR is not None:
        raise KernelUnavailableError(
            f"the Triton kernels need the triton package, which failed to import "
            f"({_IMPORT_ERROR}); install triton (Linux x86-64 with a CUDA GPU)"
        )
    if INTERPRETED:
        problem = _interpreter_problem()
        if problem:
            raise KernelUnavailableError(problem)
        return "triton-interpreter"
    if torch.cuda.is_available():
        return "triton"
    raise KernelUnavailableError(_no_device_message())


def require_runnable(device: torch.device) -> None:
    """Raise ``KernelUnavailableError`` unless the kernels can run on tensors on ``device``.

    CUDA tensors run compiled (or interpreted, under TRITON_INTERPRET=1); CPU tensors
    run only through the interpreter.
    """
    if _IMPORT_ERROR is not None or device.type not in ("cuda", "cpu"):
        kernel_path()  # raises with the reason when triton is missing
        raise KernelUnavailableError(
            f"the Triton kernels run on CUDA tensors (or CPU tensors under "
            f"TRITON_INTERPRET=1), got a tensor on {device}"
        )
    if INTERPRETED:
        kernel_path()  # raises when this interpreter cannot run them
    if device.type == "cpu" and not INTERPRETED:
        if torch.cuda.is_available():
            raise KernelUnavailableError(
                "the Triton kernels got CPU tensors; move the model and data to the GPU "
                "(or set TRITON_INTERPRET=1 before importing kernels to interpret on the CPU)"
            )
        raise KernelUnavailableError(_no_device_message())
