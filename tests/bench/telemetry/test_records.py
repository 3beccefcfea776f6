"""Records on disk: one whole line per record, strict JSON, corrupt lines found by number."""

from __future__ import annotations

import json

import pytest

from bench.telemetry.records import SCHEMA_VERSION, append_record, read_records


def test_append_creates_folders_and_writes_one_line_each(tmp_path):
    path = tmp_path / "deep" / "er" / "runs.jsonl"
    append_record(str(path), {"schema_version": SCHEMA_VERSION, "status": "ok", "x": 1})
    append_record(str(path), {"schema_version": SCHEMA_VERSION, "status": "failed", "x": 2})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["x"] for line in lines] == [1, 2]


def test_non_finite_floats_become_null(tmp_path):
    path = tmp_path / "runs.jsonl"
    append_record(
        str(path), {"status": "diverged", "metrics": {"a": float("nan"), "b": [float("inf"), 1.5]}}
    )
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["metrics"] == {"a": None, "b": [None, 1.5]}


def test_unknown_status_is_refused(tmp_path):
    with pytest.raises(ValueError, match="status"):
        append_record(str(tmp_path / "r.jsonl"), {"status": "great"})
    assert not (tmp_path / "r.jsonl").exists()


def test_read_records_flags_corrupt_lines_by_number(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_bytes(
        b'{"status": "ok"}\n{"status": "ok", "trunc\n\n[1, 2]\n{"status": "failed"}\n'
        b'{"status": "\xff\xfe garbled\n{"status": "ok"}\n'  # not UTF-8: one bad line
    )
    assert list(read_records(str(path))) == [
        (1, {"status": "ok"}),
        (2, None),
        (4, None),
        (5, {"status": "failed"}),
        (6, None),
        (7, {"status": "ok"}),
    ]
