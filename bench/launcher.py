"""`gan-bench run --nproc N`: start torchrun for the user on this machine.

The child command is `python -m torch.distributed.run` with a c10d rendezvous on a free
loopback port (what `--standalone` does, with the port chosen here so it is known), and
`-m bench.run` followed by the options that rebuild the same RunConfig in every worker.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import torch

from bench.config import RunConfig, check_device


def resolve_device(cfg: RunConfig) -> str:
    """ "cuda" or "cpu" for this config on this machine; ConfigError if it cannot run here."""
    return check_device(cfg, torch.cuda.is_available(), torch.cuda.device_count())


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(cfg: RunConfig, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(cfg.nproc),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "-m",
        "bench.run",
        *cfg.to_cli_args(),
    ]


def launch(cfg: RunConfig) -> int:
    """Run torchrun to completion and return its exit code.

    SIGINT/SIGTERM sent to this process alone are passed on to torchrun, which stops its
    workers; each worker then writes its record (status interrupted) before exiting.
    """
    child = subprocess.Popen(torchrun_command(cfg, free_loopback_port()))

    def forward(signum, _frame):
        child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
