"""Warm starts for the sweep's one-process points: a fork server that imports torch, the
compilers and the harness once, from which each such point's process is forked.

A fresh `python -m bench.run` spends its first seconds importing: ~4 s on the 2-core CPU,
8-11 s on an H100 machine's host (`run.phase_s["start-up"]` in
results/NVIDIA-H100-80GB-HBM3/sweep.jsonl), against 1-4 s of training at most goal points.
A forked point is still its own process, so a crash or an OOM takes down only that point,
and it starts CUDA itself: the server never touches the GPU (a probe forked from it checks,
before the first point), because a CUDA driver initialised before a fork is unusable after
it.
Built on multiprocessing's forkserver, the same fork-after-import that PyTorch's DataLoader
workers rely on. Points that need more than one process still go through torchrun.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
import time

import bench

# What a run imports beyond `bench.cli` (measured with sys.modules before and after a CPU
# run): the harness and its measurement modules, dynamo and inductor (the compile watch
# imports them in every run), the fused kernels with Triton, PIL for the sample grid.
PRELOAD = (
    "bench.cli",
    "bench.run",
    "bench.precompile",
    "bench.runtime.harness",
    "bench.training.step",
    "bench.quality",
    "bench.telemetry.flops",
    "bench.telemetry.profiling",
    "bench.telemetry.environment",
    "torch._dynamo",
    "torch._inductor.compile_fx",
    "kernels",
    "PIL.Image",
)

# The CUDA driver library: mapped once a process made its first CUDA call (cuInit).
# libcudart, which importing torch maps, is not the driver.
DRIVER_PATTERN = r"/libcuda\.so"


def _driver_loaded(pattern: str, maps: str = "/proc/self/maps") -> bool:
    try:
        with open(maps, encoding="utf-8", errors="replace") as handle:
            return any(re.search(pattern, line) for line in handle)
    except OSError:  # not Linux: no /proc, no way to tell; forkserver itself is POSIX-only
        return False


def _probe(connection, driver_pattern: str) -> None:
    """Runs in a process forked from the server, which it mirrors: sends whether the CUDA
    driver is loaded (the fork copies the mapping) and the environment the server started
    with (what its imports read)."""
    connection.send((_driver_loaded(driver_pattern), dict(os.environ)))
    connection.close()


def _point_main(
    module: str, argv: list[str], stdout_path: str, stderr_path: str, env: dict
) -> None:
    """A point's process, forked from the server: `python -m MODULE ARGV`, in its own
    session (the sweep signals its process group, as for a fresh child), with the sweep's
    child environment, stdout and stderr in the given files, and its start-up counted from
    the fork."""
    bench.IMPORTED_AT = time.perf_counter()
    bench.PROCESS_START = "fork server"
    os.setsid()
    # The server started with the sweep's environment, so what its imports read is the
    # same; this makes the rest (PYTHONPATH for any subprocess) what a fresh child gets.
    os.environ.clear()
    os.environ.update(env)
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        (2, stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    # exits through SystemExit: multiprocessing turns it into the exit code
    importlib.import_module(module).main(argv)


class _ForkedProcess:
    """A forked point, seen through what `run_child` asks of a Popen: pid and poll()."""

    def __init__(self, process):
        self._process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        """None while running, else the exit code (-N: killed by signal N, as Popen)."""
        if self._process.is_alive():
            return None
        return self._process.exitcode


# Variables that change while a process runs and that no import reads: pytest names the
# running test in one, so a sweep run by a test would otherwise never find the server's
# environment its own.
_NOT_READ_ON_IMPORT = frozenset({"PYTEST_CURRENT_TEST"})


class WarmStarter:
    """Forks `python -m bench.run` points from a fork server that has imported everything a
    run needs. Started at the first point. `usable()` is False where the server cannot be
    used (`reason` says why) or was started with an environment that differs from this
    process's now (its imports may have read it); the sweep then starts a fresh interpreter."""

    driver_pattern = DRIVER_PATTERN

    def __init__(self):
        self._context = None
        self._server_env: dict | None = None
        self.reason: str | None = None
        self._lock = threading.Lock()  # precompiles start points from several threads

    def usable(self) -> bool:
        with self._lock:
            if self._context is None and self.reason is None:
                self._start_server()
            return self._context is not None and self._same_environment()

    def _same_environment(self) -> bool:
        """Every variable of this process's environment has its value in the server's. (The
        server may hold more: its imports set some, such as TORCHINDUCTOR_CACHE_DIR.)"""
        server = self._server_env or {}
        return all(
            server.get(name) == value
            for name, value in os.environ.items()
            if name not in _NOT_READ_ON_IMPORT
        )

    def _start_server(self) -> None:
        import multiprocessing

        if "forkserver" not in multiprocessing.get_all_start_methods():
            self.reason = "this platform has no fork server"
            return
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOAD))
        try:
            receiver, sender = context.Pipe(duplex=False)
            probe = context.Process(
                target=_probe, args=(sender, self.driver_pattern), name="gan-bench-probe"
            )
            probe.start()
            sender.close()
            driver_loaded, self._server_env = receiver.recv()
            probe.join()
        except Exception as exc:  # the server did not come up: fresh interpreters
            self.reason = f"the fork server did not start: {type(exc).__name__}: {exc}"
            return
        if driver_loaded:
            self.reason = "the fork server initialised CUDA while importing"
        else:
            self._context = context

    def start(
        self, entry: tuple[str, list[str]], stdout_path: str, stderr_path: str, env: dict
    ) -> _ForkedProcess:
        """Fork one point: `python -m MODULE ARGV` (`entry`, from `warm_entry`) in the
        environment `env`."""
        if not self.usable():
            raise RuntimeError(f"no warm start here: {self.reason or 'another environment'}")
        module, argv = entry
        with self._lock:
            process = self._context.Process(
                target=_point_main,
                args=(module, argv, stdout_path, stderr_path, env),
                name="gan-bench-point",
            )
            process.start()
        return _ForkedProcess(process)


# The modules whose `python -m` commands a warm start can take over: each has main(argv).
WARM_MODULES = ("bench.run", "bench.precompile")


def warm_entry(cmd: list[str]) -> tuple[str, list[str]] | None:
    """(module, options) of a `python -m MODULE ...` command of this interpreter with a
    module of WARM_MODULES, else None."""
    if cmd[:2] != [sys.executable, "-m"] or len(cmd) < 3 or cmd[2] not in WARM_MODULES:
        return None
    return cmd[2], cmd[3:]
