"""Dotted command-line overrides: parsed to the field's type, validated like a config file, clear errors."""

from __future__ import annotations

import pathlib

import pytest

from swapjax.config import apply_overrides, load_config
from swapjax.errors import ConfigError

CONFIGS = pathlib.Path(__file__).parent.parent / "configs"


@pytest.fixture(scope="module")
def tiny():
    return load_config(CONFIGS / "swap_tiny.py")


def test_int_float_bool_str_tuple_and_nested(tiny):
    cfg = apply_overrides(tiny, ["dit.num_layers=3", "swap.conditions.pose.scale=0.25", "swap.anchor=false",
                                 "dit.remat_policy=full", "swap.conditions.pose.widths=4,8", "data.mask.grid_cell_min=5",
                                 "seed=7", "swap.conditions.pose.layers=(0, 2)"])
    assert cfg.dit.num_layers == 3 and isinstance(cfg.dit.num_layers, int)
    pose = cfg.swap.conditions.kwargs("pose")
    assert pose["scale"] == 0.25 and isinstance(pose["scale"], float)
    assert cfg.swap.anchor is False
    assert cfg.dit.remat_policy == "full"
    assert pose["widths"] == (4, 8)
    assert pose["layers"] == (0, 2)
    assert cfg.data.mask.grid_cell_min == 5
    assert cfg.seed == 7
    assert tiny.dit.num_layers == 2, "the original config is untouched (frozen dataclasses)"


def test_later_overrides_win_and_optional_values(tiny):
    cfg = apply_overrides(tiny, ["seed=1", "seed=2", "data.tfds_dir=/data/x", "data.source=tfds"])
    assert cfg.seed == 2 and cfg.data.tfds_dir == "/data/x" and cfg.data.source == "tfds"
    assert apply_overrides(cfg, ["data.source=synthetic", "data.tfds_dir=None"]).data.tfds_dir is None


def test_a_none_section_is_created_from_defaults():
    base = load_config(CONFIGS / "tiny.py")
    assert base.swap is None
    cfg = apply_overrides(base, ["swap.reference=true", "swap.condition_channels=0", "dit.in_channels=36"])
    assert cfg.swap is not None and cfg.swap.condition_channels == 0


def test_train_and_sample_sections_take_overrides(tiny):
    cfg = apply_overrides(tiny, ["sample.sampler.num_steps=3", "sample.sampler.guidance_scale=2.5"])
    assert cfg.sample.sampler.num_steps == 3 and cfg.sample.sampler.guidance_scale == 2.5


def test_bad_value_prints_nothing_but_the_error(tiny, capsys):
    with pytest.raises(ConfigError):
        apply_overrides(tiny, ["dit.num_layers=three"])
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_load_config_applies_overrides():
    cfg = load_config(CONFIGS / "tiny.py", ["dit.attention=splash", "data.batch_size=4"])
    assert cfg.dit.attention == "splash" and cfg.data.batch_size == 4


def test_unknown_key_names_key_value_and_allowed(tiny):
    with pytest.raises(ConfigError, match=r"override dit\.remat='full': DiTConfig has no field 'remat'; allowed: "
                                          r".*remat_policy"):
        apply_overrides(tiny, ["dit.remat=full"])
    with pytest.raises(ConfigError, match=r"override trian\.steps='3': Config has no field 'trian'; allowed: .*dit"):
        apply_overrides(tiny, ["trian.steps=3"])


def test_bad_type_names_key_value_and_type(tiny):
    with pytest.raises(ConfigError, match=r"override dit\.num_layers='three': cannot read 'three' as int"):
        apply_overrides(tiny, ["dit.num_layers=three"])
    with pytest.raises(ConfigError, match=r"override swap\.anchor='maybe': cannot read 'maybe' as bool"):
        apply_overrides(tiny, ["swap.anchor=maybe"])
    with pytest.raises(ConfigError, match=r"override swap\.conditions\.pose\.scale='x': cannot read 'x' as float"):
        apply_overrides(tiny, ["swap.conditions.pose.scale=x"])


def test_value_failing_validation_names_allowed_values(tiny):
    with pytest.raises(ConfigError, match=r"override dit\.remat_policy='some' is invalid: DiTConfig\.remat_policy "
                                          r"\('some'\) must be one of \('none', 'full', 'dots', 'dots_no_batch'\)"):
        apply_overrides(tiny, ["dit.remat_policy=some"])
    with pytest.raises(ConfigError, match=r"override data\.num_frames='6' is invalid: .*must be 1 mod 4"):
        apply_overrides(tiny, ["data.num_frames=6"])
    # the run-level cross-section check runs too
    with pytest.raises(ConfigError, match=r"override dit\.in_channels='40' is invalid: .*in_channels \(40\)"):
        apply_overrides(tiny, ["dit.in_channels=40"])


def test_malformed_and_section_overrides(tiny):
    with pytest.raises(ConfigError, match=r"override 'dit\.num_layers' is not key=value"):
        apply_overrides(tiny, ["dit.num_layers"])
    with pytest.raises(ConfigError, match=r"override dit='x': that is a section; set its fields"):
        apply_overrides(tiny, ["dit=x"])
    with pytest.raises(ConfigError, match=r"Config\.seed is a value, not a section"):
        apply_overrides(tiny, ["seed.x=1"])
