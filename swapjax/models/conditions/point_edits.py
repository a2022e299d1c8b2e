"""User edits of tracked semantic points (VideoSwap): removing points and dragging a keyframe point.

Drag (`drag_point`): the user moves point k on keyframe j by (dx, dy); every other frame n moves it by
`A_n · (dx, dy)`, where `A_n` is the linear part of the least-squares affine map taking the nearest tracked
neighbours of k from frame j to frame n (a local affine stand-in for VideoSwap's layered-atlas propagation;
with fewer than 3 non-collinear neighbours visible in both frames the displacement is copied unchanged).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from jaxtyping import Array, Bool


def remove_points(keep: Bool[Array, "b k"] | np.ndarray, points: Sequence[int]) -> np.ndarray:
    """`keep` with the listed point indices set to False (removed points write no features)."""
    keep = np.array(keep, dtype=bool, copy=True)
    bad = [p for p in points if not 0 <= p < keep.shape[-1]]
    if bad:
        raise ValueError(f"remove_points: point indices {bad} are outside [0, K = {keep.shape[-1]})")
    keep[..., list(points)] = False
    return keep


def drag_point(coords: np.ndarray, visible: np.ndarray, point: int, keyframe: int, delta: tuple[float, float], *,
               neighbours: int = 4) -> np.ndarray:
    """Moves `point` by `delta = (dx, dy)` pixels on `keyframe` and by the locally propagated displacement on
    every other frame. `coords [F, K, 2]`, `visible [F, K]` of one video -> new coords `[F, K, 2]` (float64)."""
    coords = np.asarray(coords, np.float64)
    visible = np.asarray(visible, bool)
    frames, k = coords.shape[:2]
    if coords.shape != (frames, k, 2) or visible.shape != (frames, k):
        raise ValueError(f"drag_point: coords {coords.shape} / visible {visible.shape} must be [F, K, 2] / [F, K]")
    if not (0 <= point < k and 0 <= keyframe < frames):
        raise ValueError(f"drag_point: point {point} / keyframe {keyframe} outside K = {k} / F = {frames}")
    d = np.asarray(delta, np.float64)
    out = coords.copy()
    others = np.array([m for m in range(k) if m != point])
    dist = np.linalg.norm(coords[keyframe, others] - coords[keyframe, point], axis=-1) if len(others) else []
    order = others[np.argsort(dist)] if len(others) else others
    for n in range(frames):
        if n == keyframe:
            out[n, point] += d
            continue
        near = [m for m in order if visible[keyframe, m] and visible[n, m]][:neighbours]
        src = np.concatenate([coords[keyframe, near], np.ones((len(near), 1))], axis=1)  # [m, 3]
        if len(near) >= 3 and np.linalg.matrix_rank(src) == 3:
            affine, *_ = np.linalg.lstsq(src, coords[n, near], rcond=None)  # [3, 2]: p_n = [p_j, 1] @ affine
            out[n, point] += d @ affine[:2]  # the displacement moves by the linear part only
        else:
            out[n, point] += d
    return out
