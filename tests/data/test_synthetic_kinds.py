"""Restricting the synthetic data's texture kinds (a demo option): only the chosen kinds appear, the defaults
are unchanged, and bad kinds are named."""

import dataclasses

import numpy as np
import pytest

from swapjax.errors import ConfigError
from swapjax.data import synthetic_assets as assets
from swapjax.data.config import DataConfig
from swapjax.data.pipeline import make_source
from swapjax.data.synthetic import SceneSettings, SyntheticClips


def test_only_the_chosen_kinds_are_drawn():
    clips = SyntheticClips(32, 32, 5, 12, seed=1, textures=("flat", "blobs"), backgrounds=("gradient",))
    for i in range(len(clips)):
        scene, _, _ = clips.render(i)
        assert scene.background.kind == "gradient"
        assert {look.texture.kind for look, _ in scene.sprites} <= {"flat", "blobs"}
    pair = clips.swap_pair(3, 16)
    subject = np.asarray(pair["target"])[np.asarray(pair["target_mask"], bool)]  # [P, 3] the new sprite's pixels
    assert subject.size and pair["reference"].shape == (16, 16, 3)


def test_defaults_are_every_kind():
    default = SyntheticClips(32, 32, 5, 6, seed=2)
    explicit = SyntheticClips(32, 32, 5, 6, seed=2, textures=assets.TEXTURE_KINDS,
                              backgrounds=assets.BACKGROUND_KINDS)
    grouped = SyntheticClips(32, 32, 5, 6, seed=2, scene=SceneSettings(textures=assets.TEXTURE_KINDS,
                                                                       backgrounds=assets.BACKGROUND_KINDS))
    for i in range(6):
        np.testing.assert_array_equal(default[i]["video"], explicit[i]["video"])
        np.testing.assert_array_equal(default[i]["video"], grouped[i]["video"])


def test_data_config_reaches_the_source():
    cfg = DataConfig(height=32, width=32, num_synthetic_clips=4, synthetic_textures=("flat",),
                     synthetic_backgrounds=("blobs",))
    source = make_source(cfg, seed=0)
    assert source.scene.textures == ("flat",) and source.scene.backgrounds == ("blobs",)
    assert make_source(dataclasses.replace(cfg, synthetic_textures=None), 0).scene.textures == assets.TEXTURE_KINDS


def test_bad_kinds_are_named():
    with pytest.raises(ValueError, match="textures .*'plaid'.* subset"):
        SyntheticClips(32, 32, 5, 4, textures=("flat", "plaid"))
    with pytest.raises(ConfigError, match="DataConfig.synthetic_backgrounds .*flat.* subset"):
        DataConfig(synthetic_backgrounds=("flat",))  # flat is a sprite texture, not a background kind
    with pytest.raises(ConfigError, match="DataConfig.synthetic_textures"):
        DataConfig(synthetic_textures=())
