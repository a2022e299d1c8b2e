"""Appearance of the synthetic dataset: procedural textures and sprite outlines, both drawn from a seed, and the
registry of every named family the synthetic world draws from (`FAMILIES`).

A `TextureSpec` renders at any size (coordinates are fractions of the longer side, so a texture looks the same
at 64 or 512 pixels); a `ShapeSpec` gives closed outlines in sprite units (inside the square [-1, 1]^2, y down)
at a clip time t in [0, 1] (only `articulated` moves), scaled and rotated by the sprite's motion when rendered
(see `synthetic.py`).
"""

from __future__ import annotations

import colorsys
import dataclasses

import cv2
import numpy as np

TEXTURE_KINDS = ("flat", "gradient", "stripes", "checks", "noise", "blobs", "multicolour")
BACKGROUND_KINDS = ("gradient", "stripes", "checks", "noise", "blobs", "waves", "tiles", "landscape")
SHAPE_KINDS = ("ellipse", "polygon", "star", "rounded_box", "cross", "ring", "blob", "holed", "articulated")
MOTION_KINDS = ("drift", "orbit", "bounce")  # synthetic_motion.py
CAMERA_KINDS = ("still", "pan", "zoom", "shake")  # synthetic_camera.py
LIGHTING_KINDS = ("constant", "ramp", "flicker")  # synthetic_camera.py
# The one registry: category -> family names. A family is named "category:name" ("shape:articulated").
FAMILIES: dict[str, tuple[str, ...]] = {"background": BACKGROUND_KINDS, "texture": TEXTURE_KINDS,
                                        "shape": SHAPE_KINDS, "motion": MOTION_KINDS, "camera": CAMERA_KINDS,
                                        "lighting": LIGHTING_KINDS}
_PERIODIC = ("stripes", "checks", "tiles")  # textures whose `freq` counts cycles across the longer side


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

    @property
    def moves(self) -> bool:
        """Whether the outline changes with the clip time (an articulated body swings its limbs)."""
        return self.kind == "articulated"


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
    """A random texture of one of `kinds` (sprite `TEXTURE_KINDS` or `BACKGROUND_KINDS`: one renderer)."""
    kind = str(rng.choice(kinds))
    freq = float(rng.uniform(2.0, 9.0)) if kind in _PERIODIC else float(rng.uniform(0.6, 1.4))
    return TextureSpec(kind, random_colours(rng), freq, float(rng.uniform(0.0, np.pi)), int(rng.integers(2**31)))


@dataclasses.dataclass(frozen=True)
class _Grid:
    """What every texture kind reads: pixel centres `xs` `[1, W]`, `ys` `[H, 1]` (fractions of the longer side,
    about +-0.5), the rotated coordinates `u`, `v` `[H, W]`, the colours float32 `[3, 3]` and the kind's rng."""

    xs: np.ndarray
    ys: np.ndarray
    u: np.ndarray
    v: np.ndarray
    colours: np.ndarray
    rng: np.random.Generator

    @property
    def shape(self) -> tuple[int, int]:
        return self.ys.shape[0], self.xs.shape[1]


def render_texture(spec: TextureSpec, height: int, width: int) -> np.ndarray:
    """The texture over a `height x width` grid: uint8 `[H, W, 3]`."""
    if spec.kind not in _TEXTURES:
        raise ValueError(f"texture kind {spec.kind!r} is not one of {sorted(_TEXTURES)}")
    side = float(max(height, width))
    ys = ((np.arange(height, dtype=np.float32) + 0.5 - height / 2) / side)[:, None]  # [H, 1] in about +-0.5
    xs = ((np.arange(width, dtype=np.float32) + 0.5 - width / 2) / side)[None, :]  # [1, W]
    cos, sin = np.float32(np.cos(spec.angle)), np.float32(np.sin(spec.angle))
    grid = _Grid(xs, ys, xs * cos + ys * sin, ys * cos - xs * sin, np.asarray(spec.colours, np.float32),
                 np.random.default_rng(spec.seed))
    out = np.broadcast_to(_TEXTURES[spec.kind](spec, grid), (height, width, 3))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _ramp(c: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Colour ramp c0 -> c1 -> c2 over t in [0, 1] `[H, W, 1]`: float `[H, W, 3]`."""
    return np.where(t < 0.5, c[0] + (c[1] - c[0]) * 2 * t, c[1] + (c[2] - c[1]) * (2 * t - 1))


def _flat(spec: TextureSpec, g: _Grid) -> np.ndarray:
    return g.colours[0]


def _gradient(spec: TextureSpec, g: _Grid) -> np.ndarray:
    return _ramp(g.colours, np.clip(0.5 + g.u * spec.freq, 0.0, 1.0)[..., None])


def _stripes(spec: TextureSpec, g: _Grid) -> np.ndarray:
    t = 0.5 + 0.5 * np.tanh(3.0 * np.sin(2 * np.pi * spec.freq * g.u + spec.seed % 7))[..., None]
    return g.colours[0] + (g.colours[1] - g.colours[0]) * t


def _checks(spec: TextureSpec, g: _Grid) -> np.ndarray:
    odd = ((np.floor(g.u * spec.freq) + np.floor(g.v * spec.freq)) % 2)[..., None]  # [H, W, 1]
    return g.colours[0] + (g.colours[1] - g.colours[0]) * odd


def _noise(spec: TextureSpec, g: _Grid) -> np.ndarray:
    height, width = g.shape
    low = _smooth_field(g.rng, int(g.rng.integers(3, 9)), height, width, 1)  # [H, W, 1] in [0, 1]
    return g.colours[0] + (g.colours[1] - g.colours[0]) * low + g.rng.normal(0.0, g.rng.uniform(3, 12),
                                                                             (height, width, 3))


def _blobs(spec: TextureSpec, g: _Grid) -> np.ndarray:
    """A smooth "photo-like" field mixing the three colours."""
    height, width = g.shape
    weights = _smooth_field(g.rng, int(g.rng.integers(2, 6)), height, width, 3) ** 3  # [H, W, 3]
    out = (weights / (weights.sum(-1, keepdims=True) + 1e-6)) @ g.colours  # [H, W, 3]
    detail = _smooth_field(g.rng, int(g.rng.integers(8, 20)), height, width, 1) - 0.5
    return out + 40.0 * detail


def _multicolour(spec: TextureSpec, g: _Grid) -> np.ndarray:
    """A patchwork: 4-8 Voronoi cells, each painted one of 2-3 colours (hard edges)."""
    n, k = int(g.rng.integers(4, 9)), int(g.rng.integers(2, 4))
    seeds = g.rng.uniform(-0.5, 0.5, (n, 2)).astype(np.float32)  # [n, 2] cell centres
    paint = g.rng.permutation(np.arange(n) % k)  # [n] every used colour owns a cell
    dist = (g.xs[..., None] - seeds[:, 0]) ** 2 + (g.ys[..., None] - seeds[:, 1]) ** 2  # [H, W, n]
    return g.colours[paint[dist.argmin(-1)]]  # [H, W, 3]


def _waves(spec: TextureSpec, g: _Grid) -> np.ndarray:
    """A sum of 2-3 sinusoids at several frequencies and angles through the three-colour ramp."""
    field, total = np.zeros_like(g.u), 0.0
    for _ in range(int(g.rng.integers(2, 4))):
        angle, freq = spec.angle + g.rng.uniform(0.0, np.pi), spec.freq * g.rng.uniform(1.5, 6.0)
        amp, phase = g.rng.uniform(0.5, 1.0), g.rng.uniform(0.0, 2 * np.pi)
        field = field + amp * np.sin(2 * np.pi * freq * (g.xs * np.cos(angle) + g.ys * np.sin(angle)) + phase)
        total += amp
    return _ramp(g.colours, (0.5 + 0.5 * field / total)[..., None])


def _tiles(spec: TextureSpec, g: _Grid) -> np.ndarray:
    """A repeated motif in 2-3 colours, chosen by the seed: bricks, dots or hexagons."""
    a, b, c = g.u * spec.freq, g.v * spec.freq, g.colours  # tile units
    motif = spec.seed % 3
    if motif == 0:  # bricks twice as wide as tall, every other row shifted by half a brick, mortar in c2
        row = np.floor(b)
        along = (a + 0.5 * (row % 2)) / 2
        mortar = ((along % 1.0) < 0.06) | ((b % 1.0) < 0.12)
        return np.where(mortar[..., None], c[2], np.where(((np.floor(along) + row) % 3 == 0)[..., None], c[1], c[0]))
    if motif == 1:  # dots on a plain ground, alternating colours
        fa, fb = a % 1.0 - 0.5, b % 1.0 - 0.5
        dot = (fa ** 2 + fb ** 2 < 0.32 ** 2)[..., None]
        return np.where(dot, np.where(((np.floor(a) + np.floor(b)) % 2 == 0)[..., None], c[1], c[2]), c[0])
    q, r = np.sqrt(3) / 3 * a - b / 3, 2 / 3 * b  # hexagons: axial coordinates, rounded through cube coordinates
    rq, rr, rs = np.round(q), np.round(r), np.round(-q - r)
    dq, dr, ds = np.abs(rq - q), np.abs(rr - r), np.abs(rs + q + r)
    rq = np.where((dq > dr) & (dq > ds), -rr - rs, rq)
    rr = np.where((dq > dr) & (dq > ds), rr, np.where(dr > ds, -rq - rs, rr))
    return c[((rq - rr) % 3).astype(int)]  # a proper 3-colouring: neighbours differ


def _landscape(spec: TextureSpec, g: _Grid) -> np.ndarray:
    """A photo-like scene (upright: the angle is ignored): sky gradient, a sun and clouds, hills on the horizon,
    textured ground."""
    rng, (height, width) = g.rng, g.shape
    top = g.ys[0, 0]
    y = (g.ys - top) / max(-2 * top, 1e-6)  # [H, 1] 0 at the top, 1 at the bottom
    x = np.broadcast_to(g.xs, (height, width))
    sky0, sky1 = (np.array([70, 120, 210]), np.array([200, 225, 250])) if rng.random() < 0.7 else \
        (np.array([60, 50, 130]), np.array([250, 170, 110]))  # day or dusk
    horizon = rng.uniform(0.45, 0.65)
    out = sky0 + (sky1 - sky0) * np.clip(y / horizon, 0.0, 1.0)[..., None] + np.zeros((height, width, 3))
    sun = (rng.uniform(-0.35, 0.35), rng.uniform(0.1, horizon - 0.15), rng.uniform(0.04, 0.08))
    disc = np.clip((sun[2] - np.hypot(x - sun[0], y - sun[1])) * 60 + 0.5, 0.0, 1.0)[..., None]
    out = out + (np.array([255, 240, 190]) - out) * disc
    for _ in range(int(rng.integers(1, 4))):  # soft white clouds
        cx, cy, sx, sy = rng.uniform(-0.5, 0.5), rng.uniform(0.05, horizon - 0.1), rng.uniform(0.08, 0.2), \
            rng.uniform(0.02, 0.05)
        puff = 0.9 * np.exp(-((x - cx) / sx) ** 2 - ((y - cy) / sy) ** 2)[..., None]
        out = out + (250.0 - out) * puff
    ridge = horizon - sum(rng.uniform(0.02, 0.08) * (1 + np.sin(2 * np.pi * rng.uniform(0.7, 3) * x
                                                                + rng.uniform(0, 2 * np.pi))) for _ in range(2))
    ground = horizon + 0.02 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * x)
    shade = _smooth_field(rng, int(rng.integers(6, 14)), height, width, 1)  # [H, W, 1]
    hills = 0.6 * g.colours[2] + 0.4 * np.array([60, 90, 70]) * (0.8 + 0.4 * shade)
    soil = (0.5 * g.colours[1] + 0.5 * np.array([90, 130, 60])) * (0.7 + 0.6 * shade)
    soil = soil + rng.normal(0.0, 6.0, (height, width, 3))
    out = np.where((y > ridge)[..., None], hills, out)
    return np.where((y > ground)[..., None], soil, out)


_TEXTURES = {"flat": _flat, "gradient": _gradient, "stripes": _stripes, "checks": _checks, "noise": _noise,
             "blobs": _blobs, "multicolour": _multicolour, "waves": _waves, "tiles": _tiles,
             "landscape": _landscape}


def _smooth_field(rng: np.random.Generator, cells: int, height: int, width: int, channels: int) -> np.ndarray:
    """Random values on a `cells`-wide lattice, bicubically upsampled: float32 `[H, W, channels]` in [0, 1]."""
    aspect = height / max(width, 1)
    low = rng.random((max(2, round(cells * aspect)) + 1, cells + 1, channels)).astype(np.float32)
    up = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(up.reshape(height, width, channels), 0.0, 1.0)


def sample_shape(rng: np.random.Generator, kinds: tuple[str, ...] = SHAPE_KINDS,
                 exclude: str | None = None) -> ShapeSpec:
    """A random sprite outline of one of `kinds`, other than `exclude` when another kind is left."""
    kind = str(rng.choice([k for k in kinds if k != exclude] or list(kinds)))
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
    elif kind == "holed":  # aspect, holes, their rotation, 3 hole radii
        params = (rng.uniform(0.75, 1.0), int(rng.integers(1, 4)), rng.uniform(0, 2 * np.pi),
                  *rng.uniform(0.15, 0.25, 3))
    elif kind == "articulated":  # body aspect, limbs, then per limb: joint angle, swing, cycles, phase, half width
        first = rng.uniform(0, 2 * np.pi)
        joints = (first, first + np.pi + rng.uniform(-0.5, 0.5))
        params = (rng.uniform(0.92, 1.0), int(rng.integers(1, 3)),
                  *[v for j in joints for v in (j, rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.4),
                                                rng.uniform(0, 2 * np.pi), rng.uniform(0.09, 0.13))])
    elif kind == "blob":  # harmonics 2..4 of the radius
        params = (*rng.uniform(0.0, 0.15, 3), *rng.uniform(0.0, 2 * np.pi, 3))
    else:
        raise ValueError(f"shape kind {kind!r} is not one of {SHAPE_KINDS}")
    return ShapeSpec(kind, tuple(float(p) for p in params))


def outline(shape: ShapeSpec, t: float = 0.0) -> list[list[np.ndarray]]:
    """The shape at clip time `t` in sprite units: pieces, each a list of closed float64 `[N, 2]` (x, y) contours
    filled even-odd (a hole is an extra contour); the shape is the union of its pieces."""
    p = shape.params
    phi = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    circle = np.stack([np.cos(phi), np.sin(phi)], axis=1)  # [64, 2]
    if shape.kind == "ellipse":
        return [[circle * (1.0, p[0])]]
    if shape.kind == "polygon":
        n = int(p[0])
        radii, jitter = np.array(p[1:1 + n]), np.array(p[1 + n:1 + 2 * n])
        ang = (np.arange(n) + jitter) * 2 * np.pi / n
        return [[np.stack([radii * np.cos(ang), radii * np.sin(ang)], axis=1)]]
    if shape.kind == "star":
        n = int(p[0])
        ang = np.arange(2 * n) * np.pi / n - np.pi / 2
        radii = np.where(np.arange(2 * n) % 2 == 0, 1.0, p[1])
        return [[np.stack([radii * np.cos(ang), radii * np.sin(ang)], axis=1)]]
    if shape.kind == "rounded_box":
        return [[_rounded_box(0.9, 0.9 * p[0], p[1])]]
    if shape.kind == "cross":
        w, e = p[0], 0.95
        return [[np.array([[-w, -e], [w, -e], [w, -w], [e, -w], [e, w], [w, w], [w, e], [-w, e], [-w, w], [-e, w],
                           [-e, -w], [-w, -w]])]]
    if shape.kind == "ring":
        outer = circle * (1.0, p[0])
        return [[outer, outer * p[1]]]
    if shape.kind == "holed":
        return [[circle * (1.0, p[0]), *_holes(circle, p)]]
    if shape.kind == "articulated":
        return _articulated(circle, p, t)
    if shape.kind == "blob":
        radius = 1.0 + sum(a * np.cos((k + 2) * phi + ph) for k, (a, ph) in enumerate(zip(p[:3], p[3:])))
        return [[circle * (radius / radius.max())[:, None]]]
    raise ValueError(f"shape kind {shape.kind!r} is not one of {SHAPE_KINDS}")


def _rounded_box(hw: float, hh: float, corner: float) -> np.ndarray:
    """A box of half sizes `hw x hh` with quarter-arc corners of radius `corner * min(hw, hh)`: `[32, 2]`."""
    r = corner * min(hw, hh)
    arc = np.linspace(0.0, np.pi / 2, 8)
    corners = []
    for k, (sx, sy) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):  # one quarter arc per corner
        a = arc + k * np.pi / 2
        corners.append(np.stack([sx * (hw - r) + r * np.cos(a), sy * (hh - r) + r * np.sin(a)], axis=1))
    return np.concatenate(corners)


def _holes(circle: np.ndarray, p: tuple[float, ...]) -> list[np.ndarray]:
    """1-3 round holes inside the unit-wide body (aspect >= 0.75), apart from each other: `[64, 2]` each."""
    n, turn = int(p[1]), p[2]
    spread = 0.25 if n == 1 else 0.45  # centre distance; + radius (<= 0.25) stays inside the body
    angles = turn + 2 * np.pi * np.arange(n) / n
    return [circle * p[3 + k] + spread * np.array([np.cos(a), np.sin(a)]) for k, a in enumerate(angles)]


def _articulated(circle: np.ndarray, p: tuple[float, ...], t: float) -> list[list[np.ndarray]]:
    """A round body (radius 0.6, covering the sprite keypoints) with 1-2 limbs (length 0.42) hinged just inside
    its edge, each swinging by `swing * sin(2 pi cycles t + phase)` about the outward direction: body and limbs
    as separate pieces."""
    aspect, count = p[0], int(p[1])
    pieces = [[circle * (0.6, 0.6 * aspect)]]
    for k in range(count):
        joint, swing, cycles, phase, half = p[2 + 5 * k:7 + 5 * k]
        base = np.array([0.55 * np.cos(joint), 0.55 * aspect * np.sin(joint)])
        heading = joint + swing * np.sin(2 * np.pi * cycles * t + phase)
        along, across = np.array([np.cos(heading), np.sin(heading)]), np.array([-np.sin(heading), np.cos(heading)])
        corners = [base - half * across, base - half * across + 0.42 * along, base + half * across + 0.42 * along,
                   base + half * across]
        pieces.append([np.stack(corners)])
    return pieces
