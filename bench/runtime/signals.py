"""SIGINT, SIGTERM and SIGHUP noted, not raised, while something long is watched (a sweep's
child processes, SLURM jobs): the watcher stops what it started at a safe place and
records it. SIGHUP too: the terminal (an ssh session to a login node) went away."""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalCatcher:
    """Notes the stop signals in `received` while entered (in the main thread; elsewhere
    signals are the main thread's). A second one means: stop waiting."""

    def __init__(self):
        self.received: list[int] = []
        self._previous: dict = {}

    def _handler(self, signum, _frame):
        self.received.append(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
