"""Numeric precision policies: fp32 (TF32 off), tf32, bf16 autocast, fp16 autocast + GradScaler.

Parameters and optimizer state stay fp32 in every policy; autocast lowers the matmuls and
convolutions only, as torch.amp intends.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PrecisionPolicy:
    name: str
    device_type: str
    autocast_dtype: torch.dtype | None
    grad_scaler: bool  # fp16 only: gradients of small losses underflow in fp16 without it
    # Autocast caches the low-precision copies of weights within a forward. Off under CUDA
    # graph capture: cached casts made while capturing would outlive the graph's memory.
    autocast_cache: bool = True

    def autocast(self):
        """The forward-pass context: autocast for bf16/fp16, nothing for fp32/tf32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(
            device_type=self.device_type,
            dtype=self.autocast_dtype,
            cache_enabled=self.autocast_cache,
        )

    def make_scaler(self) -> torch.amp.GradScaler:
        """One scaler per network: G and D losses have independent scales."""
        return torch.amp.GradScaler(self.device_type, enabled=self.grad_scaler)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "autocast_dtype": str(self.autocast_dtype).removeprefix("torch.")
            if self.autocast_dtype
            else None,
            "grad_scaler": self.grad_scaler,
            "autocast_cache": self.autocast_cache if self.autocast_dtype else None,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        }


def make_policy(name: str, device_type: str, autocast_cache: bool = True) -> PrecisionPolicy:
    """Build the policy and set the process-wide TF32 switches it implies."""
    # fp32 means true IEEE fp32: torch's cuDNN default allows TF32 convolutions, so it is
    # switched off explicitly; "tf32" turns it on for matmuls and convolutions alike.
    tf32 = name == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name)
    return PrecisionPolicy(
        name=name,
        device_type=device_type,
        autocast_dtype=dtype,
        grad_scaler=name == "fp16",
        autocast_cache=autocast_cache,
    )
