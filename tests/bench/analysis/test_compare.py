"""`gan-bench compare` on hand-written records: the formats, the flags and the exit codes."""

from __future__ import annotations

import csv
import io
import json

import pytest

from result_records import EAGER_FD, EAGER_KID, record, run_cli, seeded, write


def test_cli_fail_below_exit_codes(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    write(path, [record("eager", 100.0), record("compile", 80.0)])
    assert run_cli("compare", str(path), "--fail-below", "0.9") == 1
    err = capsys.readouterr().err
    assert "compile" in err and "0.80×" in err
    assert run_cli("compare", str(path), "--fail-below", "0.75") == 0
    assert run_cli("compare", str(path)) == 0


def test_cli_formats(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    write(path, [record("eager", 100.0), record("compile", 150.0), record("eager", 170.0, world=2)])
    assert run_cli("compare", str(path), "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 3
    comp = next(r for r in rows if r["variant"] == "compile")
    assert float(comp["speedup"]) == pytest.approx(1.5)
    eager2 = next(r for r in rows if r["world_size"] == "2")
    assert float(eager2["scaling_efficiency"]) == pytest.approx(0.85)

    assert run_cli("compare", str(path), "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["baseline"] == "eager" and not doc["mixed_environments"]
    assert len(doc["groups"]) == 2 and len(doc["scaling"]) == 2

    assert run_cli("compare", str(path), "--format", "markdown") == 0
    out = capsys.readouterr().out
    assert "| model | dataset |" in out and "1.50×" in out and "85%" in out

    assert run_cli("compare", str(path)) == 0
    out = capsys.readouterr().out
    assert "compare against eager" in out and "1.50×" in out and "scaling" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/results.jsonl"], "does not exist"),
        (["{path}", "--baseline", "nope"], "--baseline 'nope' matches no record"),
        (["{path}", "--format", "xml"], "--format 'xml' is not known"),
        (["{path}", "--fail-below", "0"], "--fail-below must be a positive"),
        (["{empty}"], "no usable records"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    path, empty = tmp_path / "r.jsonl", tmp_path / "empty.jsonl"
    write(path, [record("eager", 100.0)])
    empty.write_text("")
    args = [a.format(path=path, empty=empty) for a in args]
    assert run_cli("compare", *args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], err


def test_cli_fail_on_quality(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    write(
        path,
        [
            *seeded("eager", EAGER_FD, EAGER_KID),
            *seeded("compile", (120.0, 125.0, 130.0), EAGER_KID),
        ],
    )
    assert run_cli("compare", str(path), "--fail-on-quality", "--format", "csv") == 1
    err = capsys.readouterr().err
    assert "compile" in err and "outside eager's seed-to-seed spread" in err
    assert run_cli("compare", str(path), "--format", "csv") == 0  # only when asked
    capsys.readouterr()
    within = tmp_path / "within.jsonl"
    write(within, [*seeded("eager", EAGER_FD, EAGER_KID), *seeded("compile", EAGER_FD, EAGER_KID)])
    assert run_cli("compare", str(within), "--fail-on-quality") == 0
