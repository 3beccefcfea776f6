"""The SLURM launcher without a cluster: options, job shapes, the node command, how a job's
end becomes a record's status, and sacct/squeue read back (their answers posed)."""

from __future__ import annotations

import pytest

from bench.config import ConfigError
from bench.runtime import slurm_queue
from bench.runtime.slurm import (
    NodeCommand,
    SlurmOptions,
    job_environment,
    job_shape,
    rendezvous_port,
    sbatch_parameters,
    shape_problem,
    slurm_options,
)
from bench.runtime.slurm_queue import JobOutcome, record_of_job
from sweep_specs import run_cli


def test_a_gpu_job_takes_whole_nodes_one_task_each():
    options = SlurmOptions(gpus_per_node=8, time_limit=30, partition="gpu", account="lab")
    assert job_shape(4, options).nodes == 1
    shape = job_shape(16, options)
    assert (shape.nodes, shape.processes_per_node, shape.gpus_per_node) == (2, 8, 8)
    assert shape.cpus_per_task == 8  # one per process, when not given
    assert shape.resources() == (
        "--nodes=2 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=8 --time=30"
    )
    params = sbatch_parameters(shape, options, "gan-bench mlp", ["export X=1"])
    assert params["nodes"] == 2 and params["tasks_per_node"] == 1
    assert params["gpus_per_node"] == 8 and params["timeout_min"] == 30
    assert params["slurm_partition"] == "gpu" and params["slurm_account"] == "lab"
    assert params["slurm_additional_parameters"] == {"exclusive": True}
    assert "does not fill" not in (shape_problem(16, options) or "")
    assert "multiple of 8" in shape_problem(12, options)


def test_a_cpu_job_is_one_node_and_extra_options_pass_through():
    options = slurm_options(slurm_option=["qos=high", "--constraint=epyc", "requeue"],
                            exclusive=False, cpus_per_task=6)  # fmt: skip
    shape = job_shape(2, options)
    assert (shape.nodes, shape.processes_per_node, shape.gpus_per_node) == (1, 2, None)
    assert shape.cpus_per_task == 6
    extra = sbatch_parameters(shape, options, "x", [])["slurm_additional_parameters"]
    assert extra == {"qos": "high", "constraint": "epyc", "requeue": True}
    assert options.device_type == "cpu" and options.device_problem("cuda")


@pytest.mark.parametrize(
    "values, words",
    [
        ({"time_limit": 0}, "--time-limit"),
        ({"max_jobs": 0}, "--max-jobs"),
        ({"gpus_per_node": 0}, "--gpus-per-node"),
        ({"slurm_option": ["=x"]}, "KEY=VALUE"),
    ],
)
def test_bad_slurm_options_are_one_line(values, words):
    with pytest.raises(ConfigError, match=words):
        slurm_options(**values)


def test_the_cli_refuses_slurm_options_without_the_launcher(tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    assert run_cli("run", "--model", "mlp", "--gpus-per-node", "8", "--out", str(out)) == 2
    assert "need --launcher slurm" in capsys.readouterr().err
    assert run_cli("sweep", "--launcher", "pbs", "--out", str(out)) == 2
    assert "--launcher 'pbs' is not known" in capsys.readouterr().err
    assert not out.exists()


def test_the_node_command_runs_torchrun_for_several_processes():
    one = NodeCommand("bench.run", ["--model", "mlp"], 1)
    assert one.argv(1, "node1", "42")[1:] == ["-m", "bench.run", "--model", "mlp"]
    many = NodeCommand("bench.run", ["--model", "mlp"], 8).argv(2, "node1", "42")
    assert many[1:3] == ["-m", "bench.torchrun"]
    assert many[many.index("--nnodes") + 1] == "2"
    assert many[many.index("--nproc-per-node") + 1] == "8"
    assert many[many.index("--rdzv-endpoint") + 1] == f"node1:{rendezvous_port('42')}"
    assert many[many.index("--rdzv-id") + 1] == "42"
    assert many[-4:] == ["-m", "bench.run", "--model", "mlp"]
    assert rendezvous_port("42") != rendezvous_port("43")


def test_a_job_says_so_in_its_environment():
    assert job_environment({}) is None
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_NODELIST": "n[1-2]",
           "SLURM_JOB_PARTITION": "gpu"}  # fmt: skip
    assert job_environment(env) == {"job_id": "7", "nodes": 2, "node_list": "n[1-2]",
                                    "partition": "gpu"}  # fmt: skip


def _outcome(state="COMPLETED", result=None, **kw) -> JobOutcome:
    fields = dict(job_id="12", state=state, exit_code="0:0", reason=None, nodes=1,
                  node_list="n1", result=result, error=None, log_tail=["last line"])  # fmt: skip
    return JobOutcome(**{**fields, **kw})


SHAPE = job_shape(2, SlurmOptions(time_limit=5))


def _bare(status, reason, tail):
    return {"status": status, "reason": reason, "stderr_tail": tail, "run": {}}


@pytest.mark.parametrize(
    "outcome, child, status, words",
    [
        (_outcome(result={"returncode": 0, "signals": []}), "ok", "ok", None),
        (_outcome("TIMEOUT"), None, "timeout", "time limit (--time-limit 5 min)"),
        (
            _outcome(result={"returncode": 143, "signals": ["SIGUSR2"]}),
            "interrupted",
            "timeout",
            "time limit",
        ),
        (
            _outcome(error="UncompletedJobError: timed-out and not checkpointable"),
            None,
            "timeout",
            "time limit",
        ),
        (_outcome("TIMEOUT", result={"signals": ["SIGUSR2"]}), "ok", "ok", None),
        (
            _outcome("FAILED", log_tail=["srun: error: vm: task 0: User defined signal 2"]),
            None,
            "timeout",
            "time limit",
        ),
        (_outcome("CANCELLED by 0"), None, "cancelled", "cancelled by a user"),
        (
            _outcome("CANCELLED by 0", cancelled_by_us=True),
            "interrupted",
            "cancelled",
            "stopped by the user",
        ),
        (_outcome("CANCELLED by 0", cancelled_by_us=True), "ok", "ok", None),
        (
            _outcome("CANCELLED by 0", never_started="PartitionTimeLimit"),
            None,
            "failed",
            "could never start (PartitionTimeLimit)",
        ),
        (_outcome("OUT_OF_MEMORY"), None, "oom", "memory"),
        (_outcome("NODE_FAIL", reason="NodeDown", exit_code="0:9"), None, "failed", "NodeDown"),
        (_outcome(result={"returncode": 1, "signals": []}), None, "failed", "last line"),
        (_outcome("FAILED", result={"returncode": 1, "signals": []}), "failed", "failed", None),
    ],
)
def test_how_a_job_ended_decides_the_record(outcome, child, status, words):
    own = None if child is None else {"status": child, "reason": "its own", "run": {}}
    record = record_of_job(own, outcome, SHAPE, "gpu", _bare)
    assert record["status"] == status
    if words:
        assert words in record["reason"]
    if own is not None and words:
        assert record["reason"].endswith("the run said: its own")
    assert record["run"]["launcher"] == "slurm"
    job = record["run"]["slurm"]
    assert job["job_id"] == "12" and job["nodes"] == 1 and job["partition"] == "gpu"
    assert job["resources"] == SHAPE.resources()
    assert ("stderr_tail" in record) == (status != "ok")


class _Job:
    def __init__(self, folder, job_id):
        self.job_id = job_id
        self.paths = type("P", (), {"result_pickle": folder / f"{job_id}.pkl",
                                    "stderr": folder / f"{job_id}.err"})  # fmt: skip


def _queue(tmp_path, job_ids, submitted_at=0.0):
    queue = slurm_queue.SlurmQueue.__new__(slurm_queue.SlurmQueue)
    queue.watched = {
        job_id: slurm_queue._Watched(_Job(tmp_path, job_id), submitted_at) for job_id in job_ids
    }
    return queue


def test_sacct_decides_when_a_job_has_ended(tmp_path, monkeypatch):
    answers = {
        "sacct": "1|RUNNING|0:0|None|n1|1\n2|FAILED|1:0|None|n1|1\n"
        "3|CANCELLED by 0|0:15|None|n1|1\n",
    }
    monkeypatch.setattr(slurm_queue, "_run", lambda cmd: answers.get(cmd[0]))
    (tmp_path / "2.err").write_text("Traceback\nValueError: boom\n")
    queue = _queue(tmp_path, ["1", "2", "3"])
    ended = {o.job_id: o for o in queue.poll()}
    assert set(ended) == {"2", "3"} and queue.active == ["1"]
    assert ended["2"].log_tail == ["Traceback", "ValueError: boom"]
    assert ended["3"].base_state == "CANCELLED"
    assert queue.poll() == []  # each ended job once


def test_without_accounting_a_job_that_left_the_queue_has_ended(tmp_path, monkeypatch):
    answers = {"sacct": None, "squeue": "5\n"}
    monkeypatch.setattr(slurm_queue, "_run", lambda cmd: answers.get(cmd[0]))
    now = slurm_queue.time.monotonic()
    queue = _queue(tmp_path, ["5", "6"], submitted_at=now - slurm_queue.GONE_AFTER_S - 1)
    (outcome,) = queue.poll()  # 5 is still queued; 6 died without a result
    assert outcome.job_id == "6" and outcome.state.startswith("UNKNOWN")
    assert record_of_job(None, outcome, SHAPE, "gpu", _bare)["status"] == "failed"
    fresh = _queue(tmp_path, ["7"], submitted_at=slurm_queue.time.monotonic())
    assert fresh.poll() == []  # not listed yet, just submitted: still waited for


def test_a_job_that_can_never_start_is_cancelled_and_a_preempted_one_waited_for(
    tmp_path, monkeypatch
):
    calls = []
    answers = {
        "sacct": "8|PENDING|0:0|PartitionTimeLimit|None assigned|1\n9|PREEMPTED|0:0|None|n1|1\n",
        "squeue": "9\n",  # requeued: still listed
    }

    def run(cmd):
        calls.append(cmd)
        return answers.get(cmd[0])

    monkeypatch.setattr(slurm_queue, "_run", run)
    queue = _queue(tmp_path, ["8", "9"])
    assert queue.poll() == []
    assert ["scancel", "8"] in calls
    answers["sacct"] = "8|CANCELLED by 0|0:0|None|None assigned|1\n9|PREEMPTED|0:0|None|n1|1\n"
    answers["squeue"] = ""  # 9 left the queue: preempted for good
    ended = {o.job_id: o for o in queue.poll()}
    assert set(ended) == {"8", "9"}
    assert record_of_job(None, ended["8"], SHAPE, "gpu", _bare)["status"] == "failed"
