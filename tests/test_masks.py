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
