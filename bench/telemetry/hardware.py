"""Published peak math rates of accelerators, the denominator of MFU.

Every figure is the vendor's DENSE rate in TFLOP/s: datasheets print tensor-core
rates "with sparsity" (2:4 structured sparsity, 2x the dense rate), and a GAN's
convolutions and matmuls are dense, so those figures are halved here. ``fp32`` is
the plain (non-tensor-core) FP32 rate: what an fp32 run gets with TF32 disabled.
``tf32``/``bf16``/``fp16`` are tensor-core rates with FP32 accumulation, which is
what PyTorch uses.

Only boards whose datasheet figures we are sure of are listed; everything else is
"unknown" rather than guessed. Names are matched against
``torch.cuda.get_device_name()`` case-insensitively, first match wins, with word
boundaries: a plain substring test would let "L4" match "NVIDIA L40S" and "B200"
match "NVIDIA GB200", which is why the table uses regular expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


@dataclass(frozen=True)
class _Board:
    pattern: str  # regular expression, searched case-insensitively in the device name
    rates: dict[str, float | None] | None  # TFLOP/s per precision; None: do not guess
    source: str


def _rates(fp32: float, tf32: float | None, bf16: float | None, fp16: float | None) -> dict:
    return {"fp32": fp32, "tf32": tf32, "bf16": bf16, "fp16": fp16}


# Order matters: variants before the family name they contain.
_BOARDS: tuple[_Board, ...] = (
    # A MIG slice has a fraction of the SMs; the board's peak would overstate it.
    _Board(r"\bMIG\b", None, "a MIG slice has only part of the GPU's peak"),
    # NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe: FP32 51, TF32 756, BF16/FP16
    # 1,513 TFLOPS with sparsity -> 378 / 756 dense (the Hopper whitepaper's dense
    # figures for the PCIe card).
    _Board(
        r"\bH100\b.*\bPCIe\b",
        _rates(51.0, 378.0, 756.0, 756.0),
        "NVIDIA H100 datasheet, H100 PCIe (dense; the sheet lists 2x with sparsity)",
    ),
    # NVIDIA H100 datasheet (per-GPU revision), H100 NVL: FP32 60, TF32 835,
    # BF16/FP16 1,671 TFLOPS with sparsity -> 417.5 / 835.5 dense.
    _Board(
        r"\bH100\b.*\bNVL\b",
        _rates(60.0, 417.5, 835.5, 835.5),
        "NVIDIA H100 datasheet, H100 NVL per GPU (dense; the sheet lists 2x with sparsity)",
    ),
    # NVIDIA H100 datasheet, H100 SXM5 ("NVIDIA H100 80GB HBM3"): FP32 67, TF32 989,
    # BF16/FP16 1,979 TFLOPS with sparsity -> 494.7 / 989.4 dense (132 SMs at 1.83 GHz).
    _Board(
        r"\bH100\b",
        _rates(67.0, 494.7, 989.4, 989.4),
        "NVIDIA H100 datasheet, H100 SXM5 (dense; the sheet lists 2x with sparsity)",
    ),
    # NVIDIA H200 datasheet, H200 NVL: same figures as H100 NVL.
    _Board(
        r"\bH200\b.*\bNVL\b",
        _rates(60.0, 417.5, 835.5, 835.5),
        "NVIDIA H200 datasheet, H200 NVL (dense; the sheet lists 2x with sparsity)",
    ),
    # NVIDIA H200 datasheet, H200 SXM: the H100 SXM5 compute with more HBM.
    _Board(
        r"\bH200\b",
        _rates(67.0, 494.7, 989.4, 989.4),
        "NVIDIA H200 datasheet, H200 SXM (dense; the sheet lists 2x with sparsity)",
    ),
    # NVIDIA HGX B200 specifications, per GPU: FP32 75 TFLOPS, TF32 2.2 PFLOPS,
    # FP16/BF16 4.5 PFLOPS with sparsity -> 1,100 / 2,250 dense. (GB200 is faster
    # and does not match: the word boundary keeps "GB200" out.)
    _Board(
        r"\bB200\b",
        _rates(75.0, 1100.0, 2250.0, 2250.0),
        "NVIDIA HGX B200 specifications, per GPU (dense; the page lists 2x with sparsity)",
    ),
    # NVIDIA A100 Tensor Core GPU datasheet; SXM4 and PCIe, 40 and 80 GB share the
    # rates: FP32 19.5, TF32 156, BF16/FP16 312 dense (312 / 624 with sparsity).
    _Board(
        r"\bA100\b",
        _rates(19.5, 156.0, 312.0, 312.0),
        "NVIDIA A100 datasheet, SXM4 and PCIe (dense; the sheet lists 2x with sparsity)",
    ),
    # The A10G is an AWS-specific part with no NVIDIA datasheet; its clocks differ
    # from the A10's, so the A10 figures below would be a guess.
    _Board(r"\bA10G\b", None, "no vendor datasheet for the A10G (an AWS-specific part)"),
    # NVIDIA A10 datasheet: FP32 31.2, TF32 62.5, BF16/FP16 125 dense (125 / 250 sparse).
    _Board(
        r"\bA10\b",
        _rates(31.2, 62.5, 125.0, 125.0),
        "NVIDIA A10 datasheet (dense; the sheet lists 2x with sparsity)",
    ),
    # NVIDIA L40S datasheet: FP32 91.6, TF32 183, BF16/FP16 362.05 dense
    # (366 / 733 with sparsity).
    _Board(
        r"\bL40S\b",
        _rates(91.6, 183.0, 362.05, 362.05),
        "NVIDIA L40S datasheet (dense; the sheet lists 2x with sparsity)",
    ),
    # NVIDIA L40 datasheet: FP32 90.5, TF32 90.5, BF16/FP16 181.05 dense
    # (181 / 362.1 with sparsity).
    _Board(
        r"\bL40\b",
        _rates(90.5, 90.5, 181.05, 181.05),
        "NVIDIA L40 datasheet (dense; the sheet lists 2x with sparsity)",
    ),
    # NVIDIA L4 datasheet: FP32 30.3, TF32 120, BF16/FP16 242 TFLOPS with sparsity
    # -> 60 / 121 dense.
    _Board(
        r"\bL4\b",
        _rates(30.3, 60.0, 121.0, 121.0),
        "NVIDIA L4 datasheet (dense; the sheet lists 2x with sparsity)",
    ),
    # NVIDIA T4 datasheet: FP32 8.1, FP16/FP32 mixed precision 65 TFLOPS. Turing's
    # tensor cores have no TF32 or BF16 mode.
    _Board(
        r"\bT4\b",
        _rates(8.1, None, None, 65.0),
        "NVIDIA T4 datasheet (dense; Turing tensor cores have no sparsity mode)",
    ),
    # Cut-down variants that share the RTX 4090 name but not its rates.
    _Board(r"\bRTX 4090 D\b", None, "RTX 4090 D is a cut-down RTX 4090; rates not tabulated"),
    _Board(r"\bRTX 4090\b.*\bLaptop\b", None, "laptop RTX 4090 is a different chip"),
    # NVIDIA Ada Lovelace architecture whitepaper, RTX 4090: FP32 82.6; TF32 82.6,
    # BF16/FP16 165.2 dense with FP32 accumulate (GeForce runs FP32 accumulation at
    # half the FP16-accumulate rate of 330.3, and PyTorch accumulates in FP32).
    _Board(
        r"\bRTX 4090\b",
        _rates(82.6, 82.6, 165.2, 165.2),
        "NVIDIA Ada Lovelace whitepaper, RTX 4090 (dense, FP32 accumulate)",
    ),
)

# CPU model strings as /proc/cpuinfo and platform.processor() spell them.
_CPU = re.compile(
    r"^(cpu|x86_64|aarch64|arm64|i386|arm)$"
    r"|\b(xeon|epyc|ryzen|threadripper|neoverse|graviton)\b"
    r"|\bcore\(tm\)|\bintel\(r\)|\bapple m\d",
    re.IGNORECASE,
)


def peak_tflops(device_name: str, precision: str) -> tuple[float | None, str | None]:
    """Dense peak math rate of `device_name` at `precision`, in TFLOP/s.

    `device_name` is what ``torch.cuda.get_device_name()`` returns (or a CPU model);
    `precision` is one of ``fp32``, ``tf32``, ``bf16``, ``fp16``. Returns
    ``(tflops, source)`` where `source` names the datasheet the figure comes from, or
    ``(None, reason)`` when no trustworthy figure is known. Raises ``ValueError`` for
    an unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    name = device_name.strip()
    if _CPU.search(name):
        return None, "no published peak for CPUs"
    for board in _BOARDS:
        if re.search(board.pattern, name, re.IGNORECASE) is None:
            continue
        if board.rates is None:
            return None, f"peak unknown for device {name!r}: {board.source}"
        value = board.rates[precision]
        if value is None:
            return None, f"no {precision} rate for device {name!r} ({board.source})"
        return value, f"{board.source}: {precision} {value:g} TFLOP/s"
    return None, f"peak unknown for device {name!r}"
