"""Swap BatchNorm + (Leaky)ReLU pairs in a model for the fused modules, in place.

A pair is a BatchNorm (``nn.BatchNorm1d``, ``nn.BatchNorm2d`` or ``nn.SyncBatchNorm``,
exact types) immediately followed, as the next child of the same ``nn.Sequential``, by
``nn.ReLU`` or ``nn.LeakyReLU``. Only Sequentials are searched: in any other container
the order of children says nothing about the order of calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from kernels.batchnorm.modules import (
    BatchNormLeakyReLU1d,
    BatchNormLeakyReLU2d,
    SyncBatchNormLeakyReLU,
    _BatchNormLeakyReLU,
)

__all__ = ["FuseReport", "fuse_batchnorm_leaky_relu"]

_FUSED_TYPE: dict[type, type] = {
    nn.BatchNorm1d: BatchNormLeakyReLU1d,
    nn.BatchNorm2d: BatchNormLeakyReLU2d,
    nn.SyncBatchNorm: SyncBatchNormLeakyReLU,
}
_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)


@dataclass
class FuseReport:
    """What ``fuse_batchnorm_leaky_relu`` did.

    Attributes:
        fused: ``"<bn name>+<activation name>"`` per fused pair, in module order.
        unfused: ``(bn name, reason)`` per BatchNorm left as it was, in module order.
    """

    fused: list[str] = field(default_factory=list)
    unfused: list[tuple[str, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Number of fused pairs."""
        return len(self.fused)

    def __str__(self) -> str:
        lines = [f"fused {self.count} BatchNorm+activation pair(s)"]
        lines += [f"  fused: {name}" for name in self.fused]
        lines += [f"  left:  {name} ({why})" for name, why in self.unfused]
        return "\n".join(lines)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _slope(act: nn.Module) -> float:
    return float(act.negative_slope) if isinstance(act, nn.LeakyReLU) else 0.0


def _fused_from(bn: _BatchNorm, act: nn.Module) -> _BatchNormLeakyReLU:
    """The fused module, sharing bn's parameter and buffer tensors (no copy).

    Sharing keeps an optimizer built before the swap pointing at the live parameters,
    and keeps device, dtype and values as they are.
    """
    cls = _FUSED_TYPE[type(bn)]
    kwargs = {}
    if isinstance(bn, nn.SyncBatchNorm):
        kwargs["process_group"] = bn.process_group
    fused = cls(
        bn.num_features,
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
        device="meta",  # placeholders only: replaced by bn's tensors just below
        negative_slope=_slope(act),
        **kwargs,
    )
    for name in ("weight", "bias"):
        if getattr(bn, name, None) is not None:
            setattr(fused, name, getattr(bn, name))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        if getattr(bn, name, None) is not None:
            setattr(fused, name, getattr(bn, name))
    fused.train(bn.training)
    return fused


def fuse_batchnorm_leaky_relu(module: nn.Module) -> FuseReport:
    """Replace each BatchNorm + ReLU/LeakyReLU pair inside ``module``; return a report.

    For every ``nn.Sequential`` in ``module`` (nested ones included), a BatchNorm1d,
    BatchNorm2d or SyncBatchNorm whose next sibling is ``nn.ReLU`` or ``nn.LeakyReLU``
    becomes ``BatchNormLeakyReLU1d``/``2d``/``SyncBatchNormLeakyReLU`` (same eps,
    momentum, affine, track_running_stats, process group, training flag, and the very
    same parameter/buffer tensors), and the activation becomes ``nn.Identity`` at the
    same index, so the Sequential's length and child names do not change and state_dict
    keys stay BatchNorm's.

    Every other BatchNorm (outside a Sequential, last in one, followed by something
    else, or of another type such as BatchNorm3d) is listed in ``report.unfused`` with
    the reason. Mutates ``module`` in place.

    Convert to SyncBatchNorm (``nn.SyncBatchNorm.convert_sync_batchnorm``) before
    calling this, never after: see ``kernels.batchnorm.modules``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    report = FuseReport()
    handled: set[int] = set()
    for prefix, container in list(module.named_modules()):
        if not isinstance(container, nn.Sequential):
            continue
        children = list(container.named_children())
        for i, (name, child) in enumerate(children):
            if not isinstance(child, _BatchNorm) or isinstance(child, _BatchNormLeakyReLU):
                continue
            handled.add(id(child))
            full = _join(prefix, name)
            if type(child) not in _FUSED_TYPE:
                report.unfused.append((full, f"unsupported type {type(child).__name__}"))
                continue
            if i + 1 == len(children):
                report.unfused.append((full, "last child of its Sequential"))
                continue
            act_name, act = children[i + 1]
            if type(act) not in _ACTIVATIONS:
                report.unfused.append((full, f"followed by {type(act).__name__}"))
                continue
            setattr(container, name, _fused_from(child, act))
            setattr(container, act_name, nn.Identity())
            report.fused.append(f"{full}+{_join(prefix, act_name)}")
    for name, child in module.named_modules():
        if (
            isinstance(child, _BatchNorm)
            and not isinstance(child, _BatchNormLeakyReLU)
            and id(child) not in handled
        ):
            report.unfused.append((name or "<root>", "not inside an nn.Sequential"))
    # Containers are visited outer first, so a nested Sequential's pairs were found after
    # its outer one's later pairs: list both in module order (names survive the swap).
    order = {name: i for i, (name, _) in enumerate(module.named_modules())}
    report.fused.sort(key=lambda pair: order[pair.split("+")[0]])
    report.unfused.sort(key=lambda entry: order.get(entry[0], -1))
    return report
