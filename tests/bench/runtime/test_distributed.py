"""Real multi-process runs on CPU: torchrun over gloo, a two-node rendezvous on loopback,
gan-bench's own launcher, a rank that dies, and interrupted runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.config import RunConfig
from bench.runtime import harness, launcher
from bench.runtime.distributed import DistContext
from bench.runtime.launcher import free_loopback_port
from bench.telemetry.records import read_records
from gan_steps import mlp_iteration_flops

REPO_ROOT = Path(__file__).resolve().parents[3]
SMALL_RUN = ["--batch-size", "8", "--steps", "3", "--warmup-steps", "1", "--quiet", "--no-quality"]
TIMEOUT_S = 240


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def rendezvous(port: int) -> list[str]:
    return ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}"]


def two_processes(*args: str) -> list[str]:
    """torchrun of two processes on this node, then `args` (the worker and its options)."""
    return torchrun(
        "--nnodes", "1", "--nproc-per-node", "2", *rendezvous(free_loopback_port()), *args
    )


def run_ok(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def records(path: Path) -> list[dict]:
    lines = list(read_records(str(path)))
    assert all(obj is not None for _, obj in lines), "a line of the results file is not JSON"
    return [obj for _, obj in lines]


def assert_synchronised(record: dict, world_size: int) -> None:
    assert record["status"] == "ok", record["reason"]
    assert record["run"]["world_size"] == world_size
    assert record["run"]["backend"] == "gloo"
    digests = record["metrics"]["param_digests"]
    assert len(digests) == world_size
    # Each rank trained on its own data shard: only synchronised gradients keep G and D
    # bit-identical across ranks.
    assert all(d == digests[0] for d in digests)
    assert record["metrics"]["params_identical_across_ranks"] is True


@pytest.mark.parametrize(
    ("model", "dataset", "loss", "more"),
    [
        ("dcgan32", "mnist5k", "non-saturating", ()),
        ("mlp", "digits", "wgan-gp", ()),
        # wrappers under DDP: G's and D's casts batched, D over real and fake at once
        ("mlp", "digits", "non-saturating", ("--precision", "bf16", "--variant",
                                             "batched-casts+joint-d")),
    ],
)  # fmt: skip
def test_torchrun_two_processes(tmp_path, model, dataset, loss, more):
    out = tmp_path / "runs.jsonl"
    run_ok(
        two_processes(
            "-m",
            "bench.run",
            "--model",
            model,
            "--dataset",
            dataset,
            "--loss",
            loss,
            *SMALL_RUN,
            *more,
            "--out",
            str(out),
        )
    )
    (record,) = records(out)  # rank 0 alone writes
    assert_synchronised(record, 2)
    assert record["run"]["global_batch_size"] == 16
    assert record["run"]["launcher"] == "torchrun"
    assert record["run"]["ddp"]["buffer_sync_in_forward"] is False
    if more:
        assert record["run"]["parameter_casts"] == {"batched": True, "parameters": 13}
    assert_gradients_sent(record)


FLOAT32_BYTES = 4


def assert_gradients_sent(record: dict) -> None:
    """DDP's all-reduces are each network's float32 gradients once per update of it: D's
    n_critic times, G's once. G's update sends no D gradient (D's parameters are frozen
    there and D is called without its DDP wrapper), or D's count would be one update more."""
    run, comm = record["run"], record["metrics"]["communication"]
    assert (comm["backend"], comm["world_size"], comm["gradient_dtype"]) == ("gloo", 2, "float32")
    # Warm-up and timed iterations but the first, in which DDP lays out its buckets.
    iterations = record["config"]["warmup_steps"] + record["metrics"]["steps_timed"]
    assert comm["counted_iterations"] == iterations - 1
    updates = {"generator": 1, "discriminator": run["n_critic"]}
    for network, times in updates.items():
        sent = comm[network]
        update_bytes = run[f"{network}_params"] * FLOAT32_BYTES
        assert sent["allreduce_bytes_per_iteration"] == times * update_bytes
        assert sent["expected_bytes_per_iteration"] == times * update_bytes
        assert sum(sent["bucket_bytes"]) == update_bytes
        assert sent["buckets"] == len(sent["bucket_bytes"])
        assert sent["allreduce_calls_per_iteration"] == times * sent["buckets"]
    total = sum(comm[n]["allreduce_bytes_per_iteration"] for n in updates)
    assert comm["allreduce_bytes_per_iteration"] == total
    assert comm["bytes_per_image"] == total / run["real_images_per_iteration"]


@pytest.mark.slow
def test_quality_checks_under_ddp(tmp_path):
    """Rank 0 evaluates while the others wait; the stop decision reaches every rank."""
    out = tmp_path / "runs.jsonl"
    run_ok(
        two_processes(
            "-m",
            "bench.run",
            "--model",
            "mlp",
            "--dataset",
            "mnist5k",
            "--batch-size",
            "8",
            "--steps",
            "4",
            "--warmup-steps",
            "1",
            "--quiet",
            "--eval-every",
            "2",
            "--target-fd",
            "1e9",
            "--quality-samples",
            "100",
            "--out",
            str(out),
        )
    )
    (record,) = records(out)
    assert_synchronised(record, 2)
    assert record["metrics"]["steps_timed"] == 2  # both ranks stopped at the first check
    assert record["metrics"]["time_to_quality"]["reached"] is True
    assert record["quality"]["n_fake"] == 100


def test_gan_bench_launches_torchrun_itself(tmp_path):
    """With strong scaling, which reaches the workers: --batch-size is the global batch."""
    out = tmp_path / "runs.jsonl"
    run_ok(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--nproc",
            "2",
            "--model",
            "mlp",
            *SMALL_RUN,
            "--batch-size",
            "16",
            "--scaling",
            "strong",
            "--out",
            str(out),
        ]
    )
    (record,) = records(out)
    assert_synchronised(record, 2)
    assert record["run"]["launcher"] == "torchrun"
    assert record["config"]["nproc"] == 2  # the workers were given no --nproc
    assert record["config"]["scaling"] == "strong"
    run = record["run"]
    assert (run["batch_size_per_process"], run["global_batch_size"]) == (8, 16)
    assert run["real_images_per_iteration"] == 16
    # FLOPs are counted on one process's 8 images an update, as it trained.
    metrics = record["metrics"]
    assert metrics["flops_per_iteration_per_process"] == mlp_iteration_flops(8)
    assert_gradients_sent(record)


def test_launched_run_exits_with_its_records_code_and_no_torchrun_traceback(tmp_path):
    out = tmp_path / "runs.jsonl"
    cmd = [sys.executable, "-m", "bench.run", "--nproc", "2", "--model", "mlp", *SMALL_RUN,
           "--lr", "1e38", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)
    (record,) = records(out)
    assert record["status"] == "diverged"
    assert proc.returncode == 3, proc.stderr[-4000:]  # as one process: README "Exit codes"
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("gan-bench: torchrun:")]
    # the first rank to exit says 3; torchrun may stop the other before it does (-15)
    assert line.startswith("gan-bench: torchrun: worker exit codes rank 0: ") and ": 3" in line


def test_two_node_rendezvous_on_loopback(tmp_path):
    out = tmp_path / "runs.jsonl"
    port = free_loopback_port()
    node = torchrun(
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        *rendezvous(port),
        "--rdzv-id",
        "two-node-test",
        "-m",
        "bench.run",
        "--model",
        "mlp",
        *SMALL_RUN,
        "--out",
        str(out),
    )
    procs = [
        subprocess.Popen(
            node, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        results = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-4000:]
    (record,) = records(out)
    assert_synchronised(record, 2)


def start_in_checkout(cmd: list[str]) -> subprocess.Popen:
    """Start `cmd` in the checkout with its output piped, for tests that act on it mid-run."""
    return subprocess.Popen(
        cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_line(proc: subprocess.Popen, text: str, timeout_s: float) -> list[str]:
    """Read proc's stderr until a line contains `text`; returns the lines read."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"never saw {text!r}; stderr was:\n{''.join(seen)[-4000:]}")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry))
    return kids


def _rank_of(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


LONG_RUN = ["--model", "mlp", "--batch-size", "8", "--steps", "100000", "--warmup-steps", "1"]


def test_a_dead_rank_ends_the_run_without_a_hang(tmp_path):
    out = tmp_path / "runs.jsonl"
    proc = start_in_checkout(
        two_processes(
            "-m",
            "bench.run",
            *LONG_RUN,
            "--dist-timeout-s",
            "30",
            "--out",
            str(out),
        )
    )
    try:
        _wait_for_line(proc, "gan-bench: timed", TIMEOUT_S)
        (victim,) = [pid for pid in _children(proc.pid) if _rank_of(pid) == 1]
        os.kill(victim, signal.SIGKILL)
        start = time.monotonic()
        _, err = proc.communicate(timeout=120)
        elapsed = time.monotonic() - start
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert elapsed < 90, f"the surviving rank took {elapsed:.0f} s to stop"
    assert "Signal 9" in err or "SIGKILL" in err or "exitcode" in err, err[-4000:]
    # Rank 0 saw its peer's connection drop, or torchrun's SIGTERM first: either way its
    # record is written (the signal waits for it).
    (record,) = records(out)
    assert record["status"] in ("failed", "interrupted")
    assert record["run"]["reporting_rank"] == 0


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_leaves_a_valid_record(tmp_path, sig, code):
    out = tmp_path / "runs.jsonl"
    out.write_text('{"earlier": "line"}\n')  # an existing results file stays intact
    proc = start_in_checkout([sys.executable, "-m", "bench.run", *LONG_RUN, "--out", str(out)])
    try:
        _wait_for_line(proc, "gan-bench: timed", TIMEOUT_S)
        time.sleep(0.5)
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code
    earlier, record = records(out)
    assert earlier == {"earlier": "line"}
    assert record["status"] == "interrupted"
    assert record["reason"].startswith(f"{signal.Signals(sig).name} during timed, iteration ")


def test_interrupted_torchrun_leaves_a_valid_record(tmp_path):
    out = tmp_path / "runs.jsonl"
    proc = start_in_checkout(
        two_processes(
            "-m",
            "bench.run",
            *LONG_RUN,
            "--out",
            str(out),
        )
    )
    try:
        _wait_for_line(proc, "gan-bench: timed", TIMEOUT_S)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0
    (record,) = records(out)
    assert record["status"] in ("interrupted", "failed")


@pytest.mark.parametrize("rank0", ["collective", "stuck"])
def test_a_failure_on_another_rank_is_the_runs_record(tmp_path, rank0):
    """Rank 1 fails; rank 0 fails after it (gloo) or is killed waiting (as under NCCL,
    where rank 0 alone could write none): either way one record, rank 1's error."""
    out = tmp_path / "runs.jsonl"
    proc = subprocess.run(
        two_processes(
            str(REPO_ROOT / "tests" / "bench" / "runtime" / "failing_rank_worker.py"),
            rank0,
            "--model",
            "mlp",
            *SMALL_RUN,
            "--out",
            str(out),
        ),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode != 0
    (record,) = records(out)
    assert record["status"] == "failed", record
    assert record["reason"] == "on rank 1 of 2: ValueError during setup: boom on rank 1"
    assert record["run"]["reporting_rank"] == 1
    assert record["environment"]["world_size"] == 2


@pytest.mark.parametrize(
    ("rank", "status", "claim_won", "writes"),
    [
        (0, "ok", True, True),
        (0, "failed", False, False),  # a peer's error ended the run: the peer reports it
        (1, "ok", True, False),  # rank 0 reports a run that ended well
        (1, "interrupted", True, False),  # every rank was interrupted: rank 0 reports it
        (1, "diverged", True, False),  # every rank saw the same non-finite loss
        (1, "failed", True, True),
        (1, "oom", True, True),
        (1, "failed", False, False),  # rank 0 (or another) claimed it first
    ],
)
def test_which_rank_writes_the_record(monkeypatch, rank, status, claim_won, writes):
    claims = []
    monkeypatch.setattr(
        harness.distributed, "claim_record", lambda ctx: claims.append(1) or claim_won
    )
    monkeypatch.setattr(harness, "PEER_CLAIM_DELAY_S", 0.0)
    ctx = DistContext(device=torch.device("cpu"), backend="gloo", rank=rank, world_size=2)
    record = {"status": status, "reason": "why", "run": {}}
    assert harness._writes_record(ctx, record) is writes
    assert record["run"].get("reporting_rank") == (rank if writes else None)
    if writes and rank:
        assert record["reason"] == "on rank 1 of 2: why"


def test_the_launcher_records_a_run_no_rank_could(tmp_path, monkeypatch):
    """`gan-bench run --nproc 2` where rank 1 is killed outright and rank 0 is stopped
    while waiting: the launcher writes the failed record."""
    worker = str(REPO_ROOT / "tests" / "bench" / "runtime" / "failing_rank_worker.py")
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setattr(
        launcher,
        "torchrun_command",
        lambda cfg, port: torchrun(
            "--nnodes", "1", "--nproc-per-node", "2", *rendezvous(port),
            worker, "killed", *cfg.to_cli_args(),
        ),
    )  # fmt: skip
    out = tmp_path / "runs.jsonl"
    cfg = RunConfig(model="mlp", nproc=2, device="cpu", quiet=True, out=str(out))
    assert launcher.launch(cfg) != 0
    (record,) = records(out)
    assert record["status"] == "failed"
    assert "no rank wrote a record" in record["reason"]
    assert record["run"]["world_size"] == 2 and record["run"]["variant"] == "eager"
    assert record["config"]["nproc"] == 2 and record["metrics"] == {}
    assert record["environment"]["world_size"] == 2
