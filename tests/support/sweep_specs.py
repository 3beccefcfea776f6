"""Sweep specs, records and fake children for the sweep tests: a 2-core CPU and an 8-GPU
machine as posed machines, one-point specs, a child replaced by `python -c CODE`."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from bench import sweep
from bench.cli import main
from bench.sweep import Machine, build_spec, loop
from bench.telemetry.records import read_records

CPU2 = Machine(
    device_type="cpu", gpu_count=0, cpu_cores=2, triton_installed=True, triton_interpret=False
)


GPU8 = Machine(
    device_type="cuda", gpu_count=8, cpu_cores=16, triton_installed=True, triton_interpret=False
)


TINY = ["--steps", "2", "--warmup-steps", "1", "--repeats", "1", "--device", "cpu"]


ENV = {"device_name": "Test CPU", "torch": "2.14.0"}


def small_spec(**fields):
    """A one-point-per-axis CPU spec (mlp, synthetic, batch 8, fp32, 1 process, eager),
    the given axes replacing those."""
    axes = {
        "machine": CPU2,
        "models": "mlp",
        "datasets": "synthetic",
        "batch_sizes": "8",
        "precisions": "fp32",
        "gpus": "1",
        "variants": "eager",
    }
    return build_spec(**{**axes, **fields})


def records(path) -> list[dict]:
    lines = list(read_records(str(path)))
    assert all(rec is not None for _, rec in lines), "a results line is not JSON"
    return [rec for _, rec in lines]


def run_cli(*args) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code


def one_point_spec(tmp_path, batch_sizes="8", **kw):
    options = dict(
        models="mlp",
        datasets="synthetic",
        batch_sizes=batch_sizes,
        precisions="fp32",
        gpus="1",
        variants="eager",
        steps=2,
        warmup_steps=1,
        repeats=1,
        out=str(tmp_path / "sweep.jsonl"),
        device="cpu",
    )
    options.update(kw)
    return build_spec(**options)


def fake(monkeypatch, code, batch=None):
    """Replace the command of the point at `batch` (or every point) by `python -c code`."""
    real = sweep.point_command

    def command(cfg, world_size):
        if batch is None or cfg.batch_size == batch:
            return [sys.executable, "-c", code]
        return real(cfg, world_size)

    monkeypatch.setattr(loop, "point_command", command)


def pid_child(tmp_path, seconds=60):
    pid_file = tmp_path / "child.pid"
    code = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        f"time.sleep({seconds})"
    )
    return code, pid_file


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def sweep_stopped_by_ctrl_c(spec, ready) -> int:
    """Run the sweep, pressing Ctrl-C once `ready()` (its children have started); the exit
    code, within 30 s."""

    def press_ctrl_c():
        deadline = time.monotonic() + 30
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    start = time.monotonic()
    code = sweep.execute(spec)
    assert time.monotonic() - start < 30
    return code


def only_record(path) -> dict:
    (record,) = records(path)
    return record


def _compiled_record(model, mode, warmup_s, env=ENV, status="ok", **run):
    return {
        "status": status,
        "config": {"model": model, "compile_mode": mode},
        "run": {"phase_s": {"start-up": 9.0, "warm-up": warmup_s}, **run},
        "environment": dict(env),
    }
