"""The diffusers export of a trained swap DiT loads in diffusers' `WanTransformer3DModel` (strictly: every
tensor named and shaped as diffusers expects) and equals our forward within 1e-5 on a plain video stream
(no prefix frames: the one-way prefix attention is swapjax's own)."""

from __future__ import annotations

import json

import jax
import numpy as np
from diffusers import WanTransformer3DModel
from flax import nnx
from safetensors.torch import load_file

from train_fixtures import tiny_config
from wan_dit_torch import run_reference
from swapjax.models.dit import abstract_dit, dit_apply
from swapjax.models.swap import abstract_swap
from swapjax.train.export import SAFETENSORS, export_diffusers


def test_diffusers_export_loads_and_matches_our_forward(tmp_path):
    config = tiny_config()
    _, abstract = abstract_swap(config.dit, config.swap)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: (0.3 * rng.standard_normal(x.shape)).astype(np.float32),
                          nnx.to_pure_dict(abstract))
    out = export_diffusers(tmp_path / "diffusers", params, config.dit)

    model = WanTransformer3DModel.from_config(json.loads((out / "config.json").read_text())).eval()
    missing, unexpected = model.load_state_dict(load_file(str(out / SAFETENSORS)), strict=True)
    assert not missing and not unexpected

    b, f, h, w = 1, 2, 4, 4
    fused = rng.standard_normal((b, f, h, w, config.dit.in_channels), dtype=np.float32)  # 52 fused channels
    t = np.array([0.37], np.float32)
    context = rng.standard_normal((b, 512, config.dit.text_dim), dtype=np.float32)  # diffusers' I2V: 512 text
    image = rng.standard_normal((b, 3, config.dit.image_dim), dtype=np.float32)
    want = run_reference(model, fused, t, context, image)
    graphdef, _ = abstract_dit(config.dit)
    got = np.asarray(jax.jit(dit_apply, static_argnums=0)(graphdef, params, fused, t, context, image))
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= 1e-5, err
