"""Bad input to the fused op and its modules: one clear error, in eager's words where it has one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import kernels

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _vec(c=3):
    return torch.ones(c, device=DEVICE)


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3), (1, 3, 1)])
def test_one_value_per_channel_in_training_raises_like_eager(shape):
    x = torch.randn(shape, device=DEVICE)
    with pytest.raises(ValueError) as eager:
        F.batch_norm(x, None, None, training=True)
    with pytest.raises(ValueError) as fused:
        kernels.batch_norm_leaky_relu(x, None, None, training=True)
    assert str(fused.value) == str(eager.value)
    assert "Expected more than 1 value per channel when training" in str(fused.value)


def test_one_value_per_channel_is_fine_in_eval():
    x = torch.randn(1, 3, 1, 1, device=DEVICE)
    y = kernels.batch_norm_leaky_relu(x, torch.zeros(3, device=DEVICE), _vec(), training=False)
    assert y.shape == x.shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight": torch.ones(4)}, r"weight has shape \(4,\), expected \(3,\)"),
        ({"bias": torch.ones(3, 1)}, r"bias has shape \(3, 1\), expected \(3,\)"),
        ({"running_mean": torch.zeros(2), "running_var": torch.ones(2)}, "running_mean has shape"),
        ({"running_mean": torch.zeros(3)}, "both be tensors or both be None"),
        ({"training": False}, "must be given when training=False"),
        (
            {"running_mean": torch.zeros(3), "running_var": torch.ones(3), "momentum": None},
            "needs num_batches_tracked",
        ),
        ({"num_batches_tracked": torch.zeros(2, dtype=torch.long)}, "one-element tensor"),
        ({"num_batches_tracked": torch.zeros((), dtype=torch.float32)}, "integer tensor"),
    ],
    ids=["weight", "bias", "running", "half-running", "eval-no-stats", "cma", "nbt", "nbt-f"],
)
def test_bad_arguments_raise_one_clear_value_error(kwargs, message):
    args = {"running_mean": None, "running_var": None, "training": True}
    args.update(
        {k: (v.to(DEVICE) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    )
    x = torch.randn(2, 3, 4, 4, device=DEVICE)
    with pytest.raises(ValueError, match=message):
        kernels.batch_norm_leaky_relu(x, **args)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.randn(5), "2 or more dims"),
        (torch.ones(2, 3, 4, dtype=torch.int64), "input dtype must be"),
    ],
)
def test_bad_input_tensor(x, message):
    with pytest.raises(ValueError, match=message):
        kernels.batch_norm_leaky_relu(x.to(DEVICE), None, None, training=True)


def test_module_dims_are_checked_like_batchnorm():
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input\)"):
        kernels.BatchNormLeakyReLU2d(3, device=DEVICE)(torch.randn(2, 3, 4, device=DEVICE))
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input\)"):
        kernels.BatchNormLeakyReLU1d(3, device=DEVICE)(torch.randn(2, 3, 4, 4, device=DEVICE))
    with pytest.raises(ValueError, match=r"expected at least 2D input \(got 1D input\)"):
        kernels.SyncBatchNormLeakyReLU(3, device=DEVICE)(torch.randn(3, device=DEVICE))
