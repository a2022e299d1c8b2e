"""The analytic FLOP count equals the matrix products JAX actually traces: every `dot_general` in the jaxpr of a
tiny DiT's forward and of its parameter gradient (scan bodies multiplied by their length), T2V and I2V,
per-sample and per-token time."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jex_core

from swapjax.models.dit import dit_apply, init_dit
from swapjax.models.dit_config import DiTConfig
from swapjax.models.dit_flops import dit_flops

CFG = DiTConfig(num_heads=2, head_dim=16, in_channels=4, out_channels=4, text_dim=24, freq_dim=32, ffn_dim=48,
                num_layers=3)
I2V = DiTConfig(num_heads=2, head_dim=16, in_channels=4, out_channels=4, text_dim=24, freq_dim=32, ffn_dim=48,
                num_layers=2, image_dim=20, added_kv_proj_dim=32)


def _dot_flops(jaxpr: jex_core.Jaxpr) -> float:
    """2·|out|·|contracted| summed over every dot_general, scan bodies counted `length` times, the costlier
    branch of a cond once."""
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in lhs_contract)
        subs = [_dot_flops(sub) for sub in jex_core.jaxprs_in_params(eqn.params)]
        if eqn.primitive.name == "cond":  # one branch runs (e.g. the per-platform forms of a product)
            total += max(subs)
        else:
            total += (eqn.params["length"] if eqn.primitive.name == "scan" else 1) * sum(subs)
    return total


def _inputs(cfg: DiTConfig, per_token: bool, image: bool):
    rng = np.random.default_rng(0)
    b, f, h, w, lt, li = 2, 3, 4, 6, 5, 7
    tokens = f * (h // 2) * (w // 2)
    return tokens, lt, li, (rng.standard_normal((b, f, h, w, cfg.in_channels), dtype=np.float32),
                            rng.uniform(size=(b, tokens) if per_token else (b,)).astype(np.float32),
                            rng.standard_normal((b, lt, cfg.text_dim), dtype=np.float32),
                            rng.standard_normal((b, li, cfg.image_dim), dtype=np.float32) if image else None)


@pytest.mark.parametrize("cfg, per_token", [(CFG, False), (CFG, True), (I2V, False)])
def test_forward_and_train_step_equal_the_traced_products(cfg, per_token):
    graphdef, state = init_dit(cfg, jax.random.key(0))
    tokens, lt, li, (latents, t, context, image) = _inputs(cfg, per_token, cfg.is_i2v)
    forward = lambda state: dit_apply(graphdef, state, latents, t, context, image)  # noqa: E731
    train = jax.grad(lambda state: jnp.mean(jnp.square(forward(state))))
    want = dit_flops(cfg, batch=2, video_tokens=tokens, text_tokens=lt, image_tokens=li if cfg.is_i2v else 0,
                     per_token_time=per_token)
    assert _dot_flops(jax.make_jaxpr(forward)(state).jaxpr) == want.forward
    assert _dot_flops(jax.make_jaxpr(train)(state).jaxpr) == want.train_step


def test_prefix_keys_add_only_attention_products():
    """Video queries that also read Lp prefix keys cost 2 products of [Lv, Lp] x D more per layer, nothing else."""
    base = dit_flops(CFG, batch=1, video_tokens=12, text_tokens=5)
    with_prefix = dit_flops(CFG, batch=1, video_tokens=12, text_tokens=5, prefix_tokens=4)
    assert with_prefix.forward - base.forward == CFG.num_layers * 2 * (2.0 * 12 * 4 * CFG.inner_dim)
