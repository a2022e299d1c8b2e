"""The reference is prepared one way for training and sampling (issue 16, item 5; docs/design.md "Our choices").

The same subject framed three ways (small and centred on a plain canvas, off-centre on a wide one, filling a
canvas at twice the resolution) must reach the model as the same reference prefix: `reference_frame` (the
sampler's `prepare_reference` -> `fit_reference`) -> a tiny random-weight VAE -> `prefix_inputs`. And training's
`reference_crop` + `fit_reference` must give the sampler's frame bit for bit for the same frame and mask.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from sample_fixtures import CONFIG, SAMPLE, random_values, swap_inputs
from swapjax.data.reference import prepare_reference, reference_crop
from swapjax.models.fused_inputs import prefix_inputs
from swapjax.models.vae import abstract_vae, normalize_latents, vae_encode
from swapjax.sample.composite import to_unit
from swapjax.sample.engine import Engine
from swapjax.sample.inputs import JobInputs
from swapjax.sample.pipeline import letterbox, reference_frame, swap_video
from swapjax.train.prepare import fit_reference
from media_fixtures import framed

REF_SIZE = 32  # the square's side (data.ref_size): every framing's subject box is larger, so all area-downsample
HEIGHT, WIDTH = 48, 64  # the model frame: the square is resized to 48 and centred (fit_reference)
# Tolerances. The three squares hold the same subject pixels on the same grey; the 2x framing is resampled by
# INTER_AREA from 80 px instead of 40 px, which averages the same source values with the same weights, so the
# squares may differ only by uint8 rounding: at most 1 grey level (measured: bit-identical). The prefix is a
# deterministic function of the square, so the prefix tolerance is what that allowance can cost: +-1 grey level on
# every pixel of the square moves the tiny VAE's prefix by 0.019 (measured; checked below against PREFIX_ATOL).
# Measured for the three framings: 0.0. Letterboxing the same three pictures (the sampler before this preparation)
# moves the prefix by 0.63 (off-centre) and 1.01 (filling), for prefix values up to 1.5.
SQUARE_ATOL = 1  # grey levels
PREFIX_ATOL = 0.03


def _job(image, mask=None) -> JobInputs:
    video = np.zeros((1, 16, 16, 3), np.uint8)
    return JobInputs("framing", video, np.ones((1, 16, 16), np.uint8), image, 24.0, reference_mask=mask)


FRAMINGS = {  # the same subject: small and centred, off-centre on a non-square canvas, filling a canvas at 2x
    "small_centred": framed((160, 160), (255, 255, 255), 60, 65),
    "off_centre": framed((120, 200), (170, 200, 235), 10, 150),
    "filling_2x": framed((84, 64), (30, 30, 30), 2, 2, scale=2),
}


@pytest.fixture(scope="module")
def encode():
    graph, state = abstract_vae(CONFIG.vae)
    state = random_values(state, 1, 0.1)
    fn = jax.jit(lambda frame: normalize_latents(vae_encode(graph, state, frame[None, None])[0], CONFIG.vae))

    def prefix(frame: np.ndarray) -> np.ndarray:
        """float32 `[H, W, 3]` frame -> the reference prefix `[1, 1, h, w, C_in]` the DiT reads."""
        z_r = fn(np.asarray(frame, np.float32))  # [1, 1, h, w, z]
        return np.asarray(prefix_inputs(z_r, mask_channels=CONFIG.swap.frames_per_latent,
                                        condition_channels=CONFIG.swap.condition_channels))
    return prefix


def _squares():
    return {k: prepare_reference(image, size=REF_SIZE) for k, (image, _) in FRAMINGS.items()}


def test_three_framings_give_the_same_square():
    squares = _squares()
    base = squares["small_centred"].astype(int)
    for name, square in squares.items():
        diff = np.abs(square.astype(int) - base)
        assert diff.max() <= SQUARE_ATOL, (name, int(diff.max()), int((diff > 0).sum()))


def test_three_framings_give_the_same_reference_prefix(encode):
    prefixes = {k: encode(reference_frame(_job(image), REF_SIZE, HEIGHT, WIDTH)) for k, (image, _) in FRAMINGS.items()}
    base = prefixes["small_centred"]
    assert np.abs(base).max() > 0.1  # a real signal, not all zeros
    for name, prefix in prefixes.items():
        np.testing.assert_allclose(prefix, base, rtol=0, atol=PREFIX_ATOL, err_msg=name)
    # what letterboxing the user's picture (the sampler before this preparation) gave: far apart
    boxed = {k: encode(to_unit(letterbox(image, HEIGHT, WIDTH))) for k, (image, _) in FRAMINGS.items()}
    assert np.abs(boxed["off_centre"] - boxed["small_centred"]).max() > 10 * PREFIX_ATOL


def test_one_grey_level_everywhere_moves_the_prefix_less_than_the_tolerance(encode):
    square = _squares()["small_centred"]
    step = np.random.default_rng(0).choice([-1, 1], square.shape)  # +-1 grey level on every pixel and channel
    nudged = np.clip(square.astype(int) + step, 0, 255).astype(np.uint8)
    frames = [np.asarray(fit_reference(to_unit(s)[None], HEIGHT, WIDTH)[0]) for s in (square, nudged)]
    assert np.abs(encode(frames[0]) - encode(frames[1])).max() < PREFIX_ATOL


@pytest.mark.parametrize("name", list(FRAMINGS))
def test_training_and_sampling_frame_the_same_frame_and_mask_identically(name):
    image, mask = FRAMINGS[name]
    crop = reference_crop(image[None], mask[None], np.random.default_rng(0), REF_SIZE)  # [S, S, 3], training
    trained = np.asarray(fit_reference(to_unit(crop)[None], HEIGHT, WIDTH)[0])  # what encode_batch VAE-encodes
    np.testing.assert_array_equal(reference_frame(_job(image, mask.astype(np.uint8)), REF_SIZE, HEIGHT, WIDTH),
                                  trained)
    np.testing.assert_array_equal(reference_frame(_job(image), REF_SIZE, HEIGHT, WIDTH), trained)  # auto cut-out


class _Encoded(Exception):
    """Stops `swap_video` right after it hands the reference frame to the VAE."""


def test_swap_video_encodes_the_prepared_reference_frame():
    image, mask = FRAMINGS["off_centre"]
    inputs = dataclasses.replace(swap_inputs(5), reference=image)  # 32x32 clip: the model frame is 32x32

    class Spy(Engine):
        swap = CONFIG.swap  # what swap_video reads of the engine before the reference

        def __init__(self):  # no models: it stops at the first thing the engine is asked to do
            pass

        def encode_image(self, frame):
            self.frame = np.asarray(frame)
            raise _Encoded

    spy = Spy()
    with pytest.raises(_Encoded):
        swap_video(spy, inputs, SAMPLE, CONFIG.data.mask, ref_size=REF_SIZE)
    crop = reference_crop(image[None], mask[None], np.random.default_rng(0), REF_SIZE)
    np.testing.assert_array_equal(spy.frame, np.asarray(fit_reference(to_unit(crop)[None], 32, 32)[0]))
