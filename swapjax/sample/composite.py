"""Strict background preservation: outside the dilated, feathered mask the result is the source, to the pixel.

    alpha = composite_alpha(mask, dilate, feather)   # float32 [F, H, W]: 0 outside dilate(mask), 1 deep inside
    out = composite(source, generated, alpha)         # uint8 [F, H, W, 3]

Where alpha is 0 the source pixel is copied (not recomputed), so no rounding can touch it; where it is 1 the
generated pixel is copied; in between the two are mixed and rounded once. `feather(dilate(m, r), r)` is 1 over
all of `m`, so with equal radii the whole mask is generated and the blend lies in the ring around it.
"""

from __future__ import annotations

import numpy as np

from swapjax.data import masks


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Pixels in [-1, 1] (any float array) -> uint8 0..255, rounded."""
    return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def to_unit(x: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 in [-1, 1]."""
    return np.asarray(x).astype(np.float32) / 127.5 - 1.0


def composite_alpha(mask: np.ndarray, dilate: int, feather: int) -> np.ndarray:
    """Blend weight of the generated video: `feather(dilate(mask, dilate), feather)`, float32 `[F, H, W]`."""
    return masks.feather(masks.dilate(mask, dilate), feather)


def composite(source: np.ndarray, generated: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 `[F, H, W, 3]` frames: the source where `alpha` is 0, the generated video where it is 1, mixed
    (rounded once) in between."""
    source, generated = np.asarray(source), np.asarray(generated)
    if source.shape != generated.shape or source.shape[:-1] != alpha.shape or source.dtype != np.uint8:
        raise ValueError(f"composite: source {source.shape} {source.dtype}, generated {generated.shape} and alpha "
                         f"{alpha.shape} must be uint8 [F, H, W, 3] and [F, H, W]")
    a = alpha[..., None].astype(np.float32)  # [F, H, W, 1]
    mixed = np.round(a * generated.astype(np.float32) + (1.0 - a) * source.astype(np.float32))
    mixed = np.clip(mixed, 0, 255).astype(np.uint8)
    out = np.where(a >= 1.0, generated, mixed)
    return np.where(a <= 0.0, source, out)


def composite_float(source: np.ndarray, generated: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The same blend on float pixels (`[..., 3]` with alpha `[...]`), for the anchor frame of the next window."""
    a = np.asarray(alpha, np.float32)[..., None]
    return a * np.asarray(generated, np.float32) + (1.0 - a) * np.asarray(source, np.float32)
