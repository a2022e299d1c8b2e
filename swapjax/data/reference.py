"""Reference images: one preparation for training and sampling (DreamSwapV's `r' = v_i * m_i`).

    square = prepare_reference(image, mask, size=cfg.data.ref_size)   # uint8 [S, S, 3]
    frame = models.reference_frame.fit_reference(...)                  # the frame-sized image the VAE encodes

Training (`reference_crop`) hands it a video frame and the subject's mask; sampling hands it the user's image
with a reference mask, or the alpha channel of an RGBA cut-out, or nothing (then `subject_cutout` separates
the subject from a plain background). Either way the subject is kept, everything else is painted neutral
grey (128), the subject's box is cropped, padded to a square on grey and resized to `size` with the same
filter, so a reference cut from the training video and a user's picture, however it is framed, look alike to
the model (docs/design.md, "Our choices").
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

NEUTRAL_GREY = 128
BACKGROUND_TOLERANCE = 32.0  # RGB distance (0..255 per channel) from the background colour still counted as it
BORDER_SHARE = 0.5  # the background colour must cover at least this share of the image border
MIN_PIECE = 0.1  # subject pieces smaller than this share of the largest piece are dropped (specks, noise)
EDGE_BAND = 2  # pixels: the subject's outline, blended with the background, joins it up to this far out ...
EDGE_FLOOR = 0.5  # ... where a pixel differs from the background by more than this (or 3x the border's noise)


class ReferenceCutoutWarning(UserWarning):
    """The automatic cut-out could not tell subject from background and used the whole image."""


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


def has_cutout_alpha(image) -> bool:
    """True for an RGBA image whose alpha marks a cut-out (some pixel not fully opaque)."""
    img = np.asarray(image)
    return img.ndim == 3 and img.shape[-1] == 4 and bool((img[..., 3] < 255).any())


def prepare_reference(image, mask=None, *, size: int, name: str = "reference image", with_alpha: bool = False):
    """uint8 `[H, W, 3 | 4]` (+ mask `[H, W]`, nonzero = subject) -> uint8 `[S, S, 3]`, `S = size`.

    The subject is `mask` when given, else the alpha channel of an RGBA cut-out (`alpha > 0`, the RGB
    composited onto grey), else `subject_cutout(image)`. Pixels outside the subject become neutral grey, the
    subject's box is cropped, centred on a grey square and resized to `size` (area filter down, linear up).
    `with_alpha` also returns the subject's coverage of the square, float32 `[S, S]` (training's jitter reads it).
    """
    rgb = composite_on_grey(image)  # [H, W, 3]
    if mask is not None:
        subject = np.asarray(mask) != 0
        if subject.shape != rgb.shape[:2]:
            raise ValueError(f"{name}: its mask is {subject.shape} but the image is {rgb.shape[:2]}: pass a mask of "
                             "the image's height and width")
        if not subject.any():
            raise ValueError(f"{name}: its mask marks no pixel: mark the subject with 1")
    elif has_cutout_alpha(image):
        subject = np.asarray(image)[..., 3] > 0
        if not subject.any():
            raise ValueError(f"{name} is fully transparent (alpha 0 everywhere): pass an image showing the subject")
    else:
        subject = subject_cutout(rgb, name)
    ys, xs = np.nonzero(subject)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop_m = subject[y0:y1, x0:x1]  # [h, w]
    crop = np.where(crop_m[..., None], rgb[y0:y1, x0:x1], NEUTRAL_GREY).astype(np.uint8)  # [h, w, 3]
    side = max(crop.shape[:2])
    canvas = np.full((side, side, 3), NEUTRAL_GREY, np.uint8)
    oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    canvas[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    ref = cv2.resize(canvas, (size, size), interpolation=interp)  # [S, S, 3]
    if not with_alpha:
        return ref
    alpha = np.zeros((side, side), np.float32)
    alpha[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop_m
    return ref, cv2.resize(alpha, (size, size), interpolation=interp)  # [S, S, 3], [S, S]


def subject_cutout(rgb, name: str = "reference image") -> np.ndarray:
    """bool `[H, W]`: the subject of an RGB picture on a plain background (docs/design.md, "Our choices").

    The background colour is the dominant colour of the image's outermost pixels; pixels farther than
    `BACKGROUND_TOLERANCE` from it are subject candidates; the largest 8-connected piece and every piece of at
    least `MIN_PIECE` of its area are kept; up to `EDGE_BAND` pixels out from them, pixels that still differ from
    the background (by more than `EDGE_FLOOR`, or three times the median distance of the background's border
    pixels when larger: its noise) join them (the outline blended with the background; shadows and shading
    farther out do not), and background enclosed by them (not connected to the border) is filled in. When the
    border is not plain (under `BORDER_SHARE` of it matches the background colour) or nothing differs from it,
    a one-line `ReferenceCutoutWarning` says so and the whole image is the subject.
    """
    x = np.asarray(rgb).astype(np.float32)  # [H, W, 3]
    border = np.concatenate([x[0], x[-1], x[1:-1, 0], x[1:-1, -1]])  # [n, 3]
    background = _dominant_colour(border)  # [3]
    spread = np.linalg.norm(border - background, axis=-1)  # [n]
    plain = spread <= BACKGROUND_TOLERANCE
    share = float(plain.mean())
    whole = np.ones(x.shape[:2], bool)
    fix = "pass a reference mask (sample.py --reference-mask, job key \"reference_mask\") or an RGBA cut-out"
    if share < BORDER_SHARE:
        _warn(f"{name}: its border is not one plain colour (the commonest colour covers {share:.0%} of it), so the "
              f"subject cannot be cut out automatically and the whole image is used: {fix}")
        return whole
    distance = np.linalg.norm(x - background, axis=-1)  # [H, W]
    far = (distance > BACKGROUND_TOLERANCE).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(far, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]  # [pieces]
    if areas.size == 0:
        _warn(f"{name}: no pixel differs from its plain background colour {np.round(background).astype(int).tolist()}"
              f", so the whole image is used: {fix}")
        return whole
    subject = np.isin(labels, 1 + np.flatnonzero(areas >= MIN_PIECE * areas.max()))  # [H, W]
    floor = max(EDGE_FLOOR, 3.0 * float(np.median(spread[plain])))
    differs = distance > floor  # [H, W]
    for _ in range(EDGE_BAND):  # grow one pixel at a time through pixels that differ: the blended outline
        subject = (cv2.dilate(subject.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & (differs | subject)
    _, outside = cv2.connectedComponents((~subject).astype(np.uint8), connectivity=4)  # 0 on the subject
    edge = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
    return ~np.isin(outside, edge[edge > 0])  # the subject and the holes inside it


def _dominant_colour(pixels: np.ndarray) -> np.ndarray:
    """float32 `[3]`: the median of the pixels near the commonest colour (32 levels per bin) of `[n, 3]`."""
    bins = (pixels // 32).astype(np.int64)  # [n, 3], 8 bins per channel
    codes = bins[:, 0] * 64 + bins[:, 1] * 8 + bins[:, 2]  # [n]
    first = np.median(pixels[codes == np.bincount(codes).argmax()], axis=0)  # [3]
    near = np.linalg.norm(pixels - first, axis=-1) <= BACKGROUND_TOLERANCE  # [n], includes the bin's pixels
    return np.median(pixels[near], axis=0).astype(np.float32)


def _warn(message: str) -> None:
    warnings.warn(message, ReferenceCutoutWarning, stacklevel=3)


def reference_crop(video, mask, rng: np.random.Generator, size: int, jitter: bool = False) -> np.ndarray:
    """Training reference `r' = v_i * m_i`: uint8 video `[F, H, W, 3]` + mask `[F, H, W]` -> uint8 `[S, S, 3]`.

    Picks a frame with subject pixels at random and prepares it with `prepare_reference(frame, mask)`, the
    function sampling uses for a user's reference. With `jitter` (stage 2) adds a random scale (0.7-1.15) and
    shift (up to 10 % of the side), a horizontal flip (p = 0.5) and brightness/contrast/saturation jitter
    (+-10 %) of the subject pixels (`_jitter`); the background stays grey.
    """
    v, m = np.asarray(video), np.asarray(mask) != 0
    if v.ndim != 4 or v.shape[-1] != 3 or m.shape != v.shape[:3]:
        raise ValueError(f"reference_crop: video {v.shape} and mask {m.shape} must be [F, H, W, 3] and [F, H, W]")
    frames = np.flatnonzero(m.any(axis=(1, 2)))
    if frames.size == 0:
        raise ValueError("reference_crop: the mask is empty in every frame: pass a mask that marks the subject")
    i = int(rng.choice(frames))
    if not jitter:
        return prepare_reference(v[i], m[i], size=size)
    ref, alpha = prepare_reference(v[i], m[i], size=size, with_alpha=True)  # [S, S, 3], [S, S]
    return _jitter(ref, alpha, rng)


def _jitter(ref: np.ndarray, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stage-2 jitter of a prepared reference uint8 `[S, S, 3]` with its subject weight `alpha` float `[S, S]`:
    scale about the centre by U[0.7, 1.15], shift by up to 10 % of the side along each axis (one affine warp,
    grey shows where the square is left), flip left-right (p = 0.5), and jitter saturation, contrast and
    brightness (+-10 %) of the subject pixels (alpha-weighted). Returns uint8 `[S, S, 3]`."""
    size = ref.shape[0]
    zoom = rng.uniform(0.7, 1.15)
    warp = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), 0.0, zoom)  # [2, 3]
    warp[:, 2] += rng.uniform(-0.1, 0.1, 2) * size  # position jitter (pixels)
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
