"""Result records written by hand for the analysis tests: shaped as bench.runtime.harness writes
them, with only the fields the analysis reads, so each test states the numbers it checks."""

from __future__ import annotations

import pytest

from bench.analysis.records import to_row
from bench.cli import main
from bench.telemetry.records import append_record


def record(
    variant="eager",
    images_per_s=100.0,
    memory=1000.0,
    *,
    model="mlp",
    dataset="synthetic",
    batch=64,
    precision="fp32",
    world=1,
    repeat=0,
    seed=0,
    status="ok",
    reason=None,
    device="Test CPU",
    torch_version="2.14.0",
    device_type="cpu",
    quality=None,
    grid=None,
    scaling=None,
) -> dict:
    """A record of one run; `memory` is the peak the device type records (GPU: allocated,
    CPU: the process's resident set)."""
    memory_field = "peak_allocated_mib" if device_type == "cuda" else "peak_rss_mib"
    metrics = {}
    if status == "ok":
        metrics = {"images_per_s": images_per_s, memory_field: memory}
        if grid:
            metrics["sample_grid_path"] = grid
    rec = {
        "schema_version": 1,
        "run_id": f"{variant}-{seed}-{repeat}",
        "status": status,
        "reason": reason,
        "config": {
            "model": model,
            "dataset": dataset,
            "batch_size": batch,
            "precision": precision,
            "steps": 30,
            "repeat": repeat,
            "seed": seed,
            "nproc": 1,
            "variant": variant,
        },
        "run": {"world_size": world, "variant": variant},
        "environment": {
            "device_name": device,
            "torch": torch_version,
            "device_type": device_type,
            "world_size": world,
        },
        "metrics": metrics,
    }
    if quality is not None:
        rec["quality"] = quality
    if scaling is not None:  # records from before --scaling have none: weak
        rec["config"]["scaling"] = scaling
    return rec


def rows_of(*records):
    return [to_row(r, "mem.jsonl") for r in records]


def variant(comparison, name, **group):
    """The summary of variant `name` in the first group whose fields match `group`."""
    for g in comparison.groups:
        if all(getattr(g, k) == v for k, v in group.items()):
            for s in g.variants:
                if s.variant == name:
                    return s
    raise LookupError(name)


def write(path, records, extra_lines=()):
    """Append `records` to a results file, then `extra_lines` as they are (corrupt lines)."""
    for rec in records:
        append_record(str(path), rec)
    with open(path, "a", encoding="utf-8") as handle:
        for line in extra_lines:
            handle.write(line + "\n")


def run_cli(*args):
    """`gan-bench ARGS...`; its exit code."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return info.value.code


# Quality parity: eager's FD per seed 90, 100, 110 (mean 100, s.d. 10): the band is [80, 120];
# KID per seed 0.010, 0.020, 0.030 (mean 0.02, s.d. 0.01): [0.0, 0.04].
EAGER_FD = (90.0, 100.0, 110.0)
EAGER_KID = (0.010, 0.020, 0.030)


def q(fd, kid, extractor="lenet-mnist5k-28", n_fake=2000):
    """A record's quality block: FD and KID measured with `extractor` on `n_fake` images."""
    return {
        "fd": fd,
        "fd_name": f"FD-{extractor}@{n_fake}",
        "kid_mean": kid,
        "extractor": extractor,
        "n_real": 1000,
        "n_fake": n_fake,
        "split": "test",
    }


def seeded(name, fds, kids, seeds=(0, 1, 2), extractor="lenet-mnist5k-28", n_fake=2000, **kw):
    """One record per seed of `name` with the given FD and KID."""
    return [
        record(name, seed=seed, quality=q(fd, kid, extractor, n_fake), dataset="mnist5k", **kw)
        for seed, fd, kid in zip(seeds, fds, kids, strict=True)
    ]
