"""The narrow convolutions compiled for an H100 (sm_90) here, without a GPU: every kernel
configuration the image layers launch builds, runs on the tensor cores in 16 bits, and
fits in a thread's registers (ptxas reports no spills) and in shared memory.

Spills are what a GPU run would only show as slowness (64-bit offsets per tile element,
say, take every register a thread has). tests/support/sm90_compile.py does the compiling,
in a process of its own (the kernels must be defined without TRITON_INTERPRET).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "tests" / "support" / "sm90_compile.py"
SHARED_MEMORY_PER_BLOCK = 227 * 1024  # bytes an sm_90 block may use (CUDA guide, H100)


@pytest.fixture(scope="module")
def compiled() -> list[dict]:
    pytest.importorskip("triton.backends.nvidia", reason="triton without its NVIDIA backend")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_every_configuration_compiles(compiled):
    kernels = {"conv2d", "conv_transpose2d", "conv2d_weight_grad"}
    assert {(r["kernel"], r["dtype"], r["fused"]) for r in compiled} == {
        (k, d, f) for k in kernels for d in ("bf16", "fp16", "fp32") for f in (True, False)
    }


def test_no_kernel_spills_registers(compiled):
    spilled = [r for r in compiled if r["spill_stores"] or r["spill_loads"]]
    assert spilled == []
    assert all(0 < r["registers"] <= 255 for r in compiled)


def test_shared_memory_fits_a_block(compiled):
    assert all(0 < r["shared_bytes"] <= SHARED_MEMORY_PER_BLOCK for r in compiled)


def test_sixteen_bit_products_run_on_the_tensor_cores(compiled):
    assert all(r["tensor_cores"] for r in compiled if r["dtype"] in ("bf16", "fp16"))
