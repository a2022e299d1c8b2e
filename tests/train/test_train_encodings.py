"""I2V-based models train with the image tokens they sample with: `train.encodings` (written by
`python -m swapjax.data.encode`) feeds each record's text embeddings and the CLIP tokens of its reference, and the
guidance drops give the sampler's branches: `train.reference_drop` its null branch (no image tokens, null text),
`train.text_drop` the text-guidance branch (null text, the reference's tokens kept)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from swapjax.data.encode import record_file
from swapjax.models.vae import abstract_vae
from swapjax.train.data import ENCODING_KEYS, EncodedBatches, ShardedBatches
from swapjax.train.hosts import global_batch
from swapjax.train.loop import batch_preparation, build_dit, train
from swapjax.train.objective import swap_objective
from swapjax.train.prepare import PIXEL_KEYS
from sample_fixtures import random_values
from train_fixtures import on_mesh, randomized, tiny_config

TEXT, IMAGE = 3, 4  # tokens written per record


@pytest.fixture(scope="module")
def encodings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encodings")
    rng = np.random.default_rng(0)
    for i in range(16):  # configs/swap_tiny_train.py: 16 synthetic records
        np.savez(record_file(folder, i), text=rng.standard_normal((TEXT, 32)).astype(np.float32),
                 image=rng.standard_normal((IMAGE, 32)).astype(np.float32))
    return folder


def _prepared(config, folder):
    from flax import nnx

    batches = EncodedBatches(ShardedBatches(config.data, config.seed), str(folder), config.train.text_len)
    local = next(batches)
    with on_mesh() as mesh:
        vae_graph, vae_state = abstract_vae(config.vae)
        prepare, args = batch_preparation(config, vae_graph, config.vae, nnx.to_pure_dict(random_values(vae_state, 1)),
                                          mesh)
        pixels = global_batch(local, mesh, PIXEL_KEYS + ENCODING_KEYS)
        batch = jax.jit(prepare)(args, pixels, jax.random.key_data(jax.random.key(0)), np.int32(0))
    return local, jax.device_get(batch)


def test_the_records_tokens_reach_the_batch_and_the_model(encodings):
    config = tiny_config(f"train.encodings={encodings}", "train.text_drop=0", "train.reference_drop=0",
                         "train.text_len=5")
    local, batch = _prepared(config, encodings)
    for row, index in enumerate(local["record_index"]):
        with np.load(record_file(encodings, int(index))) as saved:
            np.testing.assert_array_equal(batch["context"][row, :TEXT], saved["text"])
            np.testing.assert_array_equal(batch["context"][row, TEXT:], 0.0)  # padded to text_len
            np.testing.assert_array_equal(batch["image_context"][row], saved["image"])
    with on_mesh() as mesh:
        setup = build_dit(config, mesh)
        params = randomized(setup, setup.plan.create(0)).params["model"]
        objective = jax.jit(lambda p, b: swap_objective(setup.graphdef, config.loss, config.swap)(
            p, b, jax.random.key(0), None)[0])
        with_tokens = float(objective(params, batch))
        null = float(objective(params, {**batch, "image_context": np.zeros_like(batch["image_context"])}))
    assert with_tokens != null  # the model reads the image tokens


def test_the_drops_feed_the_samplers_branches(encodings):
    text_only = tiny_config(f"train.encodings={encodings}", "train.text_drop=1", "train.reference_drop=0",
                            "train.text_len=5")
    local, batch = _prepared(text_only, encodings)
    np.testing.assert_array_equal(batch["context"], 0.0)  # the text-guidance branch: null text ...
    for row, index in enumerate(local["record_index"]):  # ... and the reference's tokens kept
        with np.load(record_file(encodings, int(index))) as saved:
            np.testing.assert_array_equal(batch["image_context"][row], saved["image"])
    null = tiny_config(f"train.encodings={encodings}", "train.text_drop=0", "train.reference_drop=1",
                       "train.text_len=5")
    _, batch = _prepared(null, encodings)
    np.testing.assert_array_equal(batch["context"], 0.0)  # the null branch: null text, no image tokens,
    np.testing.assert_array_equal(batch["image_context"], 0.0)
    np.testing.assert_array_equal(batch["prefix"][:, 0, ..., :16], 0.0)  # and the zero reference latent


@pytest.mark.slow
def test_train_runs_with_encodings(encodings, tmp_path):
    config = tiny_config(f"train.encodings={encodings}", "train.steps=1", "train.text_len=5", "data.batch_size=8")
    assert train(config, tmp_path / "run").status == "done"
