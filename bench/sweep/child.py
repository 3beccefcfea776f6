"""One child process of the sweep, run safely: its command (`python -m bench.run`, or
torchrun for more than one process), its environment, and `run_child`, which runs it in its
own process group to the end, the time limit, or a signal to the sweep (SIGINT/SIGTERM are
noted by `SignalCatcher` and forwarded; after a grace period, or a second signal, the
group and every descendant found in /proc are killed), keeping the tail of its stderr."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

from bench.config import RunConfig
from bench.runtime import launcher
from bench.runtime.signals import SignalCatcher
from bench.runtime.slurm import run_args
from bench.sweep.warm import WarmStarter, warm_entry
from bench.telemetry.environment import checkout_pythonpath
from bench.telemetry.records import read_records

# After SIGINT/SIGTERM (Ctrl-C, or the time limit) a child gets this long to write its
# `interrupted` record and exit; torchrun itself gives its workers up to 30 s. Then SIGKILL.
STOP_GRACE_S = 30.0
POLL_S = 0.2  # how often the sweep looks at a running child (no work in between)
STDERR_TAIL_LINES = 20


def child_env() -> dict:
    """The children's environment: ours, with this checkout first on the import path so that
    `-m bench.run` runs the same code as the sweep, installed or not."""
    return {**os.environ, "PYTHONPATH": checkout_pythonpath()}


def point_command(cfg: RunConfig, world_size: int) -> list[str]:
    """The child command of one run: `python -m bench.run` for one process, else torchrun
    with a c10d rendezvous on a free loopback port (bench.runtime.launcher). The seed is always
    given, its default too: a sweep over seeds names each run's seed in its command."""
    if world_size == 1:
        return [sys.executable, "-m", "bench.run", *run_args(cfg)]
    port = launcher.free_loopback_port()
    return launcher.torchrun_on_this_machine(cfg.nproc, port, ["-m", "bench.run", *run_args(cfg)])


def child_record(path: str) -> dict | None:
    """The last whole record a child wrote to `path`, or None."""
    if not os.path.exists(path):
        return None
    records = [record for _, record in read_records(path) if record is not None]
    return records[-1] if records else None


@dataclass
class ChildResult:
    returncode: int
    wall_s: float
    timed_out: bool
    stopped_by: int | None  # the signal the sweep received (SIGINT/SIGTERM), if any
    stderr_tail: list[str]
    forked: bool = False  # forked from the warm server (bench/sweep/warm.py), not exec'd


def _descendants(root: int) -> list[int]:
    """Process ids below `root`, from /proc (Linux; empty elsewhere). torchrun starts each
    worker in its own session, out of reach of a signal to torchrun's group."""
    children: dict[int, list[int]] = defaultdict(list)
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
            # Field 4 is the parent id; field 2 (the name) may hold spaces and parentheses.
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_all(pgid: int, pids: list[int]) -> None:
    _signal_group(pgid, signal.SIGKILL)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _tail(path: str, lines: int = STDERR_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def run_child(
    cmd: list[str],
    timeout_s: float,
    log_prefix: str,
    signals: SignalCatcher,
    warm: WarmStarter | None = None,
) -> ChildResult:
    """Run one child in its own process group to the end, the time limit, or a signal to
    the sweep; stdout and stderr go to files next to `log_prefix`. With `warm`, a
    `python -m bench.run` (or precompile) command is forked from its server instead (same
    options, same handling), where the server is usable."""
    entry = warm_entry(cmd) if warm is not None else None
    forked = entry is not None and warm.usable()  # starts the server first: not the point's time
    start = time.monotonic()
    if forked:
        proc = warm.start(entry, log_prefix + ".stdout", log_prefix + ".stderr", child_env())
    else:
        with (
            open(log_prefix + ".stdout", "wb") as out,
            open(log_prefix + ".stderr", "wb") as err,
        ):
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=child_env(),
                start_new_session=True,  # its own group: Ctrl-C reaches the sweep, which decides
            )
    timed_out, stopped_by, stop_at, killed = False, None, None, False
    targets: list[int] = []
    while True:
        # poll + sleep rather than wait(timeout): Popen.wait polls waitpid every 50 ms, a
        # wake-up the child's timing would share a core with.
        returncode = proc.poll()
        if returncode is not None:
            break
        time.sleep(POLL_S)
        now = time.monotonic()
        if stop_at is None and (signals.received or now - start >= timeout_s):
            if signals.received:
                stopped_by = signals.received[0]
                # (a run records SIGINT and SIGTERM; a lost terminal reaches it as SIGTERM)
                sig = signal.SIGTERM if stopped_by == signal.SIGHUP else stopped_by
            else:
                timed_out, sig = True, signal.SIGTERM
            targets = _descendants(proc.pid)
            _signal_group(proc.pid, sig)  # bench.run and torchrun write/await records on it
            stop_at = now
        elif stop_at is not None and not killed:
            if now - stop_at >= STOP_GRACE_S or len(signals.received) > 1:
                # the child by its pid too (still running, so not yet reused): a forked
                # point makes its group (setsid) only once it runs, so a stop in its first
                # instant finds no group
                _kill_all(proc.pid, [proc.pid, *targets])
                killed = True
    if stop_at is not None:  # workers torchrun left behind, if it died first
        _kill_all(proc.pid, [pid for pid in targets if _alive(pid)])
    return ChildResult(
        returncode=returncode,
        wall_s=time.monotonic() - start,
        timed_out=timed_out,
        stopped_by=stopped_by,
        stderr_tail=_tail(log_prefix + ".stderr"),
        forked=forked,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
