"""What the objectives in `losses.py` read besides the velocity: pixel maps pooled onto the latent grid, the MEAR
weight map, and identity cosines from an image encoder.

Frame grouping follows the Wan VAE (`temporal = 4`, `spatial = 8`): latent frame 0 is pixel frame 0 alone,
latent frame `i ≥ 1` covers pixel frames `4i − 3 .. 4i`, and each latent cell covers an 8x8 pixel block, so
`[B, F, H, W] -> [B, (F − 1)/4 + 1, H/8, W/8]`. Masks are max-pooled (a cell touching the subject is subject);
weight maps are mean-pooled (a cell's weight is the average of its pixels' weights).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

Encode = Callable[[Float[Array, "n h w 3"]], Float[Array, "n e"]]


def check_velocity_shapes(v_pred: jax.Array, v_target: jax.Array) -> None:
    """Raises unless both velocities are the same `[B, f, h, w, C]` latent video."""
    if v_pred.shape != v_target.shape or v_pred.ndim != 5:
        raise ValueError(f"v_pred {tuple(v_pred.shape)} and v_target {tuple(v_target.shape)} must both be "
                         "[B, f, h, w, C] latent videos of the same shape (video frames only, no prefix frames)")


def latent_frame_of_pixel(num_frames: int, temporal: int = 4) -> np.ndarray:
    """`[F]` index of the latent frame each pixel frame folds into: 0, then `ceil(p / temporal)`."""
    return (np.arange(num_frames) + temporal - 1) // temporal


def pool_to_latent(x: Float[Array, "b F H W"], reduce: str = "max", *, temporal: int = 4, spatial: int = 8
                   ) -> Float[Array, "b f h w"]:
    """Pixel map `[B, F, H, W]` -> latent grid `[B, f, h, w]`; `reduce` is "max" (masks) or "mean" (weights)."""
    if reduce not in ("max", "mean"):
        raise ValueError(f"pool_to_latent reduce = {reduce!r}: use 'max' (masks) or 'mean' (weight maps)")
    if x.ndim != 4:
        raise ValueError(f"pixel map has shape {tuple(x.shape)}: expected [B, F, H, W]")
    b, n, hp, wp = x.shape
    if (n - 1) % temporal or hp % spatial or wp % spatial:
        raise ValueError(f"pixel map [B, F, H, W] = {tuple(x.shape)}: F must be 1 mod {temporal} and H, W "
                         f"multiples of {spatial} (the VAE's frame and pixel grouping); crop or pad the video")
    red = jnp.max if reduce == "max" else jnp.mean
    x = x.astype(jnp.float32)
    rest = red(x[:, 1:].reshape(b, (n - 1) // temporal, temporal, hp, wp), axis=2)  # [B, f − 1, H, W]
    frames = jnp.concatenate([x[:, :1], rest], axis=1)  # [B, f, H, W]
    cells = frames.reshape(b, frames.shape[1], hp // spatial, spatial, wp // spatial, spatial)
    return red(cells, axis=(3, 5))  # [B, f, h, w]


# ------------------------------------------------------------------------------------------------ MEAR
def frame_difference(video: Float[Array, "b F H W 3"]) -> Float[Array, "b F H W"]:
    """`D`: per-pixel RGB distance to the previous frame, divided by its maximum over the clip (so in [0, 1]).

    Frame 0 has no previous frame and takes frame 1's difference; a still clip (or a single frame) gives 0.
    """
    v = video.astype(jnp.float32)
    if v.shape[1] < 2:
        return jnp.zeros(v.shape[:-1], jnp.float32)
    step = jnp.sqrt(jnp.sum(jnp.square(v[:, 1:] - v[:, :-1]), axis=-1))  # [B, F − 1, H, W]
    d = jnp.concatenate([step[:, :1], step], axis=1)  # [B, F, H, W]
    peak = jnp.max(d, axis=(1, 2, 3), keepdims=True)  # [B, 1, 1, 1]
    return jnp.where(peak > 0, d / jnp.where(peak > 0, peak, 1.0), 0.0)


def landmark_proximity(landmarks: Float[Array, "b F k 2"], height: int, width: int, sigma: float,
                       valid: Float[Array, "b F k"] | None = None) -> Float[Array, "b F H W"]:
    """`P`: per pixel, the largest `exp(−d² / 2σ²)` over the frame's landmarks, `d` the pixel distance.

    Landmarks are `(x, y)` in pixels (x = column, y = row; pixel `(row i, col j)` sits at `(j, i)`); `valid`
    (1 = present) drops missing ones. Runs as a scan over landmarks, so memory stays `[B, F, H, W]`.
    """
    if landmarks.ndim != 4 or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks have shape {tuple(landmarks.shape)}: expected [B, F, K, 2] (x, y) pixels")
    lm = landmarks.astype(jnp.float32)
    ok = jnp.ones(lm.shape[:-1], jnp.float32) if valid is None else valid.astype(jnp.float32)  # [B, F, K]
    if ok.shape != lm.shape[:-1]:
        raise ValueError(f"landmark_valid has shape {tuple(ok.shape)}: expected [B, F, K] = {lm.shape[:-1]}")
    cols, rows = jnp.arange(width, dtype=jnp.float32), jnp.arange(height, dtype=jnp.float32)
    scale = -0.5 / sigma ** 2

    def one(best, point):
        xy, present = point  # [B, F, 2], [B, F]
        gx = jnp.exp(scale * jnp.square(cols - xy[..., 0:1]))  # [B, F, W]
        gy = jnp.exp(scale * jnp.square(rows - xy[..., 1:2]))  # [B, F, H]
        g = gy[..., :, None] * gx[..., None, :] * present[..., None, None]  # [B, F, H, W]
        return jnp.maximum(best, g), None

    start = jnp.zeros((*lm.shape[:2], height, width), jnp.float32)
    return jax.lax.scan(one, start, (jnp.moveaxis(lm, 2, 0), jnp.moveaxis(ok, 2, 0)))[0]


def mear_pixel_weights(video: Float[Array, "b F H W 3"], landmarks: Float[Array, "b F k 2"] | None, *,
                       alpha: float, beta: float, sigma: float, landmark_valid: Float[Array, "b F k"] | None = None
                       ) -> Float[Array, "b F H W"]:
    """MEAR weights `w = 1 + α·D + β·P` per pixel of the target video (no landmarks: `P = 0`)."""
    if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f"video has shape {tuple(video.shape)}: expected [B, F, H, W, 3]")
    w = 1.0 + alpha * frame_difference(video)  # [B, F, H, W]
    if landmarks is not None:
        if landmarks.shape[:2] != video.shape[:2]:
            raise ValueError(f"landmarks [B, F, K, 2] = {tuple(landmarks.shape)} do not match the video's "
                             f"[B, F] = {tuple(video.shape[:2])}: one landmark set per frame")
        w = w + beta * landmark_proximity(landmarks, video.shape[2], video.shape[3], sigma, landmark_valid)
    return w


def mear_latent_weights(video: Float[Array, "b F H W 3"], landmarks: Float[Array, "b F k 2"] | None, *,
                        alpha: float, beta: float, sigma: float, landmark_valid: Float[Array, "b F k"] | None = None,
                        temporal: int = 4, spatial: int = 8) -> Float[Array, "b f h w"]:
    """`mear_pixel_weights` mean-pooled onto the latent grid `[B, f, h, w]` (what `losses.mear_loss` takes)."""
    w = mear_pixel_weights(video, landmarks, alpha=alpha, beta=beta, sigma=sigma, landmark_valid=landmark_valid)
    return pool_to_latent(w, "mean", temporal=temporal, spatial=spatial)


# -------------------------------------------------------------------------------------- identity cosines
def cosine_similarity(a: Float[Array, "*#n e"], b: Float[Array, "*#n e"], eps: float = 1e-8) -> Float[Array, "*#n"]:
    """Cosine of the last axes, `a·b / max(|a||b|, eps)` (finite, with a gradient, for zero vectors)."""
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    norms = jnp.sqrt(jnp.sum(a * a, axis=-1) * jnp.sum(b * b, axis=-1) + eps ** 2)
    return jnp.sum(a * b, axis=-1) / norms


def frame_identity_cosines(encode: Encode, frames: Float[Array, "b F H W 3"], reference: Float[Array, "b h w 3"]
                           ) -> Float[Array, "b F"]:
    """`cos(E(frame), E(reference))` per frame; `encode` maps `[N, H, W, 3]` to `[N, E]` (e.g.
    `functools.partial(image_encoder.encode_images, encoder)`)."""
    if frames.ndim != 5 or reference.ndim != 4 or frames.shape[0] != reference.shape[0]:
        raise ValueError(f"frames {tuple(frames.shape)} must be [B, F, H, W, 3] and reference "
                         f"{tuple(reference.shape)} [B, H, W, 3] with the same B")
    b, n = frames.shape[:2]
    emb = encode(frames.reshape(b * n, *frames.shape[2:])).reshape(b, n, -1)  # [B, F, E]
    ref = encode(reference)  # [B, E]
    return cosine_similarity(emb, ref[:, None])  # [B, F]


def subject_crops(frames: Float[Array, "b F H W 3"], subject_mask: Float[Array, "b F H W"], size: int,
                  grey: float = 0.0) -> Float[Array, "b F s s 3"]:
    """Each frame's subject on a flat `grey` square, as the training reference shows it (`data/reference.py`):
    pixels outside the mask become `grey`, the square centred on the frame's mask box (side = the box's longer
    side) is resampled to `size x size` (bilinear, antialiased; area outside the frame is `grey`). A frame
    without subject pixels keeps the whole frame (non-uniform scale). Differentiable in `frames`."""
    if frames.ndim != 5 or subject_mask.shape != frames.shape[:-1]:
        raise ValueError(f"frames {tuple(frames.shape)} must be [B, F, H, W, 3] and subject_mask "
                         f"{tuple(subject_mask.shape)} [B, F, H, W]")
    b, n, height, width, _ = frames.shape
    m = (subject_mask > 0).reshape(b * n, height, width)  # [N, H, W]
    x = jnp.where(m[..., None], frames.astype(jnp.float32).reshape(b * n, height, width, 3), grey) - grey

    def box(hit: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:  # [N, L] bool -> first, end (float)
        idx = jnp.arange(length, dtype=jnp.float32)
        first = jnp.min(jnp.where(hit, idx, length), axis=1)
        return first, jnp.max(jnp.where(hit, idx + 1, 0.0), axis=1)

    y0, y1 = box(m.any(axis=2), height)  # [N] each
    x0, x1 = box(m.any(axis=1), width)
    present = y1 > y0
    side = jnp.maximum(y1 - y0, x1 - x0)  # [N]
    top = jnp.where(present, (y0 + y1 - side) / 2, 0.0)
    left = jnp.where(present, (x0 + x1 - side) / 2, 0.0)
    scale_y = size / jnp.where(present, side, float(height))
    scale_x = size / jnp.where(present, side, float(width))

    def one(image, sy, sx, ty, tx):
        return jax.image.scale_and_translate(image, (size, size, 3), (0, 1), jnp.stack([sy, sx]),
                                             jnp.stack([-ty * sy, -tx * sx]), method="linear")

    crops = jax.vmap(one)(x, scale_y, scale_x, top, left) + grey  # [N, s, s, 3]
    return crops.reshape(b, n, size, size, 3)
