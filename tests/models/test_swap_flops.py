"""The analytic FLOPs of the swap model's train and sampling steps against XLA's own count of the same programs
with the layers unrolled (`scan_layers=false`: XLA counts a scanned body once). XLA also counts elementwise
work, which the analytic (matmul-only) figure leaves out, so XLA's count is a little higher."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import pytest

from swapjax.config import load_config
from swapjax.models.swap import SwapInputs, abstract_swap, swap_apply, swap_prefix_cache, swap_video_step
from swapjax.models.swap_flops import swap_sample_step_flops, swap_train_flops, token_counts

# Wide enough for matmuls to dominate: 4 heads x 64, FFN 1024, 2 unrolled layers; 9 frames of 64 x 64 pixels.
OVERRIDES = ["dit.scan_layers=false", "dit.num_heads=4", "dit.head_dim=64", "dit.ffn_dim=1024",
             "dit.added_kv_proj_dim=256", "dit.num_layers=2"]
FRAMES, SIZE, TEXT = 9, 64, 16


def xla_flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


@pytest.fixture(scope="module")
def model():
    config = load_config("configs/swap_tiny.py", OVERRIDES)
    graphdef, state = abstract_swap(config.dit, config.swap)
    tokens = token_counts(config.dit, config.swap, frames=FRAMES, height=SIZE, width=SIZE, text=TEXT)
    return config, graphdef, state, tokens


def inputs(config, batch: int) -> SwapInputs:
    f, h = 1 + (FRAMES - 1) // 4, SIZE // 8
    sds = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
    c = config.dit.in_channels
    return SwapInputs(fused=sds(batch, f, h, h, c), t=sds(batch), context=sds(batch, TEXT, config.dit.text_dim),
                      prefix=sds(batch, config.swap.num_prefix_frames, h, h, c))


def test_token_counts(model):
    _, _, _, tokens = model
    assert (tokens.video, tokens.prefix, tokens.text) == (3 * 4 * 4, 2 * 4 * 4, TEXT)


def test_train_step_flops_match_xla_on_unrolled_layers(model):
    config, graphdef, state, tokens = model
    loss = lambda params, x: swap_apply(graphdef, params, x).sum()  # noqa: E731
    counted = xla_flops(jax.grad(loss), state, inputs(config, 2))
    analytic = swap_train_flops(config.dit, 2, tokens)
    assert analytic <= counted <= 1.05 * analytic, (counted, analytic)


def test_sampling_step_flops_match_xla_on_unrolled_layers(model):
    config, graphdef, state, tokens = model
    x = inputs(config, 2)  # two guidance branches
    cache = jax.eval_shape(functools.partial(swap_prefix_cache, graphdef), state, x)
    counted = xla_flops(functools.partial(swap_video_step, graphdef), state, cache, x.fused, x.t)
    analytic = swap_sample_step_flops(config.dit, 2, tokens)
    assert analytic <= counted <= 1.05 * analytic, (counted, analytic)
