"""batched-casts: autocast's parameter casts batched into multi-tensor copies train exactly
as autocast does, with no per-parameter cast left."""

from __future__ import annotations

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.config import ConfigError, RunConfig
from bench.speedups.batched_casts import BatchedCasts, cast_parameter_names
from bench.training.precision import make_policy
from gan_models import build_pair, get_loss
from gan_steps import step_for


def test_the_cast_parameters_are_those_of_linears_and_convolutions():
    mlp = build_pair("mlp", channels=1)
    names = cast_parameter_names(mlp.generator)
    # Three linears without bias (BatchNorm follows them), the image layer with one.
    assert len(names) == 5 and all(n.endswith((".weight", ".bias")) for n in names)
    assert not any("bn" in n or "norm" in n for n in names)  # BatchNorm stays fp32
    dcgan = build_pair("dcgan32", channels=3)
    assert cast_parameter_names(dcgan.discriminator) == [
        "main.from_image.conv.weight",
        "main.down1.conv.weight",
        "main.down2.conv.weight",
        "main.to_logit.conv.weight",
    ]


class _Casts(TorchDispatchMode):
    """Counts casts (`_to_copy`), those of parameters (a parameter's storage), and
    multi-tensor copies."""

    def __init__(self, params):
        super().__init__()
        self.params = {p.untyped_storage().data_ptr() for p in params}
        self.count: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name == "_to_copy":
            self.count["casts"] += 1
            if args[0].untyped_storage().data_ptr() in self.params:
                self.count["parameter casts"] += 1
        elif name == "_foreach_copy_":
            self.count["multi-tensor copies"] += 1
        return func(*args, **(kwargs or {}))


# Narrow MLP widths keep CPU autocast quick; the layer structure is the reference one.
SMALL = {"mlp": {"widths": {"g_hidden": (32, 64, 128), "d_hidden": (128, 64, 32)}}, "dcgan32": {}}


def _train(model, loss_name, batched, *, precision="bf16", joint=False, count=False, device="cpu"):
    """Three iterations under CPU autocast (two for DCGAN or n_critic > 1); the losses,
    the parameters, and the casts of the last iteration."""
    torch.manual_seed(0)
    loss = get_loss(loss_name)
    pair = build_pair(model, channels=1, critic=loss.needs_critic, **SMALL[model])
    pair.generator.to(device)
    pair.discriminator.to(device)
    params = [*pair.generator.parameters(), *pair.discriminator.parameters()]
    step = step_for(
        pair,
        loss,
        make_policy(precision, device, autocast_cache=False),
        torch.Generator(device=device).manual_seed(0),
        lr=2e-3,
        joint_d_batch=joint,
        batched_casts=batched,
    )
    data = torch.Generator().manual_seed(1)
    torch.manual_seed(5)  # the gradient penalty's interpolation weights
    losses, casts = [], _Casts(params)
    iterations = 2 if model == "dcgan32" or loss.n_critic > 1 else 3
    for i in range(iterations):
        reals = [
            (torch.rand((4, *pair.image_shape), generator=data) * 2 - 1).to(device)
            for _ in range(loss.n_critic)
        ]
        if i == iterations - 1 and count:
            with casts:
                losses.append(torch.stack(step(reals)))
        else:
            losses.append(torch.stack(step(reals)))
    return torch.stack(losses), [p.detach().clone() for p in params], casts.count


@pytest.mark.parametrize(
    ("model", "loss_name", "precision", "joint"),
    [
        ("mlp", "non-saturating", "bf16", False),
        ("mlp", "hinge", "bf16", True),
        ("mlp", "minimax", "fp16", False),
        ("mlp", "wgan-gp", "bf16", False),  # three D forwards, a double backward
        ("dcgan32", "non-saturating", "bf16", False),  # convolutions, BatchNorm left fp32
    ],
)
def test_batched_casts_train_exactly_as_autocast(model, loss_name, precision, joint):
    want_losses, want_params, _ = _train(model, loss_name, False, precision=precision, joint=joint)
    got_losses, got_params, _ = _train(model, loss_name, True, precision=precision, joint=joint)
    assert torch.equal(got_losses, want_losses)
    for got, want in zip(got_params, want_params, strict=True):
        assert torch.equal(got, want)


@pytest.mark.gpu
@pytest.mark.parametrize(("model", "precision"), [("mlp", "bf16"), ("dcgan32", "fp16")])
def test_batched_casts_train_exactly_as_autocast_on_cuda(model, precision, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    want = _train(model, "non-saturating", False, precision=precision, device="cuda")
    got = _train(model, "non-saturating", True, precision=precision, device="cuda")
    assert torch.equal(got[0], want[0])
    for a, b in zip(got[1], want[1], strict=True):
        assert torch.equal(a, b)


def test_no_parameter_is_cast_on_its_own():
    """MLP GAN, one iteration: autocast casts G's 5 linear parameters and D's 8 one by one
    in each forward (G; D on real, D on fake; D in the G update), and the gradients of
    G's and of D's (in its update; the G update's D is frozen) back; batched, four
    multi-tensor copies forward and three backward do it all."""
    _, _, plain = _train("mlp", "non-saturating", False, count=True)
    _, _, batched = _train("mlp", "non-saturating", True, count=True)
    forward, backward = 5 + 2 * 8 + 8, 5 + 2 * 8
    assert plain["parameter casts"] == forward
    assert plain["multi-tensor copies"] == 0
    assert batched["parameter casts"] == 0
    assert batched["multi-tensor copies"] == 4 + 3
    assert plain["casts"] - batched["casts"] == forward + backward


def test_outside_autocast_the_wrapper_is_the_module():
    pair = build_pair("mlp", channels=1)
    wrapped = BatchedCasts(pair.discriminator, torch.bfloat16)
    x = torch.rand((4, 1, 28, 28))
    assert torch.equal(wrapped(x), pair.discriminator(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert wrapped(x).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.float16), pytest.raises(RuntimeError, match="float16"):
        wrapped(x)


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_batched_casts_need_autocast(precision):
    with pytest.raises(ConfigError, match="has no autocast; use it with bf16 or fp16"):
        RunConfig(variant="batched-casts", precision=precision)
