"""`swapjax.metrics`: every score equals a value worked out by hand on tiny arrays, and identical videos get the
ideal scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swapjax import metrics
from swapjax.data import video_io
from swapjax.sample.windows import plan_windows

C1 = (0.01 * 255) ** 2  # SSIM's luminance constant for 8-bit pixels


def _const(value, frames: int = 1, size: int = 8) -> np.ndarray:
    return np.full((frames, size, size, 3), value, np.uint8)


def test_mae_and_psnr_by_hand():
    a = np.zeros((1, 2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = (10, 20, 30)
    assert metrics.mae(a, b) == pytest.approx(60 / 12)
    only = np.zeros((1, 2, 2), np.uint8)
    only[0, 0, 0] = 1
    assert metrics.mae(a, b, only) == pytest.approx(20.0)
    mse = (100 + 400 + 900) / 12
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / mse))
    assert metrics.psnr(a, b, only) == pytest.approx(10 * math.log10(255 ** 2 / (1400 / 3)))
    assert metrics.psnr(a, b, 1 - only) == math.inf  # equal there
    assert math.isnan(metrics.psnr(a, b, np.zeros_like(only)))  # nothing to score


def test_ssim_of_flat_frames_is_the_luminance_term():
    # flat frames have no variance, so SSIM = (2 ab + C1) / (a^2 + b^2 + C1) at every pixel
    a, b = _const(100, 2), _const(120, 2)
    assert metrics.ssim(a, b) == pytest.approx((2 * 100 * 120 + C1) / (100 ** 2 + 120 ** 2 + C1))
    assert metrics.ssim_map(a, b).shape == (2, 8, 8)
    tiny = metrics.ssim(_const(100, size=4), _const(120, size=4))  # a 3x3 window on 4x4 frames
    assert tiny == pytest.approx((2 * 100 * 120 + C1) / (100 ** 2 + 120 ** 2 + C1))
    with pytest.raises(ValueError, match="at least 3x3"):
        metrics.ssim(_const(1, size=2), _const(2, size=2))


def test_background_scores_ignore_the_dilated_mask():
    source = _const(50, size=9)
    mask = np.zeros((1, 9, 9), np.uint8)
    mask[0, 4, 4] = 1
    result = source.copy()
    result[0, 3:6, 3:6] = 200  # inside dilate(mask, 2): not background
    assert metrics.background_scores(result, source, mask, 2) == {"bg_psnr": math.inf, "bg_ssim": 1.0,
                                                                  "bg_mae": 0.0}
    result[0, 0, 0] = 50 + 38  # one background pixel changes by 38 in every channel
    # dilate by 1 covers the centre and its 4 neighbours: 81 - 5 = 76 background pixels, among them the
    # block's 4 corners (distance sqrt(2)), changed by 150
    scores = metrics.background_scores(result, source, mask, 1)
    assert scores["bg_mae"] == pytest.approx((38 + 4 * 150) / 76)
    assert scores["bg_psnr"] == pytest.approx(10 * math.log10(255 ** 2 / ((38 ** 2 + 4 * 150 ** 2) / 76)))


def test_masked_scores_against_a_ground_truth():
    truth, result = _const(100), _const(120)
    region = np.ones((1, 8, 8), np.uint8)
    scores = metrics.masked_scores(result, truth, region)
    assert scores["masked_psnr"] == pytest.approx(10 * math.log10(255 ** 2 / 400))
    assert scores["masked_ssim"] == pytest.approx((2 * 100 * 120 + C1) / (100 ** 2 + 120 ** 2 + C1))


def test_flicker_by_hand():
    video = np.concatenate([_const(0), _const(10), _const(10)])  # changes of 10, then 0
    assert metrics.flicker(video) == pytest.approx(5.0)
    region = np.zeros((3, 8, 8), np.uint8)
    region[0, 2, 2] = 1  # only the step 0 -> 1 touches the region
    assert metrics.flicker(video, region) == pytest.approx(10.0)
    assert math.isnan(metrics.flicker(video[:1]))


def test_warp_error_with_a_given_flow_by_hand():
    row0 = np.array([0, 10, 20, 30], np.float64)
    row1 = np.array([5, 0, 10, 20], np.float64)  # row0 moved one pixel right, a new value enters
    video = np.stack([np.broadcast_to(r[None, :, None], (2, 4, 3)) for r in (row0, row1)])  # [2, 2, 4, 3]
    shift = np.zeros((1, 2, 4, 2), np.float32)
    shift[..., 0] = 1.0  # frame 0 at x shows what frame 1 shows at x + 1: exact, the last column leaves
    assert metrics.warp_error(video, shift) == pytest.approx(0.0)
    shift[..., 0] = 0.5  # halfway: (5+0)/2 vs 0, (0+10)/2 vs 10, (10+20)/2 vs 20; x = 3 leaves the frame
    assert metrics.warp_error(video, shift) == pytest.approx((2.5 + 5 + 5) / 3)
    assert metrics.warp_error(video, np.zeros_like(shift)) == pytest.approx(metrics.flicker(video))
    with pytest.raises(ValueError, match=r"flow has shape"):
        metrics.warp_error(video, np.zeros((1, 2, 2, 2)))


def test_farneback_warp_error_explains_motion():
    ys, xs = np.mgrid[0:48, 0:48]
    frames = [np.stack([128 + 60 * np.sin((xs - t) / 4.0) + 40 * np.cos(ys / 5.0)] * 3, -1) for t in range(4)]
    video = np.clip(np.round(np.stack(frames)), 0, 255).astype(np.uint8)  # a texture moving right 1 px/frame
    flow = metrics.farneback_flow(video)
    assert flow.shape == (3, 48, 48, 2)
    assert np.median(flow[..., 0]) == pytest.approx(1.0, abs=0.1) and abs(np.median(flow[..., 1])) < 0.1
    assert metrics.warp_error(video) < 0.1 * metrics.flicker(video)
    still = np.repeat(np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8), 3, axis=0)
    assert metrics.warp_error(still) == 0.0  # equal frames: zero flow, zero error


def test_window_scores_by_hand():
    # 9 frames, windows of 5 overlapping by 1: [0, 5) and [4, 9); the joins are the changes 3 -> 4 and 4 -> 5
    levels = np.cumsum([0, 2, 2, 2, 10, 10, 2, 2, 2])
    video = np.stack([_const(v)[0] for v in levels])  # [9, 8, 8, 3]
    region = np.ones((9, 8, 8), np.uint8)
    plan = plan_windows(9, 5, 1)
    assert [(w.start, w.stop) for w in plan] == [(0, 5), (4, 9)]
    assert metrics.seam_ratio(video, region, plan) == pytest.approx(10 / 2)
    assert metrics.seam_ratio(video[:5], region[:5], plan_windows(5, 5, 1)) is None  # one window, no joins
    colours = np.array([[10, 10, 10]] * 5 + [[13, 14, 10]] * 4, np.uint8)
    video = np.broadcast_to(colours[:, None, None], (9, 8, 8, 3))
    # window 2 (frames 4..8) averages (10, 10, 10) once and (13, 14, 10) four times: (12.4, 13.2, 10)
    assert metrics.colour_drift(metrics.window_colours(video, region, plan)) == pytest.approx(math.hypot(2.4, 3.2))


def _reference() -> np.ndarray:
    ref = np.full((4, 4, 3), 128, np.uint8)
    ref[1:3, 1:3] = (200, 0, 0)  # the subject on grey
    return ref


def test_subject_colour_distances_by_hand():
    assert metrics.reference_subject(_reference()).sum() == 4
    source, result = _const(0, size=4), _const(0, size=4)
    mask = np.zeros((1, 4, 4), np.uint8)
    mask[0, :2, :2] = 1
    source[0, :2, :2] = (0, 0, 200)
    result[0, :2, :2] = (190, 10, 0)
    d = metrics.subject_colour_distances(result, source, mask, _reference())
    assert d["colour_to_reference"] == pytest.approx(math.sqrt(10 ** 2 + 10 ** 2))
    assert d["colour_to_source"] == pytest.approx(math.sqrt(190 ** 2 + 10 ** 2 + 200 ** 2))


def test_segment_subject_and_centroid_error_by_hand():
    video = np.zeros((2, 7, 7, 3), np.uint8)
    video[...] = (0, 200, 0)  # green background
    region = np.zeros((2, 7, 7), np.uint8)
    region[:, 2:5, 2:5] = 1
    video[:, 2:5, 2:5] = (0, 190, 0)  # green-ish in the region: background showing through
    video[0, 2:4, 2:4] = (195, 5, 0)  # frame 0: the red subject at the top-left of the region
    video[1, 3:5, 3:5] = (205, 0, 5)  # frame 1: at the bottom-right
    subject = metrics.segment_subject(video, region, _reference(), ring=1)
    expected = np.zeros((2, 7, 7), np.uint8)
    expected[0, 2:4, 2:4] = expected[1, 3:5, 3:5] = 1
    np.testing.assert_array_equal(subject, expected)
    np.testing.assert_allclose(metrics.centroids(subject), [[2.5, 2.5], [3.5, 3.5]])
    track = np.zeros((2, 7, 7), np.uint8)
    track[:, 2:5, 2:5] = 1  # centroid (3, 3) in both frames
    assert metrics.centroid_error(subject, track) == pytest.approx(math.sqrt(0.5))
    track[1] = 0  # only frame 0 counts
    assert metrics.centroid_error(subject, track) == pytest.approx(math.sqrt(0.5))
    assert math.isnan(metrics.centroid_error(subject, np.zeros_like(track)))


def test_embedding_similarity_by_hand():
    def mean_colour(images):  # a toy embedder: the mean colour of each image
        return images.reshape(len(images), -1, 3).mean(axis=1)

    ref = np.zeros((4, 4, 3), np.uint8)
    ref[...] = (255, 0, 0)
    video = np.zeros((2, 8, 8, 3), np.uint8)
    video[:, 2:6, 2:6] = (100, 100, 0)
    region = np.zeros((2, 8, 8), np.uint8)
    region[:, 2:6, 2:6] = 1
    crops = metrics.subject_crops(video, region, 4)
    assert crops.shape == (2, 4, 4, 3) and (crops == (100, 100, 0)).all()
    assert metrics.embedding_similarity(mean_colour, video, region, ref) == pytest.approx(1 / math.sqrt(2))
    video[:, 2:6, 2:6] = (255, 0, 0)
    assert metrics.embedding_similarity(mean_colour, video, region, ref) == pytest.approx(1.0)


def test_media_kept(tmp_path):
    path = tmp_path / "out.mp4"
    video_io.write_video(path, _const(90, frames=5, size=16), 12.0)
    kept = dict(fps=12.0, num_frames=5, height=16, width=16, audio=False)
    assert metrics.media_kept(path, **kept) == {"fps_kept": True, "frames_kept": True, "size_kept": True,
                                                "audio_kept": True}
    lost = metrics.media_kept(path, **{**kept, "fps": 24.0, "num_frames": 6, "width": 18, "audio": True})
    assert lost == {"fps_kept": False, "frames_kept": False, "size_kept": False, "audio_kept": False}


def test_identical_videos_get_the_ideal_scores():
    rng = np.random.default_rng(1)
    video = rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    video[4:] = video[4]  # still from frame 4 on
    mask = np.zeros((9, 16, 16), np.uint8)
    mask[:, 5:10, 6:11] = 1
    assert metrics.background_scores(video, video.copy(), mask, 2) == {"bg_psnr": math.inf, "bg_ssim": 1.0,
                                                                       "bg_mae": 0.0}
    assert metrics.masked_scores(video, video.copy(), mask) == {"masked_psnr": math.inf, "masked_ssim": 1.0}
    assert metrics.flicker(video.copy(), mask) == metrics.flicker(video, mask)
    assert metrics.warp_error(video[4:], region=mask[4:]) == 0.0
    assert metrics.centroid_error(mask, mask.copy()) == 0.0
    assert metrics.colour_drift(metrics.window_colours(video[4:], mask[4:], plan_windows(5, 5, 1))) == 0.0
    d = metrics.subject_colour_distances(video, video.copy(), mask, _reference())
    assert d["colour_to_source"] == 0.0
    ref = video[0, 5:10, 6:11]  # the subject itself as the reference: its embedding is the subject's
    assert metrics.embedding_similarity(lambda x: x.reshape(len(x), -1).astype(float), video[:1], mask[:1],
                                        ref) == pytest.approx(1.0)


def test_shape_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 8, 8, 3\) and \(1, 4, 4, 3\)"):
        metrics.psnr(_const(1), _const(1, size=4))
    with pytest.raises(ValueError, match=r"region has shape"):
        metrics.mae(_const(1), _const(1), np.ones((1, 4, 4)))
