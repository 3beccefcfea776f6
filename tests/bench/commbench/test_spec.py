"""An all-reduce measurement's options: parsed and checked once, and carried to the worker
by its argv, which any launcher can start."""

from __future__ import annotations

import pytest

from bench.commbench.spec import (
    DEFAULT_SIZES,
    AllReduceSpec,
    parse_sizes,
    resolve_backend,
    worker_argv,
)
from bench.config import ConfigError


def test_default_sizes_double_from_4_kib_to_64_mib():
    assert DEFAULT_SIZES[0] == 4096 and DEFAULT_SIZES[-1] == 64 << 20
    assert all(b == 2 * a for a, b in zip(DEFAULT_SIZES[:-1], DEFAULT_SIZES[1:], strict=True))


def test_sizes_take_binary_units():
    assert parse_sizes("4096, 64KiB,1MiB,2GiB,12B") == (4096, 65536, 1 << 20, 2 << 30, 12)
    for bad in ("", "4k", "1.5MiB", "-4", "4096,,8192", "1 MB"):
        with pytest.raises(ConfigError, match="--sizes"):
            parse_sizes(bad)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"backend": "mpi"}, "--backend 'mpi'"),
        ({"dtype": "float64"}, "--dtype 'float64'"),
        ({"sizes": ()}, "--sizes is empty"),
        ({"sizes": (4098,)}, "not a positive multiple of 4"),
        ({"sizes": (0,)}, "not a positive multiple"),
        ({"iters": 0}, "--iters must be at least 1"),
        ({"warmup": -1}, "--warmup must be at least 0"),
        ({"nproc": 1}, "at least 2 processes"),
        ({"out": " "}, "--out is empty"),
    ],
)
def test_bad_specs_are_refused(fields, message):
    with pytest.raises(ConfigError, match=message):
        AllReduceSpec(**fields)


def test_sizes_are_sorted_and_distinct_and_16_bit_types_take_even_sizes():
    assert AllReduceSpec(sizes=(8192, 4096, 8192)).sizes == (4096, 8192)
    assert AllReduceSpec(sizes=(4098,), dtype="bfloat16").sizes == (4098,)


def test_the_worker_argv_rebuilds_the_spec():
    spec = AllReduceSpec(backend="gloo", sizes=(4096, 1 << 20), dtype="float16", iters=3,
                         warmup=0, out="x/a.jsonl", nproc=4)  # fmt: skip
    argv = worker_argv(spec)
    assert argv[:2] == ["-m", "bench.commbench.worker"]
    assert "--nproc" not in argv  # the workers are the processes
    assert AllReduceSpec.from_cli_args(argv[2:], nproc=4) == spec
    assert worker_argv(AllReduceSpec()) == ["-m", "bench.commbench.worker"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--iters"], "pairs"), (["--colour", "red"], "unknown option"),
     (["--iters", "many"], "not a whole number"), (["iters", "3"], "unknown option")],
)  # fmt: skip
def test_bad_worker_argv_is_refused(argv, message):
    with pytest.raises(ConfigError, match=message):
        AllReduceSpec.from_cli_args(argv, nproc=2)


def test_backend_follows_the_machine():
    assert resolve_backend("auto", False, 0, 2) == "gloo"
    assert resolve_backend("auto", True, 8, 8) == "nccl"
    assert resolve_backend("gloo", True, 8, 16) == "gloo"
    with pytest.raises(ConfigError, match="needs CUDA"):
        resolve_backend("nccl", False, 0, 2)
    with pytest.raises(ConfigError, match="one process per GPU"):
        resolve_backend("auto", True, 2, 4)
