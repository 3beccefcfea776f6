"""Result records: one JSON object per run, one line per object (results/README.md).

A record is appended in a single `write` on a file opened with O_APPEND, then flushed and
fsynced, with SIGINT/SIGTERM blocked for the duration: an interrupted run leaves either
its whole line or nothing, so the file stays valid JSON lines.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import uuid
from collections.abc import Iterator

SCHEMA_VERSION = 1
# Written by whoever started the run, never by the run itself: "timeout" (a sweep's point
# stopped at --timeout-per-point, or a SLURM job at its time limit), "skipped" (a point of a
# sweep's plan this machine cannot run), "cancelled" (a SLURM job cancelled before it ended).
STATUSES = ("ok", "diverged", "oom", "failed", "interrupted", "timeout", "cancelled", "skipped")


def _clean(value):
    """JSON has no NaN/Infinity: non-finite floats become null (strict parsers reject them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def bare_record(
    *,
    config: dict,
    world_size: int,
    variant: str,
    variant_fields: dict,
    environment: dict,
    status: str,
    reason: str,
) -> dict:
    """The record of a run that wrote none itself (skipped, or its processes died before
    any could), written by whoever started it: the config it was given, `run` with only
    the world size and the variant, the environment, empty metrics, status and reason."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "status": status,
        "reason": reason,
        "config": config,
        "run": {"world_size": world_size, "variant": variant, "variant_fields": variant_fields},
        "environment": environment,
        "metrics": {},
    }


# A run's exit code by its record's status (README "Exit codes"): 3 diverged, the run
# worked and the GAN did not; 2 is bad input, which writes no record.
EXIT_CODES = {"ok": 0, "failed": 1, "oom": 1, "diverged": 3}


def exit_code(record: dict) -> int:
    """The exit code of the run `record` describes; interrupted: 128 + the signal, as a
    shell reports a signal death (130 SIGINT, 143 SIGTERM)."""
    if record.get("status") == "interrupted":
        by_sigterm = "SIGTERM" in (record.get("reason") or "")
        return 128 + (signal.SIGTERM if by_sigterm else signal.SIGINT)
    return EXIT_CODES.get(record.get("status"), 1)


def records_since(path: str, count: int) -> list[dict]:
    """The whole records after the first `count` lines (as count_records counts them)."""
    if not os.path.exists(path):
        return []
    return [record for _, record in list(read_records(path))[count:] if record is not None]


def count_records(path: str) -> int:
    """Non-empty lines in a results file, whole records or not (0 when it does not exist)."""
    if not os.path.exists(path):
        return 0
    return sum(1 for _ in read_records(path))


def append_record(path: str, record: dict) -> None:
    """Append `record` as one line to `path`, creating parent folders as needed."""
    if record.get("status") not in STATUSES:
        raise ValueError(f"record status must be one of {STATUSES}, got {record.get('status')!r}")
    line = (json.dumps(_clean(record), sort_keys=False, allow_nan=False) + "\n").encode()
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    blocked = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # never expected for one small line on a local file
                raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def read_records(path: str) -> Iterator[tuple[int, dict | None]]:
    """Yield (line number, record or None for a line that is not a JSON object).

    Lines are decoded one by one, so a line cut or garbled into invalid UTF-8 (a disk
    filling up, a bad copy) is one bad line, not an unreadable file."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                yield number, None
                continue
            yield number, obj if isinstance(obj, dict) else None


def keep_sample_grid(record: dict, folder: str, out: str) -> None:
    """The harness writes a run's sample grid to `samples/` next to its --out: for a run
    started by a sweep or as a SLURM job, a folder of that run's own (`folder`). Move it
    to `samples/` next to `out`, where `gan-bench run --out` would have put it, and say
    so in the record."""
    metrics = record.get("metrics") or {}
    path = metrics.get("sample_grid_path")
    if not isinstance(path, str) or not os.path.isfile(path):
        return
    if os.path.commonpath([os.path.abspath(path), os.path.abspath(folder)]) != os.path.abspath(
        folder
    ):
        return
    dest = os.path.join(os.path.dirname(out), "samples", os.path.basename(path))
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    shutil.move(path, dest)
    metrics["sample_grid_path"] = dest
