"""Reference images: the training crop `r' = v_i * m_i` (DreamSwapV) and user references onto neutral grey.

Both kinds end up the same way: the subject on a flat neutral grey (128) square, so a reference cut from the
training video and a user's cut-out PNG look alike to the model (docs/design.md, "Conventions" and "Masks").
"""

from __future__ import annotations

import cv2
import numpy as np

NEUTRAL_GREY = 128


def composite_on_grey(image) -> np.ndarray:
    """uint8 `[H, W, 3 | 4]` -> uint8 `[H, W, 3]`: RGB is copied, RGBA is alpha-composited onto grey 128."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise ValueError(f"reference image has shape {img.shape}, expected [H, W, 3] (RGB) or [H, W, 4] (RGBA): "
                         "convert it to an RGB or RGBA image")
    if img.dtype != np.uint8:
        raise ValueError(f"reference image has dtype {img.dtype}, expected uint8: pass 8-bit pixels (0..255)")
    if img.shape[-1] == 3:
        return img.copy()
    rgb, alpha = img[..., :3].astype(np.uint32), img[..., 3:].astype(np.uint32)  # [H, W, 3], [H, W, 1]
    mixed = rgb * alpha + NEUTRAL_GREY * (255 - alpha)
    return ((mixed + 127) // 255).astype(np.uint8)


def reference_crop(video, mask, rng: np.random.Generator, size: int, jitter: bool = False) -> np.ndarray:
    """Training reference `r' = v_i * m_i`: uint8 video `[F, H, W, 3]` + mask `[F, H, W]` -> uint8 `[S, S, 3]`.

    Picks a frame with subject pixels at random, keeps the subject and paints the rest neutral grey, crops the
    subject's box, pads it to a square on grey and resizes it to `size`. With `jitter` (stage 2) adds a light
    random zoom (0.85-1.15), a horizontal flip (p = 0.5) and brightness/contrast/saturation jitter (+-10 %)
    of the subject pixels; the background stays grey.
    """
    v, m = np.asarray(video), np.asarray(mask) != 0
    if v.ndim != 4 or v.shape[-1] != 3 or m.shape != v.shape[:3]:
        raise ValueError(f"reference_crop: video {v.shape} and mask {m.shape} must be [F, H, W, 3] and [F, H, W]")
    frames = np.flatnonzero(m.any(axis=(1, 2)))
    if frames.size == 0:
        raise ValueError("reference_crop: the mask is empty in every frame: pass a mask that marks the subject")
    i = int(rng.choice(frames))
    ys, xs = np.nonzero(m[i])
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop_m = m[i, y0:y1, x0:x1]  # [h, w]
    crop = np.where(crop_m[..., None], v[i, y0:y1, x0:x1], NEUTRAL_GREY).astype(np.uint8)  # [h, w, 3]
    side = max(crop.shape[:2])
    canvas = np.full((side, side, 3), NEUTRAL_GREY, np.uint8)
    alpha = np.zeros((side, side), np.float32)
    oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    canvas[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
    alpha[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop_m
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    ref = cv2.resize(canvas, (size, size), interpolation=interp)  # [S, S, 3]
    if not jitter:
        return ref
    alpha = cv2.resize(alpha, (size, size), interpolation=interp)  # [S, S]
    return _jitter(ref, alpha, rng)


def _jitter(ref: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zoom about the centre, maybe flip, and jitter the colours of the subject pixels (alpha-weighted)."""
    size = ref.shape[0]
    zoom = rng.uniform(0.85, 1.15)
    warp = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), 0.0, zoom)  # [2, 3]
    ref = cv2.warpAffine(ref, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(NEUTRAL_GREY,) * 3)
    alpha = cv2.warpAffine(alpha, warp, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
    if rng.random() < 0.5:
        ref, alpha = ref[:, ::-1], alpha[:, ::-1]
    x = ref.astype(np.float32)
    a = alpha[..., None]  # [S, S, 1]
    weight = max(float(a.sum()), 1.0)
    mean = (x * a).sum(axis=(0, 1)) / weight  # [3]
    grey = x.mean(axis=-1, keepdims=True)  # [S, S, 1]
    y = grey + rng.uniform(0.9, 1.1) * (x - grey)  # saturation
    y = mean + rng.uniform(0.9, 1.1) * (y - mean)  # contrast about the subject mean
    y = y * rng.uniform(0.9, 1.1)  # brightness
    out = a * y + (1.0 - a) * x
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
