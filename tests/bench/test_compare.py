"""`gan-bench compare` on hand-written records: the arithmetic, the grouping, the flags."""

from __future__ import annotations

import csv
import io
import json

import pytest

from bench.cli import main
from bench.compare import below_threshold, load_rows, summarise, to_row
from bench.records import append_record


def record(
    variant="eager",
    images_per_s=100.0,
    memory=1000.0,
    *,
    model="mlp",
    dataset="synthetic",
    batch=64,
    precision="fp32",
    world=1,
    repeat=0,
    status="ok",
    reason=None,
    device="Test CPU",
    torch_version="2.14.0",
    device_type="cpu",
    quality=None,
    grid=None,
) -> dict:
    """A record shaped as bench.harness writes it, with only the fields compare reads."""
    memory_field = "peak_allocated_mib" if device_type == "cuda" else "peak_rss_mib"
    metrics = {}
    if status == "ok":
        metrics = {"images_per_s": images_per_s, memory_field: memory}
        if grid:
            metrics["sample_grid_path"] = grid
    rec = {
        "schema_version": 1,
        "run_id": f"{variant}-{repeat}",
        "status": status,
        "reason": reason,
        "config": {
            "model": model,
            "dataset": dataset,
            "batch_size": batch,
            "precision": precision,
            "steps": 30,
            "repeat": repeat,
            "nproc": 1,
            "variant": variant,
        },
        "run": {"world_size": world, "variant": variant},
        "environment": {
            "device_name": device,
            "torch": torch_version,
            "device_type": device_type,
            "world_size": world,
        },
        "metrics": metrics,
    }
    if quality is not None:
        rec["quality"] = quality
    return rec


def rows_of(*records):
    return [to_row(r, "mem.jsonl") for r in records]


def variant(comparison, name, **group):
    for g in comparison.groups:
        if all(getattr(g, k) == v for k, v in group.items()):
            for s in g.variants:
                if s.variant == name:
                    return s
    raise LookupError(name)


def test_speedup_and_memory_ratio():
    comparison = summarise(
        rows_of(record("eager", 100.0, 1000.0), record("compile", 150.0, 1200.0)), "eager"
    )
    (group,) = comparison.groups
    assert group.baseline_found
    assert [s.variant for s in group.variants] == ["eager", "compile"]
    base, comp = group.variants
    assert base.speedup == pytest.approx(1.0)
    assert comp.speedup == pytest.approx(1.5)
    assert comp.memory_ratio == pytest.approx(1.2)
    assert group.memory_kind == "peak_rss_mib"


def test_medians_over_repeats_with_min_max_then_percentile_spread():
    three = [record("eager", v, 900.0 + v, repeat=i) for i, v in enumerate((120.0, 80.0, 100.0))]
    five = [
        record("compile", v, 1000.0, repeat=i)
        for i, v in enumerate((200.0, 100.0, 300.0, 500.0, 400.0))
    ]
    s = summarise(rows_of(*three, *five), "eager")
    eager, comp = s.groups[0].variants
    assert eager.images_per_s == 100.0
    assert (eager.images_per_s_lo, eager.images_per_s_hi, eager.spread) == (80.0, 120.0, "min-max")
    assert eager.memory_mib == 1000.0  # median of 1020, 980, 1000
    assert comp.images_per_s == 300.0
    # p20 and p80 of 100..500 by linear interpolation: 180 and 420
    assert comp.images_per_s_lo == pytest.approx(180.0)
    assert comp.images_per_s_hi == pytest.approx(420.0)
    assert comp.spread == "p20-p80"
    assert comp.speedup == pytest.approx(3.0)
    assert comp.repeats_ok == 5


def test_failed_repeats_are_counted_not_averaged():
    s = summarise(
        rows_of(
            record("eager", 100.0),
            record("compile", 50.0, repeat=0),
            record("compile", 70.0, repeat=1),
            record("compile", status="failed", reason="RuntimeError during timed: x", repeat=2),
        ),
        "eager",
    )
    comp = variant(s, "compile")
    assert comp.images_per_s == 60.0
    assert (comp.repeats_ok, comp.repeats_total) == (2, 3)
    assert comp.status == "ok 2/3, failed 1"
    assert comp.reason.startswith("RuntimeError")


def test_scaling_efficiency():
    s = summarise(
        rows_of(
            record("eager", 100.0, world=1),
            record("eager", 160.0, world=2),
            record("eager", 200.0, world=4),
            record("compile", 300.0, world=2),  # no world-size-1 run: no efficiency
            record("compile", 500.0, world=4),
        ),
        "eager",
    )
    eager = {r.world_size: r for r in s.scaling if r.variant == "eager"}
    assert eager[1].efficiency == pytest.approx(1.0)
    assert eager[2].efficiency == pytest.approx(0.8)
    assert eager[4].efficiency == pytest.approx(0.5)
    assert eager[4].images_per_s_per_device == pytest.approx(50.0)
    assert all(r.efficiency is None for r in s.scaling if r.variant == "compile")
    assert variant(s, "eager", world_size=2).scaling_efficiency == pytest.approx(0.8)
    # Groups are per world size: compile at 2 processes is compared with eager at 2.
    assert variant(s, "compile", world_size=2).speedup == pytest.approx(300.0 / 160.0)


def test_environments_are_never_mixed():
    s = summarise(
        rows_of(
            record("eager", 100.0, device="CPU A"),
            record("compile", 300.0, device="CPU B"),
            record("eager", 100.0, torch_version="2.11.0"),
        ),
        "eager",
    )
    assert s.mixed_environments
    assert len(s.environments) == 3
    assert len(s.groups) == 3
    b = next(g for g in s.groups if g.environment.startswith("CPU B"))
    assert not b.baseline_found
    assert b.variants[0].speedup is None


def test_group_without_baseline_says_so(capsys):
    s = summarise(rows_of(record("eager", 100.0, batch=64), record("compile", 90.0, batch=128)))
    lonely = next(g for g in s.groups if g.batch_size == 128)
    assert not lonely.baseline_found
    from bench.compare import render_markdown

    assert "no eager baseline in this group" in render_markdown(s)


def test_quality_deltas_need_the_same_extractor():
    q = {"fd": 10.0, "kid_mean": 0.02, "precision": 0.5, "recall": 0.4, "extractor": "inception"}
    better = {
        "fd": 8.0,
        "kid_mean": 0.01,
        "precision": 0.6,
        "recall": 0.4,
        "coverage": 0.9,
        "extractor": "inception",
    }
    other = {**better, "extractor": "lenet"}
    s = summarise(
        rows_of(
            record("eager", quality=q),
            record("compile", quality=better),
            record("triton", quality=other),
            record("compile+triton", quality=None),
        ),
        "eager",
    )
    comp = variant(s, "compile")
    assert comp.quality_delta == pytest.approx(
        {"fd": -2.0, "kid_mean": -0.01, "precision": 0.1, "recall": 0.0}
    )  # coverage: the baseline has none
    assert variant(s, "triton").quality_delta == {}
    assert "extractors differ" in variant(s, "triton").quality_note
    assert variant(s, "compile+triton").quality_delta == {}


def test_gpu_memory_is_peak_allocated():
    s = summarise(
        rows_of(
            record("eager", 1000.0, 500.0, device_type="cuda", device="H100"),
            record("compile", 2000.0, 400.0, device_type="cuda", device="H100"),
        )
    )
    assert s.groups[0].memory_kind == "peak_allocated_mib"
    assert variant(s, "compile").memory_ratio == pytest.approx(0.8)


def test_fail_below_ignores_the_baseline_and_failures():
    s = summarise(
        rows_of(
            record("eager", 100.0),
            record("compile", 80.0),
            record("triton", status="failed", reason="boom"),
        )
    )
    assert [v.variant for _, v in below_threshold(s, 0.9)] == ["compile"]
    assert below_threshold(s, 0.5) == []


def write(path, records, extra_lines=()):
    for rec in records:
        append_record(str(path), rec)
    with open(path, "a", encoding="utf-8") as handle:
        for line in extra_lines:
            handle.write(line + "\n")


def run_cli(*args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code


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


def test_load_rows_keeps_file_order(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write(a, [record("eager", 1.0)])
    write(b, [record("compile", 2.0)])
    assert [r.variant for r in load_rows([str(a), str(b)])] == ["eager", "compile"]


def test_runs_that_trained_differently_are_not_repeats():
    short, long_run = record("eager", 100.0), record("eager", 300.0)
    long_run["config"]["steps"] = 5000
    hinge = record("eager", 200.0)
    hinge["config"]["loss"] = "hinge"
    comparison = summarise(rows_of(short, long_run, hinge), "eager")
    assert sorted(g.workload for g in comparison.groups) == [
        "?, 30 steps",
        "?, 5000 steps",
        "hinge, 30 steps",
    ]
    assert all(g.variants[0].repeats_total == 1 for g in comparison.groups)
