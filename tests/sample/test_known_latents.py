"""Known-latent reuse (`SampleConfig.known_margin`, sample/known.py): which cells are kept (a hand-worked case),
the flow-path blend, and through the Engine: with it on, the sampled latents equal the source's latents on the
kept cells exactly and the model's elsewhere; off (the default), nothing is replaced."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swapjax.errors import ConfigError
from swapjax.sample.config import SampleConfig
from swapjax.sample.engine import Engine, WindowInputs
from swapjax.sample.known import keep_cells, reuse_known
from sample_fixtures import SAMPLE, random_models


def test_keep_cells_hand_worked():
    """5 frames of 8x8 pixels, 4 frames and 2 pixels per latent: latent frame 0 is pixel frame 0, latent frame 1
    pixel frames 1-4. One masked pixel at frame 2, (y, x) = (4, 6), lies in latent cell (1, 2, 3)."""
    mask = np.zeros((1, 5, 8, 8), np.float32)
    mask[0, 2, 4, 6] = 1
    keep = np.asarray(keep_cells(mask, 0, frames_per_latent=4, pixels_per_latent=2))[0, ..., 0]  # [2, 4, 4]
    want = np.ones((2, 4, 4), np.float32)
    want[1, 2, 3] = 0
    np.testing.assert_array_equal(keep, want)
    wide = np.asarray(keep_cells(mask, 1, frames_per_latent=4, pixels_per_latent=2))[0, ..., 0]
    want = np.ones((2, 4, 4), np.float32)
    want[:, 1:4, 2:4] = 0  # one cell around (1, 2, 3) in time, height and width, cut at the edges
    np.testing.assert_array_equal(wide, want)


def test_reuse_puts_kept_cells_on_the_source_path():
    rng = np.random.default_rng(0)
    x, source, noise = (jnp.asarray(rng.standard_normal((1, 2, 4, 4, 3)), jnp.float32) for _ in range(3))
    keep = jnp.asarray(rng.integers(0, 2, (1, 2, 4, 4, 1)), jnp.float32)
    for sigma in (0.0, 0.3, 1.0):
        got = np.asarray(reuse_known(x, source, noise, keep, sigma))
        path = (1 - sigma) * np.asarray(source) + sigma * np.asarray(noise)
        np.testing.assert_allclose(got, np.where(np.asarray(keep) > 0, path, np.asarray(x)), atol=1e-6)


def _window(engine: Engine, size: int = 32) -> WindowInputs:
    rng = np.random.default_rng(1)
    mask = np.zeros((5, size, size), np.float32)
    mask[:, 8:16, 8:16] = 1
    return WindowInputs(pixels=rng.uniform(-1, 1, (5, size, size, 3)).astype(np.float32), mask=mask, condition=None,
                        reference=engine.encode_image(rng.uniform(-1, 1, (size, size, 3)).astype(np.float32)),
                        anchor=None, text=None)


def test_the_engine_keeps_the_source_latents_far_from_the_mask_only_when_asked():
    models = random_models(seed=3)
    scales = np.array([2.0, 1.0], np.float32)
    plain = Engine(models, SAMPLE)
    window = _window(plain)
    source = np.asarray(plain.encode(window.pixels[None]))
    off = np.asarray(plain.generate_window(window, jax.random.key(0), scales).latents)
    reuse = Engine(models, dataclasses.replace(SAMPLE, known_margin=1))
    on = np.asarray(reuse.generate_window(window, jax.random.key(0), scales).latents)
    keep = np.asarray(keep_cells(window.mask[None], 1, frames_per_latent=models.config.swap.frames_per_latent,
                                 pixels_per_latent=models.config.swap.pixels_per_latent))[..., 0] > 0  # [1, f, h, w]
    assert keep.any() and not keep.all()
    np.testing.assert_allclose(on[keep], source[keep], atol=1e-6)  # sigma = 0 at the end: the source exactly
    assert np.abs(off[keep] - source[keep]).max() > 1e-2  # the model alone does not copy them
    assert np.abs(on[~keep] - source[~keep]).max() > 1e-2  # the region and its margin stay the model's


def test_known_margin_must_be_none_or_a_count():
    with pytest.raises(ConfigError, match=r"SampleConfig.known_margin \(-1\) must be None"):
        SampleConfig(known_margin=-1)
