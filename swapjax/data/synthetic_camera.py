"""Camera and lighting of the synthetic dataset (`synthetic_assets.CAMERA_KINDS`, `LIGHTING_KINDS`).

A camera is a per-frame similarity of the whole scene, `p = s_f * q + shift_f` (scene pixel q -> frame pixel
p): the background is rendered on a canvas `PAD` wider on every side and warped per frame, and every sprite is
drawn at its transformed place and size, so the subject mask stays the exact set of pixels the subject painted and
the keypoints move with the same transform (`synthetic.py`).
- `still`: identity; `pan`: a slow shift of the frame (up to 10 % of its size over the clip);
- `zoom`: a scale `s_f = s1 ** t` (s1 in [0.8, 0.9] or [1.12, 1.25]) about a point near the centre;
- `shake`: small random offsets per frame (1-2.5 % of the shorter side, drawn from a seed).
A lighting is a per-frame RGB gain applied to the finished frame (background and sprites alike):
- `constant`: 1; `ramp`: a global gain going from g0 to g1 over the clip (one in [0.75, 0.9], the other in
  [1.05, 1.2]) with a slight tint growing with it (each channel's gain stays monotonic); `flicker`: 1 + small
  per-frame noise (3-7 %).
"""

from __future__ import annotations

import dataclasses

import numpy as np

PAD = 0.25  # the background canvas reaches this fraction of the frame past each edge: covers every camera below


@dataclasses.dataclass(frozen=True)
class Camera:
    """kind and its parameters (see `transform`)."""

    kind: str
    params: tuple[float, ...] = ()

    def transform(self, t: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(scale `[T]`, shift `[T, 2]` in pixels) at times `t` `[T]`: scene pixel q -> `scale * q + shift`."""
        t = np.asarray(t, np.float64)
        centre = np.array([(width - 1) / 2, (height - 1) / 2])
        scale, offset = np.ones(len(t)), np.zeros((len(t), 2))
        if self.kind == "pan":  # (dx, dy): the frame moves by (t - 1/2) * (dx * W, dy * H)
            offset = (t[:, None] - 0.5) * np.array(self.params[:2]) * (width, height)
        elif self.kind == "zoom":  # (s1, fx, fy): scale s1 ** t about the focus centre + (fx * W, fy * H)
            scale = self.params[0] ** t
            focus = centre + np.array(self.params[1:3]) * (width, height)
            offset = (1.0 - scale)[:, None] * (focus - centre)
        elif self.kind == "shake":  # (amplitude, seed)
            noise = np.random.default_rng(int(self.params[1])).standard_normal((len(t), 2)).clip(-2.0, 2.0)
            offset = self.params[0] * min(height, width) * noise
        elif self.kind != "still":
            raise ValueError(f"camera kind {self.kind!r} is not still, pan, zoom or shake")
        return scale, centre * (1.0 - scale)[:, None] + offset


@dataclasses.dataclass(frozen=True)
class Lighting:
    """kind and its parameters (see `gains`)."""

    kind: str
    params: tuple[float, ...] = ()

    def gains(self, t: np.ndarray) -> np.ndarray:
        """Per-frame RGB gains at times `t` `[T]`: float32 `[T, 3]`."""
        t = np.asarray(t, np.float64)[:, None]  # [T, 1]
        if self.kind == "constant":
            out = np.ones((len(t), 3))
        elif self.kind == "ramp":  # (g0, g1, tint r, g, b)
            g0, g1, tint = self.params[0], self.params[1], np.array(self.params[2:5])
            out = (g0 + (g1 - g0) * t) * (1.0 + tint * t)
        elif self.kind == "flicker":  # (amplitude, seed)
            noise = np.random.default_rng(int(self.params[1])).standard_normal((len(t), 1)).clip(-2.0, 2.0)
            out = np.repeat(1.0 + self.params[0] * noise, 3, axis=1)
        else:
            raise ValueError(f"lighting kind {self.kind!r} is not constant, ramp or flicker")
        return out.astype(np.float32)

    def apply(self, video: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The lit video: uint8 `[F, H, W, 3]` -> uint8 `[F, H, W, 3]` (unchanged when constant)."""
        if self.kind == "constant":
            return video
        lit = video.astype(np.float32) * self.gains(t)[:, None, None, :]
        return np.clip(np.round(lit), 0, 255).astype(np.uint8)


def sample_camera(rng: np.random.Generator, kind: str) -> Camera:
    """A random camera of `kind`."""
    if kind == "still":
        return Camera("still")
    if kind == "pan":
        return Camera("pan", tuple(float(x) for x in rng.uniform(-0.1, 0.1, 2)))
    if kind == "zoom":
        s1 = rng.uniform(0.8, 0.9) if rng.random() < 0.5 else rng.uniform(1.12, 1.25)
        return Camera("zoom", (float(s1), *(float(x) for x in rng.uniform(-0.1, 0.1, 2))))
    if kind == "shake":
        return Camera("shake", (float(rng.uniform(0.01, 0.025)), float(rng.integers(2**31))))
    raise ValueError(f"camera kind {kind!r} is not still, pan, zoom or shake")


def sample_lighting(rng: np.random.Generator, kind: str) -> Lighting:
    """A random lighting of `kind`."""
    if kind == "constant":
        return Lighting("constant")
    if kind == "ramp":
        low, high = rng.uniform(0.75, 0.9), rng.uniform(1.05, 1.2)
        g0, g1 = (low, high) if rng.random() < 0.5 else (high, low)
        return Lighting("ramp", (float(g0), float(g1), *(float(x) for x in rng.uniform(-0.05, 0.05, 3))))
    if kind == "flicker":
        return Lighting("flicker", (float(rng.uniform(0.03, 0.07)), float(rng.integers(2**31))))
    raise ValueError(f"lighting kind {kind!r} is not constant, ramp or flicker")
