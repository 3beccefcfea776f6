"""The scaling table's all-reduce columns: bytes per image from a run's communication
metrics, the all-reduce time per iteration an allreduce record's bandwidth implies for the
run's buckets, and the time per iteration lost against linear scaling."""

from __future__ import annotations

import csv
import io
import json

import pytest

from result_records import record, run_cli, write

MIB = 1 << 20


def network(buckets, calls):
    return {
        "allreduce_calls_per_iteration": calls,
        "allreduce_bytes_per_iteration": int(calls / len(buckets) * sum(buckets)),
        "buckets": len(buckets),
        "bucket_bytes": buckets,
        "expected_bytes_per_iteration": int(calls / len(buckets) * sum(buckets)),
    }


def run(images_per_s, world, variant="eager", communication=True):
    """An mlp batch-64 run with n_critic 1: 64 × world real images per iteration."""
    rec = record(variant, images_per_s, world=world)
    rec["run"]["real_images_per_iteration"] = 64 * world
    if communication and world > 1:
        # G: one backward of a 1 MiB and a 4 MiB bucket; D: two backwards of one 2 MiB.
        g, d = network([MIB, 4 * MIB], 2.0), network([2 * MIB], 2.0)
        calls = g["allreduce_calls_per_iteration"] + d["allreduce_calls_per_iteration"]
        sent = g["allreduce_bytes_per_iteration"] + d["allreduce_bytes_per_iteration"]
        rec["metrics"]["communication"] = {
            "backend": "gloo", "world_size": world, "gradient_dtype": "float32",
            "counted_iterations": 5, "generator": g, "discriminator": d,
            "allreduce_calls_per_iteration": calls, "allreduce_bytes_per_iteration": sent,
            "bytes_per_image": sent / (64 * world),
        }  # fmt: skip
    return rec


def allreduce(times, world=2, device="Test CPU", backend="gloo", status="ok"):
    """An allreduce record: seconds at 1 MiB and 4 MiB."""
    return {
        "schema_version": 1, "kind": "allreduce", "run_id": "ar", "status": status,
        "reason": None,
        "environment": {"device_name": device, "torch": "2.14.0", "device_type": "cpu",
                        "world_size": world},
        "backend": backend, "world_size": world, "dtype": "float32", "iters": 20, "warmup": 5,
        "sizes": [{"bytes": size, "time_s": t} for size, t in zip((MIB, 4 * MIB), times,
                                                                  strict=True)],
        "run": {"launcher": "torchrun"},
    }  # fmt: skip


# At 1 ms per MiB-sized all-reduce and 4 ms per 4 MiB: G 1 + 4 ms, D 2 × 2 ms (2 MiB sits
# half-way in log size, log-log: the geometric mean) = 9 ms per iteration.
IMPLIED_S = 0.009
# 64 images in 1/1000 s at world 1 (64 ms), 128 in 1/1600 s at world 2 (80 ms): 16 ms lost.
LOST_S = 0.016
BYTES_PER_IMAGE = (MIB + 4 * MIB + 2 * 2 * MIB) / 128


@pytest.fixture
def results(tmp_path):
    runs, measured = tmp_path / "runs.jsonl", tmp_path / "allreduce.jsonl"
    write(runs, [run(1000.0, 1), run(1600.0, 2), run(900.0, 1, "compile"),
                 run(1500.0, 2, "compile", communication=False)])  # fmt: skip
    write(measured, [
        allreduce((2e-3, 8e-3)),  # an earlier measurement of the same fabric
        allreduce((1e-3, 4e-3)),  # the latest: the one read
        allreduce((5e-3, 5e-3), world=4),  # other world size, device, backend: never read
        allreduce((5e-3, 5e-3), device="Other CPU"),
        allreduce((5e-3, 5e-3), backend="nccl"),
        {**allreduce((5e-3, 5e-3)), "status": "failed", "sizes": []},
    ])  # fmt: skip
    return str(runs), str(measured)


def test_json_scaling_rows_carry_bytes_per_image_and_implied_time(results, capsys):
    assert run_cli("compare", *results, "--format", "json") == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err  # allreduce records are no garbled runs
    scaling = {(r["variant"], r["world_size"]): r for r in json.loads(captured.out)["scaling"]}
    eager2 = scaling["eager", 2]
    assert eager2["allreduce_bytes_per_image"] == pytest.approx(BYTES_PER_IMAGE)
    assert eager2["allreduce_s_per_iteration"] == pytest.approx(IMPLIED_S)
    assert eager2["lost_s_per_iteration"] == pytest.approx(LOST_S)
    eager1 = scaling["eager", 1]
    assert eager1["allreduce_bytes_per_image"] is None
    assert eager1["allreduce_s_per_iteration"] is eager1["lost_s_per_iteration"] is None
    compile2 = scaling["compile", 2]  # no communication metrics: dashes, the loss still shown
    assert compile2["allreduce_bytes_per_image"] is compile2["allreduce_s_per_iteration"] is None
    assert compile2["lost_s_per_iteration"] == pytest.approx(128 / 1500 - 64 / 900)


def test_without_an_allreduce_record_the_implied_time_is_a_dash(results, capsys):
    assert run_cli("compare", results[0], "--format", "json") == 0
    eager2 = next(r for r in json.loads(capsys.readouterr().out)["scaling"]
                  if r["variant"] == "eager" and r["world_size"] == 2)  # fmt: skip
    assert eager2["allreduce_bytes_per_image"] == pytest.approx(BYTES_PER_IMAGE)
    assert eager2["allreduce_s_per_iteration"] is None


def test_markdown_csv_and_table_show_the_columns(results, capsys):
    assert run_cli("compare", *results, "--format", "markdown") == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| scaling | model")
                  and "images/s per proc" in line)  # fmt: skip
    columns = [c.strip() for c in header.strip("|").split("|")]
    eager2 = next(
        line for line in lines if line.startswith("| weak | mlp") and "| eager | 2 |" in line
    )
    cells = dict(zip(columns, [c.strip() for c in eager2.strip("|").split("|")], strict=True))
    assert cells["all-reduce bytes/image"] == "72.0 KiB"
    assert cells["all-reduce ms/iter (bandwidth)"] == "9"
    assert cells["ms/iter lost vs linear"] == "16.0"

    assert run_cli("compare", *results, "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    eager2 = next(r for r in rows if r["variant"] == "eager" and r["world_size"] == "2")
    assert float(eager2["allreduce_s_per_iteration"]) == pytest.approx(IMPLIED_S)
    assert float(eager2["lost_s_per_iteration"]) == pytest.approx(LOST_S)
    assert float(eager2["allreduce_bytes_per_image"]) == pytest.approx(BYTES_PER_IMAGE)

    assert run_cli("compare", *results) == 0
    out = capsys.readouterr().out
    assert "all-reduce ms/iter" in out and "72.0 KiB" in out
