"""The training iteration: update counts, where gradients go, BatchNorm statistics."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.training.precision import make_policy
from bench.training.step import DiscriminatorObjective, draw_latents
from gan_models import build_pair, get_loss
from gan_steps import step_for


def make_step(model="dcgan32", loss_name="non-saturating", batch=4, seed=0):
    torch.manual_seed(seed)
    loss = get_loss(loss_name)
    pair = build_pair(model, channels=1, critic=loss.needs_critic)
    rng = torch.Generator().manual_seed(seed)
    step = step_for(pair, loss, make_policy("fp32", "cpu"), rng)
    real = torch.rand((batch, *pair.image_shape)) * 2 - 1
    return step, pair, real


def _count_accumulations(module):
    counts = {}
    for name, param in module.named_parameters():
        counts[name] = 0

        def hook(p, name=name):
            counts[name] += 1

        param.register_post_accumulate_grad_hook(hook)
    return counts


@pytest.mark.parametrize("n_critic", [1, 3])
def test_n_critic_d_updates_and_one_g_update(n_critic):
    step, pair, real = make_step()
    g_counts = _count_accumulations(pair.generator)
    d_counts = _count_accumulations(pair.discriminator)
    d_loss, g_loss = step([real] * n_critic)
    assert d_loss.shape == () and g_loss.shape == ()
    # D's weights get gradients from its own updates only: the G update runs a frozen D.
    assert set(d_counts.values()) == {n_critic}
    assert set(g_counts.values()) == {1}
    d_state = step.d_optimizer.state[next(pair.discriminator.parameters())]
    g_state = step.g_optimizer.state[next(pair.generator.parameters())]
    assert int(d_state["step"]) == n_critic and int(g_state["step"]) == 1
    assert all(p.requires_grad for p in pair.discriminator.parameters())


def test_parameters_move_and_stay_finite():
    step, pair, real = make_step(model="mlp")
    before = [p.detach().clone() for p in pair.generator.parameters()]
    step([real])
    after = list(pair.generator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert all(torch.isfinite(p).all() for p in after)


def _conv_transpose_backend_format(z: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """The memory format ATen's convolution dispatch reads off (z, weight): the C++ decision
    that cuDNN's transposed-convolution weight gradient follows with the activations."""
    options = dict(stride=[1, 1], padding=[0, 0], dilation=[1, 1], transposed=True,
                   output_padding=[0, 0], groups=1, bias=None, bias_sizes=None)  # fmt: skip
    backend = torch._C._select_conv_backend(z, weight, **options)
    return torch._C._conv_determine_backend_memory_format(z, weight, backend)


def test_channels_last_latents_are_read_as_channels_last_with_the_same_values():
    cpu, nchw_weight = torch.device("cpu"), torch.randn(100, 64, 4, 4)
    plain = draw_latents(6, (100, 1, 1), torch.Generator().manual_seed(3), cpu)
    nhwc = draw_latents(6, (100, 1, 1), torch.Generator().manual_seed(3), cpu, torch.channels_last)
    assert torch.equal(plain, nhwc)  # 1x1 latents: the same memory order, the same values
    assert nhwc.stride() == (100, 1, 100, 100)
    # A (n, 100, 1, 1) latent drawn NCHW is contiguous in both formats and read as NCHW.
    assert plain.is_contiguous(memory_format=torch.channels_last)
    assert _conv_transpose_backend_format(plain, nchw_weight) == torch.contiguous_format
    assert _conv_transpose_backend_format(nhwc, nchw_weight) == torch.channels_last
    # Latents with spatial extent: the same distribution, NHWC strides; others untouched.
    wide = draw_latents(2, (8, 2, 3), torch.Generator(), cpu, torch.channels_last)
    assert wide.shape == (2, 8, 2, 3) and wide.stride() == (48, 1, 24, 8)
    flat = draw_latents(2, (100,), torch.Generator(), cpu, torch.channels_last)
    assert flat.shape == (2, 100) and flat.is_contiguous()


def test_a_channels_last_step_hands_the_generator_channels_last_latents():
    torch.manual_seed(0)
    loss = get_loss("non-saturating")
    pair = build_pair("dcgan32", channels=1)
    pair.generator.to(memory_format=torch.channels_last)
    pair.discriminator.to(memory_format=torch.channels_last)
    step = step_for(
        pair,
        loss,
        make_policy("fp32", "cpu"),
        torch.Generator().manual_seed(0),
        memory_format="channels_last",
    )
    seen = []
    pair.generator.register_forward_pre_hook(lambda _module, args: seen.append(args[0].stride()))
    real = (torch.rand((4, *pair.image_shape)) * 2 - 1).contiguous(
        memory_format=torch.channels_last
    )
    step([real])
    assert seen == [(100, 1, 100, 100)]


def test_wgan_gp_critic_step_runs_the_penalty():
    step, pair, real = make_step(loss_name="wgan-gp")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in pair.discriminator.modules())
    d_loss, _ = step([real] * 5)
    assert torch.isfinite(d_loss)


def test_real_and_fake_keep_separate_batchnorm_statistics():
    """D sees the real and the fake batch as two BatchNorm batches, never one mixed batch."""
    loss = get_loss("non-saturating")
    pair = build_pair("dcgan32", channels=1)
    reference = copy.deepcopy(pair.discriminator)
    mixed = copy.deepcopy(pair.discriminator)
    objective = DiscriminatorObjective(pair.discriminator, loss, make_policy("fp32", "cpu"))
    real = torch.rand(4, 1, 32, 32) * 2 - 1
    fake = torch.rand(4, 1, 32, 32) * 2 - 1
    objective(real, fake)
    reference(real)
    reference(fake)
    mixed(torch.cat([real, fake]))
    got = [b for b in pair.discriminator.buffers() if b.is_floating_point()]
    want = [b for b in reference.buffers() if b.is_floating_point()]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    # A mixed real+fake batch would give other statistics: the check above can fail.
    first_mixed = next(b for b in mixed.buffers() if b.is_floating_point())
    assert not torch.allclose(got[0], first_mixed)


@pytest.mark.parametrize(
    ("model", "loss_name"),
    [("mlp", "non-saturating"), ("mlp", "minimax"), ("mlp", "hinge"), ("dcgan32", "wgan-gp")],
)
def test_a_joint_real_and_fake_forward_gives_the_same_loss_and_gradients(model, loss_name):
    """joint-d: with no layer coupling the samples, one D forward over both batches is two
    forwards over each, up to the order of floating-point sums in the matrix products."""
    loss = get_loss(loss_name)
    torch.manual_seed(0)
    pair = build_pair(model, channels=1, critic=loss.needs_critic)
    real = torch.rand((6, *pair.image_shape), dtype=torch.float64) * 2 - 1
    fake = torch.rand((6, *pair.image_shape), dtype=torch.float64) * 2 - 1
    results = []
    for joint in (False, True):
        d = copy.deepcopy(pair.discriminator).double()
        objective = DiscriminatorObjective(d, loss, make_policy("fp32", "cpu"), joint=joint)
        torch.manual_seed(1)  # the gradient penalty's interpolation weights
        value = objective(real, fake)
        value.backward()
        results.append((value.detach(), [p.grad for p in d.parameters()]))
    (separate, separate_grads), (joint, joint_grads) = results
    torch.testing.assert_close(joint, separate, rtol=1e-12, atol=1e-12)
    for j, s in zip(joint_grads, separate_grads, strict=True):
        torch.testing.assert_close(j, s, rtol=1e-10, atol=1e-12)


def test_a_joint_forward_is_refused_for_a_discriminator_with_batchnorm():
    pair = build_pair("dcgan32", channels=1)
    with pytest.raises(ValueError, match="batch statistics: main.down1.bn, main.down2.bn"):
        DiscriminatorObjective(
            pair.discriminator, get_loss("non-saturating"), make_policy("fp32", "cpu"), joint=True
        )


def test_fp16_gradient_penalty_neither_overflows_nor_skips_a_step():
    """fp16 starts GradScaler at 2**16, which is inf in fp16: the critic's gradient penalty
    must stay finite there (no update skipped, the scale untouched), every iteration."""
    torch.manual_seed(0)
    pair = build_pair("dcgan32", channels=1, critic=True)
    step = step_for(
        pair,
        get_loss("wgan-gp"),
        make_policy("fp16", "cpu"),  # CPU autocast casts as CUDA's does
        torch.Generator().manual_seed(0),
        optimizer="fused",  # what fp16 uses under a CUDA graph
    )
    for _ in range(3):
        d_loss, g_loss = step([torch.rand((8, *pair.image_shape)) * 2 - 1])  # n_critic 1
        assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert step.d_scaler.get_scale() == 2.0**16


def test_compiled_wgan_gp_trains_as_eager(monkeypatch):
    """torch.compile cannot differentiate twice through AOTAutograd, which the gradient
    penalty needs: the penalty stays eager and the compiled step trains as the eager one.
    (aot_eager: the same AOTAutograd path as inductor, without inductor's compile time.)"""
    compile_ = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda module, mode=None: compile_(module, backend="aot_eager")
    )
    torch._dynamo.reset()
    results = []
    for compile_mode in ("none", "default"):
        torch.manual_seed(0)
        pair = build_pair(
            "mlp", channels=1, critic=True, widths={"g_hidden": (32, 64), "d_hidden": (64, 32)}
        )
        step = step_for(
            pair,
            get_loss("wgan-gp"),
            make_policy("fp32", "cpu"),
            torch.Generator().manual_seed(0),
            compile_mode=compile_mode,
        )
        data = torch.Generator().manual_seed(1)
        losses = [
            torch.stack(step([torch.rand((4, *pair.image_shape), generator=data) for _ in "ab"]))
            for _ in range(2)
        ]
        results.append((torch.stack(losses), [p.detach() for p in pair.discriminator.parameters()]))
    (eager_losses, eager_params), (compiled_losses, compiled_params) = results
    torch.testing.assert_close(compiled_losses, eager_losses)
    for got, want in zip(compiled_params, eager_params, strict=True):
        torch.testing.assert_close(got, want)


@pytest.mark.gpu
def test_compiled_generator_with_fused_kernels_has_eager_gradients_in_bf16():
    """DCGAN-32's generator with the fused kernels, under bf16 autocast, compiled by
    inductor: the same output and finite gradients close to eager's. (On a CPU, through
    Triton's interpreter, these gradients come back NaN, which is why the harness refuses
    the fused kernels in bf16 there: bench/config.py.)"""
    import kernels

    torch.manual_seed(0)
    generator = build_pair("dcgan32", channels=3).generator
    kernels.fuse_batchnorm_leaky_relu(generator)
    generator.cuda()
    z = torch.randn((16, 100, 1, 1), device="cuda")
    dy = torch.randn((16, 3, 32, 32), device="cuda")

    def gradients(module, params):
        for p in params:
            p.grad = None
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = module(z)
        y.backward(dy.to(y.dtype))
        return y.float(), [p.grad.clone() for p in params]

    eager = copy.deepcopy(generator)
    want_y, want = gradients(eager, list(eager.parameters()))
    torch._dynamo.reset()
    got_y, got = gradients(torch.compile(generator), list(generator.parameters()))
    torch.testing.assert_close(got_y, want_y, rtol=2e-2, atol=2e-2)
    # Compared as whole tensors: inductor rounds to bf16 at other places than eager, so a
    # few elements of a large weight gradient differ by a bf16 step (an H100 run: 350 of
    # 409,600 beyond 5e-2 each, at magnitudes where one step is 0.125); a wrong gradient
    # is off by its own size.
    for g, w in zip(got, want, strict=True):
        assert torch.isfinite(g).all()
        relative_error = (g - w).norm() / w.norm().clamp_min(1e-12)
        assert relative_error <= 3e-2, (tuple(g.shape), float(relative_error))


class _CountOps(TorchDispatchMode):
    """Counts the ATen operations dispatched: each is at least one kernel launch on a GPU."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def test_an_eager_iteration_issues_no_more_operations_than_a_plain_training_loop():
    """Where the host bounds an eager iteration (DCGAN-64 at batch 128 on an H100), its time
    is the operations it dispatches: the harness's iteration must not add to those of the
    PyTorch DCGAN example's loop (BCE with logits, D's real and fake losses backpropagated
    apart; the same models and Adam)."""
    step, _, real = make_step("dcgan64", batch=2)
    step([real])  # Adam's state is created at its first step
    with _CountOps() as harness:
        step([real])

    torch.manual_seed(0)
    pair = build_pair("dcgan64", channels=1)
    g, d = pair.generator, pair.discriminator
    g_opt = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def plain_iteration():
        d.zero_grad()
        out = d(real).view(-1)
        bce(out, torch.ones_like(out)).backward()
        fake = g(torch.randn(real.shape[0], *pair.latent_shape))
        out = d(fake.detach()).view(-1)
        bce(out, torch.zeros_like(out)).backward()
        d_opt.step()
        g.zero_grad()
        out = d(fake).view(-1)
        bce(out, torch.ones_like(out)).backward()
        g_opt.step()

    plain_iteration()
    with _CountOps() as plain:
        plain_iteration()
    assert 300 < harness.count <= plain.count, (harness.count, plain.count)
