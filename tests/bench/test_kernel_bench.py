"""`gan-bench kernels`: refuses to time the interpreter; on a GPU, rows become records."""

from __future__ import annotations

import pytest
import torch

from bench.config import ConfigError
from bench.kernel_bench import run_kernel_benchmarks
from bench.records import read_records

ARGS = {
    "dtypes": ["fp32"],
    "impls": ["eager", "triton"],
    "passes": ["forward+backward"],
    "match": "bn1d",
    "rep_ms": 5,
    "quiet": True,
}


def test_needs_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        run_kernel_benchmarks(out=str(tmp_path / "k.jsonl"), **ARGS)
    assert not (tmp_path / "k.jsonl").exists()


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("field", "value"),
    [("dtypes", ["fp8"]), ("impls", ["cuda"]), ("passes", []), ("match", "no-such-case")],
)
def test_bad_choices(tmp_path, field, value):
    with pytest.raises(ConfigError):
        run_kernel_benchmarks(out=str(tmp_path / "k.jsonl"), **{**ARGS, field: value})


@pytest.mark.gpu
def test_one_case_becomes_records(tmp_path):
    out = tmp_path / "k.jsonl"
    rows = run_kernel_benchmarks(out=str(out), **ARGS)
    records = [r for _, r in read_records(str(out))]
    assert records == rows and len(rows) == 2  # bn1d fp32 × (eager, triton)
    for r in rows:
        assert r["kind"] == "kernel" and r["status"] == "ok", r.get("reason")
        assert r["environment"]["device_type"] == "cuda"
        assert r["ms_p50"] > 0 and r["gb_per_s"] > 0
    assert rows[1]["speedup_vs_eager"] == pytest.approx(rows[0]["ms_p50"] / rows[1]["ms_p50"])
