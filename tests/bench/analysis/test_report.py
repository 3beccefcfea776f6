"""`gan-bench report`: real PNG files, and markdown that links them and the sample grids."""

from __future__ import annotations

import os
import re

import pytest

from bench.analysis.report import write_report
from bench.cli import main
from bench.telemetry.records import append_record
from result_records import record

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def results(tmp_path, grid=None):
    """Two models × two precisions, two batch sizes, two variants, world sizes 1 and 2."""
    path = tmp_path / "results.jsonl"
    for model in ("mlp", "dcgan32"):
        for precision in ("fp32", "bf16"):
            for batch in (32, 128):
                for name, speed in (("eager", 1.0), ("compile", 1.4)):
                    for repeat in (0, 1):
                        rate = speed * batch * 10 * (1 + 0.05 * repeat)
                        append_record(
                            str(path),
                            record(
                                name,
                                rate,
                                700.0 + batch,
                                model=model,
                                precision=precision,
                                batch=batch,
                                repeat=repeat,
                                grid=grid if batch == 32 else None,
                            ),
                        )
            append_record(
                str(path),
                record(
                    "eager", 128 * 16.0, 900.0, model=model, precision=precision, batch=128, world=2
                ),
            )
    return path


def assert_real_png(path):
    data = open(path, "rb").read()
    assert data.startswith(PNG_SIGNATURE), path
    assert len(data) > 10_000, f"{path}: {len(data)} bytes is too small for a plot"
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300
    assert pixels.std() > 0.01  # not a blank canvas


def test_report_writes_plots_and_markdown_linking_them(tmp_path):
    grid = tmp_path / "grids" / "sample grid.png"  # a space: the link must survive it
    grid.parent.mkdir()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(grid, [[0.0, 1.0], [1.0, 0.0]], cmap="gray")
    out_dir = tmp_path / "report"
    written = write_report([str(results(tmp_path, grid=str(grid)))], str(out_dir))
    names = sorted(os.path.basename(p) for p in written)
    assert names == [
        "memory_vs_batch.png",
        "report.md",
        "scaling.png",
        "speedup.png",
        "throughput_vs_batch.png",
    ]
    for path in written:
        if path.endswith(".png"):
            assert_real_png(path)
    md = (out_dir / "report.md").read_text()
    for name in ("speedup.png", "throughput_vs_batch.png", "scaling.png", "memory_vs_batch.png"):
        assert f"]({name})" in md  # relative links next to the markdown
    assert "| model | dataset |" in md and "1.40×" in md  # the compare table
    assert "efficiency" in md  # the scaling table
    assert "peak RSS" in md
    # Sample grids side by side per variant, linked relative to the report folder.
    assert "## Sample grids" in md
    links = re.findall(r"!\[(eager|compile)\]\(<([^>]+)>\)", md)
    assert {v for v, _ in links} == {"eager", "compile"}
    for _, link in links:
        assert not os.path.isabs(link)
        assert os.path.samefile(out_dir / link, grid)


def test_report_cli_and_environments_apart(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    for device in ("CPU A", "CPU B"):
        for batch in (16, 64):
            append_record(
                str(path), record("eager", 10.0 * batch, 800.0, batch=batch, device=device)
            )
    out_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["report", str(path), "--out-dir", str(out_dir)])
    assert info.value.code == 0
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    # One throughput and one memory plot per environment; no scaling data, so no scaling plot,
    # and one variant, so no speed-up plot.
    assert pngs == [
        "memory_vs_batch-cpu-a-torch-2-14-0.png",
        "memory_vs_batch-cpu-b-torch-2-14-0.png",
        "throughput_vs_batch-cpu-a-torch-2-14-0.png",
        "throughput_vs_batch-cpu-b-torch-2-14-0.png",
    ]
    md = (out_dir / "report.md").read_text()
    assert "**Warning:**" in md and "2 environments" in md
    assert "No data for this plot (one world size per configuration)" in md
    assert "No data for this plot (no configuration has an ok eager run and another" in md
    assert "wrote" in capsys.readouterr().out


def test_report_missing_results_is_exit_2(tmp_path, capsys):
    out_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["report", str(tmp_path / "none.jsonl"), "--out-dir", str(out_dir)])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not out_dir.exists()


def test_report_with_a_baseline_no_record_ran_is_exit_2(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    append_record(str(path), record("eager", 100.0, 800.0, batch=16))
    out_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["report", str(path), "--out-dir", str(out_dir), "--baseline", "compile"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'compile' matches no record" in err and "eager" in err
    assert not out_dir.exists()


def test_runs_that_trained_differently_are_separate_lines(tmp_path):
    from bench.analysis import report
    from bench.analysis.records import load_rows
    from bench.analysis.stats import summarise

    path = tmp_path / "r.jsonl"
    for steps, speed in ((30, 10.0), (100, 20.0)):  # a sweep's runs and runs made by hand
        for batch in (32, 64):
            rec = record("eager", speed * batch, 800.0, batch=batch)
            rec["config"]["steps"] = steps
            append_record(str(path), rec)
    rows = load_rows([str(path)])
    comparison = summarise(rows, "eager")
    plt = report._pyplot()
    fig = report._per_batch_figure(plt, comparison, comparison.groups, report._throughput,
                                   "images/s", "t")  # fmt: skip
    (ax,) = fig.axes
    lines = {
        line.get_label(): list(line.get_ydata())
        for line in ax.get_lines()
        if not line.get_label().startswith("_")  # error bars
    }
    assert lines == {"eager · ?, 30 steps": [320.0, 640.0], "eager · ?, 100 steps": [640.0, 1280.0]}
    plt.close(fig)


def test_speedup_figure_bars_lines_and_parity_colours(tmp_path):
    """A bar per ok variant, fastest on top, at its speed-up over the baseline; a line at
    1x and one at torch.compile's speed-up; a variant outside the quality band in red."""
    from matplotlib.colors import to_rgba

    from bench.analysis import report
    from bench.analysis.records import load_rows
    from bench.analysis.stats import summarise

    path = tmp_path / "r.jsonl"
    for name, rate in (
        ("eager", 100.0),
        ("compile", 80.0),
        ("cuda-graph", 300.0),
        ("triton", 150.0),
    ):
        rec = record(name, rate, 800.0, batch=64)
        if name == "cuda-graph":
            rec["metrics"]["mfu"] = 0.25
        append_record(str(path), rec)
    failed = record("channels-last", 500.0, 800.0, batch=64)
    failed["status"], failed["reason"] = "failed", "boom"  # not a bar: it has no speed-up
    append_record(str(path), failed)
    append_record(str(path), record("eager", 50.0, 800.0, batch=16))  # no other variant
    comparison = summarise(load_rows([str(path)]), "eager")
    group = next(g for g in comparison.groups if g.batch_size == 64)
    fast = next(s for s in group.variants if s.variant == "cuda-graph")
    fast.parity = {"fd": {"verdict": "outside", "reason": None}}
    plt = report._pyplot()
    fig = report._speedup_figure(plt, comparison, comparison.groups, "t")
    (ax,) = [a for a in fig.axes if a.get_visible()]  # batch 16 has no panel
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["compile", "eager", "triton", "cuda-graph"]
    widths = [patch.get_width() for patch in ax.patches]
    assert widths == pytest.approx([0.8, 1.0, 1.5, 3.0])
    assert ax.patches[3].get_facecolor() == to_rgba("C3")  # outside the quality band
    assert ax.patches[2].get_facecolor() == to_rgba("C0")  # no verdict
    assert ax.patches[1].get_facecolor() == to_rgba("C7")  # the baseline
    vertical = sorted(
        line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() != "None"
    )
    assert vertical == pytest.approx([0.8, 1.0])
    texts = {t.get_text() for t in ax.texts}
    assert "3.00× · 25% MFU" in texts and "1.50×" in texts and " torch.compile" in texts
    plt.close(fig)


def test_speedup_figure_is_none_without_a_baseline_and_a_rival(tmp_path):
    from bench.analysis import report
    from bench.analysis.records import load_rows
    from bench.analysis.stats import summarise

    path = tmp_path / "r.jsonl"
    append_record(str(path), record("compile", 80.0, 800.0, batch=64))
    append_record(str(path), record("triton", 90.0, 800.0, batch=64))
    append_record(str(path), record("eager", 50.0, 800.0, batch=16))
    comparison = summarise(load_rows([str(path)]), "eager")
    assert report._speedup_figure(report._pyplot(), comparison, comparison.groups, "t") is None
