"""Triton kernels: fused BatchNorm + LeakyReLU (ReLU is slope 0) and narrow convolutions,
forward and backward.

Nothing here knows about GANs or the harness. Public API:

- ``batch_norm_leaky_relu``: the functional op (differentiable, torch.compile-able);
- ``BatchNormLeakyReLU1d`` / ``BatchNormLeakyReLU2d`` / ``SyncBatchNormLeakyReLU``:
  drop-in modules with BatchNorm's state_dict;
- ``fuse_batchnorm_leaky_relu``: swap BatchNorm + (Leaky)ReLU pairs in a model, in place;
- ``sync_batch_norm_leaky_relu``: the cross-process variant (SyncBatchNorm semantics);
- ``kernel_path`` / ``KernelUnavailableError``: which path runs, or why none can;
- ``batch_norm_leaky_relu_reference``: the eager reference;
- ``narrow_conv2d`` / ``narrow_conv_transpose2d``: convolutions with few channels on one
  side (image channels), ``NarrowConv2d`` / ``NarrowConvTranspose2d`` their modules, and
  ``swap_narrow_convolutions`` to put them in a model (a LeakyReLU fused in).

Layout: one subpackage per op family, ``kernels.batchnorm`` and ``kernels.narrow_conv``
(each with ``kernels.py``, its ``@triton.jit`` functions, a ``plan.py`` of launch
tunings and tile sizes, ``ops.py`` and ``modules.py``), neither importing the other;
both build on ``kernels._plumbing`` (torch.library registration, kernel launches, grid
arithmetic). ``kernels.availability`` says which path the kernels take here.

Importing this package registers five ``gan_bench::`` ops with torch.library (so that
torch.compile can trace them) and imports triton when it is installed; set
``TRITON_INTERPRET=1`` before importing it to run the kernels on the CPU.
"""

from kernels.availability import kernel_path
from kernels.batchnorm.fuse import FuseReport, fuse_batchnorm_leaky_relu
from kernels.batchnorm.modules import (
    BatchNormLeakyReLU1d,
    BatchNormLeakyReLU2d,
    SyncBatchNormLeakyReLU,
)
from kernels.batchnorm.ops import batch_norm_leaky_relu
from kernels.batchnorm.reference import batch_norm_leaky_relu_reference
from kernels.batchnorm.sync import sync_batch_norm_leaky_relu
from kernels.errors import KernelUnavailableError
from kernels.narrow_conv.modules import (
    NarrowConv2d,
    NarrowConvTranspose2d,
    SwapReport,
    swap_narrow_convolutions,
)
from kernels.narrow_conv.ops import narrow_conv2d, narrow_conv_transpose2d

__all__ = [
    "BatchNormLeakyReLU1d",
    "BatchNormLeakyReLU2d",
    "FuseReport",
    "KernelUnavailableError",
    "NarrowConv2d",
    "NarrowConvTranspose2d",
    "SwapReport",
    "SyncBatchNormLeakyReLU",
    "batch_norm_leaky_relu",
    "batch_norm_leaky_relu_reference",
    "fuse_batchnorm_leaky_relu",
    "kernel_path",
    "narrow_conv2d",
    "narrow_conv_transpose2d",
    "swap_narrow_convolutions",
    "sync_batch_norm_leaky_relu",
]
