"""fuse_batchnorm_leaky_relu on the reference GANs and on awkward containers."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from gan_models import build_pair
from kernels import (
    BatchNormLeakyReLU1d,
    BatchNormLeakyReLU2d,
    SyncBatchNormLeakyReLU,
    fuse_batchnorm_leaky_relu,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# Read from gan_models: dcgan32 G is project/up1/up2 (BN + ReLU each), D is down1/down2
# (BN + LeakyReLU(0.2)); the MLP G has block1..3 (BN1d + LeakyReLU(0.2)), its D none.
EXPECTED = {
    ("dcgan32", "generator"): (
        ["main.project.bn+main.project.act", "main.up1.bn+main.up1.act",
         "main.up2.bn+main.up2.act"],
        BatchNormLeakyReLU2d, 0.0,
    ),
    ("dcgan32", "discriminator"): (
        ["main.down1.bn+main.down1.act", "main.down2.bn+main.down2.act"],
        BatchNormLeakyReLU2d, 0.2,
    ),
    ("mlp", "generator"): (
        ["main.block1.bn+main.block1.act", "main.block2.bn+main.block2.act",
         "main.block3.bn+main.block3.act"],
        BatchNormLeakyReLU1d, 0.2,
    ),
    ("mlp", "discriminator"): ([], None, None),
}  # fmt: skip


def _inputs(name, role, pair, n=4):
    gen = torch.Generator().manual_seed(11)
    shape = pair.latent_shape if role == "generator" else pair.image_shape
    return torch.randn((n, *shape), generator=gen).to(DEVICE)


@pytest.mark.parametrize(("name", "role"), list(EXPECTED), ids=lambda v: str(v))
def test_fuse_reference_models(name, role):
    torch.manual_seed(0)
    pair = build_pair(name, channels=3)
    plain = getattr(pair, role).to(DEVICE).train()
    fused = copy.deepcopy(plain)
    names, cls, slope = EXPECTED[(name, role)]

    report = fuse_batchnorm_leaky_relu(fused)

    assert report.fused == names and report.count == len(names)
    assert report.unfused == []
    for pair_name in names:
        bn_name, act_name = pair_name.split("+")
        module = fused.get_submodule(bn_name)
        assert type(module) is cls and module.negative_slope == slope and module.training
        assert isinstance(fused.get_submodule(act_name), nn.Identity)
    assert len(list(fused.modules())) == len(list(plain.modules()))

    # outputs, every parameter gradient and the running statistics equal the plain model's
    x = _inputs(name, role, pair)
    y_plain, y_fused = plain(x), fused(x)
    torch.testing.assert_close(y_fused, y_plain, atol=1e-5, rtol=1e-4)
    y_plain.square().mean().backward()
    y_fused.square().mean().backward()
    grads = dict(fused.named_parameters())
    for pname, p in plain.named_parameters():
        torch.testing.assert_close(grads[pname].grad, p.grad, atol=1e-5, rtol=1e-4, msg=pname)
    fused_state = fused.state_dict()
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(fused_state[key], value, atol=1e-6, rtol=1e-5, msg=key)

    # checkpoints move both ways with strict=True
    fresh_plain = copy.deepcopy(getattr(build_pair(name, channels=3), role)).to(DEVICE)
    fresh_plain.load_state_dict(fused.state_dict(), strict=True)
    fresh_fused = getattr(build_pair(name, channels=3), role).to(DEVICE)
    fuse_batchnorm_leaky_relu(fresh_fused)
    fresh_fused.load_state_dict(plain.state_dict(), strict=True)
    assert list(fresh_fused.state_dict()) == list(plain.state_dict())


def test_critic_has_nothing_to_fuse():
    critic = build_pair("dcgan32", channels=1, critic=True).discriminator
    report = fuse_batchnorm_leaky_relu(critic)
    assert report.count == 0 and report.unfused == []


def test_parameters_are_shared_and_flags_carried():
    bn = nn.BatchNorm2d(4, eps=1e-3, momentum=None, dtype=torch.float64).eval()
    seq = nn.Sequential(bn, nn.LeakyReLU(0.3))
    weight, running_var = bn.weight, bn.running_var
    fuse_batchnorm_leaky_relu(seq)
    fused = seq[0]
    assert fused.weight is weight and fused.running_var is running_var  # optimizers keep working
    assert (fused.eps, fused.momentum, fused.training, fused.negative_slope) == (
        1e-3, None, False, 0.3,
    )  # fmt: skip
    assert fused.weight.dtype == torch.float64 and len(seq) == 2


def test_unfused_batchnorms_are_reported_with_reasons():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.bn(x))

    model = nn.Sequential(
        OrderedDict(
            a=nn.Sequential(nn.BatchNorm2d(3), nn.Tanh()),
            b=nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)),
            c=Custom(),
            d=nn.Sequential(nn.BatchNorm3d(3), nn.ReLU()),
            e=nn.Sequential(nn.BatchNorm1d(3, affine=False, track_running_stats=False), nn.ReLU()),
        )
    )
    report = fuse_batchnorm_leaky_relu(model)
    assert report.fused == ["e.0+e.1"]
    assert report.unfused == [  # in module order
        ("a.0", "followed by Tanh"),
        ("b.1", "last child of its Sequential"),
        ("c.bn", "not inside an nn.Sequential"),
        ("d.0", "unsupported type BatchNorm3d"),
    ]
    assert "fused 1" in str(report)
    assert model.e[0].running_mean is None and not model.e[0].affine


def test_pairs_are_reported_in_module_order_nested_ones_included():
    model = nn.Sequential(
        nn.BatchNorm2d(3), nn.ReLU(),
        nn.Sequential(nn.BatchNorm2d(3), nn.LeakyReLU(0.2)),
        nn.BatchNorm2d(3), nn.ReLU(),
    )  # fmt: skip
    assert fuse_batchnorm_leaky_relu(model).fused == ["0+1", "2.0+2.1", "3+4"]


def test_sync_batchnorm_becomes_the_sync_variant_with_its_group():
    group = object()  # stands in for a ProcessGroup; only carried over
    seq = nn.Sequential(nn.SyncBatchNorm(6, process_group=group), nn.ReLU())
    report = fuse_batchnorm_leaky_relu(seq)
    assert report.count == 1
    assert type(seq[0]) is SyncBatchNormLeakyReLU and seq[0].process_group is group
    assert seq[0].negative_slope == 0.0


def test_fusing_twice_is_a_no_op():
    seq = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
    assert fuse_batchnorm_leaky_relu(seq).count == 1
    again = fuse_batchnorm_leaky_relu(seq)
    assert again.count == 0 and again.unfused == []
