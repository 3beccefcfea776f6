"""Whole-iteration CUDA graphs: scheduling, static buffers, and (on a GPU) the real capture.

On a CPU a stand-in backend plays the graph: capture records the iteration without
keeping its effects, and replay runs it again on whatever the static buffers hold. That is
what a CUDA graph does with the kernels it recorded, so a step that read anything but its
static buffers, or returned anything but its static outputs, trains differently from eager
here as it would on a GPU.
"""

from __future__ import annotations

import contextlib
import copy
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.config import RunConfig
from bench.runtime.harness import execute
from bench.speedups import apply
from bench.speedups.cuda_graph import (
    CAPTURE_ADAM,
    CudaGraphBackend,
    GraphedStep,
    check_nccl_for_capture,
    eager_iterations_before_capture,
    prepare_distributed_capture,
    required_warmup_steps,
)
from bench.training.precision import make_policy
from bench.training.step import DiscriminatorObjective, make_optimizers, make_step
from gan_models import build_pair, get_loss
from gan_steps import built, run_fields


class ReplayingBackend:
    """CPU stand-in for CudaGraphBackend (see the module docstring). The state a capture
    must leave untouched is that of the step being captured: `fn` is a GraphedStep's bound
    method, and its GANStep holds the models, optimizers and latent generator."""

    def __init__(self, device=None):
        self.captures = 0
        self.stream = None  # DDP is built on the default stream

    def side_stream(self):
        return contextlib.nullcontext()

    @staticmethod
    def _state(fn):
        step = fn.__self__.step
        return [step.generator, step.discriminator], [step.g_optimizer, step.d_optimizer]

    def _snapshot(self, fn, generators):
        modules, optimizers = self._state(fn)
        return (
            [copy.deepcopy(m.state_dict()) for m in modules],
            [copy.deepcopy(o.state_dict()) for o in optimizers],
            [g.get_state() for g in generators],
            torch.get_rng_state(),
        )

    def _restore(self, fn, generators, snapshot):
        modules, optimizers = self._state(fn)
        module_states, optimizer_states, generator_states, global_rng = snapshot
        for module, state in zip(modules, module_states, strict=True):
            module.load_state_dict(state)
        for optimizer, state in zip(optimizers, optimizer_states, strict=True):
            optimizer.load_state_dict(state)
        for generator, state in zip(generators, generator_states, strict=True):
            generator.set_state(state)
        torch.set_rng_state(global_rng)

    def capture(self, fn, generators):
        self.captures += 1
        snapshot = self._snapshot(fn, generators)
        outputs = fn()  # recorded, not kept: a capture runs nothing
        self._restore(fn, generators, snapshot)

        def replay():
            for static, fresh in zip(outputs, fn(), strict=True):
                static.copy_(fresh)

        return replay, outputs


def _step(model, loss_name, seed, device="cpu", precision="fp32", optimizer="default", joint=False):
    torch.manual_seed(seed)
    loss = get_loss(loss_name)
    pair = build_pair(model, channels=1, critic=loss.needs_critic)
    pair.generator.to(device)
    pair.discriminator.to(device)
    rng = torch.Generator(device=device).manual_seed(seed)
    policy = make_policy(precision, device, autocast_cache=False)
    # A plain step (no speed-up's pipeline): the graph tests wrap it themselves.
    step = make_step(
        pair.generator,
        pair.discriminator,
        loss=loss,
        policy=policy,
        latent_shape=pair.latent_shape,
        latent_rng=rng,
        lr=2e-4,
        betas=(0.5, 0.999),
        d_objective=DiscriminatorObjective(pair.discriminator, loss, policy, joint),
        adam=optimizer,
    )
    return step, pair, rng


def _batches(pair, n_iterations, n_critic, device="cpu"):
    gen = torch.Generator().manual_seed(123)
    return [
        [
            (torch.rand((4, *pair.image_shape), generator=gen) * 2 - 1).to(device)
            for _ in range(n_critic)
        ]
        for _ in range(n_iterations)
    ]


def _params(pair):
    return [
        p.detach().clone() for m in (pair.generator, pair.discriminator) for p in m.parameters()
    ]


@pytest.mark.parametrize(
    ("model", "loss_name", "n_critic"),
    [("dcgan32", "non-saturating", 1), ("mlp", "wgan-gp", 2)],
)
def test_graphed_training_equals_eager_training(model, loss_name, n_critic):
    eager, eager_pair, _ = _step(model, loss_name, seed=1)
    plain, pair, rng = _step(model, loss_name, seed=1)
    backend = ReplayingBackend()
    graphed = GraphedStep(plain, backend, eager_iterations=2, generators=[rng])
    batches = _batches(pair, 6, n_critic)  # a different batch every iteration
    # The gradient penalty draws from torch's global generator: each side keeps its own.
    rng_states = {"eager": torch.get_rng_state(), "graphed": torch.get_rng_state()}

    def call(side, step, reals):
        torch.set_rng_state(rng_states[side])
        losses = torch.stack(step(reals))
        rng_states[side] = torch.get_rng_state()
        return losses

    for reals in batches:
        assert torch.equal(call("eager", eager, reals), call("graphed", graphed, reals))
    for a, b in zip(_params(eager_pair), _params(pair), strict=True):
        assert torch.equal(a, b)
    assert backend.captures == 1


def test_schedule_eager_then_capture_then_replays():
    plain, pair, rng = _step("mlp", "non-saturating", seed=0)
    backend = ReplayingBackend()
    graphed = GraphedStep(plain, backend, eager_iterations=3, generators=[rng])
    batches = _batches(pair, 6, 1)
    outputs = [graphed(reals) for reals in batches[:3]]
    assert not graphed.captured and graphed.replays == 0
    static = graphed(batches[3])
    assert graphed.captured and graphed.replays == 1  # the capturing call replays once
    again = graphed(batches[4])
    assert again is static  # replays hand back the graph's own output tensors
    assert all(o is not static for o in outputs)
    assert graphed.describe() == {
        "captured": True,
        "eager_iterations_before_capture": 3,
        "capture_s": graphed.capture_s,
        "replays": 2,
    }
    assert graphed.capture_s is not None and graphed.capture_s >= 0
    with pytest.raises(ValueError, match="captured for 1 real batches"):
        graphed(batches[5] * 2)


def test_static_buffers_keep_the_memory_format():
    plain, pair, rng = _step("dcgan32", "non-saturating", seed=0)
    backend = ReplayingBackend()
    graphed = GraphedStep(plain, backend, eager_iterations=0, generators=[rng])
    real = _batches(pair, 1, 1)[0][0].contiguous(memory_format=torch.channels_last)
    graphed([real])
    assert graphed._static_reals[0].is_contiguous(memory_format=torch.channels_last)


def test_the_harness_trains_through_a_graph_as_it_trains_eagerly(monkeypatch, tmp_path):
    # On CPU: the stand-in backend, and Adam's default implementation (capturable Adam
    # keeps its step on a CUDA device). The whole run must end with the parameters the
    # eager run ends with.
    monkeypatch.setattr("bench.speedups.cuda_graph.CudaGraphBackend", ReplayingBackend)
    monkeypatch.setattr("bench.speedups.cuda_graph.CAPTURE_ADAM", "default")
    records = {}
    for graph in (False, True):
        cfg = RunConfig(
            model="mlp",
            dataset="digits",
            quality=False,
            cuda_graph=graph,
            device="cpu",
            batch_size=8,
            steps=5,
            warmup_steps=4,
            quiet=True,
            out=str(tmp_path / "r.jsonl"),
        )
        records[graph] = execute(cfg, "cpu")
        assert records[graph]["status"] == "ok", records[graph]["reason"]
    graphed, eager = records[True], records[False]
    assert graphed["run"]["variant"] == "cuda-graph"
    assert graphed["run"]["cuda_graph"] == {
        "captured": True,
        "eager_iterations_before_capture": 3,
        "capture_s": graphed["run"]["cuda_graph"]["capture_s"],
        "replays": 6,  # warm-up iteration 4 (the capture) and the 5 timed ones
    }
    assert graphed["metrics"]["param_digests"] == eager["metrics"]["param_digests"]
    for name in ("loss_d_mean", "loss_g_mean", "loss_d_final", "loss_g_final"):
        assert graphed["metrics"][name] == eager["metrics"][name]


def test_a_cuda_graph_backend_needs_cuda():
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        CudaGraphBackend(torch.device("cpu"))


def test_warmup_needed_before_capture():
    assert eager_iterations_before_capture(1) == 3
    assert eager_iterations_before_capture(8) == 11  # the DDP rule of PyTorch's CUDA-graph notes
    assert required_warmup_steps(1) == 4 and required_warmup_steps(2) == 12
    assert eager_iterations_before_capture(1, critic_updates=9) == 3  # no DDP, no logging


@pytest.mark.parametrize(
    ("critic_updates", "eager"),
    [
        (1, 11),  # G and D forwards 12 captured
        (5, 11),  # D forwards 56-60
        (9, 12),  # 11 would capture D forwards 100-108: DDP records at 100, reads at 101
        (25, 13),  # 11: 276-300 (records at 300); 12: 301-325 (reads at 301)
        (51, 12),  # 11: 562-612; 12: 613-663
        (97, 33),
    ],
)
def test_ddp_capture_misses_ddp_timing_reads_and_records(critic_updates, eager):
    got = eager_iterations_before_capture(2, critic_updates)
    for forwards in (1, critic_updates):  # G's module, D's objective
        captured = range(got * forwards + 1, (got + 1) * forwards + 1)
        # forward f reads the timings of f - 1 when f - 1 is in 1..10 or a multiple of 100,
        # then records its own when f is in 1..10 or a multiple of 100
        assert all(f >= 12 and f % 100 not in (0, 1) for f in captured), (forwards, got)
    assert got == eager


@pytest.mark.parametrize("critic_updates", [50, 98, 99, 100])
def test_ddp_capture_is_refused_where_every_iteration_logs(critic_updates):
    # 50: each aligned window of 50 forwards holds a 100m or a 100m + 1; 98 or more: 98
    # forwards in a row always do
    with pytest.raises(ValueError, match=f"{critic_updates} critic updates"):
        eager_iterations_before_capture(2, critic_updates)


def test_distributed_capture_turns_nccl_async_error_handling_off(monkeypatch):
    for name in ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "NCCL_ASYNC_ERROR_HANDLING"):
        monkeypatch.setenv(name, "1")
    prepare_distributed_capture()
    import os

    assert os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "0"
    assert os.environ["NCCL_ASYNC_ERROR_HANDLING"] == "0"


@pytest.mark.parametrize(("version", "ok"), [((2, 9, 5), False), ((2, 9, 6), True), (2708, False)])
def test_nccl_version_check(monkeypatch, version, ok):
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: version)
    if ok:
        check_nccl_for_capture()
    else:
        with pytest.raises(RuntimeError, match="NCCL >= 2.9.6"):
            check_nccl_for_capture()


def test_optimizer_for_a_graph_keeps_its_step_on_the_device(monkeypatch):
    monkeypatch.setattr("bench.speedups.cuda_graph.CudaGraphBackend", ReplayingBackend)
    for graph, adam in ((False, "default"), (True, "fused")):
        with built(run_fields(model="mlp", precision="bf16", cuda_graph=graph)) as applied:
            assert applied.account()["optimizer"] == {"name": "adam", "implementation": adam}
    # Fused: two multi-tensor ops per group; under fp16 it takes GradScaler's scale and inf
    # flag as tensors (no host sync), with or without a graph.
    for precision, device, adam in (("fp16", "cuda", "fused"), ("bf16", "cuda", "default"),
                                    ("fp16", "cpu", "default")):  # fmt: skip
        build = SimpleNamespace(
            cfg=run_fields(precision=precision), ctx=SimpleNamespace(device=torch.device(device))
        )
        apply._default_adam(build)
        assert build.adam == adam


@pytest.mark.parametrize(("implementation", "capturable"), [
    ("default", False), ("fused", True),
])  # fmt: skip
def test_adam_lets_a_capture_record_its_step(implementation, capturable):
    """Before every step Adam refuses a capturing stream unless every param group is
    capturable (torch.optim.Optimizer's graph-capture health check): a graph's optimizers,
    fused ones too, are."""
    pair = build_pair("mlp", channels=1)
    optimizers = make_optimizers(
        pair.generator, pair.discriminator, lr=2e-4, betas=(0.5, 0.999),
        implementation=implementation,
    )  # fmt: skip
    for optimizer in optimizers:
        assert [group["capturable"] for group in optimizer.param_groups] == [capturable]
        assert bool(optimizer.param_groups[0]["fused"]) == (implementation == "fused")


# Ops after which, on CUDA, the host waits for the device: a value read back (`.item()`,
# `bool(t)`, `torch.equal`) or an output whose shape depends on the data. Inside a CUDA
# graph capture each is an error; in an eager loop each is a stall.
SYNCING_OPS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.equal.default,
    torch.ops.aten.nonzero.default,
    torch.ops.aten.masked_select.default,
}


class SyncWatch(TorchDispatchMode):
    """Records every op in SYNCING_OPS that runs under it (the op still runs)."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNCING_OPS:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


def test_sync_watch_sees_a_value_read_back():
    with SyncWatch() as watch:
        loss = torch.ones(3).sum()
        loss.item()
        bool(loss > 0)
    assert watch.seen == ["aten._local_scalar_dense.default"] * 2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(
    ("model", "loss_name", "n_critic"),
    [
        ("dcgan32", "non-saturating", 1),
        ("dcgan32", "minimax", 1),
        ("mlp", "hinge", 1),
        ("mlp", "wgan-gp", 5),
    ],
)
def test_a_training_iteration_reads_nothing_back(model, loss_name, n_critic, precision):
    """What the CUDA GPU tests check with sync debug mode, on a CPU: an iteration (latents,
    D and G updates, the gradient penalty, autocast) asks the device for no value. Fused
    Adam keeps its step count on the parameters' device, as the graph's optimizers do
    (Adam's default implementation counts on the host, a CPU-side `.item()` that CUDA
    would not wait for)."""
    step, pair, _ = _step(model, loss_name, seed=0, precision=precision, optimizer="fused")
    batches = _batches(pair, 2, n_critic)
    step(batches[0])  # optimizer state is created on the first step
    with SyncWatch() as watch:
        step(batches[1])
    assert watch.seen == []


# ------------------------------------------------------------------------------ on a GPU


def _graphed_on_cuda(model, loss_name, precision, optimizer, memory_format, seed=3, joint=False):
    plain, pair, rng = _step(model, loss_name, seed, "cuda", precision, optimizer, joint)
    pair.generator.to(memory_format=memory_format)
    pair.discriminator.to(memory_format=memory_format)
    backend = CudaGraphBackend(torch.device("cuda"))
    graphed = GraphedStep(plain, backend, eager_iterations=3, generators=[rng])
    return graphed, plain, pair, rng


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("model", "loss_name", "precision", "memory_format", "kernels", "joint"),
    [
        ("dcgan32", "non-saturating", "fp32", torch.contiguous_format, "torch", False),
        ("dcgan32", "non-saturating", "bf16", torch.channels_last, "triton", False),
        ("mlp", "non-saturating", "fp16", torch.contiguous_format, "torch", False),
        ("dcgan32", "wgan-gp", "bf16", torch.contiguous_format, "torch", False),
        ("mlp", "non-saturating", "bf16", torch.contiguous_format, "triton", True),
    ],
)
def test_capture_replays_train_without_host_syncs(
    model, loss_name, precision, memory_format, kernels, joint
):
    optimizer = CAPTURE_ADAM
    graphed, plain, pair, _ = _graphed_on_cuda(
        model, loss_name, precision, optimizer, memory_format, joint=joint
    )
    if kernels == "triton":
        import kernels as fused_kernels

        reports = [
            fused_kernels.fuse_batchnorm_leaky_relu(module)
            for module in (pair.generator, pair.discriminator)
        ]
        assert [r.count > 0 for r in reports] == [True, model != "mlp"]  # MLP D: no BatchNorm
        # Fusing replaced modules: the optimizers must see the same parameters, which the
        # fuse keeps (it moves the BatchNorm parameters into the fused module).
    n_critic = get_loss(loss_name).n_critic
    batches = _batches(pair, 8, n_critic, "cuda")
    batches = [[b.contiguous(memory_format=memory_format) for b in reals] for reals in batches]
    for reals in batches[:4]:  # 3 eager, then the capture
        graphed(reals)
    assert graphed.captured
    before = _params(pair)
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = [torch.stack(graphed(reals)).clone() for reals in batches[4:]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    losses = torch.stack(losses)
    assert torch.isfinite(losses).all()
    assert not torch.equal(losses[0], losses[1])  # new data and latents every replay
    assert any(not torch.equal(a, b) for a, b in zip(before, _params(pair), strict=True))


@pytest.mark.gpu
def test_graphed_training_matches_eager_on_cuda(monkeypatch):
    # Deterministic convolutions for this test only (monkeypatch restores the flags).
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    graphed, _, graphed_pair, graphed_rng = _graphed_on_cuda(
        "dcgan32", "non-saturating", "fp32", "fused", torch.contiguous_format
    )
    eager, eager_pair, eager_rng = _step("dcgan32", "non-saturating", 3, "cuda", "fp32", "fused")
    batches = _batches(graphed_pair, 9, 1, "cuda")
    for i, reals in enumerate(batches):
        if i == 4:  # right after the capture, both sides restart the same random streams
            for rng in (graphed_rng, eager_rng):
                rng.manual_seed(99)
            torch.cuda.manual_seed(7)
            graphed(reals)
            torch.cuda.manual_seed(7)
            eager(reals)
            continue
        graphed(reals)
        eager(reals)
    for a, b in zip(_params(graphed_pair), _params(eager_pair), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _harness_run_on_cuda(tmp_path, model: str, variant: str) -> dict:
    """A short bf16 run through the harness: 5 warm-up iterations, 5 timed; its record."""
    from bench.runtime.harness import execute

    cfg = RunConfig(
        model=model,
        variant=variant,
        precision="bf16",
        device="cuda",
        steps=5,
        warmup_steps=5,
        quiet=True,
        out=str(tmp_path / "r.jsonl"),
    )
    record = execute(cfg, "cuda")
    assert record["status"] == "ok", record["reason"]
    return record


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("model", "variant"),
    [
        ("dcgan32", "triton+channels-last+cuda-graph"),
        ("dcgan32", "triton+channels-last+pad-channels+batched-casts+cuda-graph"),
        ("dcgan32", "triton+channels-last+pad-channels+cudnn-exhaustive+cuda-graph"),
        ("dcgan32", "triton+triton-convs+channels-last+batched-casts+cuda-graph"),
        ("mlp", "triton+joint-d+batched-casts+cuda-graph"),
    ],
)
def test_harness_run_with_the_best_variant_records_the_graph(tmp_path, model, variant):
    torch_limit = torch.backends.cudnn.benchmark_limit
    record = _harness_run_on_cuda(tmp_path, model, variant)
    run = record["run"]
    # cudnn-exhaustive: every engine timed (0) in its run, torch's limit again after it
    assert run["cudnn_benchmark_limit"] == (0 if "cudnn-exhaustive" in variant else torch_limit)
    assert torch.backends.cudnn.benchmark_limit == torch_limit
    padded = run["image_channels_padded"]
    assert (padded and padded["to"]) == (8 if "pad-channels" in variant else None)  # bf16
    assert run["parameter_casts"]["batched"] == ("batched-casts" in variant)
    assert run["cuda_graph"] == {
        "captured": True,
        "eager_iterations_before_capture": 3,
        "capture_s": run["cuda_graph"]["capture_s"],
        "replays": 7,  # warm-up calls 4 and 5, then the 5 timed ones
    }
    assert run["memory_format"] == (
        "channels_last" if "channels-last" in variant else "no 4-D parameters"
    )
    assert run["kernel_path"] == "triton"
    narrow = run["narrow_convolutions"]
    assert (narrow and (narrow["path"], narrow["count"])) == (
        ("triton", 2) if "triton-convs" in variant else None
    )
    assert run["optimizer"]["implementation"] == "fused"
    assert run["precision"]["autocast_cache"] is False
    metrics = record["metrics"]
    assert metrics["mfu"] is not None
    # the capture's allocations, which the replays reuse, are in the training peak
    assert 0 < metrics["peak_allocated_mib"] <= metrics["peak_reserved_mib"]
    assert 0 < metrics["first_iteration_peak_allocated_mib"]


@pytest.mark.gpu
def test_compiled_code_is_captured_in_the_whole_iteration_graph(tmp_path):
    """compile+cuda-graph: torch.compile happens in the eager iterations, its kernels are
    then captured; replays train (an ok record: finite losses) without recompiling."""
    run = _harness_run_on_cuda(tmp_path, "mlp", "compile+cuda-graph")["run"]
    assert run["cuda_graph"]["captured"] is True and run["cuda_graph"]["replays"] == 7
    assert run["compile"]["recompiles"] == 0, run["compile"]["recompile_reasons"]
    assert run["compile"]["frames_compiled"] > 0


@pytest.mark.gpu
def test_compiled_channels_last_iteration_passes_inductors_stride_checks(tmp_path):
    """compile + channels-last: G's first weight gradient has the strides inductor predicts
    (bench/training/step.py draw_latents; it failed with NCHW-strided latents on an H100)."""
    run = _harness_run_on_cuda(tmp_path, "dcgan32", "compile+channels-last+cuda-graph")["run"]
    assert run["memory_format"] == "channels_last"
    assert run["cuda_graph"]["captured"] is True
    assert run["compile"]["recompiles"] == 0, run["compile"]["recompile_reasons"]
