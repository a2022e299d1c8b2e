"""Reference images: the training crop r' = v_i * m_i and RGBA compositing onto neutral grey."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapjax.data import masks as M
from swapjax.data.reference import NEUTRAL_GREY


def clip_with_box(seed: int, frames: int = 3, height: int = 40, width: int = 56):
    """Noise video; a filled box subject present only in frame 1, painted one flat colour."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    mask = np.zeros((frames, height, width), np.uint8)
    y0, x0 = rng.integers(0, height - 8), rng.integers(0, width - 8)
    h, w = rng.integers(2, height - y0), rng.integers(2, width - x0)
    mask[1, y0:y0 + h, x0:x0 + w] = 1
    video[1, y0:y0 + h, x0:x0 + w] = (10, 200, 30)
    return video, mask, (int(h), int(w))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.booleans())
def test_reference_crop_shape_and_determinism(seed, jitter):
    video, mask, _ = clip_with_box(seed)
    ref = M.reference_crop(video, mask, np.random.default_rng(seed), 32, jitter=jitter)
    assert ref.shape == (32, 32, 3) and ref.dtype == np.uint8
    np.testing.assert_array_equal(ref, M.reference_crop(video, mask, np.random.default_rng(seed), 32, jitter))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31))
def test_reference_crop_is_the_subject_padded_on_grey(seed):
    video, mask, (h, w) = clip_with_box(seed)
    side = max(h, w)
    ref = M.reference_crop(video, mask, np.random.default_rng(seed), side)  # no resize: exact pixels
    subject = (ref == (10, 200, 30)).all(axis=-1)
    grey = (ref == NEUTRAL_GREY).all(axis=-1)
    assert (subject | grey).all()  # only the subject (from the one frame that has it) and neutral grey
    assert subject.sum() == h * w
    ys, xs = np.nonzero(subject)
    assert (ys.min(), xs.min()) == ((side - h) // 2, (side - w) // 2)  # centred on the square


def test_reference_crop_keeps_only_the_masked_pixels():
    video = np.full((1, 16, 16, 3), 250, np.uint8)
    mask = np.zeros((1, 16, 16), np.uint8)
    mask[0, 4:12, 4:12] = 1
    mask[0, 6:10, 6:10] = 0  # a hole: the video there is not subject and must come out grey
    ref = M.reference_crop(video, mask, np.random.default_rng(0), 8)
    assert (ref[2:6, 2:6] == NEUTRAL_GREY).all() and (ref[0, :] == 250).all()


def test_reference_crop_jitter_is_light_but_not_a_no_op():
    video, mask, _ = clip_with_box(5)
    plain = M.reference_crop(video, mask, np.random.default_rng(0), 48)
    jittered = [M.reference_crop(video, mask, np.random.default_rng(s), 48, jitter=True) for s in range(8)]
    assert any(not np.array_equal(j, plain) for j in jittered)
    for j in jittered:
        assert abs(j.astype(int) - plain.astype(int)).mean() < 60


def test_reference_crop_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="mask is empty in every frame"):
        M.reference_crop(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8)), np.random.default_rng(0), 8)


def test_composite_on_grey():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (200, 10, 90)
    rgba[0, :, 3] = 255
    rgba[1, 0, 3], rgba[1, 1, 3], rgba[1, 2, 3] = 0, 128, 51
    out = M.composite_on_grey(rgba)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert (out[0] == (200, 10, 90)).all() and (out[1, 0] == NEUTRAL_GREY).all()
    want = np.round(np.array([200, 10, 90]) * 128 / 255 + 128 * 127 / 255)
    np.testing.assert_array_equal(out[1, 1], want)
    rgb = rgba[..., :3].copy()
    np.testing.assert_array_equal(M.composite_on_grey(rgb), rgb)


@pytest.mark.parametrize("shape, dtype, match", [((4, 4), np.uint8, r"expected \[H, W, 3\]"),
                                                 ((4, 4, 2), np.uint8, "RGBA"),
                                                 ((4, 4, 3), np.float32, "uint8")])
def test_composite_on_grey_rejects_bad_images(shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        M.composite_on_grey(np.zeros(shape, dtype))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 12), st.integers(1, 12))
def test_composite_on_grey_blends_towards_grey(seed, h, w):
    rgba = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    out = M.composite_on_grey(rgba).astype(np.float64)
    a = rgba[..., 3:] / 255.0
    np.testing.assert_allclose(out, rgba[..., :3] * a + NEUTRAL_GREY * (1 - a), atol=0.5 + 1e-9)
