"""Keypoint tracks -> condition frames: skeleton lines and joints on black, one colour per limb.

Keypoints are float `[F, K, 3]` as (x, y, visibility) in pixels of the output frame (origin top-left, x to the
right, y down); a point is drawn when its visibility is above `threshold` and its coordinates are finite, a
limb when both its ends are. Default topologies per kind:

  pose    OpenPose body-18 (K = 18) or COCO-17 (K = 17)
  hand    21 points: wrist, then four joints per finger from thumb to little finger
  face    iBUG 68 landmarks (contours), or 5 points (eyes, nose, mouth corners; joints only)
  sprite  point 0 is a hub joined to every other point (the synthetic dataset's sprites, any K >= 1)

K may be a multiple of the topology size (several people, two hands): each group of points is one instance.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

KINDS = ("pose", "hand", "face", "sprite")
_SHIFT = 4  # cv2 drawing with 4 fractional bits

OPENPOSE_18 = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
               (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
COCO_17 = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
           (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
HAND_21 = tuple((0 if j % 4 == 1 else j - 1, j) for j in range(1, 21))


def _chain(start: int, stop: int, closed: bool = False) -> tuple[tuple[int, int], ...]:
    edges = tuple((j, j + 1) for j in range(start, stop - 1))
    return edges + ((stop - 1, start),) if closed else edges


# jaw, brows, nose bridge, nostrils, eyes (closed), outer and inner lips (closed)
FACE_68 = (_chain(0, 17) + _chain(17, 22) + _chain(22, 27) + _chain(27, 31) + _chain(31, 36) + ((30, 33),)
           + _chain(36, 42, True) + _chain(42, 48, True) + _chain(48, 60, True) + _chain(60, 68, True))
FACE_5: tuple[tuple[int, int], ...] = ()

_TOPOLOGIES = {"pose": {18: OPENPOSE_18, 17: COCO_17}, "hand": {21: HAND_21}, "face": {68: FACE_68, 5: FACE_5}}


def default_skeleton(kind: str, num_points: int) -> tuple[tuple[int, int], ...]:
    """The limbs (pairs of point indices) drawn for `kind` with `num_points` points, instances tiled."""
    if kind not in KINDS:
        raise ValueError(f"keypoint kind {kind!r} is not one of {KINDS}")
    if kind == "sprite":
        return tuple((0, j) for j in range(1, num_points))
    for size, edges in _TOPOLOGIES[kind].items():
        if num_points >= size and num_points % size == 0:
            return tuple((a + s, b + s) for s in range(0, num_points, size) for a, b in edges)
    sizes = " or ".join(str(s) for s in _TOPOLOGIES[kind])
    raise ValueError(f"{kind} keypoints have {num_points} points per frame; the {kind} skeleton needs a "
                     f"multiple of {sizes}: pass skeleton=[(i, j), ...] for another layout")


def palette(count: int) -> np.ndarray:
    """`count` distinct saturated colours (hues evenly spaced): uint8 `[count, 3]` RGB."""
    hues = np.arange(max(count, 1)) / max(count, 1)
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 1.0, 1.0)] for h in hues], np.uint8)


def render_keypoints(kps, height: int, width: int, kind: str = "pose", skeleton=None, *,
                     threshold: float = 0.0, thickness: int | None = None, radius: int | None = None,
                     normalized: bool = False) -> np.ndarray:
    """Draws keypoints float `[F, K, 3]` (x, y, visibility) into condition frames uint8 `[F, H, W, 3]`.

    `skeleton` overrides the kind's default limbs; `normalized` reads x, y as fractions of width and height.
    Line thickness and joint radius default to sizes proportional to the frame.
    """
    k = np.asarray(kps, np.float64)
    if k.ndim != 3 or k.shape[-1] != 3:
        raise ValueError(f"keypoints have shape {k.shape}, expected [F, K, 3] as (x, y, visibility)")
    num_points = k.shape[1]
    edges = default_skeleton(kind, num_points) if skeleton is None else tuple(map(tuple, skeleton))
    bad = [e for e in edges if len(e) != 2 or not all(0 <= int(j) < num_points for j in e)]
    if bad:
        raise ValueError(f"skeleton limbs {bad[:3]} name points outside 0..{num_points - 1}: fix the skeleton")
    xy = k[..., :2] * (np.array([width, height]) if normalized else 1.0)  # [F, K, 2]
    visible = (k[..., 2] > threshold) & np.isfinite(xy).all(axis=-1) & np.isfinite(k[..., 2])  # [F, K]
    fixed = np.round(np.where(visible[..., None], xy, 0.0) * (1 << _SHIFT)).astype(np.int64)  # [F, K, 2]
    fixed = np.clip(fixed, -(1 << 26), 1 << 26)  # far-off points stay drawable (cv2 clips the line)
    side = min(height, width)
    thickness = max(1, round(side / 160)) if thickness is None else thickness
    radius = max(1, round(side / 100)) if radius is None else radius
    limb_colours = [tuple(int(v) for v in c) for c in palette(len(edges))]
    joint_colours = [tuple(int(v) for v in c) for c in palette(num_points)]
    out = np.zeros((k.shape[0], height, width, 3), np.uint8)
    for f in range(k.shape[0]):
        canvas = out[f]
        for (a, b), colour in zip(edges, limb_colours):
            if visible[f, a] and visible[f, b]:
                cv2.line(canvas, tuple(fixed[f, a].tolist()), tuple(fixed[f, b].tolist()), colour, thickness,
                         cv2.LINE_AA, _SHIFT)
        for j in np.flatnonzero(visible[f]):
            cv2.circle(canvas, tuple(fixed[f, j].tolist()), radius << _SHIFT, joint_colours[j], -1, cv2.LINE_AA,
                       _SHIFT)
    return out
