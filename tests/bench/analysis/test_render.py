"""A comparison in each format: the numbers and what each marks (a group without its
baseline, a quality outside the baseline's spread, no quality at all)."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from rich.console import Console

from bench.analysis.render import print_table, render_csv, render_json, render_markdown
from bench.analysis.stats import outside_parity, parity_verdict, summarise
from result_records import EAGER_FD, EAGER_KID, record, rows_of, seeded, variant


def test_group_without_baseline_says_so(capsys):
    s = summarise(rows_of(record("eager", 100.0, batch=64), record("compile", 90.0, batch=128)))
    lonely = next(g for g in s.groups if g.batch_size == 128)
    assert not lonely.baseline_found
    assert "no eager baseline in this group" in render_markdown(s)


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


def test_no_parity_without_quality():
    s = summarise(rows_of(record("eager", 100.0), record("compile", 150.0)))
    assert variant(s, "compile").parity == {} and variant(s, "compile").parity_note is None
    csv_row = next(
        r for r in csv.DictReader(io.StringIO(render_csv(s))) if r["variant"] == "compile"
    )
    assert csv_row["quality_parity"] == "" and csv_row["quality_parity_detail"] == ""
