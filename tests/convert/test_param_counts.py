"""Full-size Wan2.1 DiTs: `jax.eval_shape` parameter counts and every shape equal diffusers' (meta device)."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
import torch
from diffusers import WanTransformer3DModel
from flax import nnx

from swapjax.config import load_config
from swapjax.convert.dit import checkpoint_shape, dit_config_to_diffusers, param_table
from swapjax.models.dit import abstract_dit, param_count

CONFIGS = pathlib.Path(__file__).parent.parent.parent / "configs"
T2V_1_3B = load_config(CONFIGS / "wan2_1_t2v_1_3b.py").dit
CASES = {
    "t2v-1.3b": (T2V_1_3B, 1_418_996_800),
    "t2v-14b": (dataclasses.replace(T2V_1_3B, num_heads=40, ffn_dim=13824, num_layers=40), 14_288_491_584),
    "i2v-14b": (load_config(CONFIGS / "wan2_1_i2v_14b.py").dit, 16_394_878_784),
}


@pytest.mark.parametrize("name", list(CASES))
def test_parameter_count_and_shapes_equal_diffusers(name):
    cfg, published = CASES[name]
    with torch.device("meta"):
        reference = WanTransformer3DModel.from_config(dit_config_to_diffusers(cfg))
    ref_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    _, state = abstract_dit(cfg)
    assert param_count(state) == sum(p.numel() for p in reference.parameters()) == published

    flat = dict(nnx.to_flat_state(state))
    ours = {}
    for e in param_table(cfg):
        shape = flat[e.path].shape[1:] if e.layer is not None else flat[e.path].shape
        ours[e.diffusers] = checkpoint_shape(tuple(shape), e.kind)
    assert ours == ref_shapes
