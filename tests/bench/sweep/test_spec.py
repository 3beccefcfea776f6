"""`gan-bench sweep`'s options: parsed and validated before anything runs (one line, exit
code 2), variants in any order."""

from __future__ import annotations

import inspect

import pytest

from bench import cli
from bench.config import ConfigError, RunConfig
from bench.sweep import (
    build_spec,
    loop,
)
from sweep_specs import (
    CPU2,
    run_cli,
)


def test_sweep_appends_to_the_file_run_appends_to_by_default():
    # so that `gan-bench compare results/runs.jsonl` prints the sweep's table again
    assert build_spec(machine=CPU2).out == RunConfig.out == "results/runs.jsonl"
    assert inspect.signature(cli.sweep).parameters["out"].default == RunConfig.out


def test_variants_option_takes_any_order_and_rejects_conflicts(capsys):
    spec = build_spec(machine=CPU2, variants="cuda-graph+channels-last,eager")
    assert {p.variant for p in spec.points()} == {"channels-last+cuda-graph", "eager"}
    with pytest.raises(ConfigError, match="graph inside a graph"):
        build_spec(machine=CPU2, variants="compile-reduce-overhead+cuda-graph")


BAD = [
    (["--models", ""], "--models is empty"),
    (["--models", " , "], "--models is empty"),
    (["--models", "mlp,resnet"], "'resnet' is not known"),
    (["--datasets", "imagenet"], "'imagenet' is not known"),
    (["--datasets", "cifar10"], "data directory"),
    (["--precisions", "fp8"], "'fp8' is not known"),
    (["--variants", "eager,turbo"], "'turbo' is not a speed-up"),
    (["--batch-sizes", "32,abc"], "'abc' is not a whole number"),
    (["--batch-sizes", "0"], "must be at least 1"),
    (["--batch-sizes", "32,-4"], "must be at least 1"),
    (["--gpus", "0"], "must be at least 1"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--steps", "abc"], "--steps"),  # typer's own wording differs by version
    (["--warmup-steps", "-1"], "--warmup-steps must be at least 0"),
    (["--repeats", "0"], "--repeats must be at least 1"),
    (["--timeout-per-point", "0"], "--timeout-per-point must be positive"),
    (["--device", "tpu"], "--device 'tpu' is not known"),
    (["--seeds", "a,b"], "--seeds: 'a' is not a whole number"),
    (["--seeds", "0,1.5"], "--seeds: '1.5' is not a whole number"),
    (["--seeds", "0,-1"], "--seeds: -1 must be at least 0"),
    (["--seeds", "-3"], "--seeds: -3 must be at least 0"),
    (["--seeds", str(2**32)], "--seeds: 4294967296 must be at most 4294967295"),
    (["--seeds", " , "], "--seeds is empty"),
    (["--precompile-jobs", "-1"], "--precompile-jobs must be at least 0"),
    (["--concurrent", "0"], "--concurrent must be at least 1"),
    (["--concurrent", "2", "--precompile-jobs", "1"], "give one of the two"),
    (["--concurrent", "2", "--gpus", "1,2"], "--concurrent runs one-process points"),
    (["--scaling", "linear"], "--scaling 'linear' is not known; choose one of: weak, strong"),
]


@pytest.mark.parametrize(
    ("args", "message"), BAD, ids=lambda a: " ".join(a) if isinstance(a, list) else ""
)
def test_bad_input_is_one_line_exit_2_nothing_run(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loop, "run_child", lambda *a, **k: pytest.fail("ran a child"))
    out = tmp_path / "sweep.jsonl"
    assert run_cli("sweep", *args, "--out", str(out)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gan-bench: error: "), err
    assert message in lines[0]
    assert not out.exists()
