"""torch.compile(fullgraph=True) over a model using the fused op: no graph break.

On the CPU the ``aot_eager`` backend runs dynamo and AOTAutograd (functionalisation of
the running-stat mutations, the autograd.Function's forward and backward graphs)
without inductor code generation; under the interpreter the op stays opaque there (its
kernels cannot be captured). On a GPU the default inductor backend also traces into
the triton_op and calls the kernels from the generated code.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from kernels import BatchNormLeakyReLU1d, BatchNormLeakyReLU2d

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        BatchNormLeakyReLU2d(8, negative_slope=0.2),
        nn.Conv2d(8, 4, 1),
        BatchNormLeakyReLU2d(4, momentum=None, negative_slope=0.0),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
        BatchNormLeakyReLU1d(5),
    ).to(DEVICE)


def _train_steps(model, steps=2):
    gen = torch.Generator().manual_seed(1)
    outs = []
    for _ in range(steps):
        x = torch.randn((4, 3, 6, 6), generator=gen).to(DEVICE)
        y = model(x)
        y.square().mean().backward()
        outs.append(y.detach())
    return outs


def _check_same(eager, compiled, eager_out, compiled_out):
    for a, b in zip(eager_out, compiled_out, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    grads = dict(compiled.named_parameters())
    for name, p in eager.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)
    state = compiled.state_dict()
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(state[key], value, atol=1e-6, rtol=1e-5, msg=key)


def test_compile_fullgraph_aot_eager():
    eager = _model()
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    fn = torch.compile(compiled, backend="aot_eager", fullgraph=True)
    _check_same(eager, compiled, _train_steps(eager), _train_steps(fn))
    assert int(compiled[3].num_batches_tracked) == 2
    # the compiled forward remembers its input as the eager one does
    assert compiled[1].last_path() == eager[1].last_path() == {"path": "one-kernel", "launches": 2}
    assert compiled[3].last_path() == {"path": "one-kernel", "launches": 3}


@pytest.mark.gpu
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_compile_fullgraph_inductor(memory_format):
    eager = _model().to(memory_format=memory_format)
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    fn = torch.compile(compiled, fullgraph=True)
    _check_same(eager, compiled, _train_steps(eager), _train_steps(fn))
