"""Reference images: the training crop r' = v_i * m_i, RGBA compositing onto neutral grey, and the one
preparation (`prepare_reference`) that training and sampling share, with its automatic cut-out."""

import warnings

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media_fixtures import framed
from swapjax.data import masks as M, reference
from swapjax.data.reference import (EDGE_BAND, NEUTRAL_GREY, ReferenceCutoutWarning, prepare_reference,
                                    subject_cutout)


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


def test_stage2_jitter_scales_and_shifts_the_subject():
    """`_jitter` (stage 2): the subject's size ranges over about 0.7-1.15 and its centre moves by up to 10 % of
    the side, both ways."""
    size = 64
    ref = np.full((size, size, 3), NEUTRAL_GREY, np.uint8)
    ref[16:48, 16:48] = (10, 200, 30)
    alpha = np.zeros((size, size), np.float32)
    alpha[16:48, 16:48] = 1.0
    shifts, scales = [], []
    for seed in range(40):
        out = reference._jitter(ref, alpha, np.random.default_rng(seed))
        ys, xs = np.nonzero(np.abs(out.astype(int) - NEUTRAL_GREY).sum(-1) > 60)  # the green box
        shifts += [xs.mean() - 31.5, ys.mean() - 31.5]
        scales.append(np.sqrt(xs.size) / 32)
    assert 0.05 * size < np.abs(shifts).max() <= 0.1 * size + 1 and min(shifts) < 0 < max(shifts)
    assert 0.66 <= min(scales) < 0.8 and 1.05 < max(scales) <= 1.18


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


# ---------------------------------------------------------------- prepare_reference: one preparation, both sides

@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([8, 24, 48]))
def test_training_crop_is_prepare_reference_of_its_frame(seed, size):
    video, mask, _ = clip_with_box(seed)  # only frame 1 has the subject, so reference_crop must pick it
    want = M.reference_crop(video, mask, np.random.default_rng(seed), size)
    np.testing.assert_array_equal(prepare_reference(video[1], mask[1], size=size), want)
    rgba = np.concatenate([video[1], 255 * mask[1][..., None]], axis=-1).astype(np.uint8)  # the same cut-out as alpha
    np.testing.assert_array_equal(prepare_reference(rgba, size=size), want)


@pytest.mark.parametrize("canvas, colour, top, left", [((160, 160), (255, 255, 255), 60, 65),
                                                       ((120, 200), (170, 200, 235), 10, 150),
                                                       ((40, 30), (30, 30, 30), 0, 0),  # touches every edge
                                                       ((90, 50), (128, 128, 128), 50, 20)])
def test_automatic_cutout_finds_the_subject_on_a_plain_canvas(canvas, colour, top, left):
    image, mask = framed(canvas, colour, top, left)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on a plain background
        np.testing.assert_array_equal(subject_cutout(image), mask)
        np.testing.assert_array_equal(prepare_reference(image, size=32), prepare_reference(image, mask, size=32))


def test_automatic_cutout_tolerates_background_noise_drops_specks_and_fills_holes():
    image, mask = framed((100, 100), (250, 250, 250), 30, 35)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 4, image.shape) * ~mask[..., None], 0, 255)
    noisy = noisy.astype(np.uint8)
    noisy[5:7, 5:7] = 0  # a 4-pixel speck far from the subject (under MIN_PIECE of the subject's area)
    noisy[50:54, 45:49] = 250  # a background-coloured hole inside the body: still subject
    np.testing.assert_array_equal(subject_cutout(noisy), mask)


def test_automatic_cutout_keeps_every_large_piece():
    image, mask = framed((80, 120), (255, 255, 255), 20, 10)
    second, mask2 = framed((80, 120), (255, 255, 255), 20, 70)
    both = np.where(mask2[..., None], second, image)
    np.testing.assert_array_equal(subject_cutout(both), mask | mask2)


def test_automatic_cutout_warns_and_uses_the_whole_image_when_it_cannot_tell():
    textured = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    with pytest.warns(ReferenceCutoutWarning, match=r"'x': its border is not one plain colour .* whole image"):
        assert subject_cutout(textured, "'x'").all()
    plain = np.full((30, 30, 3), 90, np.uint8)
    with pytest.warns(ReferenceCutoutWarning, match="no pixel differs from its plain background"):
        assert subject_cutout(plain).all()
    with pytest.warns(ReferenceCutoutWarning):
        whole = prepare_reference(textured, size=25)
    np.testing.assert_array_equal(whole, prepare_reference(textured, np.ones((40, 50)), size=25))


def test_prepare_reference_rejects_bad_masks():
    image = np.zeros((8, 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"its mask is \(8, 9\) but the image is \(8, 10\)"):
        prepare_reference(image, np.ones((8, 9)), size=8)
    with pytest.raises(ValueError, match="its mask marks no pixel"):
        prepare_reference(image, np.zeros((8, 10)), size=8)
    with pytest.raises(ValueError, match="fully transparent"):
        prepare_reference(np.zeros((8, 10, 4), np.uint8), size=8)


def test_automatic_cutout_keeps_a_blended_outline_but_not_a_soft_shadow():
    big, big_mask = framed((320, 320), (250, 250, 250), 97, 110, scale=4)  # drawn at 4x, then area-downscaled
    image = cv2.resize(big, (80, 80), interpolation=cv2.INTER_AREA)  # edges blend into the canvas
    coverage = cv2.resize(big_mask.astype(np.float32), (80, 80), interpolation=cv2.INTER_AREA)  # [80, 80]
    outline = (coverage > 0) & (image != 250).any(axis=-1)  # every pixel the subject tints
    np.testing.assert_array_equal(subject_cutout(image), outline)
    ys, xs = np.mgrid[0:80, 0:80]
    shadow = np.clip(30 - 1.5 * np.hypot((ys - 70) / 0.4, xs - 40), 0, None)  # soft, up to 30 darker, below it
    shaded = np.clip(image - (shadow * ~outline)[..., None], 0, 255).astype(np.uint8)
    cut = subject_cutout(shaded)
    grown = cv2.dilate(outline.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=EDGE_BAND) > 0
    assert (cut >= outline).all() and (cut <= grown).all()  # at most the outline band of the shadow joins


@pytest.mark.parametrize("seed", range(6))
def test_preparing_a_prepared_reference_changes_nothing(seed):
    rng = np.random.default_rng(seed)
    image, mask = framed((100, 90), tuple(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(0, 60)),
                         int(rng.integers(0, 60)))
    square = prepare_reference(image, mask, size=24)  # area-downscaled: its outline blends into the grey
    np.testing.assert_array_equal(prepare_reference(square, size=24), square)
