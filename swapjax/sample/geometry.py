"""Where the model works: the source frame (or a tunnel crop of it) scaled and padded to a valid model size, and
the way back (docs/design.md, "Sampling").

    geo = plan_geometry((H0, W0), subject_mask, cfg)    # decided once per video
    model_frames = geo.to_model(frames)                 # [F, H, W, 3]: crop, resize, pad (H, W multiples of 16)
    back = geo.from_model(model_frames)                 # [F, y1 - y0, x1 - x0, 3]: unpad, resize back
    out = geo.paste(source, back)                       # the source with the crop box replaced

The crop box is the whole frame unless the mask track's union covers less than `tunnel_threshold` of it;
then the box is the union's bounding box grown by `tunnel_context` of its size on every side (tunnel
inpainting: a small subject is swapped at the full working resolution, then pasted back). Whole frames are
only scaled down (to about `area` pixels), tunnel crops up or down; either keeps the aspect ratio, then pads
bottom and right (edge pixels for images, zeros for masks) to multiples of 16. The frame count is padded to
1 mod 4 by repeating the last frame (`pad_frames`) and cut back afterwards, so the output is exactly as long
as the source.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from swapjax.sample.config import SIZE_MULTIPLE, VAE_FRAMES, SampleConfig


def _ceil_to(x: int, multiple: int) -> int:
    return max(multiple, -(-x // multiple) * multiple)


def vae_frame_count(num_frames: int) -> int:
    """The smallest count `>= num_frames` that the VAE takes (1 mod 4)."""
    return 1 + _ceil_to(max(num_frames - 1, 0), VAE_FRAMES) if num_frames > 1 else 1


def pad_frames(x: np.ndarray, num_frames: int) -> np.ndarray:
    """`[F, ...]` -> `[num_frames, ...]` by repeating the last frame (`num_frames >= F`)."""
    if num_frames < x.shape[0]:
        raise ValueError(f"pad_frames: cannot pad {x.shape[0]} frames down to {num_frames}")
    return np.concatenate([x, np.repeat(x[-1:], num_frames - x.shape[0], axis=0)], axis=0)


def union_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box `(y0, x0, y1, x1)` (exclusive ends) of a track `[F, H, W]` over all frames; None if empty."""
    union = np.asarray(mask).any(axis=0)  # [H, W]
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def tunnel_box(mask: np.ndarray, context: float) -> tuple[int, int, int, int]:
    """The union box of `mask` `[F, H, W]` grown by `context` of its height/width on every side, clipped."""
    y0, x0, y1, x1 = union_box(mask)
    height, width = mask.shape[1:]
    grow_y, grow_x = math.ceil(context * (y1 - y0)), math.ceil(context * (x1 - x0))
    return max(0, y0 - grow_y), max(0, x0 - grow_x), min(height, y1 + grow_y), min(width, x1 + grow_x)


def _resize(frames: np.ndarray, height: int, width: int, *, nearest: bool = False) -> np.ndarray:
    """`[F, h, w, C]` or `[F, h, w]` -> the same at `height x width` (area filter down, cubic up)."""
    if frames.shape[1:3] == (height, width):
        return frames
    if nearest:
        interp = cv2.INTER_NEAREST
    elif frames.shape[1] * frames.shape[2] > height * width:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_CUBIC
    out = [cv2.resize(f, (width, height), interpolation=interp) for f in frames]
    return np.stack(out).reshape((frames.shape[0], height, width) + frames.shape[3:])


def _mask_resize(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Mask `[F, h, w]` -> uint8 `[F, height, width]`: a pixel is on if any source pixel under it is."""
    if mask.shape[1:3] == (height, width):
        return (mask != 0).astype(np.uint8)
    cover = _resize(mask.astype(np.float32), height, width)  # [F, height, width] share of each pixel covered
    if height * width < mask.shape[1] * mask.shape[2]:
        return (cover > 0.0).astype(np.uint8)
    nearest = _resize((mask != 0).astype(np.uint8), height, width, nearest=True)
    return ((cover > 0.5) | (nearest != 0)).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Source frame -> model frame and back (see the module docstring)."""

    source_hw: tuple[int, int]  # (H0, W0)
    box: tuple[int, int, int, int]  # (y0, x0, y1, x1) crop of the source, exclusive ends
    scaled_hw: tuple[int, int]  # the crop resized to this
    model_hw: tuple[int, int]  # scaled_hw padded bottom/right to multiples of 16
    tunnel: bool

    @property
    def box_hw(self) -> tuple[int, int]:
        y0, x0, y1, x1 = self.box
        return y1 - y0, x1 - x0

    def _pad(self, x: np.ndarray, mode: str) -> np.ndarray:
        (h, w), (mh, mw) = self.scaled_hw, self.model_hw
        pad = [(0, 0), (0, mh - h), (0, mw - w)] + [(0, 0)] * (x.ndim - 3)
        return np.pad(x, pad, mode=mode)

    def to_model(self, frames: np.ndarray) -> np.ndarray:
        """Frames `[F, H0, W0, C]` (any dtype) -> `[F, H, W, C]`: crop, resize, pad with edge pixels."""
        y0, x0, y1, x1 = self.box
        crop = np.ascontiguousarray(frames[:, y0:y1, x0:x1])
        return self._pad(_resize(crop, *self.scaled_hw), "edge")

    def points_to_model(self, points: np.ndarray) -> np.ndarray:
        """Keypoints float32 `[F, K, 3]` (x, y in source pixels, visibility) -> the same in model pixels (the crop
        moved to the origin and scaled as `to_model` scales the frames; points outside the crop become invisible)."""
        y0, x0, y1, x1 = self.box
        (h, w), (bh, bw) = self.scaled_hw, self.box_hw
        out = np.asarray(points, np.float32).copy()
        out[..., 0] = (out[..., 0] - x0) * (w / bw)
        out[..., 1] = (out[..., 1] - y0) * (h / bh)
        inside = (out[..., 0] >= 0) & (out[..., 0] < w) & (out[..., 1] >= 0) & (out[..., 1] < h)
        out[..., 2] = np.where(inside, out[..., 2], 0.0)
        return out

    def mask_to_model(self, mask: np.ndarray) -> np.ndarray:
        """Mask track `[F, H0, W0]` -> uint8 `[F, H, W]` (a model pixel is on if it covers any mask pixel)."""
        y0, x0, y1, x1 = self.box
        return self._pad(_mask_resize(mask[:, y0:y1, x0:x1], *self.scaled_hw), "constant")

    def from_model(self, frames: np.ndarray) -> np.ndarray:
        """Model frames `[F, H, W, C]` -> `[F, y1 - y0, x1 - x0, C]` (padding cut, resized to the box)."""
        h, w = self.scaled_hw
        return _resize(np.ascontiguousarray(frames[:, :h, :w]), *self.box_hw)

    def mask_from_model(self, mask: np.ndarray) -> np.ndarray:
        """Model mask `[F, H, W]` -> uint8 `[F, H0, W0]` in source coordinates (zeros outside the box)."""
        h, w = self.scaled_hw
        out = np.zeros((mask.shape[0], *self.source_hw), np.uint8)
        y0, x0, y1, x1 = self.box
        out[:, y0:y1, x0:x1] = _mask_resize(mask[:, :h, :w], *self.box_hw)
        return out

    def paste(self, source: np.ndarray, crop: np.ndarray) -> np.ndarray:
        """A copy of `source` `[F, H0, W0, C]` with the box replaced by `crop` `[F, y1 - y0, x1 - x0, C]`."""
        y0, x0, y1, x1 = self.box
        if crop.shape[1:3] != self.box_hw or crop.shape[0] != source.shape[0]:
            raise ValueError(f"paste: crop {crop.shape} does not fit the box {self.box} of {source.shape}")
        out = source.copy()
        out[:, y0:y1, x0:x1] = crop.astype(source.dtype)
        return out


def plan_geometry(source_hw: tuple[int, int], mask: np.ndarray, cfg: SampleConfig) -> Geometry:
    """Decides crop, scale and padding for a video of `source_hw` (H0, W0) with subject track `mask` `[F, H0, W0]`."""
    height, width = (int(v) for v in source_hw)
    union = np.asarray(mask).any(axis=0)  # [H0, W0]
    tunnel = bool(cfg.tunnel_threshold > 0 and union.any() and union.mean() < cfg.tunnel_threshold)
    box = tunnel_box(mask, cfg.tunnel_context) if tunnel else (0, 0, height, width)
    bh, bw = box[2] - box[0], box[3] - box[1]
    scale = math.sqrt(cfg.area / (bh * bw))
    if not tunnel:
        scale = min(scale, 1.0)  # whole frames are never upsampled
    scaled = (max(1, round(bh * scale)), max(1, round(bw * scale)))
    model = (_ceil_to(scaled[0], SIZE_MULTIPLE), _ceil_to(scaled[1], SIZE_MULTIPLE))
    return Geometry((height, width), box, scaled, model, tunnel)
