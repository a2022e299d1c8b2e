"""The mesh factory and activation sharding on 8 fake CPU devices: mesh shapes, -1 fill and size errors, the
logical-to-mesh mapping, and jitted DiT / swap forwards under (data, fsdp, tensor) = (2, 2, 2) and a
sequence-parallel variant whose activation layouts follow the rules and whose outputs equal one device."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from swapjax.config import load_config
from swapjax.errors import ConfigError
from swapjax.models.dit import dit_apply, init_dit
from swapjax.models.dit_block import BKNH, BLD, BLF, BLNH
from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap import SwapInputs, init_swap, swap_apply
from swapjax.parallel import MESH_AXES, MeshConfig, constrain, logical_spec, make_mesh, state_shardings
from helpers import rel_err

CONFIGS = pathlib.Path(__file__).parent.parent / "configs"
CFG = DiTConfig(num_heads=2, head_dim=16, in_channels=4, out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64,
                num_layers=2)
B, F, H, W, LT = 4, 3, 4, 4, 5  # 12 video tokens (patch 1×2×2), 5 text tokens
MESHES = {"data2-fsdp2-tensor2": MeshConfig(data=2, fsdp=2, tensor=2, sequence=1),
          "fsdp2-tensor2-sequence2": MeshConfig(data=-1, fsdp=2, tensor=2, sequence=2)}


# ------------------------------------------------------------------------------------------------- mesh
@pytest.mark.parametrize("cfg, shape", [
    (MeshConfig(), (8, 1, 1, 1)),
    (MeshConfig(data=2, fsdp=2, tensor=2, sequence=1), (2, 2, 2, 1)),
    (MeshConfig(data=1, fsdp=-1, tensor=2), (1, 4, 2, 1)),
    (MeshConfig(data=2, fsdp=1, tensor=1, sequence=-1), (2, 1, 1, 4)),
])
def test_make_mesh_shapes_and_fill(cfg, shape):
    mesh = make_mesh(cfg)
    assert mesh.axis_names == MESH_AXES
    assert tuple(mesh.shape[a] for a in MESH_AXES) == shape
    assert set(mesh.axis_types) == {AxisType.Auto}
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in jax.devices())


def test_make_mesh_on_a_subset_of_devices():
    mesh = make_mesh(MeshConfig(data=-1, tensor=2), devices=jax.devices()[:4])
    assert tuple(mesh.shape[a] for a in MESH_AXES) == (2, 1, 2, 1)
    assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in jax.devices()[:4])


@pytest.mark.parametrize("cfg, match", [
    (MeshConfig(data=-1, fsdp=3), r"data=-1, fsdp=3, tensor=1, sequence=1: the fixed axes multiply to 3, which "
                                  r"does not divide the 8 devices"),
    (MeshConfig(data=2, fsdp=2, tensor=1, sequence=1), r"data=2, fsdp=2, tensor=1, sequence=1: the sizes multiply "
                                                       r"to 4, but there are 8 devices; make their product 8"),
    (MeshConfig(data=4, fsdp=2, tensor=2, sequence=1), r"multiply to 16, but there are 8 devices"),
])
def test_make_mesh_names_sizes_that_do_not_fit_the_devices(cfg, match):
    with pytest.raises(ConfigError, match=match):
        make_mesh(cfg)


@pytest.mark.parametrize("kwargs, match", [
    (dict(tensor=0), r"MeshConfig.tensor = 0: use a positive number of devices, or -1"),
    (dict(sequence=-2), r"MeshConfig.sequence = -2"),
    (dict(fsdp=2.0), r"MeshConfig.fsdp = 2.0"),
    (dict(data=-1, fsdp=-1), r"data=-1, fsdp=-1, tensor=1, sequence=1: at most one axis may be -1"),
])
def test_mesh_config_validation(kwargs, match, unchecked):
    with pytest.raises(ConfigError, match=match):
        MeshConfig(**kwargs)


def test_mesh_config_in_the_run_config_takes_overrides():
    cfg = load_config(CONFIGS / "tiny.py", ["mesh.data=-1", "mesh.tensor=2", "mesh.sequence=2"])
    assert cfg.mesh == MeshConfig(data=-1, fsdp=1, tensor=2, sequence=2)
    assert tuple(make_mesh(cfg.mesh).shape.values()) == (2, 1, 2, 2)
    with pytest.raises(ConfigError, match=r"mesh.fsdp.*MeshConfig.fsdp = 0"):
        load_config(CONFIGS / "tiny.py", ["mesh.fsdp=0"])


# ------------------------------------------------------------------------------------------ logical axes
def test_logical_spec_uses_each_mesh_axis_once():
    assert logical_spec(BLD) == P(("data", "fsdp"), "sequence", None)  # batch took fsdp: D stays whole
    assert logical_spec(("embed", "heads")) == P("fsdp", "tensor")  # a kernel: FSDP over D, tensor over heads
    assert logical_spec(BKNH) == P(("data", "fsdp"), None, "tensor", None)
    assert logical_spec(BLD, mesh_axes=("data", "tensor")) == P("data", None, None)
    with pytest.raises(ValueError, match=r"logical axis 'tokens' has no rule: add it to .*LOGICAL_AXIS_RULES"):
        logical_spec(("batch", "tokens"))


def test_constrain_is_a_no_op_without_a_mesh_and_checks_the_rank():
    x = jnp.ones((2, 3, 4))
    assert "sharding_constraint" not in str(jax.make_jaxpr(lambda x: constrain(x, BLD))(x))
    with jax.set_mesh(make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))):
        assert "sharding_constraint" in str(jax.make_jaxpr(lambda x: constrain(x, BLD))(x))
    with pytest.raises(ValueError, match=r"2 logical axes \('batch', 'length'\) for an array of shape \(2, 3, 4\)"):
        constrain(x, ("batch", "length"))


# ------------------------------------------------------------------------------------ sharded forwards
def _randomise(state: nnx.State, seed: int = 0) -> nnx.State:
    """Every parameter random (the init zeroes output heads and biases, which would make comparisons vacuous)."""
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(state):
        value = 0.3 * rng.standard_normal(var.shape) + (1.0 if path[-1] == "scale" else 0.0)
        var.set_value(jnp.asarray(value, var.dtype))
    return state


def _batch_sharded(mesh, *arrays):
    """Inputs placed with their batch dimension sharded by the rules (as a data pipeline would deliver them)."""
    return [jax.device_put(a, NamedSharding(mesh, logical_spec(("batch",) + (None,) * (a.ndim - 1))))
            for a in arrays]


def _sdy_dims(spec: P, ndim: int) -> str:
    """A PartitionSpec as Shardy prints a tensor's dimension shardings, e.g. `[{"data", "fsdp"}, {}, {}]`."""
    dims = []
    for entry in tuple(spec) + (None,) * (ndim - len(spec)):
        axes = () if entry is None else (entry,) if isinstance(entry, str) else entry
        dims.append("{" + ", ".join(f'"{a}"' for a in axes) + "}")
    return "[" + ", ".join(dims) + "]"


def _block_stack_tokens(graphdef, state, latents, t, context):
    """The DiT forward up to the output of the scanned blocks `[B, L, D]` (no constraint added here)."""
    model = nnx.merge(graphdef, state)
    x = model.patch_embed(latents)  # [B, L, D]
    _, e = model.embed_time(t, x.shape[1])
    text, image = model.embed_context(context, None)
    return model.run_blocks(x, e, text, image, model.rope(model.grid(latents.shape)))[0]


@pytest.fixture(scope="module")
def dit_and_reference():
    graphdef, state = init_dit(CFG, jax.random.key(0))
    state = _randomise(state)
    rng = np.random.default_rng(1)
    args = (rng.standard_normal((B, F, H, W, CFG.in_channels), dtype=np.float32),
            rng.uniform(size=(B,)).astype(np.float32),
            rng.standard_normal((B, LT, CFG.text_dim), dtype=np.float32))
    return graphdef, state, args, np.asarray(jax.jit(dit_apply, static_argnums=0)(graphdef, state, *args))


@pytest.mark.parametrize("mesh_name", list(MESHES))
def test_sharded_dit_forward_follows_the_rules_and_equals_one_device(mesh_name, dit_and_reference):
    graphdef, state, args, reference = dit_and_reference
    mesh = make_mesh(MESHES[mesh_name])
    with jax.set_mesh(mesh):
        placed = jax.device_put(state, state_shardings(state, mesh))
        args = _batch_sharded(mesh, *args)
        apply = jax.jit(dit_apply, static_argnums=0)
        lowered = apply.lower(graphdef, placed, *args).as_text()
        out = apply(graphdef, placed, *args)
        tokens = jax.jit(_block_stack_tokens, static_argnums=0)(graphdef, placed, *args)

    # The block-stack output comes back in the layout the rules give (batch, length, embed).
    assert tokens.sharding.is_equivalent_to(NamedSharding(mesh, logical_spec(BLD)), tokens.ndim), tokens.sharding
    if mesh.shape["sequence"] > 1:
        assert "sequence" in jax.tree.leaves(tuple(tokens.sharding.spec))
    # Every activation named in the model is pinned as the rules say: tokens, queries (length sharded over
    # `sequence`), gathered keys/values, text keys/values, FFN hidden.
    L, N, Hd = F * (H // 2) * (W // 2), CFG.num_heads, CFG.head_dim
    for names, shape in [(BLD, (B, L, CFG.inner_dim)), (BLNH, (B, L, N, Hd)), (BKNH, (B, L, N, Hd)),
                         (("batch", "text_len", "heads", "kv"), (B, LT, N, Hd)), (BLF, (B, L, CFG.ffn_dim)),
                         (("batch", "text_len", "embed"), (B, LT, CFG.inner_dim))]:
        expected = f"<@mesh, {_sdy_dims(logical_spec(names), len(shape))}> : tensor<{'x'.join(map(str, shape))}xf32>"
        assert expected in lowered, (names, expected)
    err = rel_err(out, reference)
    assert err <= 1e-6, err


def test_sharded_swap_forward_equals_one_device():
    tiny = load_config(CONFIGS / "swap_tiny.py")
    dit, swap = tiny.dit, tiny.swap
    graphdef, state = init_swap(dit, swap, jax.random.key(0))
    state = _randomise(state)
    rng = np.random.default_rng(2)
    video = rng.standard_normal((B, F, H, W, dit.in_channels)).astype(np.float32)
    prefix = rng.standard_normal((B, swap.num_prefix_frames, H, W, dit.in_channels)).astype(np.float32)
    t = rng.uniform(size=(B,)).astype(np.float32)
    context = rng.standard_normal((B, LT, dit.text_dim)).astype(np.float32)
    image_context = rng.standard_normal((B, 3, dit.image_dim)).astype(np.float32)
    apply = jax.jit(swap_apply, static_argnums=0)
    reference = np.asarray(apply(graphdef, state, SwapInputs(video, t, context, image_context, prefix)))

    mesh = make_mesh(MESHES["data2-fsdp2-tensor2"])
    with jax.set_mesh(mesh):
        placed = jax.device_put(state, state_shardings(state, mesh))
        sharded = SwapInputs(*_batch_sharded(mesh, video, t, context, image_context, prefix))
        out = apply(graphdef, placed, sharded)
    assert out.sharding.is_equivalent_to(NamedSharding(mesh, logical_spec(("batch", None, None, None, None))), 5)
    err = rel_err(out, reference)
    assert err <= 1e-6, err
