"""The narrow convolutions against eager float64 convolutions: outputs and every gradient,
over strides, paddings, kernel sizes, channel counts, layouts, bias and the fused
activation; their modules, the swap, autocast, torch.compile and CUDA graphs.

On the CPU the kernels run through Triton's interpreter (tests/conftest.py), in fp32 and
fp16 (the interpreter has no bfloat16); bf16 and the compiled paths run on a GPU.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kernels import (
    KernelUnavailableError,
    NarrowConv2d,
    NarrowConvTranspose2d,
    narrow_conv2d,
    narrow_conv_transpose2d,
    swap_narrow_convolutions,
)
from kernels.narrow_conv.plan import MAX_NARROW_CHANNELS, NarrowTuning, narrow_tuned

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.float16] + ([torch.bfloat16] if DEVICE == "cuda" else [])
# (output atol, rtol), (gradient atol, rtol) against float64 eager, relative to the
# largest magnitude of the reference (sums of up to a few thousand products).
TOLERANCES = {
    torch.float32: (1e-5, 1e-4),
    torch.float16: (2e-3, 4e-3),
    torch.bfloat16: (1.6e-2, 3e-2),
}


@pytest.fixture(autouse=True)
def _no_tf32():
    """fp32 is compared at fp32 tolerances: no TF32, neither here nor in eager's cuDNN."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


def _close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str) -> None:
    scale = expected.abs().max().item() or 1.0
    error = (actual.double() - expected).abs().max().item()
    assert error <= tol * scale, f"{what}: max error {error:.3g} > {tol:g} x {scale:.3g}"


def _leaves(*tensors, dtype=torch.float64, memory_format=torch.contiguous_format):
    """Leaf copies on DEVICE in dtype; 4-D ones (input, weight) in memory_format."""
    leaves = []
    for t in tensors:
        if t is not None:
            t = t.detach().to(DEVICE, dtype, copy=True)
            if t.dim() == 4:
                t = t.contiguous(memory_format=memory_format)
            t.requires_grad_()
        leaves.append(t)
    return leaves


def _check(fn, reference, inputs, dtype, memory_format, grad_seed=0):
    """Forward and backward of fn on `inputs` in dtype against reference in float64."""
    out_tol, grad_tol = TOLERANCES[dtype]
    # The reference sees the same (rounded) inputs: a LeakyReLU's mask then differs only
    # where the pre-activation is within an fp32 accumulation's rounding of 0.
    inputs = [None if t is None else t.to(dtype).double() for t in inputs]
    ref_in = _leaves(*inputs)
    got_in = _leaves(*inputs, dtype=dtype, memory_format=memory_format)
    expected = reference(*ref_in)
    actual = fn(*got_in)
    assert actual.dtype == dtype and actual.shape == expected.shape
    _close(actual, expected, out_tol, "output")
    gen = torch.Generator().manual_seed(grad_seed)
    grad = torch.randn(expected.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    expected.backward(grad)
    actual.backward(grad.to(dtype).to(memory_format=memory_format))
    for name, r, g in zip(("input", "weight", "bias"), ref_in, got_in, strict=False):
        if r is not None:
            assert g.grad.dtype == dtype and g.grad.shape == r.shape, name
            _close(g.grad, r.grad, grad_tol, f"d{name}")
    return actual


def _tensors(x_shape, w_shape, bias_size, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, generator=gen, dtype=torch.float64)
    w = torch.randn(w_shape, generator=gen, dtype=torch.float64) * 0.2
    b = None if bias_size is None else torch.randn(bias_size, generator=gen, dtype=torch.float64)
    return x, w, b


# (case, x shape, out channels, kernel, stride, padding): image layers and the corners
# of the index arithmetic (odd sizes, a stride that does not divide the kernel, padding
# wider than a stride, one channel, 1x1 kernels).
CONV_CASES = [
    ("dcgan-first", (2, 3, 16, 16), 64, 4, 2, 1),
    ("padded-8", (2, 8, 8, 8), 32, 4, 2, 1),
    ("gray-odd", (3, 1, 9, 7), 16, 3, 2, 1),
    ("stride3-k5", (2, 3, 11, 10), 8, 5, 3, 2),
    ("1x1", (2, 4, 5, 5), 24, 1, 1, 0),
    ("k3-same", (1, 2, 6, 6), 40, 3, 1, 1),
]


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
@pytest.mark.parametrize("slope", [None, 0.0, 0.2])
def test_conv2d_matches_eager(case, slope, memory_format):
    _, x_shape, co, k, s, p = case
    inputs = _tensors(x_shape, (co, x_shape[1], k, k), co if slope != 0.0 else None)

    def reference(x, w, b):
        y = F.conv2d(x, w, b, s, p)
        return y if slope is None else F.leaky_relu(y, slope)

    y = _check(
        lambda x, w, b: narrow_conv2d(x, w, b, s, p, slope),
        reference, inputs, torch.float32, memory_format,
    )  # fmt: skip
    if x_shape[1] > 1:  # one channel: both layouts are the same memory, and ATen says NCHW
        assert y.is_contiguous(memory_format=memory_format)


# (case, x shape, out channels, kernel, stride, padding, output padding)
TRANSPOSE_CASES = [
    ("dcgan-last", (2, 64, 8, 8), 3, 4, 2, 1, 0),
    ("gray", (2, 32, 5, 7), 1, 4, 2, 1, 0),
    ("output-padding", (2, 16, 5, 5), 4, 3, 2, 1, 1),
    ("stride3-k5", (1, 24, 4, 3), 8, 5, 3, 2, 2),
    ("stride1-k3", (2, 20, 6, 6), 3, 3, 1, 1, 0),
    ("k2-s2", (2, 16, 4, 4), 2, 2, 2, 0, 0),
]


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=[c[0] for c in TRANSPOSE_CASES])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose2d_matches_eager(case, bias, memory_format):
    _, x_shape, co, k, s, p, op = case
    inputs = _tensors(x_shape, (x_shape[1], co, k, k), co if bias else None)
    y = _check(
        lambda x, w, b: narrow_conv_transpose2d(x, w, b, s, p, op),
        lambda x, w, b: F.conv_transpose2d(x, w, b, s, p, op),
        inputs, torch.float32, memory_format,
    )  # fmt: skip
    assert y.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("dtype", DTYPES)
def test_low_precision_image_layers(dtype):
    """Both DCGAN image layers in each dtype, channels_last, batch large enough that the
    weight gradient sums over several programs' partial rows."""
    x, w, b = _tensors((8, 3, 32, 32), (64, 3, 4, 4), None, seed=1)
    _check(lambda x, w, b: narrow_conv2d(x, w, None, 2, 1, 0.2),
           lambda x, w, b: F.leaky_relu(F.conv2d(x, w, None, 2, 1), 0.2),
           (x, w, b), dtype, torch.channels_last)  # fmt: skip
    x, w, b = _tensors((8, 64, 16, 16), (64, 3, 4, 4), None, seed=2)
    _check(lambda x, w, b: narrow_conv_transpose2d(x, w, None, 2, 1),
           lambda x, w, b: F.conv_transpose2d(x, w, None, 2, 1),
           (x, w, b), dtype, torch.channels_last)  # fmt: skip


def test_small_tiles_split_the_work_over_many_programs():
    """The defaults under the interpreter are tiles as large as these layers; small ones
    give many programs per stride phase, several channel chunks per tap and a weight
    gradient summed from several partial rows: the indexing across programs."""
    tiny = NarrowTuning(block_m=32, wide_block_k=16, wgrad_block_m=32, num_warps=4)
    with narrow_tuned(tiny):
        x, w, b = _tensors((1, 3, 12, 12), (64, 3, 4, 4), None, seed=3)
        _check(lambda x, w, b: narrow_conv2d(x, w, None, 2, 1, 0.2),
               lambda x, w, b: F.leaky_relu(F.conv2d(x, w, None, 2, 1), 0.2),
               (x, w, b), torch.float32, torch.channels_last)  # fmt: skip
        x, w, b = _tensors((1, 64, 6, 6), (64, 3, 4, 4), 3, seed=4)
        _check(lambda x, w, b: narrow_conv_transpose2d(x, w, b, 2, 1),
               lambda x, w, b: F.conv_transpose2d(x, w, b, 2, 1),
               (x, w, b), torch.float32, torch.channels_last)  # fmt: skip


def test_the_weight_gradient_is_deterministic_and_channels_last():
    """Bit for bit from run to run; laid out as a channels_last weight, so that autograd
    stores it without a copy."""
    x, w, _ = _tensors((4, 3, 16, 16), (32, 3, 4, 4), None)
    grads = []
    for _ in range(2):
        weight = w.float().to(DEVICE, memory_format=torch.channels_last).requires_grad_()
        narrow_conv2d(x.float().to(DEVICE), weight, None, 2, 1, 0.2).sum().backward()
        grads.append(weight.grad)
    assert torch.equal(grads[0], grads[1])
    assert grads[0].is_contiguous(memory_format=torch.channels_last)


class _Counting:
    """A kernel whose launches are written down."""

    def __init__(self, kernel, name: str, launched: list):
        self.kernel, self.name, self.launched = kernel, name, launched

    def __getitem__(self, grid):
        self.launched.append(self.name)
        return self.kernel[grid]


@pytest.mark.parametrize(("x_grad", "w_grad"), [(False, True), (True, False)])
def test_only_the_gradients_asked_for_are_computed(x_grad, w_grad, monkeypatch):
    import kernels.narrow_conv.ops as module

    launched: list[str] = []
    for name in ("conv2d_kernel", "conv_transpose2d_kernel", "conv2d_weight_grad_kernel"):
        monkeypatch.setattr(module, name, _Counting(getattr(module, name), name, launched))
    x, w, _ = _tensors((2, 3, 8, 8), (16, 3, 4, 4), None)
    x = x.float().to(DEVICE).requires_grad_(x_grad)
    w = w.float().to(DEVICE).requires_grad_(w_grad)
    narrow_conv2d(x, w, None, 2, 1, 0.2).sum().backward()
    backward = "conv_transpose2d_kernel" if x_grad else "conv2d_weight_grad_kernel"
    assert launched == ["conv2d_kernel", backward]


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: narrow_conv2d(torch.ones(2, 3, 8), torch.ones(4, 3, 3, 3)), ["4-D"]),
        (lambda: narrow_conv2d(torch.ones(2, 3, 8, 8), torch.ones(4, 2, 3, 3)), ["3 channels"]),
        (
            lambda: narrow_conv2d(torch.ones(2, 3, 8, 8), torch.ones(4, 3, 3, 3).double()),
            ["float16, bfloat16 or float32"],
        ),
        (
            lambda: narrow_conv2d(torch.ones(2, 3, 8, 8), torch.ones(4, 3, 3, 3).half()),
            ["same dtype"],
        ),
        (
            lambda: narrow_conv2d(torch.ones(2, 3, 8, 8), torch.ones(4, 3, 3, 3), None, 0),
            ["stride", ">= 1"],
        ),
        (
            lambda: narrow_conv2d(
                torch.ones(2, 3, 8, 8), torch.ones(4, 3, 3, 3), negative_slope=-0.1
            ),  # fmt: skip
            ["negative_slope", ">= 0"],
        ),
        (lambda: narrow_conv2d(torch.ones(2, 3, 2, 2), torch.ones(4, 3, 3, 3)), ["smaller"]),
        (
            lambda: narrow_conv2d(torch.ones(1, 65, 4, 4), torch.ones(4, 65, 1, 1)),
            ["65 channels", f"at most {MAX_NARROW_CHANNELS}"],
        ),
        (
            lambda: narrow_conv_transpose2d(
                torch.ones(1, 8, 4, 4), torch.ones(8, 3, 3, 3), stride=2, output_padding=2
            ),  # fmt: skip
            ["output_padding", "smaller than the stride"],
        ),
    ],
)
def test_bad_arguments_say_what_is_allowed(call, words):
    with pytest.raises(ValueError) as info:
        call()
    for word in words:
        assert word in str(info.value)


def test_no_interpreter_and_no_gpu_is_an_error_not_a_fallback(monkeypatch):
    from kernels import availability

    monkeypatch.setattr(availability, "INTERPRETED", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(KernelUnavailableError):
        narrow_conv2d(torch.ones(2, 3, 8, 8), torch.ones(4, 3, 3, 3))


# ---------------------------------------------------------------------------- modules


def _image_layers():
    """D's first layer and G's last, as the reference DCGAN builds them (Sequentials)."""
    torch.manual_seed(0)
    d = nn.Sequential(
        nn.Conv2d(3, 32, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(32, 8, 4, 2, 1, bias=False),  # wide: stays
    )
    g = nn.Sequential(
        nn.ConvTranspose2d(32, 24, 4, 2, 1, bias=False),  # wide: stays
        nn.ReLU(True),
        nn.ConvTranspose2d(24, 3, 4, 2, 1, bias=True),
        nn.Tanh(),
    )
    return d, g


def test_swap_replaces_the_image_layers_and_fuses_the_activation():
    d, g = _image_layers()
    d_ref, g_ref = copy.deepcopy(d), copy.deepcopy(g)
    weight = d[0].weight
    d_report, g_report = swap_narrow_convolutions(d), swap_narrow_convolutions(g)
    assert d_report.swapped == ["0+1"] and g_report.swapped == ["2"]
    assert type(d[0]) is NarrowConv2d and d[0].negative_slope == 0.2
    assert type(d[1]) is nn.Identity and type(d[2]) is nn.Conv2d
    assert type(g[2]) is NarrowConvTranspose2d and type(g[0]) is nn.ConvTranspose2d
    assert d[0].weight is weight  # shared, not copied: optimizers built before still apply
    assert d.state_dict().keys() == d_ref.state_dict().keys()
    for model, ref, shape in ((d, d_ref, (2, 3, 16, 16)), (g, g_ref, (2, 32, 4, 4))):
        model.to(DEVICE), ref.to(DEVICE)
        x = torch.randn(shape, device=DEVICE)
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-4)
        model(x).square().mean().backward()
        ref(x).square().mean().backward()
        grads = dict(model.named_parameters())
        for name, p in ref.named_parameters():
            torch.testing.assert_close(grads[name].grad, p.grad, atol=1e-5, rtol=1e-4)
    # Checkpoints move both ways.
    d_ref.load_state_dict(d.state_dict())
    d.load_state_dict(d_ref.state_dict())


def test_swap_skips_what_the_kernels_do_not_take():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, dilation=2),
        nn.Conv2d(8, 8, 3, groups=2),
        nn.Conv2d(8, 8, 3, padding="same"),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(32, 8, 3),  # wide input: not narrow
        nn.LeakyReLU(-0.1),  # a negative slope is not fused
    )
    report = swap_narrow_convolutions(model)
    assert report.swapped == []
    assert [why.split("=")[0] for _, why in report.skipped] == [
        "dilation", "groups", "padding", "padding_mode",
    ]  # fmt: skip
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.LeakyReLU(-0.1))
    assert swap_narrow_convolutions(model).swapped == ["0"]
    assert type(model[1]) is nn.LeakyReLU
    with pytest.raises(ValueError, match="max_channels"):
        swap_narrow_convolutions(model, max_channels=MAX_NARROW_CHANNELS + 1)


def test_transposed_module_refuses_output_size():
    layer = NarrowConvTranspose2d(8, 3, 4, 2, 1).to(DEVICE)
    with pytest.raises(ValueError, match="output_padding"):
        layer(torch.ones(1, 8, 4, 4, device=DEVICE), output_size=(8, 8))


def test_autocast_casts_as_it_does_for_a_convolution():
    """Under fp16 autocast (the interpreter's low precision): fp32 parameters and input,
    an fp16 output within fp16 rounding of the eager convolution's, fp32 gradients."""
    d, _ = _image_layers()
    ref = copy.deepcopy(d).to(DEVICE)
    swap_narrow_convolutions(d)
    d.to(DEVICE)
    x = torch.randn(2, 3, 16, 16, device=DEVICE)
    with torch.autocast(DEVICE, dtype=torch.float16):
        y, y_ref = d(x), ref(x)
    assert y.dtype == torch.float16 == y_ref.dtype
    torch.testing.assert_close(y, y_ref, atol=2e-3, rtol=4e-3)
    y.float().sum().backward()
    assert d[0].weight.grad.dtype == torch.float32


# ----------------------------------------------------------------- compile, CUDA graphs


def _compile_model():
    d, g = _image_layers()
    model = nn.Sequential(g, d)  # G's image layer feeds D's
    swap_narrow_convolutions(model)
    return model.to(DEVICE, memory_format=torch.channels_last)


def _train(model, steps=2):
    gen = torch.Generator().manual_seed(3)
    out = []
    for _ in range(steps):
        x = torch.randn((2, 32, 4, 4), generator=gen).to(DEVICE, memory_format=torch.channels_last)
        y = model(x)
        y.square().mean().backward()
        out.append(y.detach())
    return out


def _same_training(eager, compiled, fn):
    for a, b in zip(_train(eager), _train(fn), strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    grads = dict(compiled.named_parameters())
    for name, p in eager.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_compile_fullgraph_aot_eager():
    eager = _compile_model()
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    _same_training(eager, compiled, torch.compile(compiled, backend="aot_eager", fullgraph=True))


@pytest.mark.gpu
def test_compile_fullgraph_inductor():
    eager = _compile_model()
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    _same_training(eager, compiled, torch.compile(compiled, fullgraph=True))


@pytest.mark.gpu
def test_a_cuda_graph_replays_forward_and_backward():
    model = _compile_model()
    static_x = torch.randn(2, 32, 4, 4, device="cuda").to(memory_format=torch.channels_last)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph (Triton compiles here)
        for _ in range(2):
            model.zero_grad(set_to_none=False)
            model(static_x).square().mean().backward()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    model.zero_grad(set_to_none=False)
    with torch.cuda.graph(graph):
        static_y = model(static_x)
        static_y.square().mean().backward()
    new_x = torch.randn_like(static_x)
    static_x.copy_(new_x)
    model.zero_grad(set_to_none=False)
    graph.replay()
    eager = copy.deepcopy(model)
    eager.zero_grad(set_to_none=True)
    expected = eager(new_x)
    expected.square().mean().backward()
    torch.testing.assert_close(static_y, expected, atol=1e-5, rtol=1e-5)
    grads = dict(model.named_parameters())
    for name, p in eager.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)
