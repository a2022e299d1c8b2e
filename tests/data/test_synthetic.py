"""The synthetic dataset: determinism, exact subject masks, swap pairs, keypoints, any size and frame count."""

import dataclasses
import pickle

import grain
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapjax.data import synthetic_assets as assets
from swapjax.data.synthetic import Appearance, SyntheticClips, clip_times, placement, render_scene

SETTINGS = settings(max_examples=25, deadline=None)
sizes = st.tuples(st.integers(8, 80), st.integers(8, 80), st.integers(1, 9))


def flat(look: Appearance, colour) -> Appearance:
    return dataclasses.replace(look, texture=assets.TextureSpec("flat", (colour,) * 3, 1.0, 0.0, 0))


def occluded_index(ds: SyntheticClips) -> int:
    """A clip whose subject has a sprite crossing in front of it."""
    return next(i for i in range(len(ds)) if ds.render(i)[0].subject < len(ds.render(i)[0].sprites) - 1)


@SETTINGS
@given(sizes, st.integers(0, 2**31), st.integers(0, 50))
def test_items_have_the_agreed_layout_at_any_size(size, seed, i):
    h, w, f = size
    item = SyntheticClips(h, w, f, 51, seed)[i]
    assert item["video"].shape == (f, h, w, 3) and item["video"].dtype == np.uint8
    assert item["mask"].shape == (f, h, w) and item["mask"].dtype == np.uint8
    assert set(np.unique(item["mask"])) <= {0, 1}
    assert (item["mask"].sum(axis=(1, 2)) >= 4).all()  # the subject shows in every frame
    assert item["keypoints"].shape == (f, 5, 3) and item["keypoints"].dtype == np.float32
    assert item["keypoints_kind"] == "sprite" and item["fps"] == 16.0


def test_deterministic_by_seed_and_index_and_picklable():
    ds = SyntheticClips(32, 48, 5, 20, seed=3)
    again = pickle.loads(pickle.dumps(SyntheticClips(32, 48, 5, 20, seed=3)))
    for i in (0, 7, -1):
        a, b = ds[i], again[i]
        for key in ("video", "mask", "keypoints"):
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(ds[0]["video"], ds[1]["video"])
    assert not np.array_equal(ds[0]["video"], SyntheticClips(32, 48, 5, 20, seed=4)[0]["video"])
    np.testing.assert_array_equal(grain.MapDataset.source(ds)[7]["mask"], ds[7]["mask"])


@SETTINGS
@given(sizes, st.integers(0, 2**31), st.integers(0, 30))
def test_mask_is_exactly_the_visible_subject(size, seed, i):
    h, w, f = size
    ds = SyntheticClips(h, w, f, 31, seed, p_occlude=0.7)
    scene, video, top = ds.render(i)
    mask = ds[i]["mask"].astype(bool)
    k, look = scene.subject, scene.sprites[scene.subject][0]
    magenta = render_scene(scene, h, w, f, {k: flat(look, (255, 0, 255))})[0]
    green = render_scene(scene, h, w, f, {k: flat(look, (0, 255, 0))})[0]
    without = render_scene(scene, h, w, f, hidden=(k,))[0]
    np.testing.assert_array_equal((magenta != green).any(axis=-1), mask)  # recolouring changes the mask only
    changed = (magenta != without).any(axis=-1) | (green != without).any(axis=-1)
    assert changed[mask].all()  # under the mask the subject is what you see
    np.testing.assert_array_equal(video[~mask], without[~mask])  # outside, removing it changes nothing


def test_occluder_passes_in_front_of_the_subject():
    ds = SyntheticClips(64, 64, 9, 40, 0, p_occlude=1.0)
    i = occluded_index(ds)
    scene, _, top = ds.render(i)
    unoccluded = render_scene(scene, 64, 64, 9, hidden=(len(scene.sprites) - 1,))[1] == scene.subject
    visible = top == scene.subject
    assert (visible <= unoccluded).all() and visible.sum() < unoccluded.sum()
    assert visible.any(axis=(1, 2)).all()


@SETTINGS
@given(sizes, st.integers(0, 2**31), st.integers(0, 30))
def test_swap_pair_target_equals_source_outside_both_sprites(size, seed, i):
    h, w, f = size
    ds = SyntheticClips(h, w, f, 31, seed, p_occlude=0.5)
    pair = ds.swap_pair(i, 24)
    np.testing.assert_array_equal(pair["video"], ds[i]["video"])
    assert pair["reference"].shape == (24, 24, 3) and pair["reference"].dtype == np.uint8
    assert pair["target"].shape == pair["video"].shape and pair["target_mask"].shape == pair["mask"].shape
    outside = (pair["mask"] == 0) & (pair["target_mask"] == 0)
    np.testing.assert_array_equal(pair["target"][outside], pair["video"][outside])
    assert pair["target_mask"].any()
    again = ds.swap_pair(i, 24)
    for key in ("reference", "target", "target_mask"):
        np.testing.assert_array_equal(again[key], pair[key])


def test_swap_pair_uses_a_different_sprite():
    ds = SyntheticClips(64, 64, 5, 10, 1)
    for i in range(10):
        pair = ds.swap_pair(i, 32)
        assert not np.array_equal(pair["mask"], pair["target_mask"])  # another shape
        assert not np.array_equal(pair["target"], pair["video"])
        grey = (pair["reference"] == 128).all(axis=-1)
        assert grey[0].any() or grey[:, 0].any()  # the sprite sits on neutral grey, padded to a square
        assert (~grey).mean() > 0.2


@SETTINGS
@given(sizes, st.integers(0, 2**31), st.integers(0, 30))
def test_keypoints_follow_the_subject_and_are_inside_when_visible(size, seed, i):
    h, w, f = size
    ds = SyntheticClips(h, w, f, 31, seed, p_occlude=0.5)
    scene, _, top = ds.render(i)
    kps = ds[i]["keypoints"]
    vis = kps[..., 2] > 0
    assert set(np.unique(kps[..., 2])) <= {0.0, 1.0}
    xi, yi = np.round(kps[..., 0]).astype(int), np.round(kps[..., 1]).astype(int)
    assert ((xi >= 0) & (xi < w) & (yi >= 0) & (yi < h))[vis].all()
    frames = np.nonzero(vis)[0]
    assert (top[frames, yi[vis], xi[vis]] <= scene.subject).all()  # nothing drawn over a visible point
    whole = render_scene(scene, h, w, f, hidden=tuple(range(scene.subject + 1, len(scene.sprites))))[1]
    radius = placement(scene, scene.subject, clip_times(f), h, w)[1]  # [F] on-screen radius
    for t in range(f):  # every point lies within the (unoccluded) subject's box: carried by its motion and camera
        ys, xs = np.nonzero(whole[t] == scene.subject)
        slack = 1 + 0.2 * radius[t]  # the points sit at 0.55 radius: a thin triangle's box may end before them
        if ys.size and kps[t, :, 2].all():
            assert (kps[t, :, 0] >= xs.min() - slack).all() and (kps[t, :, 0] <= xs.max() + slack).all()
            assert (kps[t, :, 1] >= ys.min() - slack).all() and (kps[t, :, 1] <= ys.max() + slack).all()


def test_scene_is_resolution_independent():
    small, big = SyntheticClips(48, 64, 5, 8, 2), SyntheticClips(96, 128, 5, 8, 2)
    for i in range(8):
        a, b = small[i]["keypoints"], big[i]["keypoints"]
        np.testing.assert_allclose((a[..., :2] + 0.5) * 2, b[..., :2] + 0.5, atol=1e-3)  # same path, scaled
        ma, mb = small[i]["mask"], big[i]["mask"]
        assert abs(ma.mean() - mb.mean()) < 0.03  # same share of the frame


def test_textures_and_shapes():
    rng = np.random.default_rng(0)
    for kind in assets.TEXTURE_KINDS:
        spec = dataclasses.replace(assets.sample_texture(rng), kind=kind)
        tex = assets.render_texture(spec, 20, 30)
        assert tex.shape == (20, 30, 3) and tex.dtype == np.uint8
        np.testing.assert_array_equal(tex, assets.render_texture(spec, 20, 30))
        assert kind == "flat" or tex.std() > 0
    seen = set()
    for _ in range(200):
        shape = assets.sample_shape(rng, exclude="star")
        seen.add(shape.kind)
        for t in (0.0, 0.5, 1.0):
            for contour in (c for piece in assets.outline(shape, t) for c in piece):
                assert contour.ndim == 2 and contour.shape[1] == 2 and np.abs(contour).max() <= 1.0 + 1e-9
    assert seen == set(assets.SHAPE_KINDS) - {"star"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="must be >= 8"):
        SyntheticClips(4, 64, 5, 10)
    with pytest.raises(ValueError, match="num_sprites"):
        SyntheticClips(64, 64, 5, 10, num_sprites=(0, 2))
    with pytest.raises(IndexError, match="clip index 10 out of range"):
        SyntheticClips(16, 16, 1, 10)[10]
