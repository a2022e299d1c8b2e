"""Keypoint rendering: default topologies, invisible points skipped, colours per limb."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapjax.data.keypoints import (COCO_17, FACE_68, HAND_21, OPENPOSE_18, default_skeleton, palette,
                                    render_keypoints)


def random_kps(seed: int, frames: int, points: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-5, [width + 5, height + 5], (frames, points, 2))
    vis = (rng.random((frames, points, 1)) < 0.7).astype(np.float64)
    return np.concatenate([xy, vis], axis=-1).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([("pose", 18), ("pose", 17), ("hand", 21), ("hand", 42),
                                                ("face", 68), ("face", 5), ("sprite", 5)]))
def test_invisible_points_are_skipped(seed, kind_k):
    kind, k = kind_k
    kps = random_kps(seed, 2, k, 48, 40)
    out = render_keypoints(kps, 48, 40, kind)
    assert out.shape == (2, 48, 40, 3) and out.dtype == np.uint8
    moved = kps.copy()
    hidden = moved[..., 2] == 0
    moved[hidden, :2] = np.random.default_rng(seed + 1).uniform(0, 40, (hidden.sum(), 2))  # move hidden points
    moved[hidden, 2] = -1.0
    np.testing.assert_array_equal(render_keypoints(moved, 48, 40, kind), out)
    for f, j in zip(*np.nonzero(~hidden)):  # every visible point inside the frame leaves a mark
        x, y = np.round(kps[f, j, :2]).astype(int)
        if 0 <= x < 40 and 0 <= y < 48:
            assert out[f, y, x].any()


def test_nothing_visible_renders_black():
    kps = random_kps(0, 3, 18, 32, 32)
    kps[..., 2] = 0.0
    assert not render_keypoints(kps, 32, 32).any()
    kps[..., 2] = 1.0
    kps[1, :, 0] = np.nan  # a frame of undetected points (NaN) is skipped, not an error
    out = render_keypoints(kps, 32, 32)
    assert out[0].any() and not out[1].any()


def test_limbs_join_visible_points_in_their_own_colours():
    kps = np.zeros((1, 3, 3), np.float32)
    kps[0] = [[10, 10, 1], [50, 10, 1], [10, 50, 1]]
    out = render_keypoints(kps, 64, 64, "sprite", thickness=2, radius=2)[0]
    mid_a, mid_b = out[10, 30], out[30, 10]  # midpoints of limbs (0, 1) and (0, 2)
    assert mid_a.any() and mid_b.any() and not np.array_equal(mid_a, mid_b)
    kps[0, 2, 2] = 0.0  # hide point 2: its limb disappears, the other stays
    out = render_keypoints(kps, 64, 64, "sprite", thickness=2, radius=2)[0]
    assert out[10, 30].any() and not out[30, 10].any()


def test_normalized_coordinates_match_pixels():
    kps = random_kps(3, 2, 21, 40, 60)
    norm = kps.copy()
    norm[..., 0] /= 60
    norm[..., 1] /= 40
    np.testing.assert_array_equal(render_keypoints(norm, 40, 60, "hand", normalized=True),
                                  render_keypoints(kps, 40, 60, "hand"))


def test_default_topologies():
    assert len(OPENPOSE_18) == 17 and len(COCO_17) == 19 and len(HAND_21) == 20
    assert len(FACE_68) == 64 and max(max(e) for e in FACE_68) == 67
    assert all(max(e) < 21 for e in HAND_21) and {a for a, _ in HAND_21} >= {0, 1, 5, 9, 13, 17}
    two_hands = default_skeleton("hand", 42)
    assert len(two_hands) == 40 and (21, 22) in two_hands and max(max(e) for e in two_hands) == 41
    assert default_skeleton("sprite", 4) == ((0, 1), (0, 2), (0, 3))
    colours = palette(17)
    assert len({tuple(c) for c in colours}) == 17


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="pose keypoints have 7 points.*multiple of 18 or 17.*skeleton="):
        render_keypoints(np.zeros((1, 7, 3)), 16, 16, "pose")
    with pytest.raises(ValueError, match=r"expected \[F, K, 3\]"):
        render_keypoints(np.zeros((7, 3)), 16, 16)
    with pytest.raises(ValueError, match="outside 0..6"):
        render_keypoints(np.zeros((1, 7, 3)), 16, 16, skeleton=[(0, 7)])
    with pytest.raises(ValueError, match="not one of"):
        render_keypoints(np.zeros((1, 7, 3)), 16, 16, kind="tail")
