"""A SLURM sweep planned without submitting: each point's job shape in --dry-run, the
points nodes cannot hold skipped with the reason, and the options a SLURM sweep refuses."""

from __future__ import annotations

import pytest

from bench.sweep import spec as spec_module
from sweep_specs import run_cli

DRY = ["sweep", "--dry-run", "--launcher", "slurm", "--models", "dcgan64",
       "--datasets", "synthetic", "--batch-sizes", "128", "--precisions", "bf16",
       "--variants", "eager"]  # fmt: skip


@pytest.fixture(autouse=True)
def cluster(monkeypatch):
    """A cluster whose default partition is `gpu` (sinfo is not asked)."""
    monkeypatch.setattr(spec_module, "check_cluster", lambda options: options.partition or "gpu")


def test_the_dry_run_prints_each_jobs_resources(tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    argv = [*DRY, "--gpus", "1,8,12,16", "--gpus-per-node", "8", "--time-limit", "30",
            "--out", str(out)]  # fmt: skip
    assert run_cli(*argv) == 0
    printed = capsys.readouterr().out
    assert "SLURM jobs (partition gpu), one per run:" in printed
    jobs = [line for line in printed.splitlines() if ": sbatch " in line]
    assert len(jobs) == 3  # 12 processes do not fill nodes of 8: skipped
    assert any("×16" in line and "--nodes=2 --ntasks-per-node=1 --gpus-per-node=8" in line
               for line in jobs)  # fmt: skip
    assert any("×1 " in line and "--nodes=1 --ntasks-per-node=1 --gpus-per-node=1" in line
               for line in jobs)  # fmt: skip
    assert all("--time=30" in line for line in jobs)
    assert "multiple of 8" in printed
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--timeout-per-point", "60"], "--time-limit"),
        (["--concurrent", "2"], "--max-jobs"),
        (["--device", "cuda"], "no --gpus-per-node"),
        (["--machine", "cuda:8"], "leave --machine out"),
        (["--slurm-option", "=x"], "KEY=VALUE"),
    ],
)
def test_what_a_slurm_sweep_refuses_is_one_line(tmp_path, capsys, extra, words):
    assert run_cli(*DRY, *extra, "--out", str(tmp_path / "runs.jsonl")) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
