"""`train.py --config configs/swap_tiny.py` end to end on CPU: from scratch (stage 2, the config's default), then
stage 1 from that run's checkpoint; exports and TensorBoard files written; bad input, stage 1 from scratch
included, is one line with exit code 2. The VAE stage is tests/train/test_train_vae_stage.py."""

from __future__ import annotations

import json

import pytest

from train_fixtures import ROOT, compile_cache, losses, run_train, tiny_config  # noqa: F401
from swapjax.errors import ConfigError
from swapjax.convert.saved import CONFIG_FILE
from swapjax.train.loop import validate

TINY = ROOT / "configs" / "swap_tiny.py"
SMALL = ("train.progress=false", "train.checkpoint_every=1", "data.height=32", "data.width=32", "data.ref_size=32",
         "data.num_synthetic_clips=8", "optimizer.warmup_steps=1")


@pytest.mark.slow
def test_train_py_runs_from_scratch_then_stage_1_from_its_checkpoint(tmp_path, compile_cache):  # noqa: F811
    scratch, stage1 = tmp_path / "scratch", tmp_path / "stage1"
    first = run_train(scratch, compile_cache, *SMALL, "train.steps=2", config=TINY)
    assert first.returncode == 0, first.stderr
    assert "dit stage 2: " in first.stderr
    assert "GFLOP per step" in first.stderr and "temporaries" in first.stderr  # compiled step reported
    assert sorted(losses(scratch)) == [1, 2]
    assert (scratch / "export" / CONFIG_FILE).is_file() and (scratch / "diffusers" / "config.json").is_file()
    assert list((scratch / "tensorboard").rglob("events.out.tfevents.*"))

    second = run_train(stage1, compile_cache, *SMALL, "train.steps=2", "train.stage=1", f"train.init_from={scratch}",
                       config=TINY)
    assert second.returncode == 0, second.stderr
    assert f"parameters from {scratch}" in second.stderr
    assert "dit stage 1: " in second.stderr and sorted(losses(stage1)) == [1, 2]


def test_train_py_bad_input_is_one_line_with_exit_2(tmp_path, compile_cache):  # noqa: F811
    bad = run_train(tmp_path / "w", compile_cache, "train.stage=3", config=TINY)
    assert bad.returncode == 2
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and "TrainConfig.stage ('3') must be one of" in lines[-1], bad.stderr
    missing = run_train(tmp_path / "w", compile_cache, "train.init_from=/nonexistent/run", config=TINY)
    assert missing.returncode == 2 and "train.init_from = '/nonexistent/run' does not exist" in missing.stderr


def test_train_py_stage_1_from_scratch_is_one_line_with_exit_2_and_writes_nothing(tmp_path, compile_cache):  # noqa: F811
    workdir = tmp_path / "w"
    bad = run_train(workdir, compile_cache, "train.stage=1", config=TINY)
    assert bad.returncode == 2
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]], bad.stderr
    assert ("train.stage = '1' from scratch trains nothing (the output head proj_out starts at zero and is frozen"
            in lines[-1]) and "use train.stage=2 to train from scratch, or pass train.init_from=<" in lines[-1]
    assert not workdir.exists()  # refused before the workdir (and its checkpoints/) is created


@pytest.mark.parametrize("stage", ["1", "lora"])
def test_a_frozen_head_stage_needs_a_model_to_start_from_or_a_checkpoint_to_resume(tmp_path, stage):
    config = tiny_config(f"train.stage={stage}", "data.batch_size=8")  # 8 test devices
    with pytest.raises(ConfigError, match=f"train.stage = '{stage}' from scratch trains nothing"):
        validate(config, tmp_path / "w")
    (tmp_path / "w" / "checkpoints" / "3.orbax-checkpoint-tmp-1").mkdir(parents=True)  # a save cut short
    with pytest.raises(ConfigError, match="from scratch trains nothing"):
        validate(config, tmp_path / "w")
    (tmp_path / "w" / "checkpoints" / "2").mkdir()  # a complete step: resuming it is fine
    validate(config, tmp_path / "w")
    validate(tiny_config(f"train.stage={stage}", "data.batch_size=8", f"train.init_from={tmp_path / 'w'}"),
             tmp_path / "v")
