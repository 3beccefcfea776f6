"""triton-one-kernel: what it requires, the modules it sets, and the paths a run records."""

from __future__ import annotations

import pytest

from bench.config import ConfigError, RunConfig
from bench.runtime import harness
from bench.speedups.kernel_swaps import fused_modules
from gan_steps import CPU, built


def test_it_needs_the_fused_kernels():
    with pytest.raises(ConfigError, match=r"needs the fused BatchNorm kernels \(the triton"):
        RunConfig(variant="triton-one-kernel")
    with pytest.raises(ConfigError, match="--kernels triton"):
        RunConfig(bn_launches="one-kernel")
    cfg = RunConfig(variant="cuda-graph+triton-one-kernel+triton")
    assert cfg.variant == "triton+triton-one-kernel+cuda-graph"
    assert cfg.bn_launches == "one-kernel"


@pytest.mark.parametrize("variant", ["triton", "triton+triton-one-kernel"])
def test_every_fused_module_plans_one_kernel_with_it_only(variant):
    with built(RunConfig(device="cpu", model="dcgan32", variant=variant)) as applied:
        networks = (applied.generator, applied.discriminator)
        modules = [m for net in networks for m in fused_modules(net).values()]
    assert len(modules) == 5  # dcgan32: G's three BatchNorms, D's two
    assert {m.one_kernel for m in modules} == {variant.endswith("one-kernel")}


def test_a_run_records_each_layers_path(tmp_path):
    cfg = RunConfig(
        model="dcgan32", variant="triton+triton-one-kernel", device="cpu", batch_size=4,
        steps=2, warmup_steps=1, quiet=True, out=str(tmp_path / "runs.jsonl"),
    )  # fmt: skip
    record = harness.execute(cfg, CPU)
    assert record["status"] == "ok", record["reason"]
    run = record["run"]
    assert run["variant"] == "triton+triton-one-kernel"
    assert run["variant_fields"]["bn_launches"] == "one-kernel"
    layers = run["fused_layers"]
    assert set(layers["generator"]["paths"]) == {
        "main.project.bn", "main.up1.bn", "main.up2.bn",
    }  # fmt: skip
    assert set(layers["discriminator"]["paths"]) == {"main.down1.bn", "main.down2.bn"}
    for network in ("generator", "discriminator"):
        for path in layers[network]["paths"].values():
            assert path == {"path": "one-kernel", "launches": 2}
