"""WanDiT behaviour beyond parity: prefix streams, remat policies, dtypes, logical axes, sharding, errors."""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from swapjax.config import load_config
from swapjax.models.dit_config import DiTConfig
from swapjax.models.dit import WanDiT, abstract_dit, dit_apply, init_dit
from swapjax.models.layer_inputs import LayerInputs
from swapjax.parallel import LOGICAL_AXIS_RULES, MESH_AXES, state_shardings
from helpers import rel_err
from swap_reference import dense_block

CFG = DiTConfig(num_heads=2, head_dim=16, in_channels=4, out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64,
                num_layers=2)
VOCABULARY = {name for name, _ in LOGICAL_AXIS_RULES} | {None}

CONFIGS = pathlib.Path(__file__).parent.parent.parent / "configs"


def _random_state(cfg: DiTConfig, seed: int = 0) -> tuple[nnx.GraphDef, nnx.State]:
    """All parameters random (the init zeroes proj_out and biases, which would make comparisons vacuous)."""
    graphdef, state = init_dit(cfg, jax.random.key(seed))
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(state):
        value = 0.3 * rng.standard_normal(var.shape) + (1.0 if path[-1] == "scale" else 0.0)
        var.set_value(jnp.asarray(value, var.dtype))
    return graphdef, state


def _inputs(cfg: DiTConfig, b=2, f=3, h=4, w=4, lt=5, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((b, f, h, w, cfg.in_channels), dtype=np.float32),
            rng.uniform(size=(b,)).astype(np.float32),
            rng.standard_normal((b, lt, cfg.text_dim), dtype=np.float32))


def test_prefix_stream_equals_dense_masked_pass():
    """Prefix (t = 0, attends to itself) + video (attends to [prefix; video]) computed as two scans with the
    prefix's per-layer k/v handed over equals one pass over the concatenation with per-token t and a mask."""
    graphdef, state = _random_state(CFG)
    rng = np.random.default_rng(2)
    ref_latent = rng.standard_normal((2, 1, 4, 4, 4)).astype(np.float32)
    video, t, context = _inputs(CFG)

    @jax.jit
    def both(state, ref_latent, video, t, context):
        model = nnx.merge(graphdef, state)
        xp, xv = model.patch_embed(ref_latent), model.patch_embed(video)  # [B, 4, D], [B, 12, D]
        lp, lv = xp.shape[1], xv.shape[1]
        text, _ = model.embed_context(context, None)
        _, e_p = model.embed_time(jnp.zeros((2,)), lp)
        _, e_v = model.embed_time(t, lv)
        xp_out, kv = model.run_blocks(xp, e_p, text, None, model.rope((1, 2, 2)), return_kv=True)
        xv_out, _ = model.run_blocks(xv, e_v, text, None, model.rope((3, 2, 2), offset=(1, 0, 0)), prefix_kv=kv)

        t_tok = jnp.concatenate([jnp.zeros((2, lp)), jnp.repeat(t[:, None], lv, axis=1)], axis=1)  # [B, L]
        _, e = model.embed_time(t_tok, lp + lv)
        # one pass over [prefix; video] with the one-way rule as a dense mask (prefix queries see only prefix keys)
        block_def, block_state = nnx.split(model.blocks)
        x_out = jnp.concatenate([xp, xv], 1)
        for i in range(CFG.num_layers):
            block = nnx.merge(block_def, jax.tree.map(lambda p: p[i], block_state))
            x_out = dense_block(block, x_out, e, text, None, model.rope((4, 2, 2)), lp, LayerInputs())
        return x_out[:, :lp], x_out[:, lp:], xp_out, xv_out, kv

    dense_p, dense_v, xp_out, xv_out, kv = both(state, ref_latent, video, t, context)
    assert kv[0].shape == (CFG.num_layers, 2, 4, CFG.num_heads, CFG.head_dim)
    scale = float(jnp.abs(dense_v).max())
    np.testing.assert_allclose(xp_out, dense_p, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(xv_out, dense_v, rtol=0, atol=1e-6 * scale)


def test_remat_policies_and_unrolled_layers_give_the_same_gradients():
    latents, t, context = _inputs(CFG)
    grads = {}
    for name, cfg in [("none", CFG), ("full", dataclasses.replace(CFG, remat_policy="full")),
                      ("dots", dataclasses.replace(CFG, remat_policy="dots")),
                      ("dots_no_batch", dataclasses.replace(CFG, remat_policy="dots_no_batch")),
                      ("unrolled", dataclasses.replace(CFG, scan_layers=False))]:
        graphdef, state = _random_state(cfg)
        loss = lambda s: jnp.mean(jnp.square(dit_apply(graphdef, s, latents, t, context)))
        grads[name] = jax.jit(jax.grad(loss))(state)
    for name, g in grads.items():
        for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(grads["none"])):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=name)


def test_bfloat16_compute_and_params_stay_close_to_float32():
    latents, t, context = _inputs(CFG)
    graphdef, state = _random_state(CFG)
    ref = dit_apply(graphdef, state, latents, t, context)
    cfg16 = dataclasses.replace(CFG, dtype="bfloat16", param_dtype="bfloat16")
    graphdef16, _ = abstract_dit(cfg16)
    state16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), state)
    out = jax.jit(dit_apply, static_argnums=0)(graphdef16, state16, latents, t, context)
    assert out.dtype == jnp.float32
    assert rel_err(out, ref) < 5e-2


@pytest.mark.parametrize("config_file", ["wan2_1_i2v_14b.py", "tiny.py"])
def test_every_parameter_has_logical_axes(config_file):
    cfg = load_config(CONFIGS / config_file).dit
    _, state = abstract_dit(cfg)
    for path, var in nnx.to_flat_state(state):
        axes = var.out_sharding
        assert axes is not None and len(axes) == len(var.shape), path
        assert set(axes) <= VOCABULARY, (path, axes)
        assert (axes[0] == "layers") == (path[0] == "blocks"), path


def test_sharded_init_and_forward_on_an_8_device_mesh():
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(2, 2, 2, 1), MESH_AXES)
    graphdef, abstract = abstract_dit(CFG)
    shardings = state_shardings(abstract, mesh)
    state = jax.jit(lambda key: init_dit(CFG, key)[1], out_shardings=shardings)(jax.random.key(0))
    kernel = dict(nnx.to_flat_state(state))[("blocks", "ffn", "fc1", "kernel")]
    assert kernel.get_value().sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    _, state_rand = _random_state(CFG)
    state = jax.device_put(state_rand, shardings)
    latents, t, context = _inputs(CFG)
    np.testing.assert_allclose(jax.jit(dit_apply, static_argnums=0)(graphdef, state, latents, t, context),
                               dit_apply(graphdef, state_rand, latents, t, context), atol=1e-5)


def test_jitted_apply_traces_once():
    graphdef, state = _random_state(CFG)
    traces = []

    def counted(state, latents, t, context):
        traces.append(1)
        return dit_apply(graphdef, state, latents, t, context)

    apply = jax.jit(counted)
    latents, t, context = _inputs(CFG)
    for scale in (1.0, 2.0, 3.0):
        apply(state, latents * scale, t / scale, context)
    assert len(traces) == 1


def test_bad_inputs_name_the_input(unchecked):
    model = WanDiT(CFG, rngs=nnx.Rngs(0))
    latents, t, context = _inputs(CFG)
    with pytest.raises(ValueError, match=r"latents have shape .*in_channels = 4"):
        model(jnp.zeros((2, 3, 4, 4, 5)), t, context)
    with pytest.raises(ValueError, match="must be multiples of the patch size"):
        model(jnp.zeros((2, 3, 5, 4, 4)), t, context)
    with pytest.raises(ValueError, match=r"timestep t has shape \(2, 7\)"):
        model(latents, jnp.zeros((2, 7)), context)
    with pytest.raises(ValueError, match="context has shape"):
        model(latents, t, jnp.zeros((2, 5, 31)))
    with pytest.raises(ValueError, match="image_context must be given exactly for I2V"):
        model(latents, t, context, jnp.zeros((2, 3, 8)))
