"""Errors raised by the kernels package."""

from __future__ import annotations

__all__ = ["KernelUnavailableError"]


class KernelUnavailableError(ValueError):
    """The Triton kernels cannot run here (no CUDA GPU, no interpreter, or no triton).

    A ``ValueError`` so that callers that validate a configuration can treat it like any
    other bad choice of option; the message is one line saying what is needed.
    """
