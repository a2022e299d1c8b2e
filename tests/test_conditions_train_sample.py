"""One model from training to sampling, for the conditions: every enabled condition (pose, identity, points, and
a toy condition registered in this file only) gets its inputs from the training batch the loop prepares and
receives gradients in stage 1 and stage 2, on one device and on 8; in sampling the same conditions get the same
inputs from a window, and each one changes the sample (its inputs reach the model)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from swapjax.models.conditions import Condition, condition_inputs, register_condition
from swapjax.models.layer_inputs import LayerInputs
from swapjax.models.swap import model_inputs
from swapjax.models.vae import abstract_vae
from swapjax.sample.engine import Engine, WindowInputs
from swapjax.train.data import ShardedBatches
from swapjax.train.hosts import global_batch
from swapjax.train.loop import batch_preparation, build_dit, with_condition_data
from swapjax.train.objective import swap_objective
from swapjax.train.prepare import PIXEL_KEYS
from swapjax.train.state import select
from sample_fixtures import SAMPLE, random_models, random_values
from train_fixtures import on_mesh, randomized, tiny_config

NAMES = ("pose", "identity", "points", "toy_gain")


class ToyGainInputs(NamedTuple):
    latent: jax.Array  # [B, f, h, w, C] the condition latent


@register_condition("toy_gain")
class ToyGainCondition(Condition):
    """Reads the condition latent and adds a linear map of each token's latent patch to the block input."""

    batch_keys = ("condition_latents",)

    @classmethod
    def inputs_from_batch(cls, batch, swap) -> ToyGainInputs:
        return ToyGainInputs(batch["condition_latents"])

    def __init__(self, cfg, swap, *, rngs: nnx.Rngs):
        self.patch = cfg.patch_size[1:]
        self.proj = nnx.Linear(swap.condition_channels * self.patch[0] * self.patch[1], cfg.inner_dim, rngs=rngs)

    def prepare(self, inputs: ToyGainInputs, video) -> jax.Array:
        b, f, h, w, c = inputs.latent.shape
        ph, pw = self.patch
        x = inputs.latent.reshape(b, f, h // ph, ph, w // pw, pw, c).transpose(0, 1, 2, 4, 3, 5, 6)
        return self.proj(x.reshape(b, -1, ph * pw * c))  # [B, Lv, D]

    def layer_inputs(self, prepared: jax.Array, layer, video) -> LayerInputs:
        return LayerInputs(residual=prepared)


def _config(stage: str, batch: int = 2):
    config = tiny_config(f"train.stage={stage}", "swap.conditions=pose,identity,points,toy_gain",
                         "swap.conditions.pose.widths=8", "swap.conditions.identity.dim=64",
                         "swap.conditions.points.num_points=5", "swap.conditions.points.point_dim=8",
                         "swap.conditions.points.hidden=16", f"data.batch_size={batch}")
    return with_condition_data(config)


def _training_batch(config, mesh):
    """A model batch made the way the loop makes it: the data pipeline, then `batch_preparation`."""
    vae_graph, vae_state = abstract_vae(config.vae)
    vae_params = nnx.to_pure_dict(random_values(vae_state, 1, 0.1))
    prepare, args = batch_preparation(config, vae_graph, config.vae, vae_params, mesh)
    pixels = global_batch(next(ShardedBatches(config.data, config.seed)), mesh, PIXEL_KEYS)
    return jax.jit(prepare)(args, pixels, jax.random.key_data(jax.random.key(0)), np.int32(0))


def _condition_grads(stage: str, sizes: dict[str, int] | None, batch: int = 2) -> dict[str, float]:
    """Gradient norm of each condition's trained parameters, from a batch the loop's preparation made."""
    config = _config(stage, batch)
    with on_mesh(sizes) as mesh:
        setup = build_dit(config, mesh)
        state = randomized(setup, setup.plan.create(0))  # a converted-model stand-in: no zero head or branch
        batch = _training_batch(config, mesh)
        assert set(condition_inputs(config.swap, batch)) == set(NAMES)
        objective = swap_objective(setup.graphdef, config.loss, config.swap)
        grads = jax.jit(jax.grad(lambda p: objective(p, batch, jax.random.key(0), None)[0]))(state.params["model"])
    trained = select({"model": grads}, setup.labels)["model"]
    return {name: float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(trained.get(name, {})))) for name in NAMES}


def test_every_condition_trains_from_the_loops_batch_in_stage_1():
    norms = _condition_grads("1", None)
    assert all(v > 0 for v in norms.values()), norms  # each condition is labelled trained and gets a gradient


@pytest.mark.slow
def test_every_condition_trains_in_stage_2_on_one_device_and_on_eight():
    one = _condition_grads("2", None, batch=4)
    eight = _condition_grads("2", {"data": 2, "fsdp": 2, "tensor": 2}, batch=4)
    for name in NAMES:  # stage 2 on one device: every condition gets a gradient; on 8 the same one
        assert one[name] > 0 and eight[name] == pytest.approx(one[name], rel=1e-3), (name, one, eight)


def _window(config, engine: Engine, rng: np.random.Generator, **changes) -> WindowInputs:
    f, size = 5, config.data.height
    window = WindowInputs(
        pixels=rng.uniform(-1, 1, (f, size, size, 3)).astype(np.float32),
        mask=np.pad(np.ones((f, size // 2, size // 2), np.float32), ((0, 0), (8, 8), (8, 8))),
        condition=rng.uniform(-1, 1, (f, size, size, 3)).astype(np.float32),
        reference=engine.encode_image(rng.uniform(-1, 1, (size, size, 3)).astype(np.float32)),
        anchor=None, text=None,
        keypoints=np.concatenate([rng.uniform(0, size, (f, 5, 2)), np.ones((f, 5, 1))], -1).astype(np.float32),
        reference_embedding=engine.embed_reference(rng.uniform(-1, 1, (16, 16, 3)).astype(np.float32)))
    return window._replace(**changes)


def test_every_condition_reaches_the_sampled_model():
    config = _config("2").replace(sample=SAMPLE)
    models = random_models(config, seed=2)
    engine = Engine(models, SAMPLE)
    window = _window(config, engine, np.random.default_rng(0))
    z_condition = engine.encode(window.condition[None])
    batch = {"fused": jnp.zeros((1, 2, 4, 4, config.dit.in_channels)), "t": jnp.zeros((1,)),
             "context": jnp.zeros((1, 1, config.dit.text_dim)), **engine.condition_arrays(window, z_condition)}
    assert set(model_inputs(batch, config.swap).conditions) == set(NAMES)  # the window feeds all four
    scales = np.array([1.0, 1.0], np.float32)
    full = engine.generate(window, jax.random.key(0), scales)
    without = {"keypoints": window._replace(keypoints=None),  # points
               "reference_embedding": window._replace(reference_embedding=None)}  # identity
    for what, other in without.items():
        assert np.abs(engine.generate(other, jax.random.key(0), scales) - full).max() > 1e-4, what
    # pose and the toy both read the condition latent: zeroing each one's parameters changes the sample
    for name in ("pose", "toy_gain"):
        off = random_models(config, seed=2)
        for path, var in nnx.to_flat_state(off.dit_state):
            if path[0] == name:
                var.set_value(jnp.zeros_like(var.get_value()))
        engine_off = Engine(off, SAMPLE)
        assert np.abs(engine_off.generate(window, jax.random.key(0), scales) - full).max() > 1e-4, name


def test_a_jobs_keypoint_track_reaches_the_points_condition():
    """`sample.py --keypoints` feeds the points condition too: padded with invisible points to the model's count
    (as training pads its examples), mapped to model pixels; more points than the model reads is one InputError."""
    from swapjax.errors import InputError
    from swapjax.sample.pipeline import swap_video
    from sample_fixtures import swap_inputs

    config = _config("2").replace(sample=SAMPLE)
    config = config.replace(swap=dataclasses.replace(config.swap, conditions=config.swap.conditions.with_names(
        ("points",))))
    engine = Engine(random_models(config, seed=4), SAMPLE)
    rng = np.random.default_rng(1)
    track = np.concatenate([rng.uniform(4, 28, (5, 3, 2)), np.ones((5, 3, 1))], -1).astype(np.float32)  # K = 3
    job = swap_inputs(5, seed=2)
    with_points = swap_video(engine, dataclasses.replace(job, keypoints=track), SAMPLE, config.data.mask)
    without = swap_video(engine, job, SAMPLE, config.data.mask)
    assert np.abs(with_points.generated.astype(int) - without.generated.astype(int)).max() > 0
    too_many = np.concatenate([track, track, track], axis=1)  # K = 9 > 5
    with pytest.raises(InputError, match="has 9 keypoints per frame, more than the 5 the run reads"):
        swap_video(engine, dataclasses.replace(job, keypoints=too_many), SAMPLE, config.data.mask)


def test_a_cases_keypoints_draw_the_pose_video_the_model_reads(tmp_path):
    """Evaluation cases (the demo's) carry the source's keypoints; a model whose condition reads the condition
    latent gets them drawn into the condition video, as training renders it."""
    from swapjax.sample.inputs import read_case
    from swapjax.sample.pipeline import swap_video
    from sample_fixtures import swap_inputs

    config = _config("2").replace(sample=SAMPLE)
    swap = dataclasses.replace(config.swap, condition_channels=0, conditions=config.swap.conditions.with_names(("pose",)))
    config = config.replace(swap=swap, dit=dataclasses.replace(config.dit, in_channels=swap.fused_channels(16)))
    engine = Engine(random_models(config, seed=5), SAMPLE)
    job = swap_inputs(5, seed=2)
    rng = np.random.default_rng(3)
    track = np.concatenate([rng.uniform(4, 28, (5, 5, 2)), np.ones((5, 5, 1))], -1).astype(np.float32)
    np.savez(tmp_path / "case.npz", source=job.video, mask=job.mask, reference=job.reference, keypoints=track,
             keypoints_kind=np.asarray("sprite"))
    case = read_case(tmp_path / "case.npz")
    np.testing.assert_array_equal(case.keypoints, track)
    with_pose = swap_video(engine, case, SAMPLE, config.data.mask)
    without = swap_video(engine, dataclasses.replace(case, keypoints=None), SAMPLE, config.data.mask)
    assert np.abs(with_pose.generated.astype(int) - without.generated.astype(int)).max() > 0


def test_the_demo_config_takes_a_condition_by_override(tmp_path):
    """`python -m swapjax.demo --set swap.conditions=pose`: the demo model has no fused condition channels, and
    the pose condition alone reads the rendered keypoint video."""
    from swapjax.config import load_config
    from swapjax.train.loop import validate
    from train_fixtures import ROOT

    config = with_condition_data(load_config(ROOT / "configs" / "demo.py", ["swap.conditions=pose", "data.batch_size=8"]))
    assert config.data.with_condition and config.swap.condition_channels == 0
    validate(config, tmp_path / "run")


@pytest.mark.parametrize("overrides, match", [
    (["swap.conditions=identity"], r"swap.conditions.identity.dim \(512\) must equal the embedding width of "
                                   r"loss.encoder = 'small' \(64\)"),
    (["swap.conditions.pose.channels=8"], r"swap.conditions.pose.channels \(8\) must be VAEConfig.z_dim \(16\)"),
    (["sample.overlap_frames=9"], r"sample.overlap_frames \(9\) puts the anchor on latent frame 2, but training clips "
                                  r"of data.num_frames = 5 have 2 latent frames"),
    (["sample.overlap_frames=4"], r"sample.overlap_frames \(4\) must be 1 mod the VAE's 4 frames per latent"),
])
def test_conditions_and_anchor_that_cannot_train_are_one_line_errors(overrides, match):
    from swapjax.errors import ConfigError
    from swapjax.train.loop import validate_conditions

    with pytest.raises(ConfigError, match=match):
        validate_conditions(with_condition_data(tiny_config(*overrides)))


def test_every_condition_samples_on_eight_devices_as_on_one():
    """The conditions' inputs reach the model under a mesh too (video tokens sharded over `sequence`, parameters
    over `fsdp`): the same window with all four conditions equals the one-device sample."""
    from swapjax.parallel import MeshConfig, make_mesh

    config = _config("2").replace(sample=SAMPLE)
    models = random_models(config, seed=2)
    scales = np.array([2.0, 1.0], np.float32)
    single = Engine(models, SAMPLE)
    window = _window(config, single, np.random.default_rng(0))
    expected = single.generate(window, jax.random.key(0), scales)
    mesh = make_mesh(MeshConfig(data=1, fsdp=2, sequence=4))
    sharded = Engine(models, SAMPLE, mesh=mesh)
    with jax.set_mesh(mesh):
        got = sharded.generate(window, jax.random.key(0), scales)
        without_points = sharded.generate(window._replace(keypoints=None), jax.random.key(0), scales)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.abs(without_points - got).max() > 1e-4  # the points' inputs reached the sharded model
