"""Optional conditions: pose-attention, identity token, semantic points (features, removal, drag). Absent -> the base
model exactly; fresh zero-initialised branches -> the base model; point maps and drags against hand computations."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from swapjax.convert.swap import swap_state_from_base
from swapjax.models.conditions import PointInputs
from swapjax.models.conditions.point_edits import drag_point, remove_points
from swapjax.models.conditions.points import point_feature_map, point_token_index
from swapjax.models.swap import abstract_swap
from swap_fixtures import ALL_ON, DIT, SWAP, TINY_CONDITIONS, apply, inputs, random_state, restrict
from swap_reference import condition_layers


@pytest.fixture(scope="module")
def models():
    graphdef, state = random_state(DIT, ALL_ON)
    return (graphdef, state), restrict(state, DIT, SWAP), inputs(ALL_ON)


def _run(model, x, **conditions):
    graphdef, state = model
    return np.asarray(apply(graphdef, state, x._replace(conditions=conditions)))


def test_absent_conditions_reproduce_the_base_model(models):
    full, base, x = models
    c = x.conditions
    reference = _run(base, x)
    np.testing.assert_array_equal(_run(full, x), reference)  # no pose, no identity, no points
    np.testing.assert_array_equal(_run(full, x, pose=c["pose"]._replace(scale=0.0)), reference)  # λ = 0
    removed = c["points"]._replace(keep=np.zeros((2, TINY_CONDITIONS["points"]["num_points"]), bool))
    np.testing.assert_array_equal(_run(full, x, points=removed), reference)  # every point removed
    # ... and each condition does act when present (the branches have random, non-zero weights here)
    for present in (dict(pose=c["pose"]._replace(scale=0.5)), dict(identity=c["identity"]), dict(points=c["points"])):
        assert np.abs(_run(full, x, **present) - reference).max() > 1e-3, list(present)


def test_fresh_pose_and_point_branches_start_as_the_base_model(models):
    """Loading the base into a model with pose-attention and points: zero-initialised V' and point MLP outputs leave
    the output unchanged at any λ (the identity token is documented not to: it joins the softmax)."""
    _, base, x = models
    swap = dataclasses.replace(ALL_ON, conditions=ALL_ON.conditions.with_names(("pose", "points")))
    state = swap_state_from_base(DIT, base[1], DIT, swap, jax.random.key(7))
    graphdef, _ = abstract_swap(DIT, swap)
    c = x.conditions
    out = _run((graphdef, state), x, pose=c["pose"]._replace(scale=1.0), points=c["points"])
    np.testing.assert_array_equal(out, _run(base, x))


def test_point_token_index_hand_example():
    """Grid 2 latent frames x 2 x 3 tokens (32 x 48 px); latent frame i reads source frame 4i."""
    coords = np.full((1, 5, 3, 2), 1000.0, np.float32)  # frames 1-3 are never read
    coords[0, 0] = [[5, 20], [47.9, 0], [50, 3]]  # -> token (row 1, col 0) = 3; (0, 2) = 2; col 3: outside
    coords[0, 4] = [[16, 15.99], [1, 1], [33, 31]]  # -> 6 + (0, 1) = 7; invisible; 6 + (1, 2) = 11
    visible = np.ones((1, 5, 3), bool)
    visible[0, 4, 1] = False
    coords, visible = jnp.asarray(coords), jnp.asarray(visible)
    kw = dict(grid=(2, 2, 3), pixels_per_token=(16, 16), frames_per_latent=4)
    np.testing.assert_array_equal(point_token_index(coords, visible, None, **kw), [[[3, 2, 12], [7, 12, 11]]])
    keep = jnp.array([[True, True, False]])
    np.testing.assert_array_equal(point_token_index(coords, visible, keep, **kw), [[[3, 2, 12], [7, 12, 12]]])
    with pytest.raises(ValueError, match="cover 4 frames: a latent of 2 frames needs 5"):
        point_token_index(coords[:, :4], visible[:, :4], None, **kw)


def test_point_feature_map_hand_example():
    feats = np.array([[[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]]], np.float32)  # [B=1, K=3, D=2]
    index = np.array([[[0, 4, 4], [5, 6, 1]]])  # [B, f=2, K]; 6 = L: writes nothing
    expected = np.zeros((1, 6, 2), np.float32)
    expected[0, 0] = [1, 2]  # point 0, frame 0
    expected[0, 4] = [110, 220]  # points 1 and 2 share a token: summed
    expected[0, 5] = [1, 2]  # point 0, frame 1
    expected[0, 1] = [100, 200]  # point 2, frame 1
    np.testing.assert_array_equal(point_feature_map(jnp.asarray(feats), jnp.asarray(index), 6), expected)


def test_point_features_in_the_model_match_a_hand_computation(models):
    """The residual a layer receives = the map of that layer's MLP(e) = fc2(silu(fc1 e)) at the points' tokens, after
    the prefix tokens in a single pass; layers without points get an all-zero map."""
    (graphdef, state), _, x = models
    model = nnx.merge(graphdef, state)
    points = x.conditions["points"]
    lp = ALL_ON.num_prefix_frames * 4
    video = model.video_stream(x.fused.shape)  # grid (3, 2, 2)
    _, fn = condition_layers(model, model.prepare_conditions({"points": points}, video), video, prefix_tokens=lp)
    mlp = nnx.to_pure_dict(nnx.state(model.points.mlps.stack))
    w1, b1, w2, b2 = (np.asarray(mlp[a][b])[0] for a, b in (("fc1", "kernel"), ("fc1", "bias"),
                                                            ("fc2", "kernel"), ("fc2", "bias")))
    hidden = points.embeddings @ w1 + b1
    feats = (hidden / (1 + np.exp(-hidden))) @ w2 + b2  # [B, K, D]
    expected = np.zeros((2, lp + 12, DIT.inner_dim), np.float32)
    for b in range(2):
        for i in range(3):
            for k in range(TINY_CONDITIONS["points"]["num_points"]):
                x_px, y_px = points.coords[b, 4 * i, k]
                if points.visible[b, 4 * i, k]:
                    expected[b, lp + i * 4 + int(y_px // 16) * 2 + int(x_px // 16)] += feats[b, k]
    assert expected.any()
    on = fn({"points": {"slot": jnp.int32(0), "on": jnp.float32(1.0)}}).residual
    np.testing.assert_allclose(on, expected, rtol=1e-5, atol=1e-5)
    off = fn({"points": {"slot": jnp.int32(0), "on": jnp.float32(0.0)}}).residual
    assert not np.asarray(off).any()


def _affine_tracks(frames: int, k: int, seed: int = 0):
    """Points following a different rotation/scale/shear + translation per frame: p_n = M_n c + b_n."""
    rng = np.random.default_rng(seed)
    canon = rng.uniform(0, 100, (k, 2))
    mats, coords = [], np.zeros((frames, k, 2))
    for n in range(frames):
        a, s = 0.2 * n, 1.0 + 0.1 * n
        m = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.array([[1.0, 0.05 * n], [0, 1.0]])
        mats.append(m)
        coords[n] = canon @ m.T + np.array([3.0 * n, -2.0 * n])
    return coords, mats


def test_drag_moves_the_keyframe_exactly_and_other_frames_by_the_local_affine_displacement():
    coords, mats = _affine_tracks(frames=5, k=6)
    visible = np.ones((5, 6), bool)
    key, point, delta = 2, 4, np.array([7.0, -3.0])
    out = drag_point(coords, visible, point, key, tuple(delta))
    np.testing.assert_array_equal(out[key, point], coords[key, point] + delta)
    np.testing.assert_array_equal(np.delete(out, point, axis=1), np.delete(coords, point, axis=1))
    for n in range(5):
        moved = mats[n] @ np.linalg.inv(mats[key]) @ delta  # the displacement carried from frame `key` to frame n
        np.testing.assert_allclose(out[n, point], coords[n, point] + moved, rtol=0, atol=1e-9)
        if n != key:
            assert np.abs(moved - delta).max() > 0.5  # a plain copy of the displacement would fail here
    # with fewer than 3 neighbours visible in a frame, that frame falls back to the plain displacement
    visible[0, :] = False
    visible[0, [0, point]] = True
    out = drag_point(coords, visible, point, key, tuple(delta))
    np.testing.assert_allclose(out[0, point], coords[0, point] + delta, atol=1e-12)


def test_remove_points():
    keep = remove_points(np.ones((2, 4), bool), [1, 3])
    np.testing.assert_array_equal(keep, [[True, False, True, False]] * 2)
    with pytest.raises(ValueError, match=r"point indices \[4\] are outside"):
        remove_points(keep, [4])


def test_point_inputs_are_validated(models):
    (graphdef, state), _, x = models
    p = x.conditions["points"]
    with pytest.raises(ValueError, match="point embeddings have shape"):
        jax.eval_shape(lambda: _run((graphdef, state), x, points=p._replace(embeddings=p.embeddings[..., :3])))
    with pytest.raises(ValueError, match="conditions.points.num_points = 4"):
        jax.eval_shape(lambda: _run((graphdef, state), x, points=PointInputs(p.coords[:, :, :2], p.visible[:, :, :2],
                                                                             p.embeddings[:, :2])))
