"""`gan-bench compare` on hand-written records: the arithmetic, the grouping, the flags."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from rich.console import Console

from bench.analysis.compare import (
    below_threshold,
    best_variants,
    load_rows,
    outside_parity,
    parity_verdict,
    print_table,
    render_csv,
    render_json,
    render_markdown,
    summarise,
    to_row,
)
from bench.cli import main
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
    seed=0,
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
        "run_id": f"{variant}-{seed}-{repeat}",
        "status": status,
        "reason": reason,
        "config": {
            "model": model,
            "dataset": dataset,
            "batch_size": batch,
            "precision": precision,
            "steps": 30,
            "repeat": repeat,
            "seed": seed,
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


# --------------------------------------------------------------------- quality parity

# eager's FD per seed 90, 100, 110 (mean 100, s.d. 10): the band is [80, 120]; KID per seed
# 0.010, 0.020, 0.030 (mean 0.02, s.d. 0.01): [0.0, 0.04].
EAGER_FD = (90.0, 100.0, 110.0)
EAGER_KID = (0.010, 0.020, 0.030)


def q(fd, kid, extractor="lenet-mnist5k-28", n_fake=2000):
    return {
        "fd": fd,
        "fd_name": f"FD-{extractor}@{n_fake}",
        "kid_mean": kid,
        "extractor": extractor,
        "n_real": 1000,
        "n_fake": n_fake,
        "split": "test",
    }


def seeded(name, fds, kids, seeds=(0, 1, 2), extractor="lenet-mnist5k-28", n_fake=2000, **kw):
    """One record per seed of `name` with the given FD and KID."""
    return [
        record(name, seed=seed, quality=q(fd, kid, extractor, n_fake), dataset="mnist5k", **kw)
        for seed, fd, kid in zip(seeds, fds, kids, strict=True)
    ]


def test_parity_within_the_baseline_spread():
    s = summarise(
        rows_of(
            *seeded("eager", EAGER_FD, EAGER_KID), *seeded("compile", (85, 125, 115), EAGER_KID)
        )
    )
    comp = variant(s, "compile")
    # 85, 125, 115 average 108.3: inside [80, 120] although one seed (125) is outside it
    assert comp.parity["fd"]["verdict"] == "within"
    assert comp.parity["fd"]["band"] == pytest.approx([80.0, 120.0])
    assert comp.parity["fd"]["variant_mean"] == pytest.approx(325 / 3)
    assert comp.parity["fd"]["seeds"] == [0, 1, 2]
    assert comp.parity["kid_mean"]["verdict"] == "within"
    assert comp.parity["kid_mean"]["band"] == pytest.approx([0.0, 0.04])
    assert comp.parity_note is None
    assert parity_verdict(comp) == "within"
    assert variant(s, "eager").parity == {}  # the baseline is the reference, not judged
    assert outside_parity(s) == []


def test_runs_made_side_by_side_count_for_quality_not_speed():
    """`gan-bench sweep --concurrent N` runs share the device: their quality is a sample like
    any other; their images/s and MFU are not a measurement of the variant."""
    shared = [*seeded("eager", EAGER_FD, EAGER_KID), *seeded("compile", EAGER_FD, EAGER_KID)]
    for rec in shared:
        rec["run"]["concurrency"] = 4
        rec["metrics"]["mfu"] = 0.2
    s = summarise(rows_of(*shared))
    comp = variant(s, "compile")
    assert parity_verdict(comp) == "within" and comp.repeats_ok == 3
    assert comp.images_per_s is None and comp.speedup is None and comp.mfu is None
    assert comp.memory_mib == 1000.0  # each process's own peak: still its own
    assert comp.status == "ok (up to 4 runs at once: speed not compared)"
    assert best_variants(s) == [] and below_threshold(s, 2.0) == []
    # beside runs timed alone, only those give the speed
    alone = record("compile", images_per_s=300.0, seed=0, repeat=1, dataset="mnist5k")
    s = summarise(rows_of(*shared, alone))
    assert variant(s, "compile").images_per_s == 300.0


def test_parity_uses_the_median_over_repeats_of_each_seed():
    eager = seeded("eager", EAGER_FD, EAGER_KID)
    # seed 2 of eager twice more: FD 110, 500, 111 -> median 111, not the mean 240
    eager += [
        record("eager", seed=2, repeat=r, quality=q(fd, 0.03), dataset="mnist5k")
        for r, fd in ((1, 500.0), (2, 111.0))
    ]
    s = summarise(rows_of(*eager, *seeded("compile", (100, 100, 100), EAGER_KID)))
    assert variant(s, "compile").parity["fd"]["baseline_seeds"] == [0, 1, 2]
    centre = (90 + 100 + 111) / 3
    assert sum(variant(s, "compile").parity["fd"]["band"]) / 2 == pytest.approx(centre)


def test_parity_outside_is_marked_in_every_format(tmp_path, capsys):
    recs = [
        *seeded("eager", EAGER_FD, EAGER_KID),
        *seeded("compile", (120.0, 125.0, 130.0), EAGER_KID),  # mean 125 > 120
        *seeded("triton", (95.0, 100.0, 105.0), EAGER_KID),
    ]
    s = summarise(rows_of(*recs))
    comp = variant(s, "compile")
    assert comp.parity["fd"]["verdict"] == "outside"
    assert comp.parity["kid_mean"]["verdict"] == "within"
    assert parity_verdict(comp) == "outside"
    assert [v.variant for _, v in outside_parity(s)] == ["compile"]

    md = render_markdown(s)
    line = next(row for row in md.splitlines() if "| compile |" in row)
    assert "**OUTSIDE**: fd 125 not in [80, 120]" in line
    triton = next(row for row in md.splitlines() if "| triton |" in row)
    assert "ok (3 seeds)" in triton and "OUTSIDE" not in triton
    assert "| quality parity |" in md

    by_variant = {r["variant"]: r for r in csv.DictReader(io.StringIO(render_csv(s)))}
    assert by_variant["compile"]["quality_parity"] == "outside"
    assert by_variant["triton"]["quality_parity"] == "within"
    assert by_variant["eager"]["quality_parity"] == ""
    assert float(by_variant["compile"]["parity_fd_mean"]) == pytest.approx(125.0)
    assert float(by_variant["compile"]["parity_fd_hi"]) == pytest.approx(120.0)

    doc = json.loads(render_json(s))
    summaries = {v["variant"]: v for v in doc["groups"][0]["variants"]}
    assert summaries["compile"]["quality_parity"] == "outside"
    assert summaries["compile"]["parity"]["fd"]["band"] == pytest.approx([80.0, 120.0])
    assert summaries["triton"]["quality_parity"] == "within"

    buffer = io.StringIO()
    console = Console(file=buffer, width=250, color_system="standard", force_terminal=True)
    print_table(s, console=console)
    styled = buffer.getvalue()
    text = re.sub(r"\x1b\[[0-9;]*m", "", styled)
    assert "OUTSIDE: fd 125 not in [80, 120]" in text and "ok (3 seeds)" in text
    # bold red: the ANSI codes right before the marker hold 1 (bold) and 31 (red)
    codes = re.findall(r"\x1b\[([0-9;]+)mOUTSIDE", styled)
    assert codes and {"1", "31"} <= set(codes[0].split(";")), styled


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


@pytest.mark.parametrize("diverged_seeds", [(1,), (0, 1, 2)])
def test_a_variant_that_diverged_where_the_baseline_trained_is_outside(
    tmp_path, capsys, diverged_seeds
):
    compile_runs = [
        record("compile", seed=seed, status="diverged", dataset="mnist5k",
               reason="non-finite loss at iteration 7")
        if seed in diverged_seeds
        else record("compile", seed=seed, quality=q(100.0, 0.02), dataset="mnist5k")
        for seed in (0, 1, 2)
    ]  # fmt: skip
    path = tmp_path / "r.jsonl"
    write(path, [*seeded("eager", EAGER_FD, EAGER_KID), *compile_runs])
    s = summarise(load_rows([str(path)]))
    comp = variant(s, "compile")
    assert parity_verdict(comp) == "outside"
    assert comp.parity["fd"]["seeds"] == list(diverged_seeds)
    md = render_markdown(s)
    line = next(row for row in md.splitlines() if "| compile |" in row)
    seeds = ", ".join(map(str, diverged_seeds))
    assert f"**OUTSIDE**: diverged at seed {seeds}, where eager trained" in line
    assert run_cli("compare", str(path), "--fail-on-quality", "--format", "csv") == 1
    assert "compile" in capsys.readouterr().err


def test_parity_needs_three_seeds_of_the_baseline():
    s = summarise(
        rows_of(
            *seeded("eager", EAGER_FD[:2], EAGER_KID[:2], seeds=(0, 1)),
            *seeded("compile", (500.0, 500.0, 500.0), EAGER_KID),
        )
    )
    comp = variant(s, "compile")
    assert comp.parity["fd"]["verdict"] is None
    assert comp.parity_note == "needs ≥ 3 seeds of eager, has 2"
    assert parity_verdict(comp) is None and outside_parity(s) == []
    md = render_markdown(s)
    assert "no verdict: fd, kid: needs ≥ 3 seeds of eager, has 2" in md


def test_repeats_of_one_seed_are_not_seeds():
    eager = [
        record("eager", repeat=r, quality=q(fd, 0.02), dataset="mnist5k")
        for r, fd in enumerate(EAGER_FD)
    ]
    s = summarise(rows_of(*eager, *seeded("compile", (500.0, 500.0, 500.0), EAGER_KID)))
    assert variant(s, "compile").parity_note == "needs ≥ 3 seeds of eager, has 1"


def test_parity_needs_three_shared_seeds():
    s = summarise(
        rows_of(
            *seeded("eager", EAGER_FD, EAGER_KID, seeds=(0, 1, 2)),
            *seeded("compile", (500.0, 500.0, 500.0), EAGER_KID, seeds=(2, 3, 4)),
        )
    )
    comp = variant(s, "compile")
    assert comp.parity["fd"]["verdict"] is None and comp.parity["fd"]["seeds"] == [2]
    assert "needs ≥ 3 seeds shared with eager, has 1" in comp.parity_note
    assert "variant seeds 2, 3, 4; eager seeds 0, 1, 2" in comp.parity_note
    assert outside_parity(s) == []


@pytest.mark.parametrize(
    ("other", "why"),
    [
        ({"extractor": "random-cnn"}, "extractors differ (random-cnn vs lenet-mnist5k-28)"),
        # FD's bias shrinks as more images are generated: 10,000 against 2,000 is no comparison.
        (
            {"n_fake": 10000},
            "sample counts differ (10000 generated, 1000 real vs 2000 generated, 1000 real)",
        ),
    ],
    ids=["extractor", "sample-counts"],
)
def test_parity_needs_quality_on_one_scale(other, why):
    s = summarise(
        rows_of(
            *seeded("eager", EAGER_FD, EAGER_KID),
            *seeded("compile", (500.0, 500.0, 500.0), EAGER_KID, **other),
        )
    )
    comp = variant(s, "compile")
    assert {e["verdict"] for e in comp.parity.values()} == {None}
    assert why in comp.parity_note
    assert comp.parity["fd"]["band"] is None
    assert comp.quality_delta == {} and why in comp.quality_note
    assert outside_parity(s) == []


def test_quality_of_mixed_sample_counts_has_no_scale():
    s = summarise(
        rows_of(
            *seeded("eager", EAGER_FD, EAGER_KID),
            *seeded("compile", EAGER_FD[:2], EAGER_KID[:2], seeds=(0, 1)),
            *seeded("compile", EAGER_FD[2:], EAGER_KID[2:], seeds=(2,), n_fake=500),
        )
    )
    comp = variant(s, "compile")
    assert comp.quality_samples is None
    assert "sample counts are mixed within a variant" in comp.parity_note


def test_no_parity_without_quality():
    s = summarise(rows_of(record("eager", 100.0), record("compile", 150.0)))
    assert variant(s, "compile").parity == {} and variant(s, "compile").parity_note is None
    csv_row = next(
        r for r in csv.DictReader(io.StringIO(render_csv(s))) if r["variant"] == "compile"
    )
    assert csv_row["quality_parity"] == "" and csv_row["quality_parity_detail"] == ""


def test_seeds_share_a_group_and_pool_throughput():
    s = summarise(
        rows_of(
            *seeded("eager", EAGER_FD, EAGER_KID),
            record("eager", 400.0, seed=3, quality=q(100.0, 0.02), dataset="mnist5k"),
        )
    )
    (group,) = s.groups
    eager = group.variants[0]
    assert eager.repeats_total == 4 and eager.images_per_s == 100.0  # median of 100 ×3, 400
    assert [r.seed for r in rows_of(record("eager", seed=7))] == [7]


def test_best_variant_is_set_against_eager_and_compile():
    graphed = record("channels-last+cuda-graph", 320.0, batch=128)
    graphed["metrics"]["mfu"] = 0.25
    rows = [
        to_row(r, "x")
        for r in (
            record("eager", 100.0, batch=128),
            record("compile", 80.0, batch=128),
            graphed,
            record("cuda-graph", 250.0, batch=128),
            record("eager", 100.0, batch=512),
            record("cuda-graph", 90.0, batch=512),  # slower than eager: eager is the best
            record("eager", 50.0, batch=1024),  # alone: no best to name
        )
    ]
    comparison = summarise(rows)
    best = {b.group.batch_size: b for b in best_variants(comparison)}
    assert set(best) == {128, 512}
    assert best[128].variant.variant == "channels-last+cuda-graph"
    assert best[128].variant.speedup == pytest.approx(3.2)
    assert best[128].vs_compile == pytest.approx(4.0)
    assert best[512].variant.variant == "eager" and best[512].vs_compile is None
    markdown = render_markdown(comparison)
    assert "Best variant per configuration" in markdown
    assert re.search(
        r"\| channels-last\+cuda-graph \| 320 \| 3\.20× \| 4\.00× \| 25\.0% \|", markdown
    )
    doc = json.loads(render_json(comparison))
    assert [b["variant"] for b in doc["best"]] == ["channels-last+cuda-graph", "eager"]
    assert [b["mfu"] for b in doc["best"]] == [0.25, None]
    console = Console(record=True, width=200)
    print_table(comparison, console)
    assert "best variant per configuration" in console.export_text()
