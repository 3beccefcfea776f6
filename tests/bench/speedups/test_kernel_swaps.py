"""triton and triton-convs: the layers they swap, and what they refuse before any work."""

from __future__ import annotations

import pytest

from bench.config import ConfigError, RunConfig
from bench.speedups.kernel_swaps import NARROW_CONV_MAX_CHANNELS
from gan_steps import built


def test_the_harness_refuses_what_the_swap_would_leave():
    """The speed-up checks image channels against the swap's default without importing
    triton: the two limits are the same."""
    from kernels.narrow_conv.modules import DEFAULT_MAX_CHANNELS

    assert NARROW_CONV_MAX_CHANNELS == DEFAULT_MAX_CHANNELS
    with pytest.raises(ConfigError, match=f"at most {NARROW_CONV_MAX_CHANNELS} channels"):
        RunConfig(variant="triton-convs", channels=NARROW_CONV_MAX_CHANNELS + 1)


def test_the_swaps_say_what_they_swapped():
    cfg = RunConfig(device="cpu", model="dcgan32", variant="triton+triton-convs")
    with built(cfg) as applied:
        account = applied.account()
    assert account["kernel_path"] == "triton-interpreter"
    assert account["fused_layers"]["count"] > 0
    narrow = account["narrow_convolutions"]
    assert narrow["count"] == 2 and narrow["path"] == "triton-interpreter"
    with built(RunConfig(device="cpu", model="dcgan32")) as applied:
        account = applied.account()
    assert (account["kernel_path"], account["fused_layers"]) == ("torch", None)
    assert account["narrow_convolutions"] is None
