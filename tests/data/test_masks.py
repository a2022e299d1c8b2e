"""Property tests for the mask transforms (docs/design.md, "Masks"): shapes, supersets, determinism, the K rule."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapjax.data.config import MaskConfig
from swapjax.data import masks as M

SETTINGS = settings(max_examples=30, deadline=None)


def random_mask(seed: int, frames: int, height: int, width: int, empty_frames: bool = False) -> np.ndarray:
    """A few random ellipses and boxes per frame (some frames empty when asked): uint8 [F, H, W]."""
    rng = np.random.default_rng(seed)
    m = np.zeros((frames, height, width), np.uint8)
    for f in range(frames):
        if empty_frames and rng.random() < 0.3:
            continue
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.integers(0, height), rng.integers(0, width)
            ry, rx = rng.integers(1, max(2, height // 3)), rng.integers(1, max(2, width // 3))
            if rng.random() < 0.5:
                cv2.ellipse(m[f], (int(cx), int(cy)), (int(rx), int(ry)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
            else:
                m[f, max(0, cy - ry):cy + ry, max(0, cx - rx):cx + rx] = 1
    return m


masks = st.builds(random_mask, st.integers(0, 2**31), st.integers(1, 4), st.integers(8, 56), st.integers(8, 56),
                  st.booleans())


def check_binary(out, like):
    assert out.dtype == np.uint8 and out.shape == like.shape
    assert set(np.unique(out)) <= {0, 1}


def brute_grid(m: np.ndarray, counts) -> np.ndarray:
    """Reference grid: cells from round-down edges over the whole frame, on if any subject pixel inside."""
    f, h, w = m.shape
    e_h = [(j * h) // counts[0] for j in range(counts[0] + 1)]
    e_w = [(j * w) // counts[1] for j in range(counts[1] + 1)]
    out = np.zeros_like(m)
    for a in range(counts[0]):
        for b in range(counts[1]):
            cell = m[:, e_h[a]:e_h[a + 1], e_w[b]:e_w[b + 1]]
            out[:, e_h[a]:e_h[a + 1], e_w[b]:e_w[b + 1]] = cell.any(axis=(1, 2))[:, None, None]
    return out


def extent(m: np.ndarray) -> tuple[int, int]:
    hs, ws = [], []
    for frame in m:
        ys, xs = np.nonzero(frame)
        if ys.size:
            hs.append(ys.max() - ys.min() + 1)
            ws.append(xs.max() - xs.min() + 1)
    return (max(hs), max(ws)) if hs else (0, 0)


@SETTINGS
@given(masks, st.integers(0, 6))
def test_bbox_mask_is_the_dilated_box(m, d):
    out = M.bbox_mask(m, d)
    check_binary(out, m)
    assert (out >= m).all()
    for f, frame in enumerate(m):
        ys, xs = np.nonzero(frame)
        want = np.zeros_like(frame)
        if ys.size:
            want[max(0, ys.min() - d):ys.max() + 1 + d, max(0, xs.min() - d):xs.max() + 1 + d] = 1
        np.testing.assert_array_equal(out[f], want)


@given(st.integers(0, 500), st.integers(0, 500), st.integers(1, 64), st.integers(1, 64))
def test_grid_counts_rule(bh, bw, ch, cw):
    assert M.grid_counts((bh, bw), (ch, cw)) == (max(1, bh // ch), max(1, bw // cw))


@SETTINGS
@given(masks, st.integers(1, 40), st.integers(1, 40))
def test_adaptive_grid_matches_reference(m, ch, cw):
    out = M.adaptive_grid_mask(m, (ch, cw))
    check_binary(out, m)
    assert (out >= m).all()
    counts = (max(1, extent(m)[0] // ch), max(1, extent(m)[1] // cw))
    np.testing.assert_array_equal(out, brute_grid(m.astype(bool), counts).astype(np.uint8))


def diagonal(side: int, frames: int = 2) -> np.ndarray:
    """A one-pixel diagonal over a square frame: every row band of a grid gets its own column pattern."""
    m = np.zeros((frames, side, side), np.uint8)
    m[:, np.arange(side), np.arange(side)] = 1
    return m


def used_cells(out: np.ndarray) -> tuple[int, int]:
    """Distinct row and column patterns of the first frame: the number of cell rows and cols in use."""
    return np.unique(out[0], axis=0).shape[0], np.unique(out[0], axis=1).shape[1]


@SETTINGS
@given(st.integers(16, 96), st.integers(0, 2**31))
def test_training_grid_follows_k_rule(side, seed):
    cfg = MaskConfig(p_bbox=0.0, p_shape_aug=0.0)
    m = diagonal(side)
    out, info = M.training_mask(m, np.random.default_rng(seed), cfg, return_info=True)
    check_binary(out, m)
    assert info["kind"] == "grid"
    c_h, c_w = info["cell_hw"]
    assert cfg.grid_cell_min <= c_h <= cfg.grid_cell_max and cfg.grid_cell_min <= c_w <= cfg.grid_cell_max
    k_h, k_w = max(1, side // c_h), max(1, side // c_w)
    assert info["counts"] == (k_h, k_w)
    rows, cols = used_cells(out)
    # a diagonal touches K distinct cells along the finer axis, each with its own pattern on the other
    assert rows == k_h if k_w >= k_h else cols == k_w
    assert rows <= k_h and cols <= k_w


@SETTINGS
@given(st.integers(16, 160), st.integers(4, 40))
def test_inference_grid_follows_k_rule(side, h3):
    cfg = MaskConfig(grid_cell_min=min(12, h3), grid_cell_infer=h3)
    out = M.inference_mask(diagonal(side), cfg)
    assert used_cells(out) == (max(1, side // h3),) * 2


def test_grid_is_coarse_for_small_and_fine_for_big_subjects():
    small = np.zeros((1, 96, 96), np.uint8)
    small[0, 40:52, 40:52] = 1
    big = np.zeros((1, 96, 96), np.uint8)
    cv2.circle(big[0], (48, 48), 40, 1, -1)
    assert M.inference_mask(small, MaskConfig()).sum() == 96 * 96  # one cell: the whole frame
    fine = M.inference_mask(big, MaskConfig(grid_cell_infer=8))  # 10 x 10 cells of 9-10 pixels
    assert big.sum() < fine.sum() < 96 * 96 - 4 * 9 * 9


def test_training_mask_picks_bbox_about_p_bbox():
    m = random_mask(3, 2, 48, 48)
    kinds = [M.training_mask(m, np.random.default_rng(s), MaskConfig(), return_info=True)[1]["kind"]
             for s in range(300)]
    assert 0.2 < kinds.count("bbox") / len(kinds) < 0.4


def test_loose_masks_dilate_the_subject_before_the_box_or_grid():
    """p_loose: a user's loose mask. The subject grows by U{1..max} pixels first, so an exact bbox (no bbox
    dilation, no shapes) of the loose mask covers the dilated subject's box; off, the box is the subject's."""
    m = np.zeros((2, 40, 40), np.uint8)
    m[:, 15:25, 12:20] = 1
    exact = MaskConfig(p_bbox=1.0, bbox_dilate_max=0, p_shape_aug=0.0)
    loose = MaskConfig(p_bbox=1.0, bbox_dilate_max=0, p_shape_aug=0.0, p_loose=1.0, loose_dilate_max=5)
    radii = set()
    for seed in range(40):
        out, info = M.training_mask(m, np.random.default_rng(seed), loose, return_info=True)
        assert 1 <= info["loose"] <= 5
        np.testing.assert_array_equal(out, M.bbox_mask(M.dilate(m, info["loose"])))
        radii.add(info["loose"])
    assert radii == {1, 2, 3, 4, 5}
    np.testing.assert_array_equal(M.training_mask(m, np.random.default_rng(0), exact), M.bbox_mask(m))


@SETTINGS
@given(masks, st.integers(0, 2**31))
def test_training_mask_superset_and_deterministic(m, seed):
    cfg = MaskConfig()
    out = M.training_mask(m, np.random.default_rng(seed), cfg)
    check_binary(out, m)
    assert (out >= m).all()
    np.testing.assert_array_equal(out, M.training_mask(m, np.random.default_rng(seed), cfg))
    assert (M.inference_mask(m, cfg) >= m).all()


@SETTINGS
@given(masks, st.integers(0, 2**31), st.integers(1, 4))
def test_shape_augment_superset_attached_deterministic(m, seed, n):
    out = M.shape_augment(m, np.random.default_rng(seed), n)
    check_binary(out, m)
    assert (out >= m).all()
    np.testing.assert_array_equal(out, M.shape_augment(m, np.random.default_rng(seed), n))
    for f in range(m.shape[0]):
        if not m[f].any():
            assert not out[f].any()
            continue
        count, labels = cv2.connectedComponents(out[f], connectivity=8)
        touching = set(np.unique(labels[m[f] > 0]))
        assert touching == set(range(1, count)), "an added shape is detached from the subject"


def test_shape_augment_adds_something_and_moves_with_the_subject():
    base = np.zeros((128, 128), np.uint8)
    cv2.ellipse(base, (40, 42), (8, 12), 30, 0, 360, 1, -1)  # shapes stay clear of the frame edge
    shifts = [(0, 0), (3, 9), (11, 20), (25, 30)]
    m = np.stack([np.roll(base, s, axis=(0, 1)) for s in shifts])  # the subject translates, unchanged
    for seed in range(10):
        out = M.shape_augment(m, np.random.default_rng(seed), 3)
        extra = (out - m).astype(bool)
        assert extra[0].any()
        for f, s in enumerate(shifts):
            np.testing.assert_array_equal(extra[f], np.roll(extra[0], s, axis=(0, 1)))


def test_shape_augment_scales_with_the_box():
    small = np.zeros((1, 96, 96), np.uint8)
    small[0, 40:50, 40:50] = 1
    big = np.zeros((1, 96, 96), np.uint8)
    big[0, 24:64, 24:64] = 1
    added = [(M.shape_augment(x, np.random.default_rng(7), 1) - x).sum() for x in (small, big)]
    assert added[1] > 4 * added[0] > 0


@SETTINGS
@given(masks, st.integers(0, 5), st.integers(1, 20), st.integers(1, 20))
def test_shape_agnostic_blocks_matches_reference(m, d, bh, bw):
    out = M.shape_agnostic_blocks(m, d, (bh, bw))
    check_binary(out, m)
    assert (out >= m).all()
    grown = M.dilate(m, d)
    for y in range(0, m.shape[1], bh):
        for x in range(0, m.shape[2], bw):
            on = grown[:, y:y + bh, x:x + bw].any(axis=(1, 2))
            assert (out[:, y:y + bh, x:x + bw] == on[:, None, None]).all()


@SETTINGS
@given(masks, st.integers(0, 6))
def test_dilate_is_euclidean_disk(m, r):
    out = M.dilate(m, r)
    check_binary(out, m)
    assert (out >= m).all()
    for f, frame in enumerate(m):
        if not frame.any():
            assert not out[f].any()
            continue
        dist = cv2.distanceTransform((frame == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        np.testing.assert_array_equal(out[f], (dist <= r + 1e-3).astype(np.uint8))


@SETTINGS
@given(masks, st.integers(0, 6))
def test_feather_stays_inside_and_covers_dilated_subject(m, r):
    alpha = M.feather(m, r)
    assert alpha.dtype == np.float32 and alpha.shape == m.shape
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert (alpha[m == 0] == 0).all()
    assert (M.feather(M.dilate(m, r), r)[m > 0] == 1.0).all()
    for f, frame in enumerate(m):  # same as the whole-frame distance transform
        dist = cv2.distanceTransform(frame, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) if (r and not frame.all()) else None
        want = frame.astype(np.float32) if dist is None else np.minimum(dist / r, 1.0)
        np.testing.assert_allclose(alpha[f], want, atol=1e-6)


def test_feather_ramps_linearly():
    m = np.zeros((1, 9, 40), np.uint8)
    m[0, :, 10:] = 1  # one vertical edge; the frame border is not an edge
    alpha = M.feather(m, 4)[0, 4]
    np.testing.assert_allclose(alpha[10:16], [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert (alpha[:10] == 0).all() and (alpha[-5:] == 1).all()


@SETTINGS
@given(masks, st.integers(0, 2**31))
def test_hair_enhance_removes_hair_and_shoulders(cloth, seed):
    rng = np.random.default_rng(seed)
    f, h, w = cloth.shape
    hair = (rng.random((f, h, w)) < 0.3).astype(np.uint8)
    x0, y0 = rng.integers(0, w), rng.integers(0, h)
    box = np.array([x0, y0, x0 + rng.integers(1, w), y0 + rng.integers(1, h)])
    rect = np.zeros_like(cloth)
    rect[:, y0:box[3], x0:box[2]] = 1
    out = M.hair_enhance(cloth, hair, rect)
    check_binary(out, cloth)
    np.testing.assert_array_equal(out, (cloth > 0) & (hair == 0) & (rect == 0))
    np.testing.assert_array_equal(M.hair_enhance(cloth, hair, box), out)
    np.testing.assert_array_equal(M.hair_enhance(cloth, hair, np.tile(box, (f, 1))), out)


def test_shoulder_boxes():
    kps = np.zeros((2, 17, 3), np.float32)
    kps[0, 5], kps[0, 6] = (60, 40, 1), (20, 40, 1)  # left, right shoulder 40 px apart
    kps[1, 5] = (60, 40, 1)  # right shoulder missing
    np.testing.assert_array_equal(M.shoulder_boxes(kps, 5, 6), [[8, 28, 72, 64], [0, 0, 0, 0]])


def test_transforms_reject_wrong_rank():
    with pytest.raises(ValueError, match=r"mask has shape \(4, 4\), expected \[F, H, W\]"):
        M.bbox_mask(np.ones((4, 4)))
    with pytest.raises(ValueError, match="cell_hw"):
        M.adaptive_grid_mask(np.ones((1, 4, 4)), (0, 3))


def test_empty_mask_stays_empty():
    m = np.zeros((2, 16, 16), np.uint8)
    rng = np.random.default_rng(0)
    for out in (M.bbox_mask(m, 3), M.adaptive_grid_mask(m, 4), M.shape_augment(m, rng, 3),
                M.training_mask(m, rng, MaskConfig()), M.shape_agnostic_blocks(m, 2, 4)):
        check_binary(out, m)
        assert not out.any()


def test_dilate_long_clips_match_per_frame():
    m = (np.random.default_rng(0).random((300, 12, 10)) < 0.05).astype(np.uint8)  # F > 128 (cv2's channel cap)
    per_frame = np.stack([cv2.dilate(frame, M.disk(2), borderType=cv2.BORDER_CONSTANT, borderValue=0)
                          for frame in m])
    np.testing.assert_array_equal(M.dilate(m, 2), per_frame)


# ----------------------------------------------------------------------------- SwapAnyHead options, by hand
def test_blocks_option_replaces_the_bbox_and_grid_draw():
    m = np.zeros((1, 8, 8), np.uint8)
    m[0, 3, 3] = 1
    # dilated by 1 (a disk): (2..4, 3) and (3, 2..4); 4x4 blocks: top-left, bottom-left (4, 3) and top-right (3, 4)
    # are touched, bottom-right is not
    cfg = MaskConfig(blocks=True, block_dilate=1, block_size=4, p_shape_aug=0.0)
    out, info = M.training_mask(m, np.random.default_rng(0), cfg, return_info=True)
    want = np.ones((1, 8, 8), np.uint8)
    want[0, 4:, 4:] = 0
    np.testing.assert_array_equal(out, want)
    assert info["kind"] == "blocks"
    # off by default: the DreamSwapV draw (bbox with p_bbox = 1: the 1-pixel box)
    plain = M.training_mask(m, np.random.default_rng(0), MaskConfig(p_bbox=1.0, bbox_dilate_max=0, p_shape_aug=0.0))
    np.testing.assert_array_equal(plain, m)


def test_hair_enhanced_mask_adds_the_removed_body_pixels():
    train = np.zeros((1, 4, 4), np.uint8)
    train[0, 0, 0] = 1
    cloth = np.zeros((1, 4, 4), np.uint8)
    cloth[0, 2:] = 1  # rows 2, 3
    hair = np.zeros((1, 4, 4), np.uint8)
    hair[0, 1:3, 0] = 1  # column 0, rows 1, 2: only row 2 lies on the cloth
    rect = np.array([2, 3, 4, 4])  # (x0, y0, x1, y1): row 3, columns 2, 3
    # cloth' = cloth·(1 − hair)·(1 − rect) keeps (2, 1..3), (3, 0..1); the rest of the cloth is regenerated
    want = np.array([[[1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]]], np.uint8)
    np.testing.assert_array_equal(M.hair_enhanced_mask(train, cloth, hair, rect), want)


def _scene(size=16, lo=6, hi=8):
    """A grey-50 frame with a 200 square at rows / columns lo..hi-1: video uint8 [1, s, s, 3], mask, background."""
    video = np.full((1, size, size, 3), 50, np.uint8)
    video[0, lo:hi, lo:hi] = 200
    mask = np.zeros((1, size, size), np.uint8)
    mask[0, lo:hi, lo:hi] = 1
    return video, mask, np.full_like(video, 50)


def test_rescale_foreground_by_hand():
    video, mask, background = _scene()
    # box rows 6..7, centre 6.5; output pixel d reads 6.5 + (d − 6.5)/2: d = 5 -> 5.75 (nearest 6, on),
    # d = 4 -> 4.75 (5, off), d = 8 -> 7.25 (7, on), d = 9 -> 7.75 (8, off): the square doubles to rows 5..8
    out, sub = M.rescale_foreground(video, mask, 2.0, background)
    want = np.zeros_like(mask)
    want[0, 5:9, 5:9] = 1
    np.testing.assert_array_equal(sub, want)
    # colours: (5, 5) reads (5.75, 5.75): 50 + 150·0.75·0.75 = 134.375; (6, 6) reads (6.25, 6.25): all square
    assert out[0, 5, 5, 0] == 134 and out[0, 6, 6, 0] == 200
    assert (out[0][want[0] == 0] == 50).all()  # outside the new square: the background
    # shrinking by 1/2 on the inpainted frame: the 2x2 square -> d reads 6.5 + 2(d − 6.5): d = 6 -> 5.5 ... a tie;
    # use a 3x3 square (centre 6): d = 6 reads 6 (on), d = 5 reads 4 (off), d = 7 reads 8 (off)
    video, mask, _ = _scene(lo=5, hi=8)
    out, sub = M.rescale_foreground(video, mask, 0.5)
    want = np.zeros_like(mask)
    want[0, 6, 6] = 1
    np.testing.assert_array_equal(sub, want)
    ring = (mask[0] > 0) & (want[0] == 0)  # where the subject was: inpainted from the flat background
    assert np.abs(out[0][ring].astype(int) - 50).max() <= 1 and out[0, 6, 6, 0] == 200
    np.testing.assert_array_equal(out[0][M.dilate(mask, 1)[0] == 0], video[0][M.dilate(mask, 1)[0] == 0])


# ------------------------------------------------------------------ the options in the training examples
def _builder(**mask):
    from swapjax.data.config import DataConfig
    from swapjax.data.pipeline import ExampleBuilder

    cfg = DataConfig(height=16, width=16, num_frames=1, ref_size=16,
                     mask=MaskConfig(p_bbox=1.0, bbox_dilate_max=0, p_shape_aug=0.0, **mask))
    return ExampleBuilder(cfg, None, 0, 1)


def _head_record():
    video, mask, background = _scene(lo=2, hi=6)
    cloth = np.zeros((1, 16, 16), np.uint8)
    cloth[0, 10:] = 1  # rows 10..15
    hair = np.zeros((1, 16, 16), np.uint8)
    hair[0, 8:12, 0:4] = 1  # rows 8..11, columns 0..3
    kps = np.zeros((1, 17, 3), np.float32)
    kps[0, 5], kps[0, 6] = (12, 11, 1), (4, 11, 1)  # COCO left / right shoulder, 8 px apart
    return {"video": video, "mask": mask, "background": background, "cloth": cloth, "hair": hair, "keypoints": kps}


def test_hair_enhancement_in_the_examples_follows_the_formula():
    record = _head_record()
    plain = _builder().build(record, np.random.default_rng(3))["mask"]
    bbox = np.zeros((1, 16, 16), np.float32)
    bbox[0, 2:6, 2:6] = 1  # off by default: the subject's box
    np.testing.assert_array_equal(plain, bbox)
    got = _builder(hair_enhance=True).build(record, np.random.default_rng(3))["mask"]
    # shoulder box: span 8, x 4 − 2.4 .. 12 + 2.4, y 11 − 2.4 .. 11 + 4.8 -> rounded (2, 9, 14, 16) (x0, y0, x1, y1);
    # cloth (rows 10..15) ∩ (hair ∪ rect) = rows 10..15 x columns 2..13, plus the hair's rows 10..11 x columns 0..1
    want = bbox.copy()
    want[0, 10:16, 2:14] = 1
    want[0, 10:12, 0:2] = 1
    np.testing.assert_array_equal(got, want)
    # a record without cloth / hair (not head-swapping data) is left as it is
    no_hair = {k: v for k, v in record.items() if k not in ("cloth", "hair")}
    np.testing.assert_array_equal(_builder(hair_enhance=True).build(no_hair, np.random.default_rng(3))["mask"], bbox)


def test_blocks_in_the_examples():
    got = _builder(blocks=True, block_dilate=1, block_size=4).build(_head_record(), np.random.default_rng(3))
    # the 4x4 square at rows / columns 2..5 dilated by 1 touches rows / columns 1..6: blocks 0..1 on each axis
    want = np.zeros((1, 16, 16), np.float32)
    want[0, :8, :8] = 1
    np.testing.assert_array_equal(got["mask"], want)


def test_foreground_scaling_in_the_examples_and_determinism():
    record = _head_record()
    record["video"], record["mask"], record["background"] = _scene()  # the 2x2 square at 6..7
    got = _builder(p_foreground_scale=1.0, foreground_scale_min=2.0, foreground_scale_max=2.0).build(
        record, np.random.default_rng(3))
    want = np.zeros((1, 16, 16), np.float32)
    want[0, 5:9, 5:9] = 1  # doubled about its centre (test_rescale_foreground_by_hand)
    np.testing.assert_array_equal(got["subject_mask"], want)
    np.testing.assert_allclose(got["video"][0, 5, 5, 0], 134 / 127.5 - 1, atol=1e-6)
    builder = _builder(p_foreground_scale=0.5, foreground_scale_min=0.5, foreground_scale_max=1.5,
                       blocks=True, hair_enhance=True)
    runs = [builder.build(_head_record(), np.random.default_rng(seed)) for seed in (5, 5, 6)]
    for key in ("mask", "subject_mask", "video"):
        np.testing.assert_array_equal(runs[0][key], runs[1][key])
    outcomes = {builder.build(_head_record(), np.random.default_rng(s))["subject_mask"].sum() for s in range(8)}
    assert len(outcomes) > 1  # the scale is drawn per example
