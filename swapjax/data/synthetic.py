"""The embedded default dataset: textured sprites moving over textured backgrounds, with exact masks.

Clip `i` is a `Scene` drawn from `np.random.default_rng((seed, i, attempt))`: a background texture that pans
slowly, and 1-3 sprites (shape + texture) on smooth paths with scale change and spin, stacked back to front.
One sprite is the subject (the one to swap). Sometimes another sprite crosses in front of it (partial
occlusion). Positions and sizes are fractions of the frame and time runs over [0, 1] across the clip, so a
scene renders at any size and frame count. Rendering records which sprite is on top at each pixel, so the
subject mask is exact: the pixels the subject actually painted and nothing else is drawn over.

`swap_pair(i)` re-renders the same scene with the subject replaced by a sprite of a different shape and
texture on the same path under the same occluders: the ground truth of a swap.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from swapjax.data import reference, synthetic_assets as assets

# Subject keypoints in sprite units: the centre, then up, right, down, left (drawn as the "sprite" skeleton).
SPRITE_POINTS = np.array([[0.0, 0.0], [0.0, -0.55], [0.55, 0.0], [0.0, 0.55], [-0.55, 0.0]])
KEYPOINTS_KIND = "sprite"


@dataclasses.dataclass(frozen=True)
class Appearance:
    shape: assets.ShapeSpec
    texture: assets.TextureSpec


@dataclasses.dataclass(frozen=True)
class Path:
    """Sprite motion over t in [0, 1]: centre (fractions of width, height), radius (fraction of the shorter
    side) growing as exp(log_scale * t), angle + spin * t, and a sideways wiggle."""

    start: tuple[float, float]
    end: tuple[float, float]
    wiggle: tuple[float, float, float]  # amplitude (fraction of the frame), cycles per clip, phase
    radius: float
    log_scale: float
    angle: float
    spin: float

    def at(self, t: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre float `[T, 2]` (x, y) in pixels, radius `[T]` in pixels, angle `[T]` at times `t` `[T]`."""
        start, end = np.array(self.start), np.array(self.end)
        along = end - start
        normal = np.array([-along[1], along[0]]) / (np.hypot(*along) + 1e-9)
        amp, cycles, phase = self.wiggle
        frac = start + along * t[:, None] + amp * np.sin(2 * np.pi * cycles * t + phase)[:, None] * normal  # [T, 2]
        centre = frac * (width, height) - 0.5  # pixel centres sit at integers
        radius = self.radius * min(height, width) * np.exp(self.log_scale * t)
        return centre, radius, self.angle + self.spin * t


@dataclasses.dataclass(frozen=True)
class Scene:
    background: assets.TextureSpec
    pan: tuple[float, float, float, float]  # background offset (x0, y0) -> (x1, y1), fractions of the frame
    sprites: tuple[tuple[Appearance, Path], ...]  # back to front
    subject: int  # index into `sprites`


def sample_scene(rng: np.random.Generator, num_sprites: tuple[int, int] = (1, 3), p_occlude: float = 0.35,
                 textures: tuple[str, ...] = assets.TEXTURE_KINDS,
                 backgrounds: tuple[str, ...] = assets.BACKGROUND_KINDS) -> Scene:
    """A random scene. The subject is drawn over the other sprites, except that with probability `p_occlude`
    (and >= 2 sprites) one smaller sprite crosses in front of it. Sprites take texture kinds from `textures`,
    the background from `backgrounds`."""
    n = int(rng.integers(num_sprites[0], num_sprites[1] + 1))
    paths = [_sample_path(rng, subject=(k == 0)) for k in range(n)]
    occluder = n >= 2 and rng.random() < p_occlude
    if occluder:
        paths[1] = _crossing_path(rng, paths[0])
    looks = [Appearance(assets.sample_shape(rng), assets.sample_texture(rng, textures)) for _ in range(n)]
    # z-order: the other sprites behind the subject (in random order), the occluder (if any) on top
    order = [int(k) for k in rng.permutation(range(1 + occluder, n))] + [0] + ([1] if occluder else [])
    sprites = tuple((looks[k], paths[k]) for k in order)
    pan = tuple(float(x) for x in rng.uniform(0.0, 0.08, 4))
    return Scene(assets.sample_texture(rng, backgrounds), pan, sprites, order.index(0))


def _sample_path(rng: np.random.Generator, subject: bool) -> Path:
    start = rng.uniform(0.25, 0.75, 2)
    heading, dist = rng.uniform(0.0, 2 * np.pi), rng.uniform(0.05, 0.35)
    end = np.clip(start + dist * np.array([np.cos(heading), np.sin(heading)]), 0.2, 0.8)
    radius = rng.uniform(0.14, 0.28) if subject else rng.uniform(0.08, 0.2)
    return Path(tuple(start), tuple(end), (rng.uniform(0.0, 0.05), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)),
                float(radius), float(rng.uniform(-0.35, 0.35)), float(rng.uniform(0, 2 * np.pi)),
                float(rng.uniform(-np.pi / 2, np.pi / 2)))


def _crossing_path(rng: np.random.Generator, subject: Path) -> Path:
    """A smaller sprite that passes next to the subject's centre mid-clip, overlapping part of it."""
    t_cross = rng.uniform(0.3, 0.7)
    meet = np.array(subject.start) + (np.array(subject.end) - np.array(subject.start)) * t_cross
    radius = subject.radius * rng.uniform(0.45, 0.7)
    side = rng.uniform(0.0, 2 * np.pi)
    meet = meet + (subject.radius + radius) * rng.uniform(0.5, 0.8) * np.array([np.cos(side), np.sin(side)])
    heading, speed = rng.uniform(0.0, 2 * np.pi), rng.uniform(0.3, 0.6)
    velocity = speed * np.array([np.cos(heading), np.sin(heading)])
    return Path(tuple(meet - velocity * t_cross), tuple(meet + velocity * (1 - t_cross)), (0.0, 1.0, 0.0),
                float(radius), 0.0, float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(-1.0, 1.0)))


def clip_times(num_frames: int) -> np.ndarray:
    """Frame times in [0, 1]: float `[F]`."""
    return np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)


def render_scene(scene: Scene, height: int, width: int, num_frames: int, looks: dict[int, Appearance] | None = None,
                 hidden: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Renders a scene: (video uint8 `[F, H, W, 3]`, top-sprite index int8 `[F, H, W]`, -1 = background).

    `looks` replaces the appearance of some sprites (same path and depth); `hidden` sprites are not drawn.
    """
    t = clip_times(num_frames)
    pad_x, pad_y = int(np.ceil(0.08 * width)), int(np.ceil(0.08 * height))
    bg = assets.render_texture(scene.background, height + pad_y, width + pad_x)  # [H + py, W + px, 3]
    x0, y0, x1, y1 = scene.pan
    off_x = np.round((x0 + (x1 - x0) * t) * width).astype(int).clip(0, pad_x)  # [F]
    off_y = np.round((y0 + (y1 - y0) * t) * height).astype(int).clip(0, pad_y)
    video = np.stack([bg[oy:oy + height, ox:ox + width] for ox, oy in zip(off_x, off_y)])  # [F, H, W, 3]
    top = np.full((num_frames, height, width), -1, np.int8)
    looks = looks or {}
    for k, (look, path) in enumerate(scene.sprites):
        if k not in hidden:
            _draw_sprite(video, top, k, looks.get(k, look), path, t)
    return video, top


def _draw_sprite(video: np.ndarray, top: np.ndarray, index: int, look: Appearance, path: Path, t: np.ndarray) -> None:
    """Paints one sprite into every frame (in place), only inside its bounding box."""
    _, height, width, _ = video.shape
    centre, radius, angle = path.at(t, height, width)
    contours = assets.outline(look.shape)
    size = int(np.clip(np.ceil(2 * radius.max()), 8, 512))  # texture side ~ on-screen size
    tex = assets.render_texture(look.texture, size, size)  # [T, T, 3], covers sprite units [-1, 1]^2
    scale = 1 << 4
    for f in range(len(t)):
        rot = radius[f] * np.array([[np.cos(angle[f]), -np.sin(angle[f])], [np.sin(angle[f]), np.cos(angle[f])]])
        pts = [c @ rot.T + centre[f] for c in contours]  # [N, 2] frame pixels
        allpts = np.concatenate(pts)
        bx0, by0 = np.floor(allpts.min(axis=0)).astype(int) - 1
        bx1, by1 = np.ceil(allpts.max(axis=0)).astype(int) + 2
        bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, width), min(by1, height)
        if bx1 <= bx0 or by1 <= by0:
            continue
        origin = np.array([bx0, by0])
        sil = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
        cv2.fillPoly(sil, [np.round((p - origin) * scale).astype(np.int32) for p in pts], 1, cv2.LINE_8, 4)
        # texture pixel q (centre) -> sprite units (2q + 1)/T - 1 -> frame -> box
        lin = rot * (2.0 / size)
        shift = centre[f] + rot @ np.full(2, 1.0 / size - 1.0) - origin
        warped = cv2.warpAffine(tex, np.hstack([lin, shift[:, None]]), (bx1 - bx0, by1 - by0),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)  # [h, w, 3]
        on = sil.view(bool)
        np.copyto(video[f, by0:by1, bx0:bx1], warped, where=on[:, :, None])
        np.copyto(top[f, by0:by1, bx0:bx1], np.int8(index), where=on)


def sprite_keypoints(scene: Scene, top: np.ndarray, index: int) -> np.ndarray:
    """Keypoints of sprite `index` carried by its motion: float32 `[F, 5, 3]` (x, y, visibility in {0, 1}).

    A point is visible when it lies in the frame and no sprite drawn in front of this one covers it.
    """
    num_frames, height, width = top.shape
    centre, radius, angle = scene.sprites[index][1].at(clip_times(num_frames), height, width)
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]  # [F, 1]
    px, py = SPRITE_POINTS[None, :, 0], SPRITE_POINTS[None, :, 1]  # [1, 5]
    x = centre[:, :1] + radius[:, None] * (cos * px - sin * py)  # [F, 5]
    y = centre[:, 1:] + radius[:, None] * (sin * px + cos * py)
    xi, yi = np.round(x).astype(int), np.round(y).astype(int)
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    frame = np.arange(num_frames)[:, None]
    covered = top[frame, yi.clip(0, height - 1), xi.clip(0, width - 1)] > index  # a sprite in front
    return np.stack([x, y, (inside & ~covered).astype(np.float64)], axis=-1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class SceneSettings:
    """How the scenes of `SyntheticClips` are drawn: sprites per clip (a range), the chance of an occluder, the
    fewest subject pixels every frame must show (else the scene is redrawn), and the texture kinds of sprites and
    backgrounds (`synthetic_assets.TEXTURE_KINDS`, `BACKGROUND_KINDS`); a restriction changes which kind is
    drawn, nothing else."""

    num_sprites: tuple[int, int] = (1, 3)
    p_occlude: float = 0.35
    min_visible: int = 4
    textures: tuple[str, ...] = assets.TEXTURE_KINDS
    backgrounds: tuple[str, ...] = assets.BACKGROUND_KINDS

    def __post_init__(self):
        for name in ("num_sprites", "textures", "backgrounds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not 1 <= self.num_sprites[0] <= self.num_sprites[1]:
            raise ValueError(f"SyntheticClips: num_sprites ({self.num_sprites}) must be a range (lo, hi) with "
                             "1 <= lo <= hi")
        for name, kinds, allowed in (("textures", self.textures, assets.TEXTURE_KINDS),
                                     ("backgrounds", self.backgrounds, assets.BACKGROUND_KINDS)):
            if not kinds or not set(kinds) <= set(allowed):
                raise ValueError(f"SyntheticClips: {name} ({kinds}) must be a non-empty subset of {allowed}")


class SyntheticClips:
    """Grain-compatible source of synthetic clips: `[i]` -> dict video uint8 `[F, H, W, 3]`, mask uint8
    `[F, H, W]` (visible subject pixels), keypoints float32 `[F, 5, 3]`, keypoints_kind "sprite", fps.

    Deterministic in (seed, i); holds only numbers, so it pickles into grain workers. `scene` says how scenes are
    drawn (`SceneSettings`); its fields may also be given one by one as keywords (`p_occlude=0.7`,
    `backgrounds=("gradient",)`), which replace those of `scene`.
    """

    keypoints_kind = KEYPOINTS_KIND

    def __init__(self, height: int, width: int, num_frames: int, num_clips: int, seed: int = 0, *,
                 fps: float = 16.0, scene: SceneSettings = SceneSettings(), **scene_fields):
        if min(height, width) < 8 or num_frames < 1 or num_clips < 1:
            raise ValueError(f"SyntheticClips: height ({height}) and width ({width}) must be >= 8, num_frames "
                             f"({num_frames}) and num_clips ({num_clips}) >= 1")
        self.height, self.width, self.num_frames, self.num_clips = height, width, num_frames, num_clips
        self.seed, self.fps = seed, float(fps)
        self.scene = dataclasses.replace(scene, **scene_fields)

    def __len__(self) -> int:
        return self.num_clips

    def _index(self, i: int) -> int:
        i = int(i)
        if not -self.num_clips <= i < self.num_clips:
            raise IndexError(f"clip index {i} out of range for {self.num_clips} synthetic clips")
        return i % self.num_clips

    def render(self, i: int) -> tuple[Scene, np.ndarray, np.ndarray]:
        """(scene, video `[F, H, W, 3]`, top-sprite map `[F, H, W]`) of clip `i`.

        Scenes where the subject would show fewer than `min_visible` pixels in some frame are redrawn
        (deterministically: the attempt number is part of the seed).
        """
        i = self._index(i)
        for attempt in range(16):
            settings = self.scene
            scene = sample_scene(np.random.default_rng((self.seed, i, attempt)), settings.num_sprites,
                                 settings.p_occlude, settings.textures, settings.backgrounds)
            video, top = render_scene(scene, self.height, self.width, self.num_frames)
            if ((top == scene.subject).sum(axis=(1, 2)) >= self.scene.min_visible).all():
                break
        return scene, video, top

    def __getitem__(self, i: int) -> dict:
        scene, video, top = self.render(i)
        return {"video": video, "mask": (top == scene.subject).astype(np.uint8),
                "keypoints": sprite_keypoints(scene, top, scene.subject), "keypoints_kind": KEYPOINTS_KIND,
                "fps": self.fps}

    def swap_pair(self, i: int, ref_size: int) -> dict:
        """Clip `i` plus a swap: `reference` uint8 `[S, S, 3]` (a new sprite of another shape, cropped like a
        training reference), `target` uint8 `[F, H, W, 3]` (the clip with the subject replaced by it on the same
        path, under the same occluders) and `target_mask` (its visible pixels)."""
        scene, video, top = self.render(i)
        rng = np.random.default_rng((self.seed, self._index(i), 1 << 20))  # apart from the scene's streams
        old = scene.sprites[scene.subject][0]
        new = Appearance(assets.sample_shape(rng, exclude=old.shape.kind), assets.sample_texture(rng, self.scene.textures))
        target, target_top = render_scene(scene, self.height, self.width, self.num_frames, {scene.subject: new})
        item = {"video": video, "mask": (top == scene.subject).astype(np.uint8),
                "keypoints": sprite_keypoints(scene, top, scene.subject), "keypoints_kind": KEYPOINTS_KIND,
                "fps": self.fps}
        return {**item, "reference": self.sprite_reference(scene, new, rng, ref_size), "target": target,
                "target_mask": (target_top == scene.subject).astype(np.uint8)}

    def sprite_reference(self, scene: Scene, look: Appearance, rng: np.random.Generator, ref_size: int) -> np.ndarray:
        """`look` alone on neutral grey, at the subject's size and angle in a random frame, cropped like a
        training reference: uint8 `[S, S, 3]`."""
        path = scene.sprites[scene.subject][1]
        t = clip_times(self.num_frames)[int(rng.integers(self.num_frames))]
        radius = path.radius * min(self.height, self.width) * np.exp(path.log_scale * t)
        side = int(np.ceil(2 * radius)) + 4
        alone = Path((0.5, 0.5), (0.5, 0.5), (0.0, 1.0, 0.0), radius / side, 0.0, path.angle + path.spin * t, 0.0)
        canvas = np.full((1, side, side, 3), reference.NEUTRAL_GREY, np.uint8)
        top = np.full((1, side, side), -1, np.int8)
        _draw_sprite(canvas, top, 0, look, alone, np.zeros(1))
        return reference.reference_crop(canvas, top == 0, rng, ref_size)
