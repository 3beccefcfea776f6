"""Speed-ups applied in one order, and the record's account of what ran: memory format,
optimizer, compile counters, profile."""

from __future__ import annotations

import gzip
import json
import logging
import os

import pytest
import torch

from bench.config import RunConfig
from bench.data import build_batch_source
from bench.runtime.harness import execute
from bench.speedups import SPEEDUPS, Stage, apply
from bench.speedups.channels_last import memory_format_of
from bench.telemetry.compile_watch import CUDAGRAPHS_LOGGER, CompileWatch
from bench.training.precision import make_policy
from gan_steps import built, run_fields


def test_channels_last_puts_every_convolution_weight_in_nhwc():
    with built(RunConfig(device="cpu", model="dcgan32", variant="channels-last")) as applied:
        account = applied.account()
        networks = (applied.generator, applied.discriminator)
    assert account["memory_format"] == "channels_last"
    for module in networks:
        for p in module.parameters():
            if p.dim() == 4 and p.shape[1] > 1:
                assert p.is_contiguous(memory_format=torch.channels_last)
                assert not p.is_contiguous()
    assert applied.graphed is None and account["cuda_graph"] is None
    assert account["optimizer"] == {"name": "adam", "implementation": "default"}


def test_the_stages_run_in_the_documented_order(monkeypatch):
    """Every hook of every speed-up a run turns on runs once, at its stage, stages in
    order; the account lists every speed-up's entries, on or off, once."""
    calls = []
    for speedup in SPEEDUPS.values():
        for stage, hook in list(speedup.hooks.items()):

            def noted(build, name=speedup.name, stage=stage, hook=hook):
                calls.append((stage, name))
                hook(build)

            monkeypatch.setitem(speedup.hooks, stage, noted)
    cfg = RunConfig(
        device="cpu", model="mlp", precision="bf16", variant="joint-d+batched-casts+compile"
    )
    with built(cfg) as applied:
        account = applied.account()
    assert calls == [
        (Stage.SETTINGS, "compile"),
        (Stage.WRAPPERS, "batched-casts"),
        (Stage.OBJECTIVE, "joint-d"),
        (Stage.COMPILE, "compile"),
    ]
    for speedup in SPEEDUPS.values():
        assert set(speedup.record_off) <= set(account)
    assert account["variant"] == "compile+joint-d+batched-casts"
    assert account["discriminator_batches"] == "joint"
    assert account["parameter_casts"]["batched"] is True
    assert account["compile_mode"] == "default" and "compile" in account


def test_process_preparation_runs_before_the_process_group(monkeypatch):
    monkeypatch.delenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", raising=False)
    apply.prepare_process(run_fields(model="mlp"))
    assert "TORCH_NCCL_ASYNC_ERROR_HANDLING" not in os.environ
    apply.prepare_process(run_fields(model="mlp", cuda_graph=True))
    assert os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "0"


def test_memory_format_of_says_what_the_weights_are():
    conv = torch.nn.Conv2d(3, 8, 4)
    assert memory_format_of(conv) == "contiguous"
    conv.to(memory_format=torch.channels_last)
    assert memory_format_of(conv) == "channels_last"
    other = torch.nn.Conv2d(8, 8, 3)
    assert memory_format_of(conv, other) == "mixed"
    assert memory_format_of(torch.nn.Linear(3, 4)) == "no 4-D parameters"


def test_channels_last_trains_like_contiguous():
    gen = torch.Generator().manual_seed(7)
    batches = [torch.rand((4, 3, 32, 32), generator=gen) * 2 - 1 for _ in range(3)]
    losses, params = {}, {}
    for variant in ("eager", "channels-last"):
        with built(RunConfig(device="cpu", model="dcgan32", variant=variant)) as applied:
            fmt = applied.memory_format
            losses[variant] = torch.stack(
                [torch.stack(applied.step([r.contiguous(memory_format=fmt)])) for r in batches]
            )
        params[variant] = [
            p.detach().clone()
            for module in (applied.generator, applied.discriminator)
            for p in module.parameters()
        ]
    # The first iteration: the same numbers up to the summation order of NHWC convolutions.
    torch.testing.assert_close(losses["eager"][0], losses["channels-last"][0], rtol=1e-4, atol=0)
    # Then Adam turns rounding into whole steps (lr 2e-4) where a gradient is near zero, and
    # a GAN amplifies them; measured over 4 seeds: losses within 5e-4, weights within 6e-4.
    torch.testing.assert_close(losses["eager"], losses["channels-last"], rtol=1e-2, atol=1e-3)
    for a, b in zip(params["eager"], params["channels-last"], strict=True):
        assert (a - b).abs().max() <= 1.5e-3


@pytest.mark.parametrize("dataset", ["synthetic", "digits"])
def test_batches_come_in_the_asked_memory_format(dataset):
    source = build_batch_source(
        dataset,
        data_dir=None,
        image_shape=(1 if dataset == "digits" else 3, 32, 32),
        batch_size=4,
        device=torch.device("cpu"),
        seed=0,
        memory_format=torch.channels_last,
    )
    for _ in range(2):
        batch = source.next_batch()
        assert batch.shape[0] == 4 and batch.is_contiguous(memory_format=torch.channels_last)
        if dataset == "synthetic":
            assert not batch.is_contiguous()


def test_autocast_cache_follows_the_policy():
    with make_policy("bf16", "cpu").autocast():
        assert torch.is_autocast_cache_enabled()
    policy = make_policy("bf16", "cpu", autocast_cache=False)
    assert policy.describe()["autocast_cache"] is False
    assert make_policy("fp32", "cpu").describe()["autocast_cache"] is None
    with policy.autocast():
        assert not torch.is_autocast_cache_enabled()


def test_compile_watch_counts_breaks_and_recompiles():
    watch = CompileWatch(makes_cuda_graphs=False)
    try:

        def f(x):
            y = x * 2
            print("", end="")  # a graph break
            return y + 1

        compiled = torch.compile(f, backend="eager")
        compiled(torch.ones(3))
        compiled(torch.ones(3, dtype=torch.float64))  # a dtype guard fails: a recompile
        counts = watch.counters()
    finally:
        watch.close()
    assert counts["graph_breaks"] >= 1 and counts["graph_break_reasons"]
    assert counts["recompiles"] >= 1 and counts["recompile_reasons"]
    assert counts["inductor_cudagraphs"] == "not used by this mode"


def test_compile_watch_counts_each_recompile_once():
    watch = CompileWatch(makes_cuda_graphs=False)
    try:
        compiled = torch.compile(lambda x: x * 2 + 1, backend="eager", dynamic=False)
        for dtype in (torch.float32, torch.float64, torch.int32, torch.int64):
            compiled(torch.ones(3, dtype=dtype))  # each new dtype fails every cached guard
        counts = watch.counters()
    finally:
        watch.close()
    # dynamo keeps 1 + 2 + 3 guard-failure reasons for these 3 recompiles
    assert counts["recompiles"] == 3
    compile_ids = [r.split(":")[0] for r in counts["recompile_reasons"]]  # "frame/compile"
    assert [i.split("/")[1] for i in compile_ids] == ["0", "1", "2"]


def test_compile_watch_hears_inductors_cudagraph_skips():
    watch = CompileWatch(makes_cuda_graphs=True)
    try:
        from torch._inductor.cudagraph_utils import log_cudagraph_skip_and_bump_counter

        log_cudagraph_skip_and_bump_counter("skipping cudagraphs due to mutated inputs")
        counts = watch.counters()
    finally:
        watch.close()
    assert counts["cudagraph_skips"] == 1
    assert counts["inductor_cudagraphs"] == "skipped"
    assert counts["cudagraph_skip_reasons"] == ["skipping cudagraphs due to mutated inputs"]
    assert not logging.getLogger(CUDAGRAPHS_LOGGER).handlers  # detached by close()


def test_a_profiled_run_records_where_the_time_goes(tmp_path):
    out = tmp_path / "r.jsonl"
    cfg = RunConfig(
        model="mlp",
        variant="eager",
        device="cpu",
        steps=3,
        warmup_steps=1,
        batch_size=8,
        profile_steps=2,
        quiet=True,
        out=str(out),
    )
    record = execute(cfg, "cpu")
    assert record["status"] == "ok", record["reason"]
    profile = record["profile"]
    assert profile["iterations"] == 2 and profile["top_ops"]
    assert profile["device_idle_fraction"] is None  # CPU: no device timeline
    trace = tmp_path / "profiles" / f"{record['run_id']}.json.gz"
    assert profile["trace_path"] == str(trace)
    json.loads(gzip.decompress(trace.read_bytes()))  # gzipped, as chrome://tracing opens it
    assert record["metrics"]["steps_timed"] == 3  # the profiled iterations are not timed
    assert record["run"]["memory_format"] == "no 4-D parameters"


@pytest.mark.skipif(not torch.backends.cudnn.is_available(), reason="a torch build without cuDNN")
def test_cudnn_autotuning_is_the_runs_own_and_restored(monkeypatch):
    """cudnn-exhaustive sets cuDNN's search limit for its run only: the flags are the
    process's, and runs in one process (tests) must not inherit each other's."""
    cudnn = torch.backends.cudnn
    monkeypatch.setattr(cudnn, "benchmark", False)
    before = cudnn.benchmark_limit
    cfg = RunConfig(model="dcgan32", variant="cudnn-exhaustive")
    with apply._cudnn_settings(cfg, torch.device("cuda")):
        assert (cudnn.benchmark, cudnn.benchmark_limit) == (True, 0)
    assert (cudnn.benchmark, cudnn.benchmark_limit) == (False, before)
    with apply._cudnn_settings(RunConfig(model="dcgan32"), torch.device("cuda")):
        assert (cudnn.benchmark, cudnn.benchmark_limit) == (True, before)  # torch's own
    with apply._cudnn_settings(cfg, torch.device("cpu")):  # nothing of cuDNN's runs
        assert (cudnn.benchmark, cudnn.benchmark_limit) == (False, before)
