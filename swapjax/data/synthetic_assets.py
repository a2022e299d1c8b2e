"""Appearance of the synthetic dataset: procedural textures and sprite outlines, both drawn from a seed.

A `TextureSpec` renders at any size (coordinates are fractions of the longer side, so a texture looks the same
at 64 or 512 pixels); a `ShapeSpec` gives closed outlines in sprite units (inside the square [-1, 1]^2, y down),
scaled and rotated by the sprite's motion when rendered (see `synthetic.py`).
"""

from __future__ import annotations

import colorsys
import dataclasses

import cv2
import numpy as np

TEXTURE_KINDS = ("flat", "gradient", "stripes", "checks", "noise", "blobs")
BACKGROUND_KINDS = ("gradient", "stripes", "checks", "noise", "blobs")
SHAPE_KINDS = ("ellipse", "polygon", "star", "rounded_box", "cross", "ring", "blob")


@dataclasses.dataclass(frozen=True)
class TextureSpec:
    """kind, three RGB colours (0..255), spatial frequency (cycles across the longer side), angle, noise seed."""

    kind: str
    colours: tuple[tuple[float, float, float], ...]
    freq: float
    angle: float
    seed: int


@dataclasses.dataclass(frozen=True)
class ShapeSpec:
    """kind and its parameters (see `outline`)."""

    kind: str
    params: tuple[float, ...]


def random_colours(rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
    """Three colours around a random hue (analogous or complementary), saturated enough to tell apart."""
    hue = rng.random()
    offsets = rng.choice([0.08, 0.33, 0.5]) * np.array([0.0, 1.0, -1.0])
    out = []
    for off in offsets:
        sat, val = rng.uniform(0.35, 1.0), rng.uniform(0.3, 1.0)
        out.append(tuple(255.0 * c for c in colorsys.hsv_to_rgb((hue + off) % 1.0, sat, val)))
    return tuple(out)


def sample_texture(rng: np.random.Generator, kinds: tuple[str, ...] = TEXTURE_KINDS) -> TextureSpec:
    """A random texture of one of `kinds`."""
    kind = str(rng.choice(kinds))
    freq = float(rng.uniform(2.0, 9.0)) if kind in ("stripes", "checks") else float(rng.uniform(0.6, 1.4))
    return TextureSpec(kind, random_colours(rng), freq, float(rng.uniform(0.0, np.pi)), int(rng.integers(2**31)))


def render_texture(spec: TextureSpec, height: int, width: int) -> np.ndarray:
    """The texture over a `height x width` grid: uint8 `[H, W, 3]`."""
    rng = np.random.default_rng(spec.seed)
    side = float(max(height, width))
    ys = ((np.arange(height, dtype=np.float32) + 0.5 - height / 2) / side)[:, None]  # [H, 1] in about +-0.5
    xs = ((np.arange(width, dtype=np.float32) + 0.5 - width / 2) / side)[None, :]  # [1, W]
    cos, sin = np.float32(np.cos(spec.angle)), np.float32(np.sin(spec.angle))
    u, v = xs * cos + ys * sin, ys * cos - xs * sin  # [H, W] rotated coordinates
    c = np.asarray(spec.colours, np.float32)  # [3, 3]
    if spec.kind == "flat":
        out = np.broadcast_to(c[0], (height, width, 3))
    elif spec.kind == "gradient":
        t = np.clip(0.5 + u * spec.freq, 0.0, 1.0)[..., None]  # [H, W, 1]
        out = np.where(t < 0.5, c[0] + (c[1] - c[0]) * 2 * t, c[1] + (c[2] - c[1]) * (2 * t - 1))
    elif spec.kind == "stripes":
        t = 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * np.pi * spec.freq * u + spec.seed % 7))[..., None]
        out = c[0] + (c[1] - c[0]) * t
    elif spec.kind == "checks":
        odd = ((np.floor(u * spec.freq) + np.floor(v * spec.freq)) % 2)[..., None]  # [H, W, 1]
        out = c[0] + (c[1] - c[0]) * odd
    elif spec.kind == "noise":
        low = _smooth_field(rng, int(rng.integers(3, 9)), height, width, 1)  # [H, W, 1] in [0, 1]
        out = c[0] + (c[1] - c[0]) * low + rng.normal(0.0, rng.uniform(3, 12), (height, width, 3))
    elif spec.kind == "blobs":  # a smooth "photo-like" field mixing the three colours
        weights = _smooth_field(rng, int(rng.integers(2, 6)), height, width, 3) ** 3  # [H, W, 3]
        out = (weights / (weights.sum(-1, keepdims=True) + 1e-6)) @ c  # [H, W, 3]
        detail = _smooth_field(rng, int(rng.integers(8, 20)), height, width, 1) - 0.5
        out = out + 40.0 * detail
    else:
        raise ValueError(f"texture kind {spec.kind!r} is not one of {TEXTURE_KINDS}")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _smooth_field(rng: np.random.Generator, cells: int, height: int, width: int, channels: int) -> np.ndarray:
    """Random values on a `cells`-wide lattice, bicubically upsampled: float32 `[H, W, channels]` in [0, 1]."""
    aspect = height / max(width, 1)
    low = rng.random((max(2, round(cells * aspect)) + 1, cells + 1, channels)).astype(np.float32)
    up = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(up.reshape(height, width, channels), 0.0, 1.0)


def sample_shape(rng: np.random.Generator, exclude: str | None = None) -> ShapeSpec:
    """A random sprite outline, of a kind other than `exclude` when given."""
    kind = str(rng.choice([k for k in SHAPE_KINDS if k != exclude]))
    if kind == "ellipse":
        params = (rng.uniform(0.55, 1.0),)  # aspect
    elif kind == "polygon":
        n = int(rng.integers(3, 9))
        params = (n, *rng.uniform(0.75, 1.0, n), *rng.uniform(-0.25, 0.25, n))  # sides, radii, angle jitters
    elif kind == "star":
        params = (int(rng.integers(4, 8)), rng.uniform(0.4, 0.6))  # points, inner radius
    elif kind == "rounded_box":
        params = (rng.uniform(0.5, 1.0), rng.uniform(0.1, 0.45))  # aspect, corner radius (fraction)
    elif kind == "cross":
        params = (rng.uniform(0.3, 0.5),)  # arm half width
    elif kind == "ring":
        params = (rng.uniform(0.7, 1.0), rng.uniform(0.35, 0.55))  # aspect, hole radius
    else:  # blob: harmonics 2..4 of the radius
        params = (*rng.uniform(0.0, 0.15, 3), *rng.uniform(0.0, 2 * np.pi, 3))
    return ShapeSpec(kind, tuple(float(p) for p in params))


def outline(shape: ShapeSpec) -> list[np.ndarray]:
    """Closed contours of the shape in sprite units: list of float64 `[N, 2]` (x, y); holes as extra contours."""
    p = shape.params
    phi = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    circle = np.stack([np.cos(phi), np.sin(phi)], axis=1)  # [64, 2]
    if shape.kind == "ellipse":
        return [circle * (1.0, p[0])]
    if shape.kind == "polygon":
        n = int(p[0])
        radii, jitter = np.array(p[1:1 + n]), np.array(p[1 + n:1 + 2 * n])
        ang = (np.arange(n) + jitter) * 2 * np.pi / n
        return [np.stack([radii * np.cos(ang), radii * np.sin(ang)], axis=1)]
    if shape.kind == "star":
        n = int(p[0])
        ang = np.arange(2 * n) * np.pi / n - np.pi / 2
        radii = np.where(np.arange(2 * n) % 2 == 0, 1.0, p[1])
        return [np.stack([radii * np.cos(ang), radii * np.sin(ang)], axis=1)]
    if shape.kind == "rounded_box":
        hw, hh = 0.9, 0.9 * p[0]
        r = p[1] * min(hw, hh)
        arc = np.linspace(0.0, np.pi / 2, 8)
        corners = []
        for k, (sx, sy) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):  # one quarter arc per corner
            a = arc + k * np.pi / 2
            corners.append(np.stack([sx * (hw - r) + r * np.cos(a), sy * (hh - r) + r * np.sin(a)], axis=1))
        return [np.concatenate(corners)]
    if shape.kind == "cross":
        w, e = p[0], 0.95
        return [np.array([[-w, -e], [w, -e], [w, -w], [e, -w], [e, w], [w, w], [w, e], [-w, e], [-w, w], [-e, w],
                          [-e, -w], [-w, -w]])]
    if shape.kind == "ring":
        outer = circle * (1.0, p[0])
        return [outer, outer * p[1]]
    if shape.kind == "blob":
        radius = 1.0 + sum(a * np.cos((k + 2) * phi + ph) for k, (a, ph) in enumerate(zip(p[:3], p[3:])))
        return [circle * (radius / radius.max())[:, None]]
    raise ValueError(f"shape kind {shape.kind!r} is not one of {SHAPE_KINDS}")
