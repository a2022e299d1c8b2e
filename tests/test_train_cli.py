"""`train.py --config configs/swap_tiny.py` end to end on CPU: stage 1, then stage 2 from stage 1's checkpoint;
exports and TensorBoard files written; bad input is one line with exit code 2. The VAE stage is
tests/test_train_vae_stage.py."""

from __future__ import annotations

import json

from train_fixtures import ROOT, compile_cache, losses, run_train  # noqa: F401
from swapjax.convert.saved import CONFIG_FILE

TINY = ROOT / "configs" / "swap_tiny.py"
SMALL = ("train.progress=false", "train.checkpoint_every=1", "data.height=32", "data.width=32", "data.ref_size=32",
         "data.num_synthetic_clips=8", "optimizer.warmup_steps=1")


def test_train_py_runs_stage_1_then_stage_2_from_its_checkpoint(tmp_path, compile_cache):  # noqa: F811
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    first = run_train(stage1, compile_cache, *SMALL, "train.steps=2", config=TINY)
    assert first.returncode == 0, first.stderr
    assert "GFLOP per step" in first.stderr and "temporaries" in first.stderr  # compiled step reported
    assert sorted(losses(stage1)) == [1, 2]
    assert (stage1 / "export" / CONFIG_FILE).is_file() and (stage1 / "diffusers" / "config.json").is_file()
    assert list((stage1 / "tensorboard").rglob("events.out.tfevents.*"))

    second = run_train(stage2, compile_cache, *SMALL, "train.steps=2", "train.stage=2", f"train.init_from={stage1}",
                       config=TINY)
    assert second.returncode == 0, second.stderr
    assert f"parameters from {stage1}" in second.stderr
    assert "dit stage 2: " in second.stderr and sorted(losses(stage2)) == [1, 2]


def test_train_py_bad_input_is_one_line_with_exit_2(tmp_path, compile_cache):  # noqa: F811
    bad = run_train(tmp_path / "w", compile_cache, "train.stage=3", config=TINY)
    assert bad.returncode == 2
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and "TrainConfig.stage ('3') must be one of" in lines[-1], bad.stderr
    missing = run_train(tmp_path / "w", compile_cache, "train.init_from=/nonexistent/run", config=TINY)
    assert missing.returncode == 2 and "train.init_from = '/nonexistent/run' does not exist" in missing.stderr
