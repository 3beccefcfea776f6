"""`.ci/measure-gpu`, the one script a GPU session runs: its control flow, on a CPU.

The measurements themselves need a CUDA GPU; what is checked here is what decides whether
a short, paid-for device call comes back with something: bad section names refused before
anything runs, sections skipped once the budget is spent, and the summary (report and
compare) made from whatever records are there, whatever the budget.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "measure-gpu"
# Real records (eager, compile, triton, compile+triton; 3 seeds each), measured on a CPU.
RECORDS = REPO / "results" / "cpu-intel-xeon-2core" / "quality-parity.jsonl"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run_script(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SCRIPT), str(out), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_unknown_section_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    result = run_script(out, "60", "quick", "benchmarks")
    assert result.returncode == 2
    assert "unknown section 'benchmarks'" in result.stderr
    assert "known: quick fused-paths device-rates goals parity" in result.stderr
    assert not out.exists()


def test_spent_budget_skips_sections_but_still_summarises(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(RECORDS, out / "sweep.jsonl")
    shutil.copy(RECORDS, out / "parity.jsonl")  # left by an earlier call
    result = run_script(out, "5", "quick", "kernels", "full", "summary")
    assert result.returncode == 0, result.stderr
    sections = (out / "sections.txt").read_text()
    assert "gpu-tests skipped: budget spent" in sections
    assert "quick-sweep skipped: budget spent" in sections
    assert "kernels skipped: budget spent" in sections
    assert "full skipped: budget spent" in sections
    assert "report rc=0" in sections and "compare rc=0" in sections
    assert "goals rc=0" in sections and (out / "goals.md").is_file()
    assert "compile+triton" in (out / "compare.md").read_text()
    assert (out / "report" / "report.md").is_file()
    assert (out / "env.json").is_file()


def test_every_sweep_section_is_a_valid_plan(tmp_path):
    """Each sweep the script starts parses and plans (variant names, options): a typo
    found here costs nothing, found on the GPU it costs a section of the device time."""
    sections = ["quick", "goals", "full", "parity", "parity-more"]
    sweeps = ["quick-sweep", "goals", "full", "parity", "parity-more"]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "MEASURE_GPU_DRY_RUN": "1"}
    result = subprocess.run(
        ["bash", str(SCRIPT), str(out), "300", *sections],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = (out / "sections.txt").read_text()
    for name in sweeps:
        log = (out / f"{name}.log").read_text()
        assert f"{name} rc=0" in written, (name, log[-2000:])
        assert "Nothing was run or written." in log, (name, log[-2000:])
    assert not list(out.glob("*.jsonl"))


def test_the_grid_sweeps_resume_each_other():
    """quick, goals and full append to one file with the GPU defaults (steps, warm-up): a
    point one of them measured is resumed by the others, not run twice."""
    script = SCRIPT.read_text()

    def section(name: str) -> str:
        return script.split(f"    {name})\n")[1].split(";;")[0]

    for name in ("quick", "goals", "full"):
        block = section(name)
        assert " sweep.jsonl " in block, name
        assert "--steps" not in block and "--warmup-steps" not in block, name
    assert "--grid goals" in section("goals") and "--grid full" in section("full")


def test_kernel_sections_select_benchmark_cases():
    """Every --match text of the kernel sections names at least one benchmark case in the
    dtypes the section asks for (a typo would make the section fail on the device)."""
    from bench.kernelbench.batchnorm import benchmark_cases

    script = SCRIPT.read_text()
    for name in ("kernels", "kernels-tune", "fused-paths"):
        block = script.split(f"    {name})\n")[1].split(";;")[0]
        match = re.search(r"--match (\S+)", block)
        dtypes = re.search(r"--dtypes (\S+)", block)
        names = [
            c.name
            for c in benchmark_cases()
            if dtypes is None or c.dtype in dtypes.group(1).split(",")
        ]
        for text in match.group(1).split(",") if match else []:
            assert any(text in n for n in names), (name, text)


def test_device_rates_imports_what_exists():
    """The device-rates section's Python imports names that exist (it runs only on a GPU,
    where a moved helper would fail the section)."""
    import importlib

    block = SCRIPT.read_text().split("    device-rates)\n")[1].split(";;")[0]
    imports = re.findall(r"^from (\S+) import (.+)$", block, flags=re.MULTILINE)
    assert imports
    for module, names in imports:
        imported = importlib.import_module(module)
        for name in names.split(","):
            assert hasattr(imported, name.strip()), (module, name)


def test_parity_sections_cover_every_dcgan_variant_of_the_goal_grid():
    """Quality parity: every variant lands within eager's seed-to-seed spread (DCGAN-32 on
    mnist5k, on a GPU, at least 3 seeds): the parity sections together name each variant
    the goal grid runs on DCGAN, at the same points, seeds and iterations."""
    from bench.sweep.grid import DCGAN_GOAL_VARIANTS

    script = SCRIPT.read_text()
    named: set[str] = set()
    for name in ("parity", "parity-more"):
        block = script.split(f"    {name})\n")[1].split(";;")[0]
        args = dict(
            re.findall(r"--(models|datasets|batch-sizes|steps|seeds|variants) (\S+)", block)
        )
        assert (args["models"], args["datasets"], args["batch-sizes"]) == (
            "dcgan32",
            "mnist5k",
            "64",
        )
        assert (args["steps"], args["seeds"]) == ("1000", "0,1,2") and "parity.jsonl" in block
        named |= set(args["variants"].split(","))
    assert named == set(DCGAN_GOAL_VARIANTS)


def test_one_lease_verifies_the_tree_within_ten_minutes():
    """`quick` (the GPU tests and the quick grid) and `fused-paths` run in one short device
    lease: their sections' limits leave a minute of ten for the start and the summary."""
    script = SCRIPT.read_text()
    total = 0
    for name in ("quick", "fused-paths"):
        block = script.split(f"    {name})\n")[1].split(";;")[0]
        limits = re.findall(r"(?:section|sweep) [\w-]+ (\d+)", block)
        assert limits, name
        total += sum(map(int, limits))
    assert total <= 540
