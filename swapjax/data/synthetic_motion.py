"""Sprite motion of the synthetic dataset (`synthetic_assets.MOTION_KINDS`): where a sprite is, how big and at
what angle, over the clip time t in [0, 1]. Positions are fractions of the frame, sizes fractions of its shorter
side, so a path renders at any size and frame count.

- `drift`: a straight line with a sideways wiggle (the original path);
- `orbit`: an arc of an ellipse about a centre;
- `bounce`: a zig-zag, two straight legs with a sharp turn (90-153 degrees) mid-clip;
- `crossing` (not a family: the occluder's path): a straight pass, timed to cross the subject.
Every kind also grows the radius as `exp(log_scale * t)` and spins the sprite by `spin * t`.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Path:
    """A sprite's motion: `kind` (a motion family or "crossing"), `route` (its parameters, see `frac`), radius
    (fraction of the shorter side) growing as exp(log_scale * t), angle + spin * t."""

    kind: str
    route: tuple[float, ...]
    radius: float
    log_scale: float
    angle: float
    spin: float

    def frac(self, t: np.ndarray) -> np.ndarray:
        """Centre at times `t` `[T]` as fractions of (width, height): float `[T, 2]`."""
        r, t = self.route, np.asarray(t, np.float64)
        if self.kind in ("drift", "crossing"):  # (x0, y0, x1, y1, wiggle amplitude, cycles, phase)
            start, end = np.array(r[0:2]), np.array(r[2:4])
            along = end - start
            normal = np.array([-along[1], along[0]]) / (np.hypot(*along) + 1e-9)
            return start + along * t[:, None] + r[4] * np.sin(2 * np.pi * r[5] * t + r[6])[:, None] * normal
        if self.kind == "orbit":  # (cx, cy, rx, ry, start angle, sweep)
            a = r[4] + r[5] * t
            return np.stack([r[0] + r[2] * np.cos(a), r[1] + r[3] * np.sin(a)], axis=1)
        if self.kind == "bounce":  # (x0, y0, corner x, corner y, x1, y1, turn time)
            start, corner, end, turn = np.array(r[0:2]), np.array(r[2:4]), np.array(r[4:6]), r[6]
            first = start + (corner - start) * (t / turn)[:, None]
            second = corner + (end - corner) * ((t - turn) / (1.0 - turn))[:, None]
            return np.where((t < turn)[:, None], first, second)
        raise ValueError(f"motion kind {self.kind!r} is not drift, orbit, bounce or crossing")

    def at(self, t: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre float `[T, 2]` (x, y) in pixels, radius `[T]` in pixels, angle `[T]` at times `t` `[T]`."""
        centre = self.frac(t) * (width, height) - 0.5  # pixel centres sit at integers
        radius = self.radius * min(height, width) * np.exp(self.log_scale * t)
        return centre, radius, self.angle + self.spin * t


def sample_path(rng: np.random.Generator, kind: str, subject: bool) -> Path:
    """A random path of motion family `kind`; the subject is bigger than the other sprites."""
    if kind == "drift":
        start = rng.uniform(0.25, 0.75, 2)
        heading, dist = rng.uniform(0.0, 2 * np.pi), rng.uniform(0.05, 0.35)
        end = np.clip(start + dist * np.array([np.cos(heading), np.sin(heading)]), 0.2, 0.8)
        route = (*start, *end, rng.uniform(0.0, 0.05), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi))
    elif kind == "orbit":
        sweep = rng.choice([-1.0, 1.0]) * rng.uniform(0.6 * np.pi, 1.6 * np.pi)
        route = (*rng.uniform(0.4, 0.6, 2), *rng.uniform(0.1, 0.22, 2), rng.uniform(0, 2 * np.pi), sweep)
    elif kind == "bounce":  # legs of 0.1-0.2 about a corner in the middle: the path stays in [0.1, 0.9]
        corner, heading = rng.uniform(0.3, 0.7, 2), rng.uniform(0.0, 2 * np.pi)
        start = corner - rng.uniform(0.1, 0.2) * np.array([np.cos(heading), np.sin(heading)])
        heading += rng.choice([-1.0, 1.0]) * rng.uniform(0.5 * np.pi, 0.85 * np.pi)  # the turn
        end = corner + rng.uniform(0.1, 0.2) * np.array([np.cos(heading), np.sin(heading)])
        route = (*start, *corner, *end, rng.uniform(0.35, 0.65))
    else:
        raise ValueError(f"motion kind {kind!r} is not drift, orbit or bounce")
    radius = rng.uniform(0.14, 0.28) if subject else rng.uniform(0.08, 0.2)
    return Path(kind, tuple(float(x) for x in route), float(radius), float(rng.uniform(-0.35, 0.35)),
                float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(-np.pi / 2, np.pi / 2)))


def crossing_path(rng: np.random.Generator, subject: Path) -> Path:
    """A smaller sprite that passes next to the subject's centre mid-clip, overlapping part of it."""
    t_cross = rng.uniform(0.3, 0.7)
    meet = subject.frac(np.array([t_cross]))[0]
    radius = subject.radius * rng.uniform(0.45, 0.7)
    side = rng.uniform(0.0, 2 * np.pi)
    meet = meet + (subject.radius + radius) * rng.uniform(0.5, 0.8) * np.array([np.cos(side), np.sin(side)])
    heading, speed = rng.uniform(0.0, 2 * np.pi), rng.uniform(0.3, 0.6)
    velocity = speed * np.array([np.cos(heading), np.sin(heading)])
    route = (*(meet - velocity * t_cross), *(meet + velocity * (1 - t_cross)), 0.0, 1.0, 0.0)
    return Path("crossing", tuple(float(x) for x in route), float(radius), 0.0, float(rng.uniform(0, 2 * np.pi)),
                float(rng.uniform(-1.0, 1.0)))
