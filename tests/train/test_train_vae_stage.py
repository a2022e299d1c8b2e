"""The VAE stage from scratch: `train.py --config configs/swap_tiny.py --set train.vae_steps=2` trains the VAE,
measures its latent statistics, writes it, and trains the swap DiT on its latents; a later run loads it."""

from __future__ import annotations

import json

import pytest

from train_fixtures import compile_cache, losses, run_train  # noqa: F401
from test_train_cli import SMALL, TINY
from swapjax.convert.saved import CONFIG_FILE
from swapjax.models.vae_config import WAN21_LATENTS_MEAN


@pytest.mark.slow
def test_train_py_runs_the_vae_stage_then_the_dit_on_its_latents(tmp_path, compile_cache):  # noqa: F811
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    first = run_train(stage1, compile_cache, *SMALL, "train.steps=1", "train.vae_steps=2",
                      "train.vae_stat_batches=1", config=TINY)
    assert first.returncode == 0, first.stderr
    assert "GFLOP per step" in first.stderr and "temporaries" in first.stderr  # compiled step reported
    assert sorted(losses(stage1, "vae_")) == [1, 2] and sorted(losses(stage1)) == [1]
    vae = json.loads((stage1 / "vae" / CONFIG_FILE).read_text())
    assert vae["kind"] == "vae" and len(vae["config"]["latents_std"]) == 16
    assert tuple(vae["config"]["latents_mean"]) != WAN21_LATENTS_MEAN  # measured on this VAE's latents

    # the same code fine-tunes a loaded VAE (here the one just trained, as a Wan VAE would be loaded)
    again = run_train(stage2, compile_cache, *SMALL, "train.steps=1", "train.vae_steps=1", "train.vae_stat_batches=1",
                      f"train.vae_init={stage1 / 'vae'}", config=TINY)
    assert again.returncode == 0, again.stderr
    assert f"vae stage: fine-tuning {stage1 / 'vae'}" in again.stderr
    assert sorted(losses(stage2, "vae_")) == [1] and (stage2 / "vae" / CONFIG_FILE).is_file()
