"""The condition interface, shown with a toy condition defined and registered in this file only (no file under
swapjax/models/ knows it): it composes with pose and points (branches add, residuals add), its per-video `prepare`
runs once per video and guidance branch however many steps read the cache, and absent or at zero scale it leaves
the model exactly as without it."""

from __future__ import annotations

import collections
import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from swapjax.errors import ConfigError
from swapjax.models.conditions import Condition, VideoStream, register_condition, registry
from swapjax.models.conditions.pose import PoseGuider
from swapjax.models.layer_inputs import LayerInputs, combine
from swapjax.models.swap import abstract_swap, null_prefix
from swap_reference import concat_caches
from swap_fixtures import ALL_ON, DIT, SWAP, apply, inputs, random_state, restrict, video_step

TOY_DIM, TOY_TOKENS = 6, 3
CALLS: collections.Counter = collections.Counter()


class ToyInputs(NamedTuple):
    embedding: jax.Array  # [B, TOY_DIM]
    scale: jax.Array | float = 1.0  # scalar or [B]


class ToyPrepared(NamedTuple):
    tokens: jax.Array  # [B, TOY_TOKENS, D]
    residual: jax.Array  # [B, D]
    scale: jax.Array  # [B]


@register_condition("toy")
class ToyCondition(Condition):
    """A per-video embedding mapped once to a few tokens (read as one attention branch in every layer, with a
    per-layer gain) and to one vector added to every video token."""

    def __init__(self, cfg, swap, *, rngs: nnx.Rngs):
        self.num_heads, self.num_layers = cfg.num_heads, cfg.num_layers
        self.to_tokens = nnx.Linear(TOY_DIM, TOY_TOKENS * cfg.inner_dim, rngs=rngs)
        self.to_residual = nnx.Linear(TOY_DIM, cfg.inner_dim, rngs=rngs)

    def prepare(self, inputs: ToyInputs, video: VideoStream) -> ToyPrepared:
        CALLS["prepare"] += 1
        tokens = self.to_tokens(inputs.embedding).reshape(video.batch, TOY_TOKENS, -1)  # [B, T, D]
        scale = jnp.broadcast_to(jnp.asarray(inputs.scale, jnp.float32), (video.batch,))
        return ToyPrepared(tokens, self.to_residual(inputs.embedding), scale)

    def layer_xs(self) -> jax.Array:
        return jnp.linspace(0.5, 1.0, self.num_layers)  # per-layer gain [layers]

    def layer_inputs(self, prepared: ToyPrepared, gain: jax.Array, video: VideoStream) -> LayerInputs:
        CALLS["layer_inputs"] += 1
        heads = lambda x: x.reshape(*x.shape[:-1], self.num_heads, -1)  # [B, T, N, H]
        lam = prepared.scale * gain  # [B]
        residual = lam[:, None, None] * prepared.residual[:, None]  # [B, 1, D]
        residual = jnp.broadcast_to(residual, (video.batch, video.num_tokens, residual.shape[-1]))  # [B, Lv, D]
        branch = (heads(prepared.tokens), heads(prepared.tokens[:, ::-1]), lam)
        return LayerInputs(branches=(branch,), residual=residual)


POSE_POINTS = dataclasses.replace(ALL_ON, conditions=ALL_ON.conditions.with_names(("pose", "points")))
WITH_TOY = dataclasses.replace(ALL_ON, conditions=ALL_ON.conditions.with_names(("pose", "points", "toy")))


@pytest.fixture(scope="module")
def setup():
    graphdef, state = random_state(DIT, WITH_TOY, seed=3)
    x = inputs(WITH_TOY)
    rng = np.random.default_rng(9)
    toy = ToyInputs(rng.standard_normal((2, TOY_DIM)).astype(np.float32))
    conditions = dict(pose=x.conditions["pose"], points=x.conditions["points"], toy=toy)
    return (graphdef, state), x._replace(conditions=conditions)


def _run(model, x, **conditions) -> np.ndarray:
    graphdef, state = model
    return np.asarray(apply(graphdef, state, x._replace(conditions=conditions)))


def test_toy_condition_is_built_from_config_alone(setup):
    (graphdef, state), _ = setup
    model = nnx.merge(graphdef, state)
    assert model.condition_names == ("pose", "points", "toy")
    assert isinstance(model.toy, ToyCondition)
    assert ("toy", "to_tokens", "kernel") in dict(nnx.to_flat_state(state))


def test_absent_or_zero_toy_leaves_the_model_unchanged(setup):
    """Absent -> the base model (its parameters without the condition modules) bit for bit; at scale 0 -> bit for
    bit what pose + points give without it."""
    model, x = setup
    c = x.conditions
    np.testing.assert_array_equal(_run(model, x), _run(restrict(model[1], DIT, SWAP), x))
    pose_points = restrict(model[1], DIT, POSE_POINTS)
    expected = _run(pose_points, x, pose=c["pose"], points=c["points"])
    np.testing.assert_array_equal(_run(model, x, pose=c["pose"], points=c["points"], toy=c["toy"]._replace(scale=0.0)),
                                  expected)
    assert np.abs(_run(model, x, **c) - expected).max() > 1e-3  # ... and at scale 1 the toy acts


def test_toy_composes_with_pose_and_points(setup):
    """Per layer, the combined inputs hold the pose branch and the toy branch side by side and the points' residual
    plus the toy's; in a block, the two branches together move the attention output by the sum of what each moves
    it alone."""
    (graphdef, state), x = setup
    model = nnx.merge(graphdef, state)
    video = model.video_stream(x.fused.shape)
    prepared = model.prepare_conditions(x.conditions, video)
    xs, fn = model.condition_layers(prepared, video)
    layer = jax.tree.map(lambda a: a[1], xs)  # layer 1 has pose, points (point_layers=(1,)) and the toy
    alone = {name: model.condition_layers({name: prepared[name]}, video)[1]({name: layer[name]})
             for name in ("pose", "points", "toy")}
    both = fn(layer)
    assert len(both.branches) == 2
    for got, want in zip(both.branches, alone["pose"].branches + alone["toy"].branches):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(both.residual, alone["points"].residual + alone["toy"].residual)
    assert np.abs(alone["points"].residual).max() > 0 and np.abs(alone["toy"].residual).max() > 0

    block_def, block_state = nnx.split(model.blocks)
    block = nnx.merge(block_def, jax.tree.map(lambda p: p[1], block_state))
    h = jax.random.normal(jax.random.key(0), (2, video.num_tokens, DIT.inner_dim))  # [B, Lv, D]
    attend = lambda *branches: np.asarray(block.self_attention(h, video.rope, branches=branches)[0], np.float64)
    pose_b, toy_b = both.branches
    base = attend()
    d_pose, d_toy, d_both = attend(pose_b) - base, attend(toy_b) - base, attend(pose_b, toy_b) - base
    assert np.abs(d_pose).max() > 1e-2 and np.abs(d_toy).max() > 1e-2
    np.testing.assert_allclose(d_both, d_pose + d_toy, rtol=0, atol=1e-5 * np.abs(d_both).max())


def test_combine_adds_residuals_and_concatenates_branches_and_tokens():
    r1, r2 = jnp.ones((1, 4, 2)), jnp.full((1, 4, 2), 2.0)
    t1, t2 = jnp.zeros((1, 1, 2)), jnp.ones((1, 2, 2))
    b1, b2 = ("k1", "v1", 1.0), ("k2", "v2", 0.5)
    out = combine([LayerInputs(branches=(b1,), residual=r1, extra_tokens=t1), LayerInputs(),
                   LayerInputs(branches=(b2,), residual=r2, extra_tokens=t2)])
    assert out.branches == (b1, b2)
    np.testing.assert_array_equal(out.residual, np.full((1, 4, 2), 3.0))
    np.testing.assert_array_equal(out.extra_tokens, np.concatenate([t1, t2], axis=1))
    assert combine([]) == LayerInputs()


def test_prepare_runs_once_per_video_and_guidance_branch(setup, monkeypatch):
    """Two guidance branches -> two prepares (toy and PoseGuider alike); three sampling steps over the
    concatenated cache add none: the compiled step reads the cached features and only builds per-layer inputs."""
    (graphdef, state), x = setup
    model = nnx.merge(graphdef, state)
    guider_calls = []
    original = PoseGuider.__call__
    monkeypatch.setattr(PoseGuider, "__call__", lambda self, cond: guider_calls.append(1) or original(self, cond))
    CALLS.clear()
    null = x._replace(context=np.zeros_like(x.context), image_context=np.zeros_like(x.image_context),
                      prefix=null_prefix(x.prefix[:, :1, ..., :16], WITH_TOY, x.prefix[:, 1:, ..., :16]))
    cache = concat_caches(model.prefix_cache(x), model.prefix_cache(null))
    assert CALLS["prepare"] == 2 and len(guider_calls) == 2
    rng = np.random.default_rng(4)
    velocities = []
    for step in range(3):
        fused = rng.standard_normal((4, *x.fused.shape[1:])).astype(np.float32)
        velocities.append(np.asarray(video_step(graphdef, state, cache, fused, np.full((4,), 0.3 * step, np.float32))))
    assert CALLS["prepare"] == 2 and len(guider_calls) == 2
    assert CALLS["layer_inputs"] == 1  # the step traced once: its per-layer inputs, no prepare inside
    assert all(np.isfinite(v).all() and v.shape == (4, 3, 4, 4, 16) for v in velocities)


def test_registry_errors_name_the_fix(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # registrations below end with the test
    with pytest.raises(ConfigError, match=r"conditions names 'nope', which is not a registered condition "
                                          r"\(registered: pose, identity, points, toy"):
        abstract_swap(DIT, dataclasses.replace(SWAP, conditions=("nope",)))
    with pytest.raises(ConfigError, match=r"conditions\['toy'\] = \{'gain': 2\}: condition 'toy' takes no arguments"):
        abstract_swap(DIT, dataclasses.replace(SWAP, conditions={"toy": {"gain": 2}}))
    with pytest.raises(ConfigError, match=r"conditions\['pose'\] has no argument\(s\) \['lam'\]; allowed: channels"):
        abstract_swap(DIT, dataclasses.replace(SWAP, conditions={"pose": {"lam": 2}}))
    with pytest.raises(ValueError, match="condition 'toy' is already registered"):
        register_condition("toy")(lambda cfg, swap, *, rngs: None)
    with pytest.raises(ValueError, match="'blocks' clashes with an attribute of the swap model"):
        register_condition("blocks")(ToyCondition)
        abstract_swap(DIT, dataclasses.replace(SWAP, conditions=("blocks",)))
