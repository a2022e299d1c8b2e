"""The offline latent cache: `python -m swapjax.train.cache_cli` writes it; its batches equal the pixel pipeline's
batches encoded by `encode_batch`, in the same order; `train.py` trains from it without the VAE encoder, and the
cache iterator's position is what a checkpoint restores."""

from __future__ import annotations

import functools
import subprocess

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from train_fixtures import CONFIG, PYTHON, ROOT, compile_cache, on_mesh, run_train, subprocess_env  # noqa: F401
from train_fixtures import tiny_config
from swapjax.errors import ConfigError
from swapjax.data.pipeline import make_iterator
from swapjax.train.data import ShardedBatches
from swapjax.train.hosts import global_batch
from swapjax.train.latent_cache import CacheIndex, CachedExamples, cache_iterator_factory, make_cache_iterator
from swapjax.train.latent_cache import vae_fingerprint
from swapjax.train.loop import cache_keys
from swapjax.train.prepare import LATENT_KEYS, PIXEL_KEYS, PrepareConfig, assemble_batch, encode_batch
from swapjax.train.vae_stage import load_vae
from swapjax.train.writers import read_metrics

DATA = ("data.num_synthetic_clips=4", "data.num_keypoints=5")  # 2 batches of 2 per epoch
DRAWS = 2


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, compile_cache):  # noqa: F811
    """A cache of the tiny training config written by the command line (2 draws, pixels included)."""
    out = tmp_path_factory.mktemp("cache") / "latents"
    cmd = [PYTHON, "-m", "swapjax.train.cache_cli", "--config", str(CONFIG), "--out", str(out), "--draws", str(DRAWS),
           "--pixels", "--set", *DATA]
    done = subprocess.run(cmd, env=subprocess_env(compile_cache), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"wrote {DRAWS} draw(s) of 4 records" in done.stdout
    return out


def test_cached_batches_equal_encoded_pixel_batches_in_order(cache_dir, tmp_path):
    config = tiny_config(*DATA)
    index = CacheIndex.read(cache_dir)
    keys = tuple(index.arrays)
    assert set(keys) == set(LATENT_KEYS) | {"reference", "video", "subject_mask", "keypoints"}
    pixels_it = make_iterator(config.data, config.seed, shard_index=0, shard_count=1)
    cached_it = make_cache_iterator(config.data, config.seed, folder=cache_dir, keys=keys, shard_index=0,
                                    shard_count=1)
    prep = PrepareConfig(swap=config.swap, text_len=config.train.text_len, text_dim=config.dit.text_dim)
    with on_mesh() as mesh:
        graphdef, params, vae_cfg = load_vae(config, tmp_path, mesh)
        assert vae_fingerprint(params) == index.vae_fingerprint  # the cache's VAE is the run's
        encode = jax.jit(functools.partial(encode_batch, graphdef, vae=vae_cfg, swap=config.swap,
                                           with_condition=False))
        assemble = jax.jit(functools.partial(assemble_batch, cfg=prep))
        rng = jax.random.key_data(jax.random.key(0))
        for step in range(2 * DRAWS):  # every draw, each in its epoch's shuffled order
            pixels, cached = next(pixels_it), next(cached_it)
            np.testing.assert_array_equal(pixels["record_index"], cached["record_index"])
            for k in ("reference", "video", "subject_mask", "keypoints"):
                np.testing.assert_array_equal(pixels[k], cached[k], err_msg=k)
            latents = jax.device_get(encode(params, global_batch(pixels, mesh, PIXEL_KEYS)))
            for k in LATENT_KEYS:
                np.testing.assert_allclose(cached[k], latents[k], rtol=0, atol=1e-6, err_msg=k)
            want = assemble({k: jnp.asarray(latents[k]) for k in LATENT_KEYS}, rng, jnp.int32(step))
            got = assemble({k: jnp.asarray(cached[k]) for k in LATENT_KEYS}, rng, jnp.int32(step))
            for k in want:
                np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=k)
    # past the last draw the augmentations repeat: epoch 2 reads draw 0
    reader = CachedExamples(index, keys, epoch_length=4)
    for r in range(4):
        np.testing.assert_array_equal(reader(2 * 4 + r, r)["latents"], reader(r, r)["latents"])


@pytest.mark.slow
def test_train_py_trains_from_the_cache_and_its_checkpoint_holds_the_cache_position(cache_dir, tmp_path,
                                                                                      compile_cache):  # noqa: F811
    work = tmp_path / "run"
    terms = ("loss.mear_weight=1", "loss.coherence_weight=1")  # read the cached video, keypoints, reference, mask
    done = run_train(work, compile_cache, *DATA, *terms, "train.steps=2", f"train.latent_cache={cache_dir}")
    assert done.returncode == 0, done.stderr
    assert "the VAE encoder does not run" in done.stderr
    records = read_metrics(work / "metrics.jsonl")
    assert sorted(records) == [1, 2]
    assert all(np.isfinite(r[f"loss/{t}"]) for r in records.values() for t in ("mear", "coherence", "flow_matching"))
    config = tiny_config(*DATA, *terms)
    keys = cache_keys(config)
    make = cache_iterator_factory(cache_dir, keys)
    restored = ShardedBatches(config.data, config.seed, make=make)
    manager = ocp.CheckpointManager(work / "checkpoints",
                                    item_handlers={"data_iter": grain.checkpoint.CheckpointHandler()})
    manager.restore(1, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(restored)))
    fresh = ShardedBatches(config.data, config.seed, make=make)
    next(fresh)
    want, got = next(fresh), next(restored)  # the batch of step 2, from step 1's checkpoint
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_a_cache_for_other_data_or_without_the_pixels_a_term_reads_is_refused(cache_dir, compile_cache):  # noqa: F811
    index = CacheIndex.read(cache_dir)
    with pytest.raises(ConfigError, match=r"was written for other data: data.height = 64 \(cache: 32\)"):
        index.check(tiny_config(*DATA, "data.height=64").data, LATENT_KEYS)
    with pytest.raises(ConfigError, match=r"holds no condition_latents .* rebuild it with --pixels"):
        index.check(tiny_config(*DATA).data, LATENT_KEYS + ("condition_latents",))
    bad = subprocess.run([PYTHON, "-m", "swapjax.train.cache_cli", "--config", str(CONFIG), "--out", str(cache_dir)],
                         env=subprocess_env(compile_cache), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "already exists" in bad.stderr.strip().splitlines()[-1]
