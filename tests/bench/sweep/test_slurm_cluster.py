"""Sweeps and runs through a real SLURM scheduler (`.ci/slurm-local start` makes a one-node
cluster): records gathered over world sizes 1 and 2 (gloo), resume, a job that fails, a
job over its time limit, Ctrl-C, after which no job is left in the queue, and
`gan-bench allreduce` as a job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from bench.sweep import slurm as slurm_sweep
from sweep_specs import records, run_cli

pytestmark = pytest.mark.slurm

FAST = ["--models", "mlp", "--datasets", "synthetic", "--batch-sizes", "8",
        "--precisions", "fp32", "--variants", "eager", "--steps", "3", "--warmup-steps", "1",
        "--repeats", "1", "--launcher", "slurm"]  # fmt: skip
LONG = ["--steps", "1000000"]  # runs until stopped


def _cluster_problem() -> str | None:
    if shutil.which("sbatch") is None:
        return "no sbatch on this machine (.ci/slurm-local start sets up a local cluster)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                              timeout=20)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as err:
        return f"sinfo did not answer: {err}"
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s.rstrip("*") in ("idle", "mix", "alloc") for s in states):
        return f"no SLURM node up (sinfo: {(proc.stdout + proc.stderr).strip()[:200]})"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster():
    problem = _cluster_problem()
    if problem:
        pytest.skip(problem)


def _queued(job_ids) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    return [job for job in out.split() if job in set(job_ids)]


def test_a_sweep_over_world_sizes_gathers_every_record_and_resumes(tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    assert run_cli("sweep", *FAST, "--gpus", "1,2", "--out", str(out)) == 0
    recs = records(out)
    assert sorted(r["run"]["world_size"] for r in recs) == [1, 2]
    for rec in recs:
        assert rec["status"] == "ok", rec.get("reason")
        assert rec["run"]["launcher"] == "slurm"
        job = rec["run"]["slurm"]
        assert job["job_id"].isdigit() and job["state"] == "COMPLETED"
        assert job["nodes"] == 1 and job["node_list"] and job["partition"]
        assert rec["metrics"]["images_per_s"] > 0
    two = next(r for r in recs if r["run"]["world_size"] == 2)
    assert two["run"]["backend"] == "gloo"
    printed = capsys.readouterr()
    assert "compare against eager" in printed.out and "scaling" in printed.out
    assert "as SLURM job" in printed.err
    # The same command again: every run is recorded, no job is submitted.
    assert run_cli("sweep", *FAST, "--gpus", "1,2", "--out", str(out)) == 0
    assert "2 already recorded" in capsys.readouterr().err
    assert len(records(out)) == 2


def test_a_job_that_fails_is_recorded_with_its_log(tmp_path, monkeypatch):
    real = slurm_sweep.node_command
    monkeypatch.setattr(
        slurm_sweep,
        "node_command",
        lambda module, args, shape: real("bench.no_such_module", args, shape),
    )
    out = tmp_path / "runs.jsonl"
    assert run_cli("sweep", *FAST, "--gpus", "1", "--out", str(out)) == 1
    (rec,) = records(out)
    assert rec["status"] == "failed"
    assert rec["run"]["launcher"] == "slurm" and rec["run"]["slurm"]["job_id"].isdigit()
    assert "exit code 1 without a record" in rec["reason"]
    assert any("No module named bench.no_such_module" in line for line in rec["stderr_tail"])


def test_a_run_over_its_time_limit_is_a_timeout(tmp_path):
    out = tmp_path / "runs.jsonl"
    start = time.monotonic()
    rc = run_cli("run", "--model", "mlp", "--batch-size", "8", *LONG, "--launcher", "slurm",
                 "--time-limit", "1", "--out", str(out))  # fmt: skip
    recs = records(out)
    assert rc == 1, recs
    assert time.monotonic() - start < 200, recs
    (rec,) = recs
    assert rec["status"] == "timeout" and "time limit (--time-limit 1 min)" in rec["reason"]
    assert rec["run"]["launcher"] == "slurm" and rec["run"]["slurm"]["job_id"].isdigit()


def test_ctrl_c_cancels_every_job_and_records_them(tmp_path):
    out = tmp_path / "runs.jsonl"
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    sweep = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench",
            "sweep",
            *FAST,
            *LONG,
            "--gpus",
            "1,2",
            "--max-jobs",
            "2",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    submitted: list[str] = []
    deadline = time.monotonic() + 90
    while len(submitted) < 2 and time.monotonic() < deadline:
        line = sweep.stderr.readline()
        if "as SLURM job" in line:
            submitted.append(line.split("as SLURM job ")[1].split()[0])
    assert len(submitted) == 2, "the sweep did not submit its jobs"
    running = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"], capture_output=True,
                             text=True)  # fmt: skip
    while not set(running.stdout.split()) & set(submitted) and time.monotonic() < deadline:
        time.sleep(1)
        running = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"], capture_output=True,
                                 text=True)  # fmt: skip
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=150)
    assert sweep.returncode == 128 + signal.SIGINT, err[-2000:]
    assert _queued(submitted) == []
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["run"]["slurm"]["job_id"] for r in recs) == sorted(submitted)
    for rec in recs:
        assert rec["status"] == "cancelled" and "scancel" in rec["reason"]


def test_allreduce_runs_as_a_job_and_writes_its_record(tmp_path):
    out = tmp_path / "allreduce.jsonl"
    rc = run_cli("allreduce", "--launcher", "slurm", "--sizes", "4KiB,64KiB", "--iters", "3",
                 "--warmup", "1", "--out", str(out))  # fmt: skip
    assert rc == 0
    (rec,) = records(out)
    assert rec["kind"] == "allreduce" and rec["status"] == "ok" and rec["world_size"] == 2
    assert rec["backend"] == "gloo" and [s["bytes"] for s in rec["sizes"]] == [4096, 65536]
    assert rec["run"]["launcher"] == "slurm" and rec["run"]["slurm"]["state"] == "COMPLETED"
