"""The speed-up registry: each speed-up whole, variants parsed on demand, canonical names,
combinations that cannot run, and the table the README holds."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.cli import main
from bench.config import ConfigError, RunConfig
from bench.speedups import (
    BASELINE_FIELDS,
    OPTIONS,
    SPEEDUPS,
    Stage,
    VariantError,
    canonical_variant,
    conflict,
    parse_variant,
    variant_name,
    variant_rank,
)
from bench.speedups import table as speedup_table


def fields(**values):
    """An object with every option's field at its baseline, but `values`."""
    return SimpleNamespace(**{**BASELINE_FIELDS, **values})


def test_every_single_speedup_and_the_documented_combinations_parse():
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
        assert canonical_variant(name) == name


def test_every_pair_parses_or_says_why_in_one_line():
    """Pairs decide validity: a conflict names two speed-ups. Each pair either parses
    (its canonical name round-trips through its fields) or is refused with a reason."""
    for first, second in itertools.combinations(SPEEDUPS, 2):
        try:
            variant = parse_variant(f"{second}+{first}")
        except VariantError as err:
            assert "\n" not in str(err) and first in str(err) and second in str(err)
            continue
        assert variant.name == f"{first}+{second}"  # canonical order is the registry's
        assert variant_name(fields(**variant.fields)) == variant.name


def test_graphs_inside_graphs_and_padded_narrow_convolutions_conflict():
    for name in ("compile-reduce-overhead+cuda-graph", "compile-max-autotune+cuda-graph"):
        with pytest.raises(VariantError, match="graph inside a graph"):
            parse_variant(name)
    for name in ("compile+cuda-graph", "compile-max-autotune-no-cudagraphs+cuda-graph"):
        parse_variant(name)
    with pytest.raises(VariantError, match="own channel count"):
        parse_variant("triton-convs+pad-channels")


def test_one_speedup_per_option():
    """Speed-ups that set the same option exclude each other: the compile modes."""
    compile_modes = [s for s in SPEEDUPS.values() if "compile_mode" in s.fields]
    assert len(compile_modes) == len(OPTIONS["compile_mode"].choices) - 1  # all but "none"
    for a, b in itertools.combinations(compile_modes, 2):
        assert "choose one" in conflict([a, b])


def test_every_speedup_is_whole():
    """Each speed-up names options that exist, sets values they allow, acts at a stage of
    the order, and its help, requirements and conflicts are readable."""
    for speedup in SPEEDUPS.values():
        assert speedup.help and not speedup.help.endswith(".")
        for name, value in speedup.fields.items():
            option = OPTIONS[name]
            assert value != option.default
            assert option.invalid(value) is None
        assert speedup.stage in Stage and set(speedup.hooks) <= set(Stage)
        for requirement in speedup.requirements:
            assert requirement.label
        for other in speedup.conflicts:
            assert other in SPEEDUPS, other


def test_fields_name_the_variant_they_amount_to():
    assert variant_name(fields()) == "eager"
    assert variant_name(fields(kernels="triton", cuda_graph=True)) == "triton+cuda-graph"
    assert variant_name(fields(compile_mode="max-autotune")) == "compile-max-autotune"
    # A value no speed-up gives: another cuDNN search limit.
    assert variant_name(fields(cudnn_benchmark_limit=5)) == "custom"


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


def test_simple_variants_rank_first():
    assert variant_rank("eager") < variant_rank("cuda-graph") < variant_rank("compile+triton")
    names = ["triton+cuda-graph", "eager", "cuda-graph", "compile", "custom"]
    assert sorted(names, key=variant_rank) == [
        "eager", "compile", "cuda-graph", "triton+cuda-graph", "custom",
    ]  # fmt: skip


def test_one_speedup_with_a_speedup_of_every_other_option_builds_a_config():
    """A DCGAN config takes each speed-up (joint-d with a critic, batched-casts in bf16,
    triton-one-kernel with the kernels it changes)."""
    for name in SPEEDUPS:
        loss = "wgan-gp" if name == "joint-d" else "non-saturating"
        precision = "bf16" if name == "batched-casts" else "fp32"
        variant = "triton+triton-one-kernel" if name == "triton-one-kernel" else name
        cfg = RunConfig(model="dcgan32", loss=loss, precision=precision, variant=variant)
        assert cfg.variant_name == variant


def test_readme_table_is_the_registrys():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert speedup_table.markdown() in readme, "run `gan-bench variants --markdown`"


def test_variants_command_prints_the_table_and_checks_a_combination(capsys):
    with pytest.raises(SystemExit) as info:
        main(["variants"])
    assert info.value.code == 0
    table = capsys.readouterr().out
    for name in SPEEDUPS:
        assert name in table
    with pytest.raises(SystemExit) as info:
        main(["variants", "cuda-graph+compile+triton"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "compile+triton+cuda-graph: valid"
    with pytest.raises(SystemExit) as info:
        main(["variants", "compile-reduce-overhead+cuda-graph"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "graph inside a graph" in err[0]
