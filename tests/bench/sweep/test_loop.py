"""Real child processes that succeed, fail, hang and get interrupted, each leaving one whole
record; points side by side with --concurrent."""

from __future__ import annotations

import re
import sys
import time

from bench import sweep
from bench.sweep import (
    ChildResult,
    loop,
)
from sweep_specs import (
    ENV,
    TINY,
    fake,
    gone,
    one_point_spec,
    pid_child,
    records,
    run_cli,
    sweep_stopped_by_ctrl_c,
)


def test_each_child_is_given_its_seed(tmp_path, monkeypatch):
    seen = []

    def command(cfg, world_size):
        seen.append(cfg.seed)
        return sweep.point_command(cfg, world_size)

    def no_child(cmd, *args, **kwargs):
        commands.append(cmd)
        return ChildResult(1, 0.0, timed_out=False, stopped_by=None, stderr_tail=["boom"])

    commands: list[list[str]] = []
    monkeypatch.setattr(loop, "point_command", command)
    monkeypatch.setattr(loop, "run_child", no_child)
    spec = one_point_spec(tmp_path, seeds="0,1,2")
    spec._environment = {**ENV, "device_type": "cpu"}
    assert sweep.execute(spec) == 1  # every child "failed": no record of its own
    assert seen == [0, 1, 2]
    assert [cmd[cmd.index("--seed") + 1] for cmd in commands] == ["0", "1", "2"]
    assert [r["config"]["seed"] for r in records(spec.out)] == [0, 1, 2]


def test_a_failing_point_is_recorded_and_the_others_run(tmp_path, monkeypatch, capsys):
    fake(
        monkeypatch,
        "import sys; print('Traceback ...\\nValueError: boom at step 3', "
        "file=sys.stderr); sys.exit(1)",
        batch=16,
    )
    spec = one_point_spec(tmp_path, batch_sizes="8,16")
    assert sweep.execute(spec) == 1
    by_batch = {r["config"]["batch_size"]: r for r in records(spec.out)}
    ok, failed = by_batch[8], by_batch[16]
    assert ok["status"] == "ok" and ok["metrics"]["images_per_s"] > 0
    assert ok["run"]["variant"] == "eager" and ok["run"]["variant_fields"]["compile_mode"] == "none"
    assert ok["config"]["repeat"] == 0
    assert failed["status"] == "failed"
    assert "exit code 1" in failed["reason"] and "boom at step 3" in failed["reason"]
    assert failed["stderr_tail"][-1] == "ValueError: boom at step 3"
    assert failed["environment"]["device_name"] == ok["environment"]["device_name"]
    assert failed["run"]["world_size"] == 1 and failed["metrics"] == {}
    assert "compare against eager" in capsys.readouterr().out


def test_a_hanging_point_times_out(tmp_path, monkeypatch):
    code, pid_file = pid_child(tmp_path)
    fake(monkeypatch, code)
    spec = one_point_spec(tmp_path, timeout_per_point=2.0)
    start = time.monotonic()
    assert sweep.execute(spec) == 1
    assert time.monotonic() - start < 30
    (rec,) = records(spec.out)
    assert rec["status"] == "timeout"
    assert "--timeout-per-point 2 s" in rec["reason"]
    assert gone(int(pid_file.read_text()))


def test_ctrl_c_stops_the_child_and_leaves_whole_records(tmp_path, monkeypatch):
    code, pid_file = pid_child(tmp_path)
    fake(monkeypatch, code)
    spec = one_point_spec(tmp_path, batch_sizes="8,16", timeout_per_point=60.0)
    assert sweep_stopped_by_ctrl_c(spec, ready=pid_file.exists) == 130
    assert gone(int(pid_file.read_text()))
    (rec,) = records(spec.out)  # the second point never started
    assert rec["status"] == "interrupted" and "SIGINT" in rec["reason"]


def test_cli_sweep_over_world_sizes_1_and_2_then_resume(tmp_path, capsys):
    out = tmp_path / "sweep.jsonl"
    args = [
        "sweep",
        "--models",
        "mlp",
        "--datasets",
        "synthetic",
        "--batch-sizes",
        "8",
        "--precisions",
        "fp32",
        "--gpus",
        "1,2",
        "--variants",
        "eager",
        *TINY,
        "--out",
        str(out),
    ]
    assert run_cli(*args) == 0, capsys.readouterr().err
    recs = records(out)
    assert [r["status"] for r in recs] == ["ok", "ok"], [r.get("reason") for r in recs]
    assert sorted(r["run"]["world_size"] for r in recs) == [1, 2]
    assert all(r["run"]["variant"] == "eager" and r["config"]["repeat"] == 0 for r in recs)
    two = next(r for r in recs if r["run"]["world_size"] == 2)
    assert two["run"]["backend"] == "gloo" and two["metrics"]["params_identical_across_ranks"]
    captured = capsys.readouterr()
    assert "compare against eager" in captured.out and "efficiency" in captured.out
    assert "[2/2]" in captured.err
    # each point's line: its wall time and, of that, its process's start-up (imports)
    assert re.search(r"\[1/2\] .*ok, [\d,]+ images/s \[[\d.]+ s, start-up [\d.]+ s\]", captured.err)
    # Again: both runs are recorded ok, so nothing runs and nothing is appended.
    assert run_cli(*args) == 0
    assert len(records(out)) == 2
    assert "2 already recorded" in capsys.readouterr().err


def test_sample_grids_outlive_the_temporary_folder(tmp_path, monkeypatch):
    """The harness writes a grid next to the child's --out (a temporary file): the sweep
    keeps it next to its own --out and records the new path."""

    def command(cfg, world_size):
        code = (
            "import json, os, sys\n"
            f"out = {cfg.out!r}\n"
            "grid = os.path.join(os.path.dirname(out), 'samples', 'abc.png')\n"
            "os.makedirs(os.path.dirname(grid))\n"
            "open(grid, 'wb').write(b'png')\n"
            "rec = {'schema_version': 1, 'status': 'ok', 'reason': None,\n"
            f"       'config': {{'model': 'mlp', 'dataset': 'synthetic', 'batch_size': 8,\n"
            "                  'precision': 'fp32', 'steps': 2, 'repeat': 0},\n"
            "       'run': {'world_size': 1, 'variant': 'eager'},\n"
            "       'environment': {'device_name': 'x', 'torch': 'y', 'device_type': 'cpu'},\n"
            "       'metrics': {'images_per_s': 1.0, 'sample_grid_path': grid}}\n"
            "open(out, 'a').write(json.dumps(rec) + '\\n')\n"
        )
        return [sys.executable, "-c", code]

    monkeypatch.setattr(loop, "point_command", command)
    spec = one_point_spec(tmp_path)
    assert sweep.execute(spec) == 0
    (rec,) = records(spec.out)
    kept = tmp_path / "samples" / "abc.png"
    assert rec["metrics"]["sample_grid_path"] == str(kept)
    assert kept.read_bytes() == b"png"


def test_concurrent_points_run_side_by_side_at_most_n_at_once(tmp_path, monkeypatch):
    spans = tmp_path / "spans"
    spans.mkdir()
    code = (
        "import os, sys, time; t0 = time.monotonic(); time.sleep(1.5); "
        f"open(os.path.join({str(spans)!r}, str(os.getpid())), 'w').write("
        "f'{t0} {time.monotonic()}')"
    )
    fake(monkeypatch, code)
    spec = one_point_spec(tmp_path, batch_sizes="8,16,32", concurrent=2)
    sweep.execute(spec)
    written = records(spec.out)
    assert sorted(r["config"]["batch_size"] for r in written) == [8, 16, 32]
    assert {r["run"]["concurrency"] for r in written} == {2}
    intervals = [tuple(map(float, f.read_text().split())) for f in spans.iterdir()]
    assert len(intervals) == 3
    most = max(sum(a <= t < b for a, b in intervals) for t, _ in intervals)
    assert most == 2  # two overlapped; never three


def test_ctrl_c_stops_every_concurrent_child_and_starts_no_more(tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    pids.mkdir()
    code = (
        f"import os, time; open(os.path.join({str(pids)!r}, str(os.getpid())), 'w').close(); "
        "time.sleep(60)"
    )
    fake(monkeypatch, code)
    spec = one_point_spec(tmp_path, batch_sizes="8,16,32", concurrent=2, timeout_per_point=60.0)
    assert sweep_stopped_by_ctrl_c(spec, ready=lambda: len(list(pids.iterdir())) == 2) == 130
    started = [int(p.name) for p in pids.iterdir()]
    assert len(started) == 2 and all(gone(pid) for pid in started)  # the third never started
    written = records(spec.out)
    assert len(written) == 2 and {r["status"] for r in written} == {"interrupted"}


def test_concurrent_points_give_quality_and_no_speed_in_the_comparison(tmp_path, capsys):
    spec = one_point_spec(tmp_path, batch_sizes="8,16", concurrent=2)
    assert sweep.execute(spec) == 0
    written = records(spec.out)
    assert [r["status"] for r in written] == ["ok", "ok"]
    assert all(r["run"]["concurrency"] == 2 for r in written)
    assert "speed not compared" in capsys.readouterr().out
