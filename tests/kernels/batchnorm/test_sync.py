"""SyncBatchNorm + LeakyReLU over 2 real processes (torchrun, gloo, CPU interpreter).

Two ranks with unequal batches (3 and 2 samples) must equal one process over the
concatenated batch of 5: outputs, dx, running statistics and the counter; dweight and
dbias are per-rank (as nn.SyncBatchNorm returns them, DDP sums/averages later), so their
sum over ranks must equal the single-process gradients.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import kernels
from kernels.batchnorm.reference import batch_norm_leaky_relu_reference

REPO = Path(__file__).resolve().parents[3]
SPLITS = (3, 2)  # samples per rank
SHAPE = (sum(SPLITS), 6, 5, 5)

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    import kernels

    out_dir, layout, split, compiled = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    data = torch.load(f"{out_dir}/inputs.pt")
    bounds = [0, 3, 5]
    x = data["x"][bounds[rank]:bounds[rank + 1]].clone()
    dy = data["dy"][bounds[rank]:bounds[rank + 1]].clone()
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    module = kernels.SyncBatchNormLeakyReLU(6, momentum=None, negative_slope=0.2)
    module.load_state_dict(data["state"])
    if split:  # the functional path, forcing the split reduction
        x.requires_grad_(True)
        y = kernels.sync_batch_norm_leaky_relu(
            x, module.running_mean, module.running_var, module.weight, module.bias, True,
            None, module.eps, 0.2, num_batches_tracked=module.num_batches_tracked,
            _split=split,
        )
    else:
        x.requires_grad_(True)
        # compiled: the synchronised op is a graph break, run eagerly between graphs
        y = (torch.compile(module, backend="aot_eager") if compiled == "1" else module)(x)
    y.backward(dy)
    torch.save(
        {
            "y": y.detach(), "dx": x.grad, "dw": module.weight.grad, "db": module.bias.grad,
            "state": module.state_dict(), "path": module.last_path(),
        },
        f"{out_dir}/rank{rank}.pt",
    )
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(tmp_path: Path, worker: str, *args: str) -> list[dict]:
    """`worker` under torchrun, 2 gloo ranks on the CPU interpreter, given tmp_path (which
    holds inputs.pt) and `args`; returns what each rank saved as rank<R>.pt there."""
    (tmp_path / "worker.py").write_text(worker)
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
        "--master-addr=127.0.0.1", f"--master-port={_free_port()}",
        str(tmp_path / "worker.py"), str(tmp_path), *args,
    ]  # fmt: skip
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]


@pytest.mark.parametrize(
    ("layout", "split", "compiled"),
    [("nchw", 0, False), ("cl", 3, False), ("nchw", 0, True)],
    ids=["module", "split", "compiled-module"],
)
def test_two_ranks_equal_one_process_over_the_whole_batch(tmp_path, layout, split, compiled):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=gen) * 1.5 + 0.3
    dy = torch.randn(SHAPE, generator=gen)
    ref_module = kernels.SyncBatchNormLeakyReLU(6, momentum=None, negative_slope=0.2)
    with torch.no_grad():
        ref_module.weight.uniform_(0.5, 1.5, generator=gen)
        ref_module.bias.normal_(generator=gen)
        ref_module.running_mean.normal_(generator=gen)
        ref_module.num_batches_tracked.fill_(4)
    state = {k: v.clone() for k, v in ref_module.state_dict().items()}
    torch.save({"x": x, "dy": dy, "state": state}, tmp_path / "inputs.pt")
    ranks = _run_two_ranks(tmp_path, WORKER, layout, str(split), str(int(compiled)))

    # one process, whole batch, float64 eager
    xr = x.double().requires_grad_(True)
    w = state["weight"].double().requires_grad_(True)
    b = state["bias"].double().requires_grad_(True)
    rm, rv, nbt = (
        state["running_mean"].double(),
        state["running_var"].double(),
        state["num_batches_tracked"].clone(),
    )
    yr = batch_norm_leaky_relu_reference(
        xr, rm, rv, w, b, True, None, 1e-5, 0.2, num_batches_tracked=nbt
    )
    yr.backward(dy.double())

    y = torch.cat([r["y"] for r in ranks])
    dx = torch.cat([r["dx"] for r in ranks])
    torch.testing.assert_close(y.double(), yr, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx.double(), xr.grad, atol=1e-4, rtol=1e-4)
    dw = sum(r["dw"] for r in ranks)
    db = sum(r["db"] for r in ranks)
    torch.testing.assert_close(dw.double(), w.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(db.double(), b.grad, atol=1e-4, rtol=1e-4)
    for r in ranks:  # every rank holds the same, global running statistics
        torch.testing.assert_close(r["state"]["running_mean"].double(), rm, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(r["state"]["running_var"].double(), rv, atol=1e-5, rtol=1e-5)
        assert int(r["state"]["num_batches_tracked"]) == int(nbt) == 5
        # the module's own calls synchronised (the functional's calls are not the module's)
        assert r["path"] == (None if split else {"path": "sync", "launches": 7})


EDGE_WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    import kernels

    out_dir = sys.argv[1]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    data = torch.load(f"{out_dir}/inputs.pt")
    results = {}
    for name in ("one_value", "large_mean"):
        x = data[name].chunk(2)[rank].clone()
        c = x.shape[1]
        rm, rv = torch.zeros(c), torch.ones(c)
        results[name] = kernels.sync_batch_norm_leaky_relu(x, rm, rv, None, None, True, 1.0,
                                                           1e-5, 0.2)
        results[name + "_running"] = (rm, rv)
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()
    """
)


def test_whole_batch_decides_values_per_channel_and_a_large_mean_keeps_its_digits(tmp_path):
    """One value per channel on each rank is a valid batch of two (nn.SyncBatchNorm's
    rule); a mean of 1e4 with a spread of 1e-2 is normalised as exactly as in one process:
    every rank's mean is merged around one common shift, not rounded to fp32 first."""
    gen = torch.Generator().manual_seed(5)
    inputs = {
        "one_value": torch.randn((2, 4), generator=gen),
        "large_mean": (1e4 + 1e-2 * torch.randn((4, 3, 4, 4), generator=gen, dtype=torch.float64)),
    }
    torch.save({k: v.float() for k, v in inputs.items()}, tmp_path / "inputs.pt")
    ranks = _run_two_ranks(tmp_path, EDGE_WORKER)
    for name, atol in (("one_value", 1e-5), ("large_mean", 1e-4)):
        x = inputs[name].float().double()
        c = x.shape[1]
        rm, rv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
        ref = batch_norm_leaky_relu_reference(x, rm, rv, None, None, True, 1.0, 1e-5, 0.2)
        y = torch.cat([r[name] for r in ranks]).double()
        torch.testing.assert_close(y, ref, atol=atol, rtol=0)
        for r in ranks:
            torch.testing.assert_close(r[name + "_running"][1].double(), rv, rtol=1e-4, atol=0)
