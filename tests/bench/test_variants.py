"""The variant registry: composable speed-ups, canonical names, combinations that cannot run."""

from __future__ import annotations

import pytest

from bench.config import ConfigError, RunConfig
from bench.variants import (
    SPEEDUPS,
    VARIANT_FIELDS,
    VARIANTS,
    VariantError,
    canonical_variant,
    variant_name,
)


def test_every_single_speedup_and_the_issue_combinations_are_registered():
    for name in (
        "eager",
        *SPEEDUPS,
        "compile+triton",
        "channels-last+cuda-graph",
        "triton+channels-last+cuda-graph",
        "compile+channels-last+cuda-graph",
        "compile-max-autotune-no-cudagraphs+triton+channels-last+cuda-graph",
        "compile-reduce-overhead+triton",
        "triton+channels-last+pad-channels+cuda-graph",
        "triton+joint-d+batched-casts+cuda-graph",
    ):
        assert name in VARIANTS, name


def test_graphs_inside_graphs_are_not_registered():
    for name in VARIANTS:
        fields = VARIANTS[name].fields
        assert not (
            fields["cuda_graph"] and fields["compile_mode"] in ("reduce-overhead", "max-autotune")
        ), name


def test_registry_is_the_full_product_minus_conflicts():
    # 5 compile choices x 2 kernels x 2 convolution kernels x 2 formats x 2 channel paddings
    # x 2 D batchings x 2 cast batchings x 2 cuDNN searches x 2 graph settings = 1280, minus
    # the 2 graph compile modes x 2^7 with cuda-graph (256) and triton-convs with
    # pad-channels (5 x 2^6 = 320), 2 x 2^5 of them counted in both.
    assert len(VARIANTS) == 1280 - (256 + 320 - 64)


def test_triton_convs_are_not_padded():
    for variant in VARIANTS.values():
        fields = variant.fields
        assert not (fields["conv_kernels"] == "triton" and fields["pad_image_channels"])


def test_fields_are_complete_and_names_round_trip():
    for name, variant in VARIANTS.items():
        assert set(variant.fields) == set(VARIANT_FIELDS)
        assert variant_name(variant.fields) == name
        assert canonical_variant(name) == name


def test_any_order_gives_the_canonical_name():
    assert canonical_variant("cuda-graph+compile+triton") == "compile+triton+cuda-graph"
    assert canonical_variant(" channels-last + triton ") == "triton+channels-last"
    assert (
        canonical_variant("cuda-graph+channels-last+triton-convs+triton")
        == "triton+triton-convs+channels-last+cuda-graph"
    )
    assert (
        canonical_variant("cuda-graph+pad-channels+channels-last")
        == "channels-last+pad-channels+cuda-graph"
    )


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("fast", ["'fast'", "not a speed-up"]),
        ("eager+triton", ["'eager'"]),
        ("triton+triton", ["triton", "choose one"]),
        ("compile+compile-reduce-overhead", ["compile-reduce-overhead", "choose one"]),
        ("compile-max-autotune+cuda-graph", ["graph inside a graph"]),
        ("pad-channels+triton-convs", ["own channel count", "one or the other"]),
    ],
)
def test_bad_names_say_why(name, words):
    with pytest.raises(VariantError) as info:
        canonical_variant(name)
    for word in words:
        assert word in str(info.value)


def test_unregistered_field_values_are_custom():
    assert variant_name({**VARIANT_FIELDS, "compile_mode": "weird"}) == "custom"


def test_simple_variants_list_first():
    names = list(VARIANTS)
    assert names[0] == "eager"
    assert names.index("cuda-graph") < names.index("compile+triton")
    assert max(names.index(s) for s in SPEEDUPS) < min(i for i, n in enumerate(names) if "+" in n)


def test_every_variant_builds_a_config_for_dcgan():
    for name in VARIANTS:
        # joint-d needs a D without BatchNorm: DCGAN's WGAN-GP critic; batched-casts autocast
        loss = "wgan-gp" if "joint-d" in name else "non-saturating"
        precision = "bf16" if "batched-casts" in name else "fp32"
        cfg = RunConfig(model="dcgan32", loss=loss, precision=precision, variant=name)
        assert cfg.variant_name == name


@pytest.mark.parametrize(
    ("model", "loss", "allowed"),
    [
        ("mlp", "non-saturating", True),  # no BatchNorm in the MLP discriminator
        ("mlp", "wgan-gp", True),
        ("dcgan32", "non-saturating", False),  # BatchNorm after every conv but the first
        ("dcgan64", "hinge", False),
        ("dcgan64", "wgan-gp", True),  # the critic has no BatchNorm
    ],
)
def test_joint_d_only_where_d_has_no_batch_statistics(model, loss, allowed):
    if allowed:
        assert RunConfig(model=model, loss=loss, variant="joint-d").joint_d_batch
        return
    with pytest.raises(ConfigError, match="BatchNorm.*shared batch statistics"):
        RunConfig(model=model, loss=loss, variant="joint-d")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"model": "mlp"}, ["changes nothing for mlp", "784"]),
        ({"model": "dcgan32", "channels": 4}, ["4 channels", "nothing to pad"]),
        (
            {"model": "dcgan32", "channels": 8, "precision": "bf16"},
            ["8 channels", "multiple of 8", "bf16"],
        ),
    ],
)
def test_pad_channels_only_where_there_is_a_convolution_to_align(options, words):
    with pytest.raises(ConfigError) as info:
        RunConfig(**options, variant="pad-channels")
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("dataset", "channels"), [("synthetic", None), ("mnist5k", None)])
def test_pad_channels_takes_rgb_and_grey_images(dataset, channels):
    cfg = RunConfig(model="dcgan64", dataset=dataset, channels=channels, variant="pad-channels")
    assert cfg.pad_image_channels and cfg.image_channels in (1, 3)
