"""Jobs in a SLURM queue: submitted through submitit (`SlurmQueue.submit`), watched with one
`sacct` call per look for all of them (`poll`; `squeue` where the cluster keeps no
accounting, so a job that died without a result is still noticed), cancelled with
`scancel` (`cancel`), and each ended job's `JobOutcome`: the scheduler's state, exit code,
reason and nodes, what the node command returned, and the tail of the job's log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import ConfigError
from bench.runtime.signals import SignalCatcher
from bench.runtime.slurm import (
    JobShape,
    NodeCommand,
    SlurmOptions,
    check_cluster,
    job_folder,
    job_setup,
    job_shape,
    node_command,
    sbatch_parameters,
)
from bench.telemetry.records import keep_sample_grid, read_records

# States after which a job runs no more (sacct's words); PREEMPTED jobs may be requeued
# by the cluster, which then shows them PENDING again.
ENDED = (
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
)
# A preempted job the cluster does not requeue has ended once squeue no longer lists it.
PREEMPTED = "PREEMPTED"
# Pending reasons that never clear by waiting: the job is cancelled and recorded as failed.
NEVER_STARTS = (
    "PartitionTimeLimit",
    "PartitionNodeLimit",
    "PartitionConfig",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "AccountNotAllowed",
    "QOSMaxWallDurationPerJobLimit",
    "ReqNodeNotAvail, UnavailableNodes",
)
# A job neither sacct nor squeue knows, this long after its submission, has ended: a
# cluster without accounting forgets a job once it leaves the queue.
GONE_AFTER_S = 30.0
# After scancel, how long to wait for a job to end (SLURM's KillWait, then the run's own
# record) before recording it as cancelled without looking further.
CANCEL_WAIT_S = 90.0
LOG_TAIL_LINES = 20


class SubmitError(RuntimeError):
    """sbatch refused a job; the message is sbatch's."""


@dataclass
class JobOutcome:
    """How a job ended."""

    job_id: str
    state: str  # sacct's State, e.g. COMPLETED, TIMEOUT, "CANCELLED by 0"; UNKNOWN if none
    exit_code: str  # sacct's ExitCode, "code:signal"
    reason: str | None  # sacct's Reason, where it says more than None
    nodes: int | None
    node_list: str | None
    result: dict | None  # what NodeCommand returned on the first node, if it returned
    error: str | None  # submitit's account of a job that returned nothing
    log_tail: list[str] = field(default_factory=list)
    cancelled_by_us: bool = False
    never_started: str | None = None  # the pending reason that can never clear, if any

    @property
    def base_state(self) -> str:
        return self.state.split()[0] if self.state else "UNKNOWN"

    def account(self) -> dict:
        """The record's `run.slurm` entries the scheduler decided."""
        facts = {
            "job_id": self.job_id,
            "state": self.state,
            "exit_code": self.exit_code,
            "nodes": self.nodes,
            "node_list": self.node_list,
            "reason": self.reason,
        }
        return {key: value for key, value in facts.items() if value is not None}

    def status(self, recorded: str | None, time_limit: int) -> tuple[str, str] | None:
        """The status and reason of the run, given the status of the record it wrote
        (None: no record); None when the record's own status stands."""
        signals = (self.result or {}).get("signals") or []
        state = self.base_state
        where = f"SLURM job {self.job_id} {self.state}"
        if recorded == "ok":  # measured before it ended: its end changes nothing
            return None
        if self.never_started:
            return (
                "failed",
                f"SLURM job {self.job_id} could never start ({self.never_started}); cancelled",
            )
        if self.cancelled_by_us:
            return "cancelled", f"stopped by the user: job {self.job_id} cancelled (scancel)"
        if state == "CANCELLED":
            return "cancelled", f"{where}: cancelled by a user or the cluster"
        # The warning signal can come before the node command handles it, when the limit is
        # within its lead from the start: submitit's handler then ends the job, or, earlier
        # still, the signal kills the task (srun: "task 0: User defined signal 2").
        timed_out = "timed-out" in (self.error or "") or any(
            "User defined signal 2" in line for line in self.log_tail
        )
        if state == "TIMEOUT" or "SIGUSR2" in signals or timed_out:
            return "timeout", f"{where}: reached its time limit (--time-limit {time_limit} min)"
        if recorded is not None:
            return None
        if state == "OUT_OF_MEMORY":
            return "oom", f"{where}: the job went over its memory"
        last = self.log_tail[-1] if self.log_tail else "nothing in the job's log"
        if self.result is not None:
            code = self.result.get("returncode")
            return "failed", f"{where}: exit code {code} without a record: {last}"
        detail = f" ({self.reason})" if self.reason else ""
        return "failed", f"{where}{detail}, exit code {self.exit_code}, no result: {last}"


def job_record_file(path: str, outcome: JobOutcome, wait_s: float = 10.0) -> dict | None:
    """The last whole record a job wrote to `path`, or None. A job whose command exited 0
    wrote one: on a shared filesystem it may show on this host a moment later."""
    deadline = time.monotonic() + (wait_s if (outcome.result or {}).get("returncode") == 0 else 0)
    while True:
        if os.path.exists(path):
            written = [record for _, record in read_records(path) if record is not None]
            if written:
                return written[-1]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def record_of_job(
    child: dict | None,
    outcome: JobOutcome,
    shape: JobShape,
    partition: str,
    bare: Callable[[str, str, list[str]], dict],
) -> dict:
    """The one record of a run whose job ended: the run's own (`child`, None if it wrote
    none), with the status the job's end decides where it decides one (timeout, cancelled),
    else `bare(status, reason, log tail)`; `run.launcher` and `run.slurm` say which job,
    on which partition, with which resources."""
    verdict = outcome.status(child.get("status") if child else None, shape.time_limit)
    if child is None:
        record = bare(*verdict, outcome.log_tail)
    else:
        record = dict(child)
        if verdict is not None:
            said = child.get("reason")
            record["status"] = verdict[0]
            record["reason"] = verdict[1] + (f"; the run said: {said}" if said else "")
        if record["status"] != "ok":
            record["stderr_tail"] = outcome.log_tail
    return with_job_facts(record, partition, shape, outcome)


def with_job_facts(
    record: dict, partition: str, shape: JobShape | None = None, outcome: JobOutcome | None = None
) -> dict:
    """`record` with `run.launcher: "slurm"` and `run.slurm`: what the run saw of its job,
    the partition, the resources asked for and what the scheduler said of its end."""
    run = record.setdefault("run", {})
    run["launcher"] = "slurm"
    facts = {**(run.get("slurm") or {}), **(outcome.account() if outcome else {})}
    facts.setdefault("partition", partition)
    if shape is not None:
        facts["resources"] = shape.resources()
    run["slurm"] = facts
    return record


@dataclass
class _Watched:
    job: object  # submitit.Job
    submitted_at: float
    info: dict = field(default_factory=dict)
    cancelled: bool = False
    never_started: str | None = None


def _run(cmd: list[str]) -> str | None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def sacct_states(job_ids: list[str]) -> dict[str, dict]:
    """sacct's State, ExitCode, Reason, NodeList and NNodes of each job it knows."""
    if not job_ids:
        return {}
    fields_ = ("JobIDRaw", "State", "ExitCode", "Reason", "NodeList", "NNodes")
    out = _run(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", ",".join(fields_)])
    states = {}
    for line in (out or "").splitlines():
        values = line.split("|")
        if len(values) == len(fields_):
            states[values[0]] = dict(zip(fields_, values, strict=True))
    return states


def queued(job_ids: list[str]) -> set[str] | None:
    """The jobs squeue still lists (pending, running or completing); None if it failed."""
    if not job_ids:
        return set()
    out = _run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i"])
    return None if out is None else {line.strip() for line in out.splitlines() if line.strip()}


def _tail(text: str | None) -> list[str]:
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-LOG_TAIL_LINES:]


class SlurmQueue:
    """The jobs of one run or sweep, in `folder` (one subfolder per job)."""

    def __init__(self, folder: Path, options: SlurmOptions):
        import submitit

        self.folder = Path(folder)
        self.options = options
        self.setup = job_setup()
        # max_num_timeout=0: a job past its time limit is not requeued; it is a result.
        self.executor = submitit.AutoExecutor(
            folder=self.folder / "%j", cluster="slurm", slurm_max_num_timeout=0
        )
        self.watched: dict[str, _Watched] = {}

    def submit(self, name: str, command: NodeCommand, shape: JobShape) -> str:
        """Submit one job; its id. SubmitError with sbatch's message if it was refused."""
        self.executor.update_parameters(**sbatch_parameters(shape, self.options, name, self.setup))
        try:
            job = self.executor.submit(command)
        except Exception as err:  # submitit raises what sbatch said in several types
            message = " ".join(str(err).split())
            raise SubmitError(message[-500:]) from None
        self.watched[job.job_id] = _Watched(job, time.monotonic())
        return job.job_id

    @property
    def active(self) -> list[str]:
        return list(self.watched)

    def states(self) -> str:
        """The watched jobs by their last known state, e.g. "2 RUNNING, 3 PENDING"."""
        counts = Counter(
            (w.info.get("State") or "SUBMITTED").split()[0] for w in self.watched.values()
        )
        return ", ".join(f"{n} {state}" for state, n in counts.most_common())

    def poll(self) -> list[JobOutcome]:
        """The jobs that ended since the last look, each once."""
        ids = self.active
        states = sacct_states(ids)
        preempted = any(info["State"].startswith(PREEMPTED) for info in states.values())
        listed = queued(ids) if len(states) < len(ids) or preempted else set()
        ended, hopeless = [], []
        now = time.monotonic()
        for job_id in ids:
            watched = self.watched[job_id]
            info = states.get(job_id)
            if info is not None:
                watched.info = info
                state = info["State"].split()[0]
                if state == "PENDING" and info["Reason"] in NEVER_STARTS:
                    if watched.never_started is None:
                        watched.never_started = info["Reason"]
                        hopeless.append(job_id)
                    continue
                if state == PREEMPTED and (listed is None or job_id in listed):
                    continue  # requeued, or squeue did not answer
                if state not in ENDED + (PREEMPTED,):
                    continue
            elif listed is None or job_id in listed:
                continue  # no accounting, still queued (or squeue did not answer)
            elif now - watched.submitted_at < GONE_AFTER_S and not self._has_result(watched):
                continue  # not listed yet
            ended.append(self._outcome(job_id))
        if hopeless:
            _run(["scancel", *hopeless])
        return ended

    def forget(self, job_id: str) -> JobOutcome:
        """Stop watching a job that was cancelled and has not ended yet: its outcome as
        known now."""
        return self._outcome(job_id)

    def cancel(self) -> None:
        """scancel every job still watched; their outcomes come through `poll`."""
        ids = self.active
        for job_id in ids:
            self.watched[job_id].cancelled = True
        if ids:
            _run(["scancel", *ids])

    def wait_ended(
        self, limit_s: float, poll_s: float = 2.0, give_up: Callable[[], bool] = lambda: False
    ) -> list[JobOutcome]:
        """Poll until every watched job ended, `limit_s` passed or `give_up()`; the
        outcomes of the jobs that ended."""
        outcomes, deadline = [], time.monotonic() + limit_s
        while self.watched and time.monotonic() < deadline and not give_up():
            outcomes += self.poll()
            if self.watched:
                time.sleep(poll_s)
        return outcomes

    @staticmethod
    def _has_result(watched: _Watched) -> bool:
        return Path(watched.job.paths.result_pickle).exists()

    def _outcome(self, job_id: str) -> JobOutcome:
        watched = self.watched.pop(job_id)
        job, info = watched.job, watched.info
        result, error = None, None
        if self._has_result(watched):
            try:
                result = job.result()
            except Exception as err:  # the job's own exception, re-raised by submitit
                error = " ".join(str(err).split())[-500:]
        reason = info.get("Reason")
        nodes = info.get("NNodes")
        return JobOutcome(
            job_id=job_id,
            state=info.get("State") or "UNKNOWN (no accounting: the job left the queue)",
            exit_code=info.get("ExitCode") or "?",
            reason=None if reason in (None, "", "None") else reason,
            nodes=int(nodes) if nodes and nodes.isdigit() else None,
            node_list=info.get("NodeList") or None,
            result=result if isinstance(result, dict) else None,
            error=error,
            log_tail=_tail(_read(job.paths.stderr)),
            cancelled_by_us=watched.cancelled,
            never_started=watched.never_started,
        )


def _read(path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def run_as_job(
    name: str,
    module: str,
    args: Callable[[str], list[str]],
    world_size: int,
    options: SlurmOptions,
    out: str,
    bare: Callable[[str, str, list[str], str], dict],
) -> dict:
    """One job of `world_size` processes running `module` with `args(its record file)`,
    its files under `slurm/` beside `out`, waited for; its record (record_of_job, `bare`
    also given the partition). SIGINT, SIGTERM or SIGHUP (the login session gone) cancel
    the job (scancel) and it is recorded; a second one stops waiting for it to end.
    ConfigError when sbatch refuses it."""
    partition = check_cluster(options)
    shape = job_shape(world_size, options)
    label = "".join(ch if ch.isalnum() else "-" for ch in name.split()[-1])
    folder = job_folder(out) / f"{label}-{uuid.uuid4().hex[:8]}"
    job_out = str(folder / "record.jsonl")
    queue = SlurmQueue(folder, options)
    with SignalCatcher() as stop:
        try:
            job_id = queue.submit(name, node_command(module, args(job_out), shape), shape)
        except SubmitError as err:
            raise ConfigError(f"sbatch refused the job ({shape.resources()}): {err}") from None
        print(
            f"gan-bench: SLURM job {job_id} ({shape.resources()}, partition {partition}); "
            f"its files in {folder}; Ctrl-C cancels it",
            file=sys.stderr,
            flush=True,
        )
        ended = queue.wait_ended(float("inf"), give_up=lambda: bool(stop.received))
        if not ended:
            print(f"gan-bench: cancelling SLURM job {job_id}", file=sys.stderr, flush=True)
            queue.cancel()
            ended = queue.wait_ended(CANCEL_WAIT_S, give_up=lambda: len(stop.received) > 1)
        outcome = ended[0] if ended else queue.forget(job_id)
    own = job_record_file(job_out, outcome)
    if own is not None:
        keep_sample_grid(own, str(folder), out)
    return record_of_job(own, outcome, shape, partition, lambda *a: bare(*a, partition))
