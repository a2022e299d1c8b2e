"""The embedded default dataset: textured sprites moving over textured backgrounds, with exact masks.

Clip `i` is a `Scene` drawn from `np.random.default_rng((seed, i, attempt, stream))`: a background texture, a
camera (still, pan, zoom or shake) that moves the whole frame, a lighting (constant, ramp or flicker) that scales
it, and 1-3 sprites (shape + texture) on paths (drift, orbit or bounce) with scale change and spin, stacked back
to front. One sprite is the subject (the one to swap). Sometimes another sprite crosses in front of it (partial
occlusion). Positions and sizes are fractions of the frame and time runs over [0, 1] across the clip, so a
scene renders at any size and frame count. Rendering records which sprite is on top at each pixel, so the
subject mask is exact: the pixels the subject actually painted and nothing else is drawn over. Every kind is a
named family (`synthetic_assets.FAMILIES`); `scene_settings(data, split)` turns a `DataConfig`'s selection and
held-out families into the settings of the training or the held-out split (docs/design.md, "Data flow").

`swap_pair(i)` re-renders the same scene with the subject replaced by a sprite of a different shape and
texture on the same path under the same occluders, camera and lighting: the ground truth of a swap.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from swapjax.errors import require
from swapjax.data import reference, synthetic_assets as assets
from swapjax.data.config import DataConfig
from swapjax.data.synthetic_camera import PAD, Camera, Lighting, sample_camera, sample_lighting
from swapjax.data.synthetic_motion import Path, crossing_path, sample_path

# Subject keypoints in sprite units: the centre, then up, right, down, left (drawn as the "sprite" skeleton).
SPRITE_POINTS = np.array([[0.0, 0.0], [0.0, -0.55], [0.55, 0.0], [0.0, 0.55], [-0.55, 0.0]])
KEYPOINTS_KIND = "sprite"
SPLITS = ("train", "held_out")  # scene_settings: the training families, or the held-out ones
HELD_OUT_STREAM = 1  # SyntheticClips.stream of the held-out split's source (training reads stream 0)

@dataclasses.dataclass(frozen=True)
class Appearance:
    shape: assets.ShapeSpec
    texture: assets.TextureSpec


@dataclasses.dataclass(frozen=True)
class Scene:
    background: assets.TextureSpec
    camera: Camera  # moves the whole frame: background and sprites
    lighting: Lighting  # per-frame gains of the finished frame
    sprites: tuple[tuple[Appearance, Path], ...]  # back to front
    subject: int  # index into `sprites`

    def families(self) -> tuple[str, ...]:
        """The clip's families, one per category in `synthetic_assets.FAMILIES` order: the background, the
        subject's texture, shape and motion, the camera and the lighting ("background:waves", ...)."""
        look, path = self.sprites[self.subject]
        kinds = (self.background.kind, look.texture.kind, look.shape.kind, path.kind, self.camera.kind,
                 self.lighting.kind)
        return tuple(f"{category}:{kind}" for category, kind in zip(assets.FAMILIES, kinds))

    def all_families(self) -> frozenset[str]:
        """Every family drawn anywhere in the scene: `families()` plus every sprite's texture and shape and every
        sprite's motion (the occluder's "crossing" pass is no family)."""
        out = set(self.families())
        for look, path in self.sprites:
            out |= {f"texture:{look.texture.kind}", f"shape:{look.shape.kind}"}
            out |= {f"motion:{path.kind}"} if path.kind in assets.MOTION_KINDS else set()
        return frozenset(out)


# SceneSettings field holding each family category's kinds
SETTINGS_FIELDS = {"background": "backgrounds", "texture": "textures", "shape": "shapes", "motion": "motions",
                   "camera": "cameras", "lighting": "lightings"}


@dataclasses.dataclass(frozen=True)
class SceneSettings:
    """How the scenes of `SyntheticClips` are drawn: sprites per clip (a range), the chance of an occluder, the
    fewest subject pixels every frame must show (else the scene is redrawn), and the kinds each family category
    draws from (`synthetic_assets.FAMILIES`: sprite textures, backgrounds, sprite shapes, motions, cameras,
    lightings); a restriction changes which kind is drawn, nothing else."""

    num_sprites: tuple[int, int] = (1, 3)
    p_occlude: float = 0.35
    min_visible: int = 4
    textures: tuple[str, ...] = assets.TEXTURE_KINDS
    backgrounds: tuple[str, ...] = assets.BACKGROUND_KINDS
    shapes: tuple[str, ...] = assets.SHAPE_KINDS
    motions: tuple[str, ...] = assets.MOTION_KINDS
    cameras: tuple[str, ...] = assets.CAMERA_KINDS
    lightings: tuple[str, ...] = assets.LIGHTING_KINDS

    def __post_init__(self):
        for name in ("num_sprites", *SETTINGS_FIELDS.values()):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not 1 <= self.num_sprites[0] <= self.num_sprites[1]:
            raise ValueError(f"SyntheticClips: num_sprites ({self.num_sprites}) must be a range (lo, hi) with "
                             "1 <= lo <= hi")
        for category, name in SETTINGS_FIELDS.items():
            kinds, allowed = getattr(self, name), assets.FAMILIES[category]
            if not kinds or not set(kinds) <= set(allowed):
                raise ValueError(f"SyntheticClips: {name} ({kinds}) must be a non-empty subset of {allowed}")


def scene_settings(data: DataConfig, split: str = "train") -> SceneSettings:
    """The scene settings of a split of the synthetic world `data` selects (`synthetic_*` fields). "train": the
    selected kinds minus `data.held_out_families`; "held_out": in each category with held-out families only
    those, in the others the training kinds."""
    require(split in SPLITS, f"synthetic split ({split!r}) must be one of {SPLITS}")
    kinds = {}
    for category, name in SETTINGS_FIELDS.items():
        held = data.held_out(category)
        train = tuple(k for k in data.synthetic_kinds(category) if k not in held)
        kinds[name] = held if split == "held_out" and held else train
    return SceneSettings(**kinds)


def sample_scene(rng: np.random.Generator, settings: SceneSettings = SceneSettings()) -> Scene:
    """A random scene drawn as `settings` say. The subject is drawn over the other sprites, except that with
    probability `p_occlude` (and >= 2 sprites) one smaller sprite crosses in front of it."""
    n = int(rng.integers(settings.num_sprites[0], settings.num_sprites[1] + 1))
    paths = [sample_path(rng, str(rng.choice(settings.motions)), subject=(k == 0)) for k in range(n)]
    occluder = n >= 2 and rng.random() < settings.p_occlude
    if occluder:
        paths[1] = crossing_path(rng, paths[0])
    looks = [Appearance(assets.sample_shape(rng, settings.shapes), assets.sample_texture(rng, settings.textures))
             for _ in range(n)]
    # z-order: the other sprites behind the subject (in random order), the occluder (if any) on top
    order = [int(k) for k in rng.permutation(range(1 + occluder, n))] + [0] + ([1] if occluder else [])
    sprites = tuple((looks[k], paths[k]) for k in order)
    camera = sample_camera(rng, str(rng.choice(settings.cameras)))
    lighting = sample_lighting(rng, str(rng.choice(settings.lightings)))
    return Scene(assets.sample_texture(rng, settings.backgrounds), camera, lighting, sprites, order.index(0))


def clip_times(num_frames: int) -> np.ndarray:
    """Frame times in [0, 1]: float `[F]`."""
    return np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)


def placement(scene: Scene, index: int, t: np.ndarray, height: int,
              width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where sprite `index` shows at times `t` `[T]`: its path under the camera, centre float `[T, 2]` (x, y) and
    radius `[T]` in frame pixels, angle `[T]`."""
    centre, radius, angle = scene.sprites[index][1].at(t, height, width)
    scale, shift = scene.camera.transform(t, height, width)
    return centre * scale[:, None] + shift, radius * scale, angle


def render_scene(scene: Scene, height: int, width: int, num_frames: int, looks: dict[int, Appearance] | None = None,
                 hidden: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Renders a scene: (video uint8 `[F, H, W, 3]`, top-sprite index int8 `[F, H, W]`, -1 = background).

    `looks` replaces the appearance of some sprites (same path and depth); `hidden` sprites are not drawn. The
    lighting scales whole frames last, so it changes colours, never the top-sprite map.
    """
    t = clip_times(num_frames)
    video = _background(scene, height, width, t)  # [F, H, W, 3]
    top = np.full((num_frames, height, width), -1, np.int8)
    looks = looks or {}
    for k, (look, _) in enumerate(scene.sprites):
        if k not in hidden:
            _draw_sprite(video, top, k, looks.get(k, look), placement(scene, k, t, height, width), t)
    return scene.lighting.apply(video, t), top


def _background(scene: Scene, height: int, width: int, t: np.ndarray) -> np.ndarray:
    """The background seen by the camera: uint8 `[F, H, W, 3]` warped (bilinear) from a canvas `PAD` wider on
    each side."""
    pad_x, pad_y = int(np.ceil(PAD * width)), int(np.ceil(PAD * height))
    canvas = assets.render_texture(scene.background, height + 2 * pad_y, width + 2 * pad_x)  # [H + 2py, W + 2px, 3]
    scale, shift = scene.camera.transform(t, height, width)
    frames = []
    for s, (sx, sy) in zip(scale, shift):  # canvas pixel u = q + pad -> frame pixel s * u + shift - s * pad
        warp = np.array([[s, 0.0, sx - s * pad_x], [0.0, s, sy - s * pad_y]])
        frames.append(cv2.warpAffine(canvas, warp, (width, height), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


def _draw_sprite(video: np.ndarray, top: np.ndarray, index: int, look: Appearance,
                 place: tuple[np.ndarray, np.ndarray, np.ndarray], t: np.ndarray) -> None:
    """Paints one sprite into every frame (in place), only inside its bounding box; `place` = (centre `[F, 2]`,
    radius `[F]`, angle `[F]`) in frame pixels (`placement`), `t` `[F]` the times (a moving outline reads them)."""
    _, height, width, _ = video.shape
    centre, radius, angle = place
    static = None if look.shape.moves else assets.outline(look.shape)
    size = int(np.clip(np.ceil(2 * radius.max()), 8, 512))  # texture side ~ on-screen size
    tex = assets.render_texture(look.texture, size, size)  # [T, T, 3], covers sprite units [-1, 1]^2
    scale = 1 << 4
    for f in range(len(t)):
        rot = radius[f] * np.array([[np.cos(angle[f]), -np.sin(angle[f])], [np.sin(angle[f]), np.cos(angle[f])]])
        pieces = [[c @ rot.T + centre[f] for c in piece]
                  for piece in (static or assets.outline(look.shape, float(t[f])))]  # [N, 2] frame pixels each
        allpts = np.concatenate([c for piece in pieces for c in piece])
        bx0, by0 = np.floor(allpts.min(axis=0)).astype(int) - 1
        bx1, by1 = np.ceil(allpts.max(axis=0)).astype(int) + 2
        bx0, by0, bx1, by1 = max(bx0, 0), max(by0, 0), min(bx1, width), min(by1, height)
        if bx1 <= bx0 or by1 <= by0:
            continue
        origin = np.array([bx0, by0])
        sil = np.zeros((by1 - by0, bx1 - bx0), np.uint8)
        for piece in pieces:  # each piece even-odd (holes), the pieces united
            cv2.fillPoly(sil, [np.round((c - origin) * scale).astype(np.int32) for c in piece], 1, cv2.LINE_8, 4)
        # texture pixel q (centre) -> sprite units (2q + 1)/T - 1 -> frame -> box
        lin = rot * (2.0 / size)
        shift = centre[f] + rot @ np.full(2, 1.0 / size - 1.0) - origin
        warped = cv2.warpAffine(tex, np.hstack([lin, shift[:, None]]), (bx1 - bx0, by1 - by0),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)  # [h, w, 3]
        on = sil.view(bool)
        np.copyto(video[f, by0:by1, bx0:bx1], warped, where=on[:, :, None])
        np.copyto(top[f, by0:by1, bx0:bx1], np.int8(index), where=on)


def sprite_keypoints(scene: Scene, top: np.ndarray, index: int) -> np.ndarray:
    """Keypoints of sprite `index` carried by its motion and the camera: float32 `[F, 5, 3]` (x, y, visibility in
    {0, 1}).

    A point is visible when it lies in the frame and no sprite drawn in front of this one covers it.
    """
    num_frames, height, width = top.shape
    centre, radius, angle = placement(scene, index, clip_times(num_frames), height, width)
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]  # [F, 1]
    px, py = SPRITE_POINTS[None, :, 0], SPRITE_POINTS[None, :, 1]  # [1, 5]
    x = centre[:, :1] + radius[:, None] * (cos * px - sin * py)  # [F, 5]
    y = centre[:, 1:] + radius[:, None] * (sin * px + cos * py)
    xi, yi = np.round(x).astype(int), np.round(y).astype(int)
    inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
    frame = np.arange(num_frames)[:, None]
    covered = top[frame, yi.clip(0, height - 1), xi.clip(0, width - 1)] > index  # a sprite in front
    return np.stack([x, y, (inside & ~covered).astype(np.float64)], axis=-1).astype(np.float32)


class SyntheticClips:
    """Grain-compatible source of synthetic clips: `[i]` -> dict video uint8 `[F, H, W, 3]`, mask uint8
    `[F, H, W]` (visible subject pixels), keypoints float32 `[F, 5, 3]`, keypoints_kind "sprite", fps.

    Deterministic in (seed, i, stream); holds only numbers, so it pickles into grain workers. `scene` says how
    scenes are drawn (`SceneSettings`); its fields may also be given one by one as keywords (`p_occlude=0.7`,
    `backgrounds=("gradient",)`), which replace those of `scene`. `stream` separates sources of one seed (the
    held-out families' source uses `HELD_OUT_STREAM`), so their clips never coincide.
    """

    keypoints_kind = KEYPOINTS_KIND

    def __init__(self, height: int, width: int, num_frames: int, num_clips: int, seed: int = 0, *,
                 fps: float = 16.0, scene: SceneSettings = SceneSettings(), stream: int = 0, **scene_fields):
        if min(height, width) < 8 or num_frames < 1 or num_clips < 1:
            raise ValueError(f"SyntheticClips: height ({height}) and width ({width}) must be >= 8, num_frames "
                             f"({num_frames}) and num_clips ({num_clips}) >= 1")
        self.height, self.width, self.num_frames, self.num_clips = height, width, num_frames, num_clips
        self.seed, self.fps, self.stream = seed, float(fps), int(stream)
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
            scene = sample_scene(np.random.default_rng((self.seed, i, attempt, self.stream)), self.scene)
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
        """Clip `i` plus a swap: `reference` uint8 `[S, S, 3]` (a new sprite of another shape when the settings
        allow one, cropped like a training reference), `target` uint8 `[F, H, W, 3]` (the clip with the subject
        replaced by it on the same path, under the same occluders, camera and lighting), `target_mask` (its
        visible pixels) and `families` (the clip's families, comma-separated: `Scene.families`)."""
        scene, video, top = self.render(i)
        rng = np.random.default_rng((self.seed, self._index(i), 1 << 20, self.stream))  # apart from the scenes'
        old = scene.sprites[scene.subject][0]
        new = Appearance(assets.sample_shape(rng, self.scene.shapes, exclude=old.shape.kind),
                         assets.sample_texture(rng, self.scene.textures))
        target, target_top = render_scene(scene, self.height, self.width, self.num_frames, {scene.subject: new})
        item = {"video": video, "mask": (top == scene.subject).astype(np.uint8),
                "keypoints": sprite_keypoints(scene, top, scene.subject), "keypoints_kind": KEYPOINTS_KIND,
                "fps": self.fps}
        return {**item, "reference": self.sprite_reference(scene, new, rng, ref_size), "target": target,
                "target_mask": (target_top == scene.subject).astype(np.uint8), "families": ",".join(scene.families())}

    def sprite_reference(self, scene: Scene, look: Appearance, rng: np.random.Generator, ref_size: int) -> np.ndarray:
        """`look` alone on neutral grey, at the subject's on-screen size, angle (and pose) in a random frame,
        cropped like a training reference: uint8 `[S, S, 3]`."""
        t = clip_times(self.num_frames)[int(rng.integers(self.num_frames))][None]  # [1]
        _, radius, angle = placement(scene, scene.subject, t, self.height, self.width)
        side = int(np.ceil(2 * radius[0])) + 4
        canvas = np.full((1, side, side, 3), reference.NEUTRAL_GREY, np.uint8)
        top = np.full((1, side, side), -1, np.int8)
        _draw_sprite(canvas, top, 0, look, (np.full((1, 2), (side - 1) / 2), radius, angle), t)
        return reference.reference_crop(canvas, top == 0, rng, ref_size)
