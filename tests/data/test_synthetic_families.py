"""The synthetic world's named families (issue 17): every family renders with an exact mask, cameras move the whole
frame and the keypoints with it, an articulated outline moves, lighting ramps are monotonic, and the held-out
split keeps held-out families out of training."""

from __future__ import annotations

import dataclasses
import pickle

import cv2
import numpy as np
import pytest

from swapjax.errors import ConfigError
from swapjax.data import synthetic_assets as assets
from swapjax.data.config import DataConfig
from swapjax.data.pipeline import make_source
from swapjax.data.synthetic import (SETTINGS_FIELDS, Appearance, Scene, SceneSettings, SyntheticClips, clip_times,
                                    render_scene, scene_settings, sprite_keypoints)
from swapjax.data.synthetic_camera import Camera, Lighting, sample_lighting
from swapjax.data.synthetic_motion import Path, sample_path

EVERY_FAMILY = [f"{category}:{kind}" for category, kinds in assets.FAMILIES.items() for kind in kinds]
FLAT = assets.TextureSpec("flat", ((200, 60, 40),) * 3, 1.0, 0.0, 0)
GREY_RAMP = assets.TextureSpec("gradient", ((40, 40, 40), (120, 120, 120), (200, 200, 200)), 1.0, 0.3, 0)


def lone_scene(shape: assets.ShapeSpec, camera: Camera = Camera("still"), lighting: Lighting = Lighting("constant"),
               radius: float = 0.2) -> Scene:
    """One flat sprite standing still (no spin, no growth) at the centre of a grey gradient."""
    path = Path("drift", (0.5, 0.5, 0.5, 0.5, 0.0, 1.0, 0.0), radius, 0.0, 0.3, 0.0)
    return Scene(GREY_RAMP, camera, lighting, ((Appearance(shape, FLAT), path),), 0)


def recoloured(look: Appearance, colour) -> Appearance:
    return dataclasses.replace(look, texture=assets.TextureSpec("flat", (colour,) * 3, 1.0, 0.0, 0))


def assert_mask_exact(scene: Scene, h: int, w: int, f: int) -> None:
    """Recolouring the subject changes exactly its top-map pixels; hiding it changes nothing outside them."""
    video, top = render_scene(scene, h, w, f)
    mask, k = top == scene.subject, scene.subject
    look = scene.sprites[k][0]
    magenta = render_scene(scene, h, w, f, {k: recoloured(look, (255, 0, 255))})[0]
    green = render_scene(scene, h, w, f, {k: recoloured(look, (0, 255, 0))})[0]
    np.testing.assert_array_equal((magenta != green).any(axis=-1), mask)
    np.testing.assert_array_equal(video[~mask], render_scene(scene, h, w, f, hidden=(k,))[0][~mask])


@pytest.mark.parametrize("family", EVERY_FAMILY)
def test_every_family_renders_with_an_exact_mask(family):
    category, kind = family.split(":")
    clips = SyntheticClips(32, 32, 5, 2, seed=7, **{SETTINGS_FIELDS[category]: (kind,)})
    for i in range(2):
        scene, video, top = clips.render(i)
        assert family in scene.families() and family in scene.all_families()
        item = clips[i]
        assert item["video"].shape == (5, 32, 32, 3) and item["video"].dtype == np.uint8
        np.testing.assert_array_equal(item["mask"], (top == scene.subject).astype(np.uint8))
        assert (item["mask"].sum(axis=(1, 2)) >= 4).all()
        assert_mask_exact(scene, 32, 32, 5)
    pair = clips.swap_pair(1, 16)  # the ground truth shares the camera and lighting: equal outside both subjects
    outside = (pair["mask"] == 0) & (pair["target_mask"] == 0)
    np.testing.assert_array_equal(pair["target"][outside], pair["video"][outside])
    assert family in pair["families"].split(",") and "families" not in clips[1]


def test_textures_of_every_kind_render_deterministically():
    rng = np.random.default_rng(3)
    for kind in sorted(set(assets.TEXTURE_KINDS) | set(assets.BACKGROUND_KINDS)):
        for _ in range(3):  # tiles: bricks, dots, hexagons by the seed
            spec = assets.sample_texture(rng, (kind,))
            tex = assets.render_texture(spec, 24, 40)
            assert tex.shape == (24, 40, 3) and tex.dtype == np.uint8
            np.testing.assert_array_equal(tex, assets.render_texture(spec, 24, 40))
            assert kind == "flat" or tex.std() > 0
    patch = assets.render_texture(assets.sample_texture(np.random.default_rng(0), ("multicolour",)), 64, 64)
    assert 2 <= len(np.unique(patch.reshape(-1, 3), axis=0)) <= 3  # a patchwork of 2-3 colours


@pytest.mark.parametrize("camera", [Camera("pan", (0.1, -0.08)), Camera("zoom", (1.25, 0.1, -0.1)),
                                    Camera("zoom", (0.8, 0.0, 0.0)), Camera("shake", (0.025, 3.0))])
def test_camera_moves_the_whole_frame_and_the_subject_with_it(camera):
    scene = lone_scene(assets.ShapeSpec("ellipse", (0.8,)), camera, radius=0.15)
    h, w, f = 48, 64, 5
    still = dataclasses.replace(scene, camera=Camera("still"))
    (video, top), (video0, top0) = render_scene(scene, h, w, f), render_scene(still, h, w, f)
    scale, shift = camera.transform(clip_times(f), h, w)
    for t in range(f):
        ys, xs = np.nonzero(top[t] == 0)
        ys0, xs0 = np.nonzero(top0[t] == 0)
        np.testing.assert_allclose([xs.mean(), ys.mean()], scale[t] * np.array([xs0.mean(), ys0.mean()]) + shift[t],
                                   atol=0.5)  # the subject's pixels follow the transform
        assert abs(xs.size / xs0.size - scale[t] ** 2) < 0.1 * scale[t] ** 2  # its apparent size is scaled
    assert all(np.array_equal(video0[0], v) for v in video0)  # a still camera: every frame the same
    assert not all(np.array_equal(video[0][top[0] < 0], v[top[0] < 0]) for v in video)  # the background moves too
    kps, kps0 = sprite_keypoints(scene, top, 0), sprite_keypoints(still, top0, 0)
    np.testing.assert_allclose(kps[..., :2], kps0[..., :2] * scale[:, None, None] + shift[:, None], atol=1e-3)
    assert_mask_exact(scene, h, w, f)


def test_zoom_changes_the_subjects_apparent_size():
    scene = lone_scene(assets.ShapeSpec("ellipse", (1.0,)), Camera("zoom", (1.25, 0.0, 0.0)), radius=0.2)
    area = (render_scene(scene, 64, 64, 5)[1] == 0).sum(axis=(1, 2))  # [F]
    assert (np.diff(area) > 0).all() and 1.4 < area[-1] / area[0] < 1.7  # 1.25 ** 2 = 1.56
    out = dataclasses.replace(scene, camera=Camera("zoom", (0.8, 0.0, 0.0)))
    area = (render_scene(out, 64, 64, 5)[1] == 0).sum(axis=(1, 2))
    assert (np.diff(area) < 0).all() and 0.55 < area[-1] / area[0] < 0.75  # 0.8 ** 2 = 0.64


@pytest.mark.parametrize("kind", ["pan", "zoom", "shake"])
def test_sampled_cameras_keep_keypoints_on_the_subject(kind):
    clips = SyntheticClips(48, 64, 5, 4, seed=5, cameras=(kind,))
    for i in range(4):
        scene, _, top = clips.render(i)
        kps = clips[i]["keypoints"]
        vis = kps[..., 2] > 0
        xi, yi = np.round(kps[..., 0]).astype(int), np.round(kps[..., 1]).astype(int)
        assert ((xi >= 0) & (xi < 64) & (yi >= 0) & (yi < 48))[vis].all()
        assert (top[np.nonzero(vis)[0], yi[vis], xi[vis]] <= scene.subject).all()  # nothing drawn over them


def test_articulated_outline_moves_and_the_other_shapes_stay():
    rng = np.random.default_rng(0)
    for _ in range(3):
        body = assets.sample_shape(rng, ("articulated",))
        top = render_scene(lone_scene(body), 64, 64, 5)[1]
        assert any(not np.array_equal(top[0], top[t]) for t in range(1, 5))  # the limbs swing
        assert not all(np.array_equal(a, b) for a, b in zip(assets.outline(body, 0.0)[1], assets.outline(body, 0.3)[1]))
    for kind in assets.SHAPE_KINDS:
        if kind != "articulated":
            top = render_scene(lone_scene(assets.sample_shape(rng, (kind,))), 64, 64, 5)[1]
            assert all(np.array_equal(top[0], top[t]) for t in range(1, 5)), kind
    holed = render_scene(lone_scene(assets.sample_shape(rng, ("holed",)), radius=0.3), 64, 64, 1)[1][0] == 0
    ys, xs = np.nonzero(holed)
    inside_box = ~holed[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    count, _ = cv2.connectedComponents(inside_box.astype(np.uint8), connectivity=4)
    assert count - 1 >= 2  # background around the body plus at least one hole


@pytest.mark.parametrize("gains, sign", [((0.75, 1.2), 1), ((1.2, 0.75), -1)])
def test_lighting_ramp_changes_brightness_monotonically(gains, sign):
    scene = lone_scene(assets.ShapeSpec("ellipse", (0.8,)), lighting=Lighting("ramp", (*gains, 0.05, -0.05, 0.0)))
    video, top = render_scene(scene, 32, 32, 5)
    assert (sign * np.diff(video.reshape(5, -1).mean(axis=1)) > 0).all()
    unlit, unlit_top = render_scene(dataclasses.replace(scene, lighting=Lighting("constant")), 32, 32, 5)
    np.testing.assert_array_equal(top, unlit_top)  # lighting changes colours, never the mask
    assert not np.array_equal(video, unlit)


def test_sampled_lightings():
    rng, t = np.random.default_rng(1), clip_times(9)
    for _ in range(20):
        ramp = sample_lighting(rng, "ramp").gains(t)  # [F, 3]
        steps = np.sign(np.diff(ramp, axis=0))
        assert (steps == steps[0, 0]).all() and abs(ramp[-1].mean() / ramp[0].mean() - 1) > 0.12
        flicker = sample_lighting(rng, "flicker").gains(t)
        assert (np.abs(flicker - 1) <= 0.14 + 1e-6).all() and flicker.std() > 0
    np.testing.assert_array_equal(sample_lighting(rng, "constant").gains(t), np.ones((9, 3)))


def test_motion_paths():
    rng, t = np.random.default_rng(2), np.linspace(0.0, 1.0, 33)
    for _ in range(20):
        orbit = sample_path(rng, "orbit", subject=True)
        cx, cy, rx, ry = orbit.route[:4]
        p = orbit.frac(t)
        np.testing.assert_allclose(((p[:, 0] - cx) / rx) ** 2 + ((p[:, 1] - cy) / ry) ** 2, 1.0)
        bounce = sample_path(rng, "bounce", subject=True)
        start, corner, end = (np.array(bounce.route[k:k + 2]) for k in (0, 2, 4))
        turn, p = bounce.route[6], bounce.frac(t)
        legs = corner - start, end - corner
        angle = np.arccos(legs[0] @ legs[1] / np.linalg.norm(legs[0]) / np.linalg.norm(legs[1]))
        assert 0.5 * np.pi - 1e-9 <= angle <= 0.85 * np.pi + 1e-9  # a direction change mid-clip
        np.testing.assert_allclose(bounce.frac(np.array([0.0, turn, 1.0])), [start, corner, end], atol=1e-12)
        assert (p >= 0.1 - 1e-9).all() and (p <= 0.9 + 1e-9).all()


HELD = ("background:landscape", "texture:multicolour", "shape:articulated", "shape:holed", "motion:orbit",
        "camera:zoom")


def test_training_never_draws_a_held_out_family():
    data = DataConfig(height=16, width=16, num_frames=1, num_synthetic_clips=300, held_out_families=HELD)
    train = make_source(data, seed=0)
    seen = set()
    for i in range(len(train)):
        seen |= train.render(i)[0].all_families()
    assert not seen & set(HELD)
    assert seen == set(EVERY_FAMILY) - set(HELD)  # every training family does show up
    held = make_source(data, seed=0, split="held_out")
    restricted, drawn = {f.split(":")[0] for f in HELD}, set()
    for i in range(60):
        families = held.render(i)[0].all_families()
        assert all((f in HELD) == (f.split(":")[0] in restricted) for f in families), families
        drawn |= families
    assert set(HELD) <= drawn and {f for f in drawn if f.startswith("lighting:")} == {
        f"lighting:{k}" for k in assets.LIGHTING_KINDS}  # an unrestricted category draws the training kinds


def test_scene_settings_of_each_split():
    data = DataConfig(synthetic_shapes=("ellipse", "star", "articulated"),
                      held_out_families=("shape:articulated", "camera:zoom"))
    train, held = scene_settings(data, "train"), scene_settings(data, "held_out")
    assert train.shapes == ("ellipse", "star") and train.cameras == ("still", "pan", "shake")
    assert held.shapes == ("articulated",) and held.cameras == ("zoom",)
    assert held.backgrounds == train.backgrounds == assets.BACKGROUND_KINDS
    assert scene_settings(DataConfig()) == SceneSettings()  # the default: every family, nothing held out
    assert DataConfig().held_out_families == () and make_source(data, 0).scene == train
    with pytest.raises(ConfigError, match="synthetic split .*'test'"):
        scene_settings(data, "test")


def test_held_out_clips_are_never_training_clips():
    data = DataConfig(height=16, width=16, num_frames=5, num_synthetic_clips=8)  # nothing held out: same families
    train, held = make_source(data, 3), make_source(data, 3, split="held_out")
    assert held.scene == train.scene
    videos = [train[i]["video"] for i in range(8)]
    assert all(not np.array_equal(held[j]["video"], v) for j in range(8) for v in videos)


def test_deterministic_and_picklable_with_every_family():
    ds = SyntheticClips(32, 32, 5, 6, seed=11)
    again = pickle.loads(pickle.dumps(ds))
    for i in range(6):
        a, b = ds.swap_pair(i, 16), again.swap_pair(i, 16)
        for key in ("video", "mask", "keypoints", "reference", "target", "target_mask"):
            np.testing.assert_array_equal(a[key], b[key])
        assert a["families"] == b["families"] == ",".join(ds.render(i)[0].families())
    assert not np.array_equal(ds[0]["video"], SyntheticClips(32, 32, 5, 6, seed=11, stream=1)[0]["video"])


@pytest.mark.parametrize("changes, match", [
    (dict(held_out_families=("shape:hexagon",)), r"'shape:hexagon' is no shape family"),
    (dict(held_out_families=("colour:red",)), r"'colour:red' has no known category"),
    (dict(held_out_families=("articulated",)), r"'articulated' has no known category: write 'category:name'"),
    (dict(synthetic_shapes=("ellipse", "star"), held_out_families=("shape:ring",)),
     r"'shape:ring' is not among DataConfig.synthetic_shapes"),
    (dict(synthetic_cameras=("still", "zoom"), held_out_families=("camera:still", "camera:zoom")),
     r"holds out every kind of DataConfig.synthetic_cameras"),
    (dict(held_out_families=tuple(f"lighting:{k}" for k in assets.LIGHTING_KINDS)),
     r"every kind of DataConfig.synthetic_lighting"),
    (dict(synthetic_shapes=("square",)), r"DataConfig.synthetic_shapes .*'square'.* subset"),
    (dict(synthetic_motions=()), r"DataConfig.synthetic_motions"),
    (dict(source="tfds", tfds_dir="x", held_out_families=("shape:ring",)), r"synthetic source only"),
])
def test_config_errors_name_the_field(changes, match):
    with pytest.raises(ConfigError, match=match):
        DataConfig(**changes)


def test_tfds_source_has_no_held_out_split():
    with pytest.raises(ConfigError, match="split 'held_out' .*data.source = 'synthetic'"):
        make_source(DataConfig(source="tfds", tfds_dir="x"), 0, split="held_out")
