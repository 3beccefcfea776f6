"""Warm starts (bench/sweep/warm.py): one-process sweep points forked from a server that has
done the imports, each still its own process, recorded as such, stopped like any child,
and never forked from a server that touched CUDA or read another environment."""

from __future__ import annotations

import sys
import tempfile
import time

import pytest

from bench import sweep
from bench.records import read_records
from bench.sweep import build_spec, warm


@pytest.fixture(autouse=True)
def _temp_in_tmp_path(tmp_path, monkeypatch):
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(work))


def one_point(tmp_path, **options):
    spec = dict(
        models="mlp",
        datasets="synthetic",
        batch_sizes="8",
        precisions="fp32",
        gpus="1",
        variants="eager",
        steps=2,
        warmup_steps=1,
        repeats=1,
        out=str(tmp_path / "sweep.jsonl"),
        device="cpu",
    )
    return build_spec(**{**spec, **options})


def only_record(spec) -> dict:
    (record,) = [record for _, record in read_records(spec.out)]
    return record


def test_only_this_interpreters_bench_run_is_taken_over():
    assert warm.bench_run_argv([sys.executable, "-m", "bench.run", "--steps", "2"]) == [
        "--steps",
        "2",
    ]
    assert warm.bench_run_argv([sys.executable, "-m", "torch.distributed.run", "x"]) is None
    assert warm.bench_run_argv(["/other/python", "-m", "bench.run"]) is None
    assert warm.bench_run_argv([sys.executable, "-c", "pass"]) is None


def test_a_point_is_forked_from_the_server_and_its_record_says_so(tmp_path):
    spec = one_point(tmp_path)
    assert sweep.execute(spec) == 0
    record = only_record(spec)
    assert record["status"] == "ok"
    assert record["run"]["process_start"] == "fork server"
    # counted from the fork: a fresh interpreter's imports alone take 2.5-4 s on a 2-core CPU
    assert record["run"]["phase_s"]["start-up"] < 1.5


def test_no_fork_server_starts_a_fresh_interpreter(tmp_path):
    spec = one_point(tmp_path, fork_server=False)
    assert sweep.execute(spec) == 0
    record = only_record(spec)
    assert record["status"] == "ok" and record["run"]["process_start"] == "interpreter"


def test_a_forked_point_is_stopped_at_its_time_limit_like_any_child(tmp_path):
    spec = one_point(tmp_path, steps=10**7, timeout_per_point=6.0)
    start = time.monotonic()
    assert sweep.execute(spec) == 1
    assert time.monotonic() - start < 45
    record = only_record(spec)
    assert record["status"] == "timeout"
    assert record["run"]["process_start"] == "fork server"  # the child's own record, kept
    assert "SIGTERM during timed" in record["reason"]


def test_a_server_that_loaded_the_cuda_driver_is_never_forked_from(tmp_path, monkeypatch, capsys):
    # every process maps the C library: stands for the driver a CUDA call would have loaded
    monkeypatch.setattr(warm.WarmStarter, "driver_pattern", r"/libc[.-]")
    starter = warm.WarmStarter()
    assert not starter.usable() and "initialised CUDA" in starter.reason
    spec = one_point(tmp_path)
    assert sweep.execute(spec) == 0
    assert only_record(spec)["run"]["process_start"] == "interpreter"
    assert "fresh interpreters for every point (the fork server initialised CUDA" in (
        capsys.readouterr().err
    )


def test_an_environment_changed_since_the_server_started_gets_a_fresh_interpreter(monkeypatch):
    starter = warm.WarmStarter()
    assert starter.usable()
    monkeypatch.setenv("GAN_BENCH_TEST_CHANGED", "1")  # what a server's imports could have read
    assert not starter.usable() and starter.reason is None
    monkeypatch.delenv("GAN_BENCH_TEST_CHANGED")
    assert starter.usable()
