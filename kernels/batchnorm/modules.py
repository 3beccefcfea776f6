"""Drop-in modules: BatchNorm1d/2d (and SyncBatchNorm) followed by LeakyReLU, fused.

Each subclasses ``torch.nn.modules.batchnorm._BatchNorm``, so parameters, buffers and
state_dict keys/shapes are BatchNorm's (``weight``, ``bias``, ``running_mean``,
``running_var``, ``num_batches_tracked``; same ``_version``), and checkpoints load both
ways. The forward follows ``_BatchNorm.forward`` (training vs eval, momentum=None,
``track_running_stats=False``) but increments ``num_batches_tracked`` and reads it on
the device, inside the fused op, instead of ``float(self.num_batches_tracked)``.

Caution: being ``_BatchNorm`` subclasses, these modules are what
``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` looks for, and it would replace one
with a plain ``SyncBatchNorm`` (dropping the fused activation, whose ``nn.Identity``
placeholder stays). Convert to SyncBatchNorm *before* fusing:
``fuse_batchnorm_leaky_relu`` turns ``nn.SyncBatchNorm`` + activation into
``SyncBatchNormLeakyReLU``.

Beyond BatchNorm's: ``one_kernel`` (take the one-kernel path wherever it can, see
``batch_norm_leaky_relu``), settable at any time, and ``last_path()``, which path the last
call with batch statistics took.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm

from kernels.batchnorm.ops import batch_norm_leaky_relu, training_path
from kernels.batchnorm.sync import SYNC_PATH, sync_batch_norm_leaky_relu, synchronised

__all__ = ["BatchNormLeakyReLU1d", "BatchNormLeakyReLU2d", "SyncBatchNormLeakyReLU"]


class _BatchNormLeakyReLU(_BatchNorm):
    """Shared constructor, forward and repr; subclasses check the input's dims."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        negative_slope: float = 0.01,
        one_kernel: bool = False,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.negative_slope = float(negative_slope)
        self.one_kernel = bool(one_kernel)

    def _args(self) -> tuple:
        """(running_mean, running_var, bn_training, num_batches_tracked) as _BatchNorm does."""
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        nbt = None
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            nbt = self.num_batches_tracked  # incremented on the device by the op
        return (
            self.running_mean if track else None,
            self.running_var if track else None,
            bn_training,
            nbt,
        )

    def _remember(self, input: torch.Tensor, synced: bool = False) -> None:
        # Only calls with batch statistics: sample grids and quality checks run a generator
        # in eval mode, at other batch sizes, after the training it was asked about. Written
        # to __dict__: nn.Module's __setattr__ costs more than the rest of a small call.
        self.__dict__["_last_training_input"] = (input.shape, input.stride(), input.device,
                                                 synced)  # fmt: skip

    def last_path(self) -> dict | None:
        """The path of the last call with batch statistics (training), as
        ``kernels.batchnorm.ops.training_path`` describes it (``sync`` for a call whose
        statistics were synchronised across processes), or None before any."""
        last = self.__dict__.get("_last_training_input")
        if last is None:
            return None
        sizes, strides, device, synced = last
        if synced:
            return dict(SYNC_PATH)
        counter_on_host = self.momentum is None and self.track_running_stats
        return training_path(sizes, strides, device, one_kernel=self.one_kernel,
                             counter_on_host=counter_on_host)  # fmt: skip

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """BatchNorm then LeakyReLU(negative_slope), in the fused Triton kernels."""
        self._check_input_dim(input)
        running_mean, running_var, bn_training, nbt = self._args()
        if bn_training:
            self._remember(input)
        return batch_norm_leaky_relu(
            input, running_mean, running_var, self.weight, self.bias, bn_training,
            self.momentum, self.eps, self.negative_slope, num_batches_tracked=nbt,
            one_kernel=self.one_kernel,
        )  # fmt: skip

    def extra_repr(self) -> str:
        one_kernel = ", one_kernel=True" if self.one_kernel else ""
        return f"{super().extra_repr()}, negative_slope={self.negative_slope}{one_kernel}"


class BatchNormLeakyReLU1d(_BatchNormLeakyReLU):
    """``nn.BatchNorm1d`` + ``nn.LeakyReLU(negative_slope)``; input (N, C) or (N, C, L)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() != 2 and input.dim() != 3:
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")


class BatchNormLeakyReLU2d(_BatchNormLeakyReLU):
    """``nn.BatchNorm2d`` + ``nn.LeakyReLU(negative_slope)`` (0 = ReLU); input (N, C, H, W)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")


class SyncBatchNormLeakyReLU(_BatchNormLeakyReLU):
    """``nn.SyncBatchNorm`` + ``nn.LeakyReLU(negative_slope)``; any (N, C, ...) input.

    In training with torch.distributed initialised and more than one process in
    ``process_group`` (None: the default group), batch statistics are shared across
    processes (``kernels.batchnorm.sync``); otherwise it behaves as ``BatchNormLeakyReLU2d``.
    The synchronised path runs eagerly (not under torch.compile).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: dist.ProcessGroup | None = None,
        device=None,
        dtype=None,
        negative_slope: float = 0.01,
        one_kernel: bool = False,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype, negative_slope, one_kernel)  # fmt: skip
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Fused BatchNorm + LeakyReLU with statistics synchronised across processes."""
        self._check_input_dim(input)
        running_mean, running_var, bn_training, nbt = self._args()
        if not self.training:  # as nn.SyncBatchNorm: synchronise only while training
            return super().forward(input)
        self._remember(input, synchronised(bn_training, self.process_group))
        return sync_batch_norm_leaky_relu(
            input, running_mean, running_var, self.weight, self.bias, bn_training,
            self.momentum, self.eps, self.negative_slope, num_batches_tracked=nbt,
            process_group=self.process_group, one_kernel=self.one_kernel,
        )  # fmt: skip
