"""WanDiT equals diffusers' WanTransformer3DModel in float32 (max|Δ| / max|ref| <= 1e-5).

Each case builds a tiny random diffusers model, saves it, converts it with `convert_dit`, runs both on the
same inputs (swapjax: channels-last latents, t in [0, 1]; diffusers: [B, C, F, H, W], t·1000).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from swapjax.convert.dit import convert_dit
from swapjax.models.dit import abstract_dit, dit_apply
from helpers import rel_err
from wan_dit_torch import build_reference, run_reference, save_reference

TOL = 1e-5
BASE = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, text_dim=32,
            freq_dim=32, ffn_dim=64, num_layers=2)

# name -> (diffusers config, latent [B, f, h, w], text tokens, image tokens, per-token t)
CASES = {
    "t2v": (dict(BASE), (2, 3, 4, 6), 7, None, False),
    "i2v_512_text": (dict(BASE, in_channels=6, image_dim=24, added_kv_proj_dim=32), (1, 2, 4, 4), 512, 5, False),
    # non-square latent, odd frame count, 3 heads × 24 (rope split 8/8/8), odd freq_dim, no cross-attn norm,
    # different in/out channels
    "odd_frames_nonsquare": (dict(BASE, num_attention_heads=3, attention_head_dim=24, in_channels=5,
                                  out_channels=3, freq_dim=33, num_layers=3, cross_attn_norm=False),
                             (2, 5, 6, 10), 9, None, False),
    "per_token_t": (dict(BASE, attention_head_dim=20), (2, 3, 4, 4), 6, None, True),
    "temporal_patch": (dict(BASE, patch_size=(2, 2, 2)), (1, 4, 4, 8), 5, None, False),
}


def _inputs(case, rng: np.random.Generator):
    cfg, (b, f, h, w), lt, li, per_token = case
    latents = rng.standard_normal((b, f, h, w, cfg["in_channels"]), dtype=np.float32)
    p = cfg.get("patch_size", (1, 2, 2))
    num_tokens = (f // p[0]) * (h // p[1]) * (w // p[2])
    t = rng.uniform(0.0, 1.0, (b, num_tokens) if per_token else (b,)).astype(np.float32)
    context = rng.standard_normal((b, lt, cfg["text_dim"]), dtype=np.float32)
    image = None if li is None else rng.standard_normal((b, li, cfg["image_dim"]), dtype=np.float32)
    return latents, t, context, image


@pytest.mark.parametrize("name", list(CASES))
def test_matches_diffusers(name, tmp_path):
    case = CASES[name]
    model = build_reference(seed=len(name), **case[0])
    cfg, state = convert_dit(save_reference(model, tmp_path))
    latents, t, context, image = _inputs(case, np.random.default_rng(0))
    ref = run_reference(model, latents, t, context, image)
    graphdef, _ = abstract_dit(cfg)
    out = np.asarray(jax.jit(dit_apply, static_argnums=0)(graphdef, state, latents, t, context, image))
    assert out.shape == ref.shape == (*latents.shape[:4], case[0]["out_channels"])
    err = rel_err(out, ref)
    assert err <= TOL, f"{name}: max|Δ|/max|ref| = {err:.2e}"


def test_per_token_t_equal_to_per_sample_t(tmp_path):
    """A constant per-token t gives exactly the per-sample result (the broadcast path and the [B, L] path agree)."""
    case = CASES["t2v"]
    model = build_reference(seed=1, **case[0])
    cfg, state = convert_dit(save_reference(model, tmp_path))
    latents, t, context, _ = _inputs(case, np.random.default_rng(1))
    graphdef, _ = abstract_dit(cfg)
    num_tokens = 3 * 2 * 3
    apply = jax.jit(dit_apply, static_argnums=0)
    a = np.asarray(apply(graphdef, state, latents, t, context))
    b = np.asarray(apply(graphdef, state, latents, np.repeat(t[:, None], num_tokens, axis=1), context))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(a).max())
