"""Comparisons of hand-written records: the arithmetic, the grouping, quality parity and
the best variant."""

from __future__ import annotations

import json
import re

import pytest
from rich.console import Console

from bench.analysis.records import load_rows, to_row
from bench.analysis.render import print_table, render_json, render_markdown
from bench.analysis.stats import (
    below_threshold,
    best_variants,
    outside_parity,
    parity_verdict,
    summarise,
)
from result_records import EAGER_FD, EAGER_KID, q, record, rows_of, run_cli, seeded, variant, write


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


def test_weak_and_strong_scaling_are_labelled_and_grouped_apart():
    s = summarise(
        rows_of(
            record("eager", 100.0, batch=64, world=1),  # no config.scaling: weak
            record("eager", 180.0, batch=64, world=2),  # 64 per process, 128 in all
            record("eager", 100.0, batch=64, world=1, scaling="strong"),
            record("eager", 150.0, batch=64, world=2, scaling="strong"),  # 32 per process
        ),
        "eager",
    )
    assert [(r.scaling, r.world_size) for r in s.scaling] == [
        ("weak", 1),
        ("weak", 2),
        ("strong", 1),
        ("strong", 2),
    ]
    by = {(r.scaling, r.world_size): r for r in s.scaling}
    assert by[("weak", 2)].efficiency == pytest.approx(0.9)
    # Strong: the same 64 images per update, split in two; the same efficiency formula.
    assert by[("strong", 2)].efficiency == pytest.approx(0.75)
    assert by[("strong", 2)].batch_size == 64
    strong = next(g for g in s.groups if g.scaling == "strong" and g.world_size == 2)
    assert strong.batch_per_process == 32
    assert "batch 64 global" in strong.label
    assert variant(s, "eager", scaling="weak", world_size=2).scaling_efficiency == pytest.approx(
        0.9
    )

    md = render_markdown(s)
    assert "weak scaling: the batch per process is fixed" in md
    table = md[md.index("| scaling |") :].splitlines()
    assert [line.split(" | ")[0] for line in table[2:6]] == ["| weak"] * 2 + ["| strong"] * 2
    assert "| 64 global | fp32 | 2 |" in md  # the main table's batch cell says which batch


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
