"""The drop-in modules behave as nn.BatchNorm + activation and keep BatchNorm's state_dict."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from kernels import BatchNormLeakyReLU1d, BatchNormLeakyReLU2d, SyncBatchNormLeakyReLU

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _pair(fused_cls, bn_cls, c, slope, **kw):
    torch.manual_seed(0)
    fused = fused_cls(c, negative_slope=slope, device=DEVICE, **kw)
    bn = bn_cls(c, device=DEVICE, **kw)
    if fused.affine:
        with torch.no_grad():
            fused.weight.uniform_(0.5, 1.5)
            fused.bias.normal_()
    bn.load_state_dict(fused.state_dict())
    act = nn.ReLU() if slope == 0 else nn.LeakyReLU(slope)
    return fused, nn.Sequential(bn, act)


def _step(module, x, dy):
    x = x.clone().requires_grad_(True)
    y = module(x)
    y.backward(dy)
    return y, x.grad


@pytest.mark.parametrize(
    ("cls", "bn_cls", "shape", "kw"),
    [
        (BatchNormLeakyReLU2d, nn.BatchNorm2d, (4, 5, 3, 3), {}),
        (BatchNormLeakyReLU2d, nn.BatchNorm2d, (4, 5, 3, 3), {"momentum": None}),
        (BatchNormLeakyReLU2d, nn.BatchNorm2d, (4, 5, 3, 3), {"track_running_stats": False}),
        (BatchNormLeakyReLU1d, nn.BatchNorm1d, (6, 5), {"affine": False}),
        (BatchNormLeakyReLU1d, nn.BatchNorm1d, (3, 5, 4), {"eps": 1e-3, "momentum": 0.3}),
    ],
    ids=["2d", "2d-cma", "2d-notrack", "1d-noaffine", "1d-3d-input"],
)
def test_training_steps_then_eval_match_batchnorm_plus_activation(cls, bn_cls, shape, kw):
    fused, ref = _pair(cls, bn_cls, shape[1], 0.2, **kw)
    gen = torch.Generator().manual_seed(3)
    for step in range(3):
        x = torch.randn(shape, generator=gen).to(DEVICE) * 2 + step
        dy = torch.randn(shape, generator=gen).to(DEVICE)
        y, dx = _step(fused, x, dy)
        yr, dxr = _step(ref, x, dy)
        torch.testing.assert_close(y, yr, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(dx, dxr, atol=1e-4, rtol=1e-4)
    if fused.affine:
        torch.testing.assert_close(fused.weight.grad, ref[0].weight.grad, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(fused.bias.grad, ref[0].bias.grad, atol=1e-4, rtol=1e-4)
    for key, value in ref[0].state_dict().items():
        torch.testing.assert_close(fused.state_dict()[key], value, atol=1e-5, rtol=1e-5)
    fused.eval()
    ref.eval()
    x = torch.randn(shape, generator=gen).to(DEVICE)
    torch.testing.assert_close(fused(x), ref(x), atol=1e-5, rtol=1e-5)


def test_relu_slope_zero():
    fused, ref = _pair(BatchNormLeakyReLU2d, nn.BatchNorm2d, 4, 0.0)
    x = torch.randn(3, 4, 2, 2, device=DEVICE)
    torch.testing.assert_close(fused(x), ref(x), atol=1e-5, rtol=1e-5)
    assert isinstance(ref[1], nn.ReLU)


@pytest.mark.parametrize(
    ("cls", "bn_cls"),
    [(BatchNormLeakyReLU1d, nn.BatchNorm1d), (BatchNormLeakyReLU2d, nn.BatchNorm2d)],
)
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_state_dict_is_batchnorm_s_and_loads_both_ways(cls, bn_cls, track, affine):
    fused = cls(7, affine=affine, track_running_stats=track, negative_slope=0.2)
    bn = bn_cls(7, affine=affine, track_running_stats=track)
    fsd, bsd = fused.state_dict(), bn.state_dict()
    assert list(fsd) == list(bsd)
    assert {k: (v.shape, v.dtype) for k, v in fsd.items()} == {
        k: (v.shape, v.dtype) for k, v in bsd.items()
    }
    assert cls._version == bn_cls._version
    with torch.no_grad():
        for t in bn.state_dict().values():
            t.copy_(torch.arange(t.numel()).reshape(t.shape) + 1)
    fused.load_state_dict(bn.state_dict(), strict=True)
    back = bn_cls(7, affine=affine, track_running_stats=track)
    back.load_state_dict(fused.state_dict(), strict=True)
    for key, value in bn.state_dict().items():
        assert torch.equal(back.state_dict()[key], value)


def test_constructor_mirrors_batchnorm_and_repr_names_the_slope():
    m = BatchNormLeakyReLU2d(8, 1e-3, 0.3, False, False, None, torch.float64, 0.2)
    assert (m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats) == (
        8, 1e-3, 0.3, False, False,
    )  # fmt: skip
    assert m.negative_slope == 0.2
    assert "negative_slope=0.2" in repr(m) and "eps=0.001" in repr(m)
    assert BatchNormLeakyReLU1d(4).negative_slope == 0.01  # nn.LeakyReLU's default
    w = BatchNormLeakyReLU2d(3, dtype=torch.float64).weight
    assert w.dtype == torch.float64


def test_sync_module_without_process_group_is_the_plain_module():
    torch.manual_seed(0)
    sync = SyncBatchNormLeakyReLU(5, negative_slope=0.2, device=DEVICE)
    plain = BatchNormLeakyReLU2d(5, negative_slope=0.2, device=DEVICE)
    plain.load_state_dict(sync.state_dict())
    x = torch.randn(3, 5, 2, 2, device=DEVICE)
    torch.testing.assert_close(sync(x), plain(x))
    assert torch.equal(sync.running_var, plain.running_var)
    assert int(sync.num_batches_tracked) == int(plain.num_batches_tracked) == 1
    assert "process_group" not in sync.state_dict()


def test_one_kernel_is_an_attribute_and_shows_when_set():
    m = BatchNormLeakyReLU2d(4)
    assert m.one_kernel is False and "one_kernel" not in repr(m)
    m.one_kernel = True
    assert "one_kernel=True" in repr(m)
    assert BatchNormLeakyReLU1d(4, one_kernel=True).one_kernel
    assert SyncBatchNormLeakyReLU(4, one_kernel=True).one_kernel
    assert "one_kernel" not in m.state_dict()


def test_last_path_is_that_of_the_last_call_with_batch_statistics():
    """None before any; after training calls, their path (the interpreter always takes the
    one-kernel path); eval calls, as a sample grid's at another batch size, leave it."""
    m = BatchNormLeakyReLU2d(4, device=DEVICE)
    assert m.last_path() is None
    m(torch.randn(3, 4, 2, 2, device=DEVICE))
    assert m.last_path() == {"path": "one-kernel", "launches": 2}
    m.eval()
    m(torch.randn(1, 4, 2, 2, device=DEVICE))
    assert m.__dict__["_last_training_input"][0] == (3, 4, 2, 2)
    cma = BatchNormLeakyReLU2d(4, momentum=None, device=DEVICE)
    cma(torch.randn(3, 4, 2, 2, device=DEVICE))
    assert cma.last_path() == {"path": "one-kernel", "launches": 3}  # + the counter's add_


def test_last_path_follows_the_plan_a_gpu_gets(monkeypatch):
    """On a GPU (its plan asked for here) the layer's shape decides, and ``one_kernel``."""
    from kernels import availability
    from kernels.batchnorm import plan

    monkeypatch.setattr(availability, "INTERPRETED", False)
    monkeypatch.setattr(plan, "sm_count", lambda device: 132)
    plan._cached_plan.cache_clear()
    m = BatchNormLeakyReLU2d(64)
    cuda = torch.device("cuda")
    m.__dict__["_last_training_input"] = ((128, 64, 32, 32), (65536, 1024, 32, 1), cuda, False)
    assert m.last_path() == {"path": "split", "launches": 6}
    m.one_kernel = True
    assert m.last_path() == {"path": "one-kernel", "launches": 2}
    # 2**31 items of 2 x 4 x 4: 2**25 tiles per channel pair
    m.__dict__["_last_training_input"] = ((2**31, 2, 4, 4), (32, 16, 4, 1), cuda, False)
    path = m.last_path()
    assert path["path"] == "split" and "one kernel asked, but" in path["why"]
    plan._cached_plan.cache_clear()


def test_deepcopy_and_eval_flag():
    m = BatchNormLeakyReLU2d(3).eval()
    c = copy.deepcopy(m)
    assert not c.training and c.negative_slope == m.negative_slope
