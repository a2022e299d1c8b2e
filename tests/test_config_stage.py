"""`train.stage` selects the stage's data: `data.stage` None follows it ("1" -> 1, "2" -> 2, "lora" -> 1) unless
the user sets `data.stage`, through `load_config` and its `--set` style overrides, in any order."""

import pathlib

import numpy as np
import pytest

from swapjax.config import load_config
from swapjax.data.config import DataConfig
from swapjax.data.pipeline import ExampleBuilder

TINY = pathlib.Path(__file__).resolve().parents[1] / "configs" / "tiny.py"


@pytest.mark.parametrize("overrides, stage", [
    (("train.stage=1",), 1),
    (("train.stage=2",), 2),
    (("train.stage=lora", "train.lora_rank=2"), 1),
    (("train.stage=2", "data.stage=1"), 1),  # set explicitly: kept
    (("data.stage=1", "train.stage=2"), 1),  # in either order
    (("train.stage=1", "data.stage=2"), 2),
    (("train.stage=lora", "train.lora_rank=2", "data.stage=2"), 2),
    (("train.stage=2", "data.stage=None"), 2),  # None: follow again
    (("train.stage=2", "data.batch_size=4", "data.mask.p_bbox=1"), 2),  # other data overrides keep following
])
def test_data_stage_follows_train_stage_unless_set(overrides, stage):
    config = load_config(TINY, list(overrides))
    assert config.data.stage == stage


def test_a_derived_stage_follows_a_later_train_stage_change():
    config = load_config(TINY, ["train.stage=1"])
    assert config.data.stage == 1
    # rebuilding the run config with another train.stage (an override on a loaded config) derives it again
    assert load_config(TINY, ["train.stage=1", "train.stage=2"]).data.stage == 2
    assert config.replace(train=load_config(TINY, ["train.stage=2"]).train).data.stage == 2
    with pytest.raises(Exception, match=r"DataConfig.stage \(3\) must be 1, 2 or None"):
        DataConfig(stage=3)


def _record(seed=0):
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    mask = np.zeros((5, 32, 32), np.uint8)
    mask[:, 8:20, 10:22] = 1
    return {"video": video, "mask": mask}


def test_the_example_builder_sees_the_resolved_stage():
    stage2 = load_config(TINY, ["train.stage=2", "data.height=32", "data.width=32", "data.ref_size=32"]).data
    stage1 = load_config(TINY, ["train.stage=1", "data.height=32", "data.width=32", "data.ref_size=32"]).data
    build = lambda cfg: ExampleBuilder(cfg, None, 0, 1).build(_record(), np.random.default_rng(7))["reference"]
    assert ExampleBuilder(stage2, None, 0, 1).cfg.stage == 2
    np.testing.assert_array_equal(build(stage1), build(stage1))
    assert not np.array_equal(build(stage1), build(stage2))  # stage 2 jitters the reference
