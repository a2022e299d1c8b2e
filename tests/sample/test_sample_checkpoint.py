"""What a sampling checkpoint brings with it (`swapjax/sample/checkpoint.py`): a trained VAE's latent statistics
come from its checkpoint, not from the run config, while every architecture mismatch is still refused with each
field named; and a finished training run's folder (`export/` + `vae/`, or the config's `train.vae_init`) is a
checkpoint on its own. The end-to-end run on a trained folder is tests/train/test_finished_run.py."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
from flax import nnx

from sample_fixtures import CONFIG, SAMPLE, random_models, write_checkpoint
from swapjax.errors import CheckpointError
from swapjax.sample import checkpoint
from swapjax.sample.engine import Engine

Z = CONFIG.vae.z_dim
TRAINED = dataclasses.replace(CONFIG.vae, latents_mean=tuple(0.1 * i for i in range(Z)),
                              latents_std=tuple(0.5 + 0.05 * i for i in range(Z)))  # what a VAE stage measured


def _trained_checkpoint(path):
    """A checkpoint whose VAE carries other latent statistics than `CONFIG`'s (as a VAE stage writes it)."""
    return write_checkpoint(path, CONFIG.replace(vae=TRAINED))


def test_latent_statistics_come_from_the_checkpoint_not_the_config(tmp_path, capsys):
    assert CONFIG.vae.latents_mean != TRAINED.latents_mean  # the config holds other values (placeholders)
    ckpt = _trained_checkpoint(tmp_path / "ckpt")
    checkpoint.check_against_config(CONFIG, *checkpoint.resolve(ckpt))  # not a mismatch
    models = checkpoint.load_models(CONFIG, ckpt)
    assert models.config.vae.latents_mean == TRAINED.latents_mean
    assert models.config.vae.latents_std == TRAINED.latents_std
    assert models.config.vae == TRAINED and models.config.dit == CONFIG.dit  # nothing else changed
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latents_mean and latents_std read from the checkpoint" in err[0], err
    engine = Engine(models, SAMPLE)
    assert engine.vae_cfg.latents_mean == TRAINED.latents_mean  # the sampler normalises with them

    same = write_checkpoint(tmp_path / "same")  # the config's own values: nothing to say
    assert checkpoint.load_models(CONFIG, same).config == CONFIG
    assert capsys.readouterr().err == ""


def test_architecture_mismatches_are_still_refused_field_by_field(tmp_path):
    dit = dataclasses.replace(CONFIG.dit, eps=1e-5, rope_theta=500.0)
    ckpt = write_checkpoint(tmp_path / "ckpt", CONFIG.replace(dit=dit, vae=TRAINED))
    with pytest.raises(CheckpointError, match="other architecture values") as err:
        checkpoint.load_models(CONFIG, ckpt)
    message = str(err.value)
    assert "eps: config 1e-06, checkpoint 1e-05" in message and "rope_theta: config 10000.0, checkpoint 500.0" in message
    assert "latents" not in message  # learned, not a mismatch

    small = dataclasses.replace(TRAINED, base_dim=4)
    models = random_models(CONFIG.replace(vae=small))
    checkpoint.save_sampling_checkpoint(tmp_path / "vae_shapes", CONFIG.replace(vae=small), models.dit_state,
                                        models.vae_state)
    with pytest.raises(CheckpointError) as err:
        checkpoint.check_against_config(CONFIG, *checkpoint.resolve(tmp_path / "vae_shapes"))
    assert "VAE" in str(err.value) and "(8," in str(err.value) and "(4," in str(err.value)  # both shapes


def _run_folder(path, *, vae: bool = True):
    """A finished run's layout: `export/` (the swap model) and `vae/` (its VAE stage's VAE)."""
    _trained_checkpoint(path)
    (path / "dit").rename(path / "export")
    (path / "checkpoints").mkdir()
    if not vae:
        shutil.rmtree(path / "vae")
    return path


def test_a_finished_run_folder_is_a_checkpoint(tmp_path, capsys):
    run = _run_folder(tmp_path / "run")
    assert checkpoint.resolve(run) == (run / "export", run / "vae")
    assert checkpoint.resolve(run, run / "vae") == (run / "export", run / "vae")  # the explicit form still works
    assert checkpoint.resolve(run / "export", run / "vae") == (run / "export", run / "vae")
    models = checkpoint.load_models(CONFIG, run)
    assert models.config.vae.latents_std == TRAINED.latents_std
    for (_, read), (_, written) in zip(nnx.to_flat_state(models.vae_state),
                                       nnx.to_flat_state(random_models(CONFIG.replace(vae=TRAINED)).vae_state)):
        np.testing.assert_array_equal(np.asarray(read.get_value()), np.asarray(written.get_value()))

    with pytest.raises(CheckpointError, match="or the run folder"):  # the export alone: point at the run
        checkpoint.resolve(run / "export")

    bare = _run_folder(tmp_path / "bare", vae=False)  # no VAE stage: the config's train.vae_init
    with pytest.raises(CheckpointError, match=r"has no vae/ .* pass the VAE it trained with as --vae"):
        checkpoint.resolve(bare)
    assert checkpoint.resolve(bare, vae_init=run / "vae") == (bare / "export", run / "vae")
    config = CONFIG.replace(train=dataclasses.replace(CONFIG.train, vae_init=str(run / "vae")))
    assert checkpoint.load_models(config, bare).config.vae.latents_mean == TRAINED.latents_mean

    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="has not finished"):
        checkpoint.resolve(unfinished)
