"""`gan-bench allreduce` for real: two processes over gloo through torchrun, a record
appended; bad input in one line with nothing written; a failure still a record."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from bench.commbench import command, worker
from bench.commbench.spec import WORKER_MODULE
from bench.telemetry.records import read_records

REPO_ROOT = Path(__file__).resolve().parents[3]
SMALL = ["--sizes", "4KiB,64KiB,1MiB", "--iters", "3", "--warmup", "1"]


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code


def records(path: Path) -> list[dict]:
    return [record for _, record in read_records(str(path))]


def test_two_processes_over_gloo_append_one_record(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))  # the workers run this checkout
    out = tmp_path / "allreduce.jsonl"
    assert run_cli("allreduce", "--nproc", "2", *SMALL, "--out", str(out)) == 0
    (record,) = records(out)
    assert record["kind"] == "allreduce" and record["status"] == "ok", record["reason"]
    assert (record["backend"], record["world_size"], record["dtype"]) == ("gloo", 2, "float32")
    assert record["run"] == {"launcher": "torchrun", "processes_per_node": 2}
    env = record["environment"]
    assert env["device_type"] == "cpu" and env["world_size"] == 2 and env["torch"]
    assert [row["bytes"] for row in record["sizes"]] == [4096, 65536, 1 << 20]
    for row in record["sizes"]:
        assert row["elements"] == row["bytes"] // 4 and row["time_s"] > 0
        assert row["algbw_gbps"] == pytest.approx(row["bytes"] / row["time_s"] / 1e9)
        assert row["busbw_gbps"] == pytest.approx(row["algbw_gbps"])  # 2(n-1)/n = 1 at n = 2
    table = capsys.readouterr().out
    assert "busbw GB/s" in table and "64.0 KiB" in table


@pytest.mark.parametrize(
    "args",
    [["--nproc", "1"], ["--backend", "nccl"], ["--backend", "mpi"], ["--sizes", "lots"],
     ["--sizes", "4097"], ["--dtype", "int8"], ["--iters", "0"], ["--warmup", "-1"],
     ["--nproc", "two"]],
    ids=lambda a: " ".join(a),
)  # fmt: skip
def test_bad_input_is_one_line_exit_2_nothing_written(args, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    out = tmp_path / "allreduce.jsonl"
    assert run_cli("allreduce", *args, "--out", str(out)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gan-bench: error: "), err
    assert not out.exists()


def test_a_worker_that_writes_nothing_leaves_a_failed_record(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    # Options the worker refuses: it exits 2 on every rank, before any record.
    monkeypatch.setattr(command, "worker_argv", lambda spec: ["-m", WORKER_MODULE, "--x", "1"])
    out = tmp_path / "allreduce.jsonl"
    assert run_cli("allreduce", *SMALL, "--out", str(out)) == 1
    (record,) = records(out)
    assert record["kind"] == "allreduce" and record["status"] == "failed"
    assert "no rank wrote a record" in record["reason"] and record["sizes"] == []
    assert record["world_size"] == 2 and record["environment"]["world_size"] == 2
    assert "gan-bench: allreduce failed" in capsys.readouterr().err


def test_the_worker_outside_torchrun_says_how_to_start_it(capsys, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert worker.main([]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
