"""The fork server one-process points start from, and when it is not used."""

from __future__ import annotations

import sys
import time

import pytest

from bench import sweep
from bench.sweep import (
    warm,
)
from sweep_specs import (
    one_point_spec,
    only_record,
    records,
)


def test_only_this_interpreters_bench_run_and_precompile_are_taken_over():
    run = [sys.executable, "-m", "bench.run", "--steps", "2"]
    assert warm.warm_entry(run) == ("bench.run", ["--steps", "2"])
    precompile = [sys.executable, "-m", "bench.precompile", "--model", "mlp"]
    assert warm.warm_entry(precompile) == ("bench.precompile", ["--model", "mlp"])
    assert warm.warm_entry([sys.executable, "-m", "torch.distributed.run", "x"]) is None
    assert warm.warm_entry(["/other/python", "-m", "bench.run"]) is None
    assert warm.warm_entry([sys.executable, "-c", "pass"]) is None
    assert warm.warm_entry([sys.executable, "-m"]) is None


def test_a_point_is_forked_from_the_server_and_its_record_says_so(tmp_path):
    spec = one_point_spec(tmp_path)
    assert sweep.execute(spec) == 0
    record = only_record(spec.out)
    assert record["status"] == "ok"
    assert record["run"]["process_start"] == "fork server"
    # counted from the fork: a fresh interpreter's imports alone take 2.5-4 s on a 2-core CPU
    assert record["run"]["phase_s"]["start-up"] < 1.5


def test_no_fork_server_starts_a_fresh_interpreter(tmp_path):
    spec = one_point_spec(tmp_path, fork_server=False)
    assert sweep.execute(spec) == 0
    record = only_record(spec.out)
    assert record["status"] == "ok" and record["run"]["process_start"] == "interpreter"


def test_a_forked_point_is_stopped_at_its_time_limit_like_any_child(tmp_path):
    spec = one_point_spec(tmp_path, steps=10**7, timeout_per_point=6.0)
    start = time.monotonic()
    assert sweep.execute(spec) == 1
    assert time.monotonic() - start < 45
    record = only_record(spec.out)
    assert record["status"] == "timeout"
    assert record["run"]["process_start"] == "fork server"  # the child's own record, kept
    assert "SIGTERM during timed" in record["reason"]


def test_a_server_that_loaded_the_cuda_driver_is_never_forked_from(tmp_path, monkeypatch, capsys):
    # every process maps the C library: stands for the driver a CUDA call would have loaded
    monkeypatch.setattr(warm.WarmStarter, "driver_pattern", r"/libc[.-]")
    starter = warm.WarmStarter()
    assert not starter.usable() and "initialised CUDA" in starter.reason
    spec = one_point_spec(tmp_path)
    assert sweep.execute(spec) == 0
    assert only_record(spec.out)["run"]["process_start"] == "interpreter"
    assert "fresh interpreters for every point (the fork server initialised CUDA" in (
        capsys.readouterr().err
    )


@pytest.mark.gpu
def test_a_forked_point_starts_cuda_itself_and_runs_on_the_gpu(tmp_path):
    spec = one_point_spec(tmp_path, device="cuda", precisions="bf16", variants="cuda-graph")
    assert sweep.execute(spec) == 0
    record = only_record(spec.out)
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["process_start"] == "fork server"
    assert record["run"]["cuda_graph"]["captured"] is True


def test_a_server_whose_first_forked_point_fails_where_a_fresh_one_runs_is_dropped(
    tmp_path, monkeypatch, capsys
):
    def broken_start(self, entry, stdout_path, stderr_path, env):  # a fork that cannot run
        process = self._context.Process(target=sys.exit, args=(1,))
        process.start()
        return warm._ForkedProcess(process)

    monkeypatch.setattr(warm.WarmStarter, "start", broken_start)
    spec = one_point_spec(tmp_path, batch_sizes="8,16")
    assert sweep.execute(spec) == 0
    assert [r["status"] for r in records(spec.out)] == ["ok", "ok"]
    assert [r["run"]["process_start"] for r in records(spec.out)] == ["interpreter"] * 2
    err = capsys.readouterr().err
    assert "fresh interpreters for every point (a point failed when forked (exit code 1" in err


def test_an_environment_changed_since_the_server_started_gets_a_fresh_interpreter(monkeypatch):
    starter = warm.WarmStarter()
    assert starter.usable()
    monkeypatch.setenv("GAN_BENCH_TEST_CHANGED", "1")  # what a server's imports could have read
    assert not starter.usable() and starter.reason is None
    monkeypatch.delenv("GAN_BENCH_TEST_CHANGED")
    assert starter.usable()
