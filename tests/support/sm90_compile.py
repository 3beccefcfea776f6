"""Compile the narrow-convolution kernels for an H100 (sm_90) on any machine, no GPU needed:
Triton lowers them to PTX and its bundled ptxas assembles that, reporting registers and
spills. Prints one JSON line per kernel configuration; run as a script (a process of its
own: TRITON_INTERPRET must be off when the kernels are defined).

The configurations are the ones the ops launch for DCGAN-64's image layers (3 image
channels, 64 feature channels, 4x4 kernels, stride 2), with the default tuning.
"""

from __future__ import annotations

import inspect
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from kernels.narrow_conv import kernels  # noqa: E402
from kernels.narrow_conv.plan import (  # noqa: E402
    DEFAULT_NARROW_TUNING,
    conv2d_launch,
    conv_transpose2d_launch,
    weight_grad_launch,
)

TARGET = GPUTarget("cuda", 90, 32)
FLOAT_ARGS = ("negative_slope", "mask_slope")
M = 1024 * 32 * 32  # output pixels (per stride phase) of an image layer at batch 1024
LAUNCH_OPTIONS = ("num_warps", "num_stages")


def ptxas() -> pathlib.Path:
    return pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"


def compile_for_sm90(fn, dtype: str, constexprs: dict, pointers: dict | None = None) -> dict:
    options = {k: constexprs.pop(k) for k in LAUNCH_OPTIONS}
    params = list(inspect.signature(fn.fn).parameters)
    signature = {}
    for p in params:
        if p in constexprs:
            signature[p] = "constexpr"
        elif p.endswith("_ptr"):
            signature[p] = (pointers or {}).get(p, "*" + dtype)
        else:
            signature[p] = "fp32" if p in FLOAT_ARGS else "i32"
    source = ASTSource(
        fn=fn, signature=signature,
        constexprs={(params.index(k),): v for k, v in constexprs.items()},
    )  # fmt: skip
    compiled = triton.compile(source, target=TARGET, options=options)
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(compiled.asm["ptx"])
    info = subprocess.run(
        [str(ptxas()), "-v", "--gpu-name", "sm_90a", f.name, "-o", os.devnull],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    os.unlink(f.name)

    def number(pattern: str) -> int:
        found = re.search(pattern, info)
        return int(found.group(1)) if found else 0

    return {
        "registers": number(r"Used (\d+) registers"),
        "spill_stores": number(r"(\d+) bytes spill stores"),
        "spill_loads": number(r"(\d+) bytes spill loads"),
        "shared_bytes": compiled.metadata.shared,
        "tensor_cores": "warp_group_dot" in compiled.asm["ttgir"],
    }


def main() -> None:
    t = DEFAULT_NARROW_TUNING
    common = {"INPUT_PRECISION": "tf32", "I64": False}
    for dtype in ("bf16", "fp16", "fp32"):
        for fused in (True, False):
            cases = {
                # D's first convolution (3 -> 64), its LeakyReLU fused or not
                "conv2d": (
                    kernels.conv2d_kernel,
                    {"HAS_BIAS": False, "ACTIVATION": fused, **conv2d_launch(48, 64, M, t)},
                    None,
                ),
                # G's last layer (64 -> 3), or D's first one's input gradient (masked)
                "conv_transpose2d": (
                    kernels.conv_transpose2d_kernel,
                    {
                        "KH": 4,
                        "KW": 4,
                        "TAPS_H": 2,
                        "TAPS_W": 2,
                        "HAS_BIAS": False,
                        "MASKED": fused,
                        **conv_transpose2d_launch(64, 3, M, t),
                    },  # fmt: skip
                    None,
                ),
                "conv2d_weight_grad": (
                    kernels.conv2d_weight_grad_kernel,
                    {"MASKED": fused, **weight_grad_launch(64, 48, M, t)},
                    {"part_ptr": "*fp32"},
                ),
            }
            for name, (fn, constexprs, pointers) in cases.items():
                result = compile_for_sm90(fn, dtype, {**common, **constexprs}, pointers)
                print(json.dumps({"kernel": name, "dtype": dtype, "fused": fused, **result}))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
