"""Fused inputs (docs/design.md, "The swap model"): the swap DiT's input channels, per latent frame, its prefix
frames and the anchor's latent frame.

Video frames, channels-last, in this order (diffusers' Wan I2V order: latents, then [mask, image latent]):

    [ z_t (z) | packed mask (frames_per_latent) | agnostic latent (z) | guide latent (condition_channels) ]

- packed mask, in **Wan I2V's polarity** (1 = known, 0 = hole): `K = 1 - M` of the pixel mask track `M`
  (1 = regenerate); the first frame is repeated `frames_per_latent - 1` more times so the frame count becomes a
  multiple of `frames_per_latent`, each group of frames is folded into channels (channel c of latent frame i =
  padded frame `4i + c`), and space is min-pooled by `pixels_per_latent` (a latent cell is a hole if any of
  its pixels is). With one known first frame and holes elsewhere this is exactly the mask I2V is trained on.
- agnostic latent: the VAE encoding of `V · (1 - M)` (see `agnostic_video`), in the slot of I2V's image latent.
- guide latent: the VAE encoding of a rendered guide video (pose, hands, landmarks; `SwapConfig.condition_channels`
  wide, the config key kept as users type it); zeros if absent. The word *condition* means the optional plug-ins
  of `swapjax.models.conditions` only.

Prefix frames (prepended on the frame axis, see `swapjax.models.swap`) are fully known frames:
`reference_inputs(z_r) = [z_r | 1 | z_r | 0]`; the anchor slot the same, or all zeros (an unknown, empty frame)
for samples whose anchor is absent (dropped in training, or the first window of a long video).

These are the public ways in: each takes array-likes (numpy as well as jax arrays) and returns `jax.Array`s (but
`agnostic_video`, which keeps numpy pixels numpy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Bool, Float

from swapjax.errors import ConfigError

__all__ = ["pack_mask", "agnostic_video", "fuse_video_inputs", "reference_inputs", "anchor_inputs",
           "prefix_inputs", "anchor_index"]


def anchor_index(overlap_frames: int, frames_per_latent: int) -> int:
    """The latent frame of a window that the anchor slot holds: the one covering the same source frames as the
    previous window's last latent frame, `(overlap_frames - 1) / frames_per_latent` (docs/design.md, "Long
    videos"). Needs `overlap_frames = 1 mod frames_per_latent` so windows start on latent-frame boundaries of
    their predecessors; 0 (overlap 1: the next window starts on the previous one's last frame) is the paper's
    "first frame"."""
    if overlap_frames < 1 or (overlap_frames - 1) % frames_per_latent:
        raise ConfigError(f"sample.overlap_frames ({overlap_frames}) must be 1 mod the VAE's {frames_per_latent} frames "
                         f"per latent (e.g. 1, {1 + frames_per_latent}, {1 + 2 * frames_per_latent}) for a model "
                         "with an anchor slot: windows then hand over whole latent frames")
    return (overlap_frames - 1) // frames_per_latent


def pack_mask(mask: Float[ArrayLike, "b F H W"], *, frames_per_latent: int = 4, pixels_per_latent: int = 8
              ) -> Float[Array, "b f h w t"]:
    """Pixel mask track `M` (1 = regenerate) -> packed known-mask `[B, f, H/8, W/8, 4]` in I2V polarity."""
    t, s = frames_per_latent, pixels_per_latent
    if mask.ndim != 4:
        raise ValueError(f"mask has shape {tuple(mask.shape)}: expected [B, F, H, W] (a batch of mask tracks)")
    b, frames, height, width = mask.shape
    if frames % t != 1 % t:
        raise ValueError(f"mask has {frames} frames: need F = 1 mod {t} (e.g. {t + 1}, {4 * t + 1}); trim the clip")
    if height % s or width % s:
        raise ValueError(f"mask is {height}x{width}: height and width must be multiples of {s}; resize or pad")
    known = 1.0 - jnp.asarray(mask, jnp.float32)  # [B, F, H, W]
    padded = jnp.concatenate([jnp.repeat(known[:, :1], t - 1, axis=1), known], axis=1)  # [B, F + t - 1, H, W]
    f, h, w = padded.shape[1] // t, height // s, width // s
    cells = padded.reshape(b, f, t, h, s, w, s).min(axis=(4, 6))  # [B, f, t, h, w]
    return cells.transpose(0, 1, 3, 4, 2)  # [B, f, h, w, t]


def agnostic_video(video: Float[ArrayLike, "b F H W 3"], mask: Float[ArrayLike, "b F H W"]
                   ) -> Float[ArrayLike, "b F H W 3"]:
    """The masked source `V · (1 - M)`: hole pixels set to 0 (mid-grey in [-1, 1]), ready for the VAE. Numpy in,
    numpy out: the sampler keeps a window's pixels on the host, and the VAE moves them to the device chunk by chunk."""
    if video.shape[:-1] != mask.shape:
        raise ValueError(f"video {tuple(video.shape)} and mask {tuple(mask.shape)} differ: the mask must be "
                         "[B, F, H, W] for a video [B, F, H, W, 3]")
    return video * (1.0 - mask[..., None].astype(video.dtype))


def _check_latent(name: str, x: jax.Array, ref_shape: tuple[int, ...], channels: int) -> None:
    if x.ndim != 5 or tuple(x.shape[:4]) != tuple(ref_shape[:4]) or x.shape[-1] != channels:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: expected {(*ref_shape[:4], channels)} (the noisy "
                         "latent's [B, f, h, w] and its own channel count)")


def fuse_video_inputs(z_t: Float[ArrayLike, "b f h w z"], mask_packed: Float[ArrayLike, "b f h w t"],
                      agnostic_latent: Float[ArrayLike, "b f h w z"],
                      guide_latent: Float[ArrayLike, "b f h w c"] | None = None,
                      *, condition_channels: int = 16) -> Float[Array, "b f h w ci"]:
    """`[z_t | mask | agnostic | guide]` on channels (guide zeros when `guide_latent` is None)."""
    z_t, mask_packed, agnostic_latent, guide_latent = jax.tree.map(jnp.asarray, (z_t, mask_packed, agnostic_latent,
                                                                                 guide_latent))
    if z_t.ndim != 5:
        raise ValueError(f"z_t has shape {tuple(z_t.shape)}: expected a latent video [B, f, h, w, C]")
    _check_latent("mask_packed", mask_packed, z_t.shape, mask_packed.shape[-1])
    _check_latent("agnostic_latent", agnostic_latent, z_t.shape, z_t.shape[-1])
    if guide_latent is None:
        guide_latent = jnp.zeros((*z_t.shape[:4], condition_channels), z_t.dtype)  # [B, f, h, w, Cc]
    _check_latent("guide_latent", guide_latent, z_t.shape, condition_channels)
    parts = [z_t, mask_packed, agnostic_latent, guide_latent]
    return jnp.concatenate([p.astype(z_t.dtype) for p in parts], axis=-1)  # [B, f, h, w, Ci]


def reference_inputs(z_r: Float[ArrayLike, "b 1 h w z"], *, mask_channels: int = 4, condition_channels: int = 16
                     ) -> Float[Array, "b 1 h w ci"]:
    """A clean, fully known frame `[z_r | 1 | z_r | 0]` (the reference slot; the anchor slot when present)."""
    z_r = jnp.asarray(z_r)
    if z_r.ndim != 5 or z_r.shape[1] != 1:
        raise ValueError(f"reference latent has shape {tuple(z_r.shape)}: expected one latent frame [B, 1, h, w, C] "
                         "(VAE-encode the reference image as a 1-frame video)")
    ones = jnp.ones((*z_r.shape[:4], mask_channels), z_r.dtype)
    zeros = jnp.zeros((*z_r.shape[:4], condition_channels), z_r.dtype)
    return jnp.concatenate([z_r, ones, z_r, zeros], axis=-1)  # [B, 1, h, w, Ci]


def anchor_inputs(z_a: Float[ArrayLike, "b 1 h w z"], present: Bool[ArrayLike, "b"] | None = None, *,
                  mask_channels: int = 4, condition_channels: int = 16) -> Float[Array, "b 1 h w ci"]:
    """Anchor slot: `reference_inputs(z_a)` where `present` (default: all), all zeros (unknown) elsewhere."""
    known = reference_inputs(z_a, mask_channels=mask_channels, condition_channels=condition_channels)
    if present is None:
        return known
    present = jnp.asarray(present, bool)
    if present.shape != (z_a.shape[0],):
        raise ValueError(f"anchor present has shape {tuple(present.shape)}: expected one flag per sample "
                         f"({z_a.shape[0]},)")
    return jnp.where(present[:, None, None, None, None], known, jnp.zeros_like(known))


def prefix_inputs(z_r: Float[ArrayLike, "b 1 h w z"] | None, z_a: Float[ArrayLike, "b 1 h w z"] | None = None,
                  anchor_present: Bool[ArrayLike, "b"] | None = None, *, mask_channels: int = 4,
                  condition_channels: int = 16) -> Float[Array, "b p h w ci"]:
    """The prefix frames in order (reference, then anchor) `[B, P, h, w, Ci]`; pass the slots your config has."""
    kw = dict(mask_channels=mask_channels, condition_channels=condition_channels)
    frames = []
    if z_r is not None:
        frames.append(reference_inputs(z_r, **kw))
    if z_a is not None:
        frames.append(anchor_inputs(z_a, anchor_present, **kw))
    if not frames:
        raise ValueError("prefix_inputs: neither a reference nor an anchor latent was given")
    return jnp.concatenate(frames, axis=1)  # [B, P, h, w, Ci]
