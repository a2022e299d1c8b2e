"""The VAE a run loads (`WORKDIR/vae` or `train.vae_init`, `swapjax/train/vae_stage.py`) brings its own latent
statistics, and must otherwise be the VAE the config describes: a different architecture is one `ConfigError`
listing every differing field, before the DiT stage or a fine-tuning VAE stage starts."""

from __future__ import annotations

import dataclasses

import pytest

from sample_fixtures import CONFIG, random_values
from swapjax.errors import ConfigError
from swapjax.convert.saved import save_converted
from swapjax.models.vae import abstract_vae
from swapjax.parallel import make_mesh
from swapjax.train.vae_stage import load_vae, run_vae_stage

Z = CONFIG.vae.z_dim


def _save(path, vae):
    save_converted(path, "vae", vae, random_values(abstract_vae(vae)[1], 0, 0.1))
    return path


def test_a_loaded_vae_brings_its_statistics_and_must_match_the_architecture(tmp_path):
    mesh = make_mesh(CONFIG.mesh)
    trained = dataclasses.replace(CONFIG.vae, latents_mean=(0.25,) * Z, latents_std=(0.5,) * Z)
    _save(tmp_path / "run" / "vae", trained)
    _, _, cfg = load_vae(CONFIG, tmp_path / "run", mesh)
    assert cfg.latents_mean == (0.25,) * Z and cfg.latents_std == (0.5,) * Z  # the VAE's, not the config's
    assert cfg.base_dim == CONFIG.vae.base_dim

    other = dataclasses.replace(trained, base_dim=4, num_res_blocks=2)
    config = CONFIG.replace(train=dataclasses.replace(CONFIG.train, vae_init=str(_save(tmp_path / "other", other))))
    with pytest.raises(ConfigError, match=r"other architecture values .*base_dim: config 8, checkpoint 4; "
                                          r"num_res_blocks: config 1, checkpoint 2\)") as err:
        load_vae(config, tmp_path / "fresh", mesh)  # no WORKDIR/vae: train.vae_init
    assert "latents" not in str(err.value)
    with pytest.raises(ConfigError, match="base_dim: config 8, checkpoint 4"):
        run_vae_stage(config.replace(train=dataclasses.replace(config.train, vae_steps=1)), tmp_path / "w", mesh)
    assert not (tmp_path / "w").exists()  # refused before anything was written
