"""Checking-only variant of the swap model's single pass: the one-way prefix rule as ONE dense masked attention
per layer instead of the model's two attention calls.

It is built from the block's public pieces (`modulation_terms`, `SelfAttention.qkv` / `token_kv` /
`project_out`, `cross_attention`, `feed_forward`) and the model's own stream preparation
(`SwapDiT.single_pass_stream`), with a Python loop over layers, so the only thing it does differently from
`SwapDiT.single_pass` is how attention respects the prefix. Tests compare the two (and the cached path).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from swapjax.models.attention import attention, one_way_mask
from swapjax.models.dit_block import WanBlock, modulate
from swapjax.models.layer_inputs import LayerInputs
from swapjax.models.swap import SwapInputs


def _branch_scale(scale, batch: int, queries: int, prefix_tokens: int) -> jax.Array:
    """A branch scale (scalar, `[B]` or `[B, L - P]`) as `[B, L, 1, 1]` over every query, 0 on the prefix rows."""
    scale = jnp.asarray(scale, jnp.float32)
    if scale.ndim == 2:
        scale = jnp.pad(scale, ((0, 0), (prefix_tokens, 0)))  # [B, L]
    else:
        on = (jnp.arange(queries) >= prefix_tokens).astype(jnp.float32)  # [L]
        scale = scale.reshape(*scale.shape, *(1,) * (2 - scale.ndim)) * on  # [B|1, L]
    return jnp.broadcast_to(scale, (batch, queries))[:, :, None, None]


def dense_block(block: WanBlock, x, e, text, image, rope, prefix_tokens: int, inputs: LayerInputs):
    """One block over `[prefix; video]` tokens `[B, L, D]` with the one-way rule as a dense boolean mask."""
    if inputs.residual is not None:
        x = x + inputs.residual.astype(x.dtype)
    shift, scale, gate, c_shift, c_scale, c_gate = block.modulation_terms(e)
    h = modulate(x, shift, scale, block.eps).astype(block.dtype)
    q, k, v = block.self_attn.qkv(h, rope)  # [B, L, N, H] each
    if inputs.extra_tokens is not None:
        ek, ev = block.self_attn.token_kv(inputs.extra_tokens.astype(h.dtype))  # [B, Le, N, H]
        k, v = jnp.concatenate([k, ek], axis=1), jnp.concatenate([v, ev], axis=1)  # [B, L + Le, N, H]
    mask = one_way_mask(prefix_tokens, q.shape[1], k.shape[1])  # [L, L + Le], static
    o = attention(q, k, v, backend=block.backend, mask=mask)  # [B, L, N, H]
    for bk, bv, lam in inputs.branches:  # every query reads the branch, scaled by 0 on the prefix rows
        ob = attention(q, bk.astype(q.dtype), bv.astype(q.dtype), backend=block.backend)
        o = o + _branch_scale(lam, q.shape[0], q.shape[1], prefix_tokens).astype(o.dtype) * ob
    attn = block.self_attn.project_out(o)
    x = (x.astype(jnp.float32) + attn.astype(jnp.float32) * gate).astype(block.dtype)
    x = x + block.cross_attention(x, text, image).astype(block.dtype)
    h = modulate(x, c_shift, c_scale, block.eps).astype(block.dtype)
    return (x.astype(jnp.float32) + block.feed_forward(h).astype(jnp.float32) * c_gate).astype(block.dtype)


def dense_single_pass(graphdef: nnx.GraphDef, state: nnx.State, inputs: SwapInputs) -> jax.Array:
    """`SwapDiT.single_pass` with one dense masked attention per layer -> velocity `[B, f, h, w, C_out]`."""
    model = nnx.merge(graphdef, state)
    s = model.single_pass_stream(inputs)
    block_def, block_state = nnx.split(model.blocks)
    x = s.x
    for i in range(model.cfg.num_layers):
        block = nnx.merge(block_def, jax.tree.map(lambda p: p[i], block_state))
        layer = LayerInputs() if s.layer_fn is None else s.layer_fn(jax.tree.map(lambda a: a[i], s.layer_xs))
        x = dense_block(block, x, s.e, s.text, s.image, s.rope, s.prefix_tokens, layer)
    lp = s.prefix_tokens
    return model.video_output(x[:, lp:], s.temb[:, lp:], s.grid)

