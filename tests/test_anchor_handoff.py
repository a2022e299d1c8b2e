"""The anchor slot means the same in training and sampling: the window's latent frame `anchor_index(overlap)`,
clean. Training reads it from the clip's latents; sampling hands over the previous window's last generated
latent frame, which covers exactly the same source frames (aligned window plans), so the same clip gives the
same anchor prefix on both sides."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swapjax.errors import ConfigError
from swapjax.models.fused_inputs import anchor_index
from swapjax.sample import pipeline
from swapjax.sample.engine import Engine, Generated, WindowInputs
from swapjax.sample.windows import plan_windows
from swapjax.train.prepare import PrepareConfig, assemble_batch
from sample_fixtures import CONFIG, SAMPLE, random_models


def _latent_frames(frame: int, fpl: int) -> int:
    """The latent frame of a window holding its pixel frame `frame` (causal VAE: 0 alone, then groups of fpl)."""
    return 0 if frame == 0 else (frame - 1) // fpl + 1


@pytest.mark.parametrize("num_frames,window,overlap,fpl", [(37, 9, 5, 4), (40, 17, 9, 4), (23, 9, 1, 4),
                                                           (30, 9, 3, 2), (50, 13, 5, 2)])
def test_the_handed_over_latent_frame_covers_the_anchor_frames_of_the_next_window(num_frames, window, overlap, fpl):
    index = anchor_index(overlap, fpl)
    plan = plan_windows(num_frames, window, overlap, aligned=True)
    assert plan[-1].stop == num_frames and all(w.length == window for w in plan)
    last = (window - 1) // fpl  # the previous window's last latent frame
    for prev, nxt in zip(plan[:-1], plan[1:]):
        prev_frames = {prev.start + t for t in range(window) if _latent_frames(t, fpl) == last}
        next_frames = {nxt.start + t for t in range(window) if _latent_frames(t, fpl) == index}
        if index == 0:  # the paper's first frame: the next window starts on the previous window's last frame
            assert next_frames == {prev.start + window - 1}
        else:
            assert prev_frames == next_frames


def test_overlap_off_the_latent_grid_is_refused():
    with pytest.raises(ConfigError, match=r"sample.overlap_frames \(8\) must be 1 mod"):
        anchor_index(8, 4)


def test_same_clip_same_anchor_prefix_in_training_and_sampling():
    swap = CONFIG.swap
    rng = np.random.default_rng(0)
    b, f, h, w, z = 1, 3, 4, 4, CONFIG.dit.out_channels
    x0 = jnp.asarray(rng.standard_normal((b, f, h, w, z)), jnp.float32)  # the clip's latents
    z_ref = jnp.asarray(rng.standard_normal((b, 1, h, w, z)), jnp.float32)
    index = anchor_index(5, swap.frames_per_latent)
    latents = {"latents": x0, "agnostic_latents": x0, "reference_latents": z_ref,
               "mask_packed": jnp.ones((b, f, h, w, swap.frames_per_latent)), "subject": jnp.zeros((b, f, h, w))}
    cfg = PrepareConfig(swap=swap, text_len=2, text_dim=CONFIG.dit.text_dim, anchor_drop=0.0, anchor_index=index)
    trained = assemble_batch(latents, jax.random.key_data(jax.random.key(0)), jnp.int32(0), cfg=cfg)["prefix"]
    engine = Engine(random_models(), SAMPLE)
    handed = x0[:, index:index + 1]  # a previous window that generated this clip hands over its last latent frame
    sampled, _, _ = engine._branches(z_ref, engine._anchor(handed), None)
    np.testing.assert_array_equal(np.asarray(sampled[:1]), np.asarray(trained))  # the conditional branch


class _RecordingEngine(Engine):
    """Stands in for `Engine` in `pipeline._sample_windows` (a subclass, so the annotations hold; no model is
    built): records each window's anchor, returns known latents."""

    def __init__(self, swap):  # noqa: the real Engine's __init__ (models, compiled steps) is not wanted here
        self.swap, self.anchors, self.latents = swap, [], []

    def generate_window(self, window: WindowInputs, key, scales) -> Generated:
        self.anchors.append(window.anchor)
        frames = 10.0 * len(self.latents) + jnp.arange(3.0)  # a value per window and latent frame
        latents = jnp.broadcast_to(frames[None, :, None, None, None], (1, 3, 4, 4, 16))
        self.latents.append(latents)
        return Generated(np.zeros(window.pixels.shape, np.float32), latents)


def test_sampling_hands_over_the_previous_windows_last_latent_frame():
    engine = _RecordingEngine(dataclasses.replace(CONFIG.swap, frames_per_latent=4))
    cfg = SAMPLE.replace(window_frames=9, overlap_frames=5)
    n = 21
    model = {"video": np.zeros((n, 8, 8, 3), np.uint8), "region": np.ones((n, 8, 8), np.uint8),
             "condition": None, "subject": np.ones((n, 8, 8), np.uint8)}
    shared = WindowInputs(None, None, None, None, None, None)
    _, plan = pipeline._sample_windows(engine, model, shared, np.ones((n, 8, 8), np.float32), cfg,
                                       np.ones(2, np.float32), jax.random.key(0))
    assert len(plan) == len(engine.anchors) >= 3 and engine.anchors[0] is None
    for k in range(1, len(plan)):
        np.testing.assert_array_equal(np.asarray(engine.anchors[k]), np.asarray(engine.latents[k - 1][:, -1:]))
