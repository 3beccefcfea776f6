"""Without a GPU, still compile every kernel ahead of time for sm_90 (H100) with Triton.

The interpreter runs the kernels as NumPy and forgives things the compiler does not
(types, constexpr control flow). Triton can compile to PTX and run ptxas with no GPU
present, given a target; this test does that in a subprocess without TRITON_INTERPRET,
for both layouts' stride specialisations (``ss == 1`` NCHW, ``sc == 1`` channels-last),
for fp32, bf16 and fp64, with masked and full (``EVEN``) tiles, with tiles whose rows span
batch items (``BLOCK_N`` > 1), with the reduction loops as written and software-pipelined
(``NUM_STAGES`` 3: cp.async into shared memory), and with float arguments typed fp32 (as
Triton's launcher types them) and fp64 (as inductor does inside a compiled graph). It checks
that the elementwise kernels use 128-bit vector loads and stores along the contiguous axis
and spill nothing to local memory.
With a GPU the other tests compile and run the real kernels, so this one is skipped.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(
    """
    import re
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    import kernels.batchnorm.kernels as K

    INTS = {"C", "N", "S", "n_tiles_s", "tiles_total", "tiles_per_prog", "sn", "sc", "ss", "P",
            "shift_stride"}
    # float64 kernels get eps, slope and momentum as their bit patterns
    # (kernels.batchnorm.calls.float_arg)
    FLOAT_ARGS = {"momentum", "eps", "slope"}
    DATA = {"x_ptr", "y_ptr", "dy_ptr", "dx_ptr"}

    def build(fn, xdt, consts, floats):
        sig, attrs = {}, {}
        for i, name in enumerate(fn.arg_names):
            if name in consts:
                sig[name] = "constexpr"
                continue
            if name.endswith("_ptr"):
                sig[name] = "*" + (xdt if name in DATA else "i64" if name == "nbt_ptr"
                                   else "fp64" if xdt == "fp64" else "fp32")
            else:
                sig[name] = "i32" if name in INTS else "i64" if xdt == "fp64" else floats
            if name.endswith("_ptr") or name in ("C", "S", "sn", "sc", "ss"):
                attrs[(i,)] = [["tt.divisibility", 16]]
        return triton.compile(ASTSource(fn, sig, consts, attrs), target=GPUTarget("cuda", 90, 32))

    FLAGS = {
        "bn_stats_partial_kernel": {},
        "bn_stats_finalize_kernel": dict(HAS_W=True, HAS_B=True,
            UPDATE_RUNNING=True, FACTOR_FROM_NBT=True, MERGE_ONLY=False, BLOCK_P=256),
        "bn_apply_kernel": dict(EVAL=False, HAS_W=True, HAS_B=True, INC_NBT=True),
        "bn_fwd_fused_kernel": dict(HAS_W=True, HAS_B=True, UPDATE_RUNNING=True,
            FACTOR_FROM_NBT=False, INC_NBT=True),
        "bn_bwd_partial_kernel": dict(WRITE_DX=True),
        "bn_bwd_finalize_kernel": dict(HAS_DW=True, HAS_DB=True, BLOCK_P=256),
        "bn_bwd_dx_kernel": dict(TRAINING=True),
        "bn_bwd_fused_kernel": dict(TRAINING=True, REDUCE=True, DX_IN_REDUCE=False,
            DX_AFTER=True, HAS_DW=True, HAS_DB=True),
    }
    VARIANTS = [
        ("bf16", {"ss": 1}, 8, 256), ("fp32", {"sc": 1}, 64, 32), ("fp64", {"ss": 1}, 4, 64),
    ]
    EXTRA = [("bn_apply_kernel", dict(EVAL=True, HAS_W=False, HAS_B=False, INC_NBT=False)),
             ("bn_stats_finalize_kernel", dict(HAS_W=False, HAS_B=False,
              UPDATE_RUNNING=False, FACTOR_FROM_NBT=False, MERGE_ONLY=True, BLOCK_P=256)),
             ("bn_bwd_fused_kernel", dict(TRAINING=False, REDUCE=True, DX_IN_REDUCE=True,
              DX_AFTER=False, HAS_DW=True, HAS_DB=False)),
             # full tiles: no masks, one count per tile (kernels.batchnorm.plan.LaunchPlan.even)
             ("bn_stats_partial_kernel", dict(EVEN=True)),
             ("bn_fwd_fused_kernel", dict(FLAGS["bn_fwd_fused_kernel"], EVEN=True)),
             # the reduction loops software-pipelined (kernels.batchnorm.plan.Tuning.num_stages)
             ("bn_stats_partial_kernel", dict(NUM_STAGES=3, EVEN=True)),
             ("bn_bwd_partial_kernel", dict(WRITE_DX=False, NUM_STAGES=3))]
    jobs = [(n, f) for n, f in FLAGS.items()] + EXTRA
    # Tiles whose rows span batch items (kernels.batchnorm.plan: NCHW planes of 4x4 under the narrow
    # fused tiles), [2 channels, 64 items x 16 positions]: runs of 16 contiguous elements.
    SPANNED = ["bn_apply_kernel", "bn_fwd_fused_kernel", "bn_bwd_fused_kernel",
               "bn_bwd_dx_kernel", "bn_stats_partial_kernel"]
    runs = [(xdt, layout, (bc, 1, bs), jobs, "fp32") for xdt, layout, bc, bs in VARIANTS]
    runs += [(xdt, {"ss": 1}, (2, 64, 16), [(n, FLAGS[n]) for n in SPANNED] +
              [("bn_fwd_fused_kernel", dict(FLAGS["bn_fwd_fused_kernel"], EVEN=True))], "fp32")
             for xdt in ("bf16", "fp32")]
    # Inside a torch.compile'd graph inductor launches the kernels itself and types a Python
    # float argument (eps, slope, momentum) fp64, not fp32 as Triton's own launcher does.
    runs.append(("bf16", {"ss": 1}, (2, 4, 256), list(FLAGS.items()), "fp64"))
    for xdt, layout, (bc, bn, bs), run_jobs, floats in runs:
        for name, flags in run_jobs:
            fn = getattr(K, name)
            consts = dict({"NUM_STAGES": 1, "EVEN": False}, **flags, FP64=xdt == "fp64")
            if "BLOCK_P" in flags:
                consts["BLOCK_C"] = 8  # kernels.batchnorm.plan.finalize_blocks: tall chunks
            else:
                consts.update(layout, BLOCK_C=bc, BLOCK_N=bn, BLOCK_S=bs)
            consts = {k: v for k, v in consts.items() if k in fn.arg_names}
            ptx = build(fn, xdt, consts, floats).asm["ptx"]
            assert ".local" not in ptx, (name, xdt, "spills to local memory")
            if consts.get("NUM_STAGES", 1) > 1:
                assert "cp.async" in ptx, (name, xdt, "loads not pipelined")
            if name in ("bn_apply_kernel", "bn_bwd_dx_kernel") and xdt != "fp64":
                assert "ld.global.v4" in ptx and "st.global.v4" in ptx, (name, xdt, layout)
            print("compiled", name, xdt, sorted(layout), bn, floats)
    print("ALL OK")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the kernels compile for real")
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_kernels_compile_for_sm90_without_a_gpu():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    if out.returncode != 0 and "ptxas" in out.stderr and "not found" in out.stderr:
        pytest.skip("triton's bundled ptxas is missing")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    assert out.stdout.count("compiled") == 3 * 15 + 2 * 6 + 8 and "ALL OK" in out.stdout
