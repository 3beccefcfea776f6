"""Records read back as rows: file order, corrupt and garbled lines, workloads."""

from __future__ import annotations

import csv
import io

import pytest

from bench.analysis.records import load_rows
from bench.analysis.stats import summarise
from result_records import record, rows_of, run_cli, write


def test_load_rows_keeps_file_order(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write(a, [record("eager", 1.0)])
    write(b, [record("compile", 2.0)])
    assert [r.variant for r in load_rows([str(a), str(b)])] == ["eager", "compile"]


def test_corrupt_lines_are_skipped_with_their_line_number(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    write(path, [record("eager", 100.0)], extra_lines=['{"status": "ok", "trunc', "[1, 2]"])
    write(path, [record("compile", 200.0)])
    assert run_cli("compare", str(path), "--format", "csv") == 0
    captured = capsys.readouterr()
    assert "line 2 is not a JSON object" in captured.err
    assert "line 3 is not a JSON object" in captured.err
    assert len(list(csv.DictReader(io.StringIO(captured.out)))) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("metrics", [1, 2]), ("batch_size", "64"), ("variant", ["x"]), ("model", None),
     ("batch_size", True)],
)  # fmt: skip
def test_a_garbled_record_is_skipped_with_a_warning(tmp_path, capsys, field, value):
    garbled = record("compile", 200.0)
    if field == "metrics":
        garbled["metrics"] = value
    elif field == "variant":
        garbled["run"]["variant"] = value
    else:
        garbled["config"][field] = value
    path = tmp_path / "r.jsonl"
    write(path, [record("eager", 100.0), garbled])
    assert run_cli("compare", str(path), "--format", "csv") == 0
    captured = capsys.readouterr()
    assert "line 2 lacks fields compare needs" in captured.err
    assert [row["variant"] for row in csv.DictReader(io.StringIO(captured.out))] == ["eager"]


def test_runs_that_trained_differently_are_not_repeats():
    short, long_run = record("eager", 100.0), record("eager", 300.0)
    long_run["config"]["steps"] = 5000
    hinge = record("eager", 200.0)
    hinge["config"]["loss"] = "hinge"
    by_hand = record("eager", 400.0)  # a run made by hand with other options
    by_hand["config"].update(warmup_steps=3, lr=1e-3, n_critic=2)
    defaults = record("eager", 500.0)  # RunConfig's own values are not named
    defaults["config"].update(warmup_steps=10, lr=2e-4, n_critic=None)
    comparison = summarise(rows_of(short, long_run, hinge, by_hand, defaults), "eager")
    assert sorted(g.workload for g in comparison.groups) == [
        "?, 30 steps",
        "?, 30 steps, warm-up 3, n_critic 2, lr 0.001",
        "?, 5000 steps",
        "hinge, 30 steps",
    ]
    assert sorted(g.variants[0].repeats_total for g in comparison.groups) == [1, 1, 1, 2]
