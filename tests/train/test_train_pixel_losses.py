"""The train step with the pixel-space loss terms (identity coherence, MEAR, identity): the step's loss equals
`total_loss` on the same inputs computed outside it, gradients are finite, and a flow-matching-only step holds
no VAE decoder."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.extend.core import ClosedJaxpr, Jaxpr, jaxprs_in_params

from train_fixtures import ROOT, on_mesh, tiny_config
from swapjax.data.pipeline import make_iterator
from swapjax.loss_maps import frame_identity_cosines, mear_latent_weights, subject_crops
from swapjax.errors import ConfigError
from swapjax.losses import LossConfig, LossInputs, total_loss
from swapjax.models.image_encoder import encode_images
from swapjax.models.swap import SwapInputs
from swapjax.models.vae import denormalize_latents, vae_decode
from swapjax.train.hosts import batch_sharding, global_batch
from swapjax.train.loop import build_dit, validate
from swapjax.train.pixel_terms import DECODE_SCOPE, GREY, FrozenModels, load_image_encoder, pixel_keys
from swapjax.train.prepare import PIXEL_KEYS, PrepareConfig, assemble_batch, encode_batch
from swapjax.train.state import replicated
from swapjax.train.vae_stage import load_vae

ALL_TERMS = ("loss.flow_matching_weight=0.5", "loss.coherence_weight=1", "loss.coherence_delta=0.2",
             "loss.mear_weight=1.5", "loss.mear_sigma=3", "loss.identity_weight=0.3", "data.num_keypoints=6")


@pytest.fixture(scope="module")
def mesh_vae_batch(tmp_path_factory):
    """One device mesh (entered for the module), the run's random VAE, and one batch prepared as the loop does
    it (VAE encode, the pixels every term reads passed through, noise and fusion)."""
    config = tiny_config(*ALL_TERMS)
    with on_mesh() as mesh:
        vae_graphdef, vae_params, vae_cfg = vae = load_vae(config, tmp_path_factory.mktemp("vae"), mesh)
        pixels = global_batch(next(make_iterator(config.data, 0, shard_index=0, shard_count=1)), mesh, PIXEL_KEYS)
        encode = jax.jit(functools.partial(encode_batch, vae_graphdef, vae=vae_cfg, swap=config.swap,
                                           with_condition=False))
        latents = {**encode(vae_params, pixels), **{k: pixels[k] for k in pixel_keys(config.loss)}}
        prep = PrepareConfig(swap=config.swap, text_len=config.train.text_len, text_dim=config.dit.text_dim)
        batch = assemble_batch(latents, jax.random.key_data(jax.random.key(1)), jnp.int32(0), cfg=prep)
        yield mesh, vae, batch


def _setup(config, mesh, vae):
    """The loop's pieces for `config`: frozen models and their parameters, the DiT setup."""
    vae_graphdef, vae_params, vae_cfg = vae
    enc_graphdef, enc_params = load_image_encoder(config.loss, replicated(mesh))
    models = FrozenModels(vae_graphdef, vae_cfg, enc_graphdef)
    return build_dit(config, mesh, models), models, {"vae": vae_params, "encoder": enc_params}


def _perturbed(params):
    """Every parameter moved by 0.2 N(0, 1) in one compiled program (the init zeroes the output head, which would
    hide the gradient); the EMA is not read by one step's loss."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    return treedef.unflatten([p + 0.2 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)])


def _expected(config, setup, models, frozen, params, batch):
    """`total_loss` and its terms from the library functions, outside the step (the reference of the test)."""
    loss = config.loss
    model = nnx.merge(setup.graphdef, params["model"])
    v = model(SwapInputs(fused=batch["fused"], t=batch["t"], context=batch["context"], prefix=batch["prefix"]))
    x0 = batch["noisy"] - batch["t"][:, None, None, None, None] * v
    frames = vae_decode(models.vae_graphdef, frozen["vae"], denormalize_latents(x0, models.vae))
    encode = functools.partial(encode_images, nnx.merge(models.encoder_graphdef, frozen["encoder"]))
    crops = subject_crops(frames, batch["subject_mask"], batch["reference"].shape[1], GREY)
    kps = batch["keypoints"]
    inputs = LossInputs(
        v_pred=v, v_target=batch["target"], subject_mask=batch["subject"],
        frame_cos=frame_identity_cosines(encode, crops, batch["reference"]),
        mear_weights=mear_latent_weights(batch["video"], kps[..., :2], alpha=loss.mear_alpha, beta=loss.mear_beta,
                                         sigma=loss.mear_sigma, landmark_valid=(kps[..., 2] > 0).astype(jnp.float32)),
        x0_pred_px=frames, x0_px=batch["video"], head_mask=batch["subject_mask"],
        identity_cos=frame_identity_cosines(encode, crops, batch["reference"]))
    return total_loss(loss, inputs)


def test_every_term_trains_and_the_step_loss_equals_total_loss_outside(mesh_vae_batch):
    mesh, vae, batch = mesh_vae_batch
    config = tiny_config("train.stage=2", *ALL_TERMS)
    setup, models, frozen = _setup(config, mesh, vae)
    state = setup.plan.create(0)
    state = state.replace(params=jax.jit(_perturbed, out_shardings=setup.plan.shardings.params)(state.params))
    want, want_terms = jax.jit(functools.partial(_expected, config, setup, models))(frozen, state.params, batch)
    batch_sh = {k: batch_sharding(mesh, v.ndim) for k, v in batch.items()}
    step = jax.jit(setup.step, in_shardings=(setup.plan.shardings, batch_sh, None), donate_argnums=0)
    state, metrics = step(state, batch, frozen)
    assert bool(metrics["finite"]) and np.isfinite(float(metrics["grad_norm"])) and float(metrics["grad_norm"]) > 0
    np.testing.assert_allclose(float(metrics["loss"]), float(want), rtol=1e-5, atol=1e-5)
    for term in ("flow_matching", "coherence", "mear", "identity"):
        np.testing.assert_allclose(float(metrics[f"loss/{term}"]), float(want_terms[f"loss/{term}"]), rtol=1e-5,
                                   atol=1e-5, err_msg=term)


def _scopes(jaxpr: Jaxpr) -> set[str]:
    """Every name scope in `jaxpr` and the jaxprs nested in its equations."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(str(eqn.source_info.name_stack))
        for sub in jaxprs_in_params(eqn.params):
            names |= _scopes(sub.jaxpr if isinstance(sub, ClosedJaxpr) else sub)
    return names


def test_a_flow_matching_step_holds_no_decoder_and_coherence_decodes_without_gradient(mesh_vae_batch):
    mesh, vae, batch = mesh_vae_batch
    setup, _, frozen = _setup(tiny_config("train.stage=2", "loss.coherence_weight=1"), mesh, vae)
    scopes = _scopes(jax.make_jaxpr(setup.step)(setup.plan.abstract, batch, frozen).jaxpr)
    assert any(DECODE_SCOPE in s for s in scopes)
    # coherence's weights carry no gradient: nothing is differentiated through the decoder
    assert not any(DECODE_SCOPE in s and "transpose" in s for s in scopes)
    plain = build_dit(tiny_config("train.stage=2"), mesh)  # flow matching only: no frozen models at all
    scopes = _scopes(jax.make_jaxpr(plain.step)(plain.plan.abstract, batch, None).jaxpr)
    assert not any(DECODE_SCOPE in s for s in scopes)


def test_the_iresnet_encoder_loads_from_the_insightface_checkpoint_in_the_loss_config(tmp_path):
    import torch
    from safetensors.torch import save_file
    import importlib.util

    # the IResNet reference lives with the models' tests (tests/models/test_iresnet.py), not on this folder's path
    spec = importlib.util.spec_from_file_location("test_iresnet", ROOT / "tests" / "models" / "test_iresnet.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    TorchIResNet, _randomised = reference.TorchIResNet, reference._randomised

    model = _randomised(TorchIResNet((1, 1, 1, 1), 8, 16), seed=3)
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loss = LossConfig(identity_weight=1.0, encoder="iresnet", encoder_checkpoint=str(path))
    with on_mesh() as mesh:
        graphdef, params = load_image_encoder(loss, replicated(mesh))
    images = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3), minval=-1, maxval=1)
    got = encode_images(nnx.merge(graphdef, params), images)  # resized to the encoder's 112 x 112
    resized = np.array(jax.image.resize(images, (2, 112, 112, 3), method="linear"))
    with torch.no_grad():
        want = model(torch.from_numpy(resized).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("overrides, message", [
    (("loss.mear_weight=1",), r"loss.mear_beta = 1.0 weights pixels near landmarks, but data.num_keypoints = 0"),
    (("loss.identity_weight=1", "loss.encoder=iresnet"), r"'iresnet' needs encoder_checkpoint"),
    (("loss.encoder_checkpoint=/x.safetensors",), r"the 'small' encoder is built from a fixed key"),
    (("loss.coherence_weight=1", "loss.encoder=iresnet", "loss.encoder_checkpoint=/nonexistent.safetensors"),
     r"loss.encoder_checkpoint = '/nonexistent.safetensors' is not a file"),
])
def test_a_term_the_run_cannot_feed_is_refused_before_compiling(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config("data.batch_size=8", *overrides), tmp_path)  # 8 test devices
