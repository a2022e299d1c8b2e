"""Query-blocked softmax attention with a recomputing backward pass: the `xla` backend's algorithm for long
sequences (see docs/design.md, "Attention on the CPU and at scale").

The plain formulation materialises every score `[B, N, Tq, Tk]` in the forward pass and keeps the
probabilities for the backward pass. Here the queries run in blocks of at most `block_q` under `lax.scan`,
each block against all keys (the keys and values of one head stay hot in cache while the block's scores
`[B, N, bq, Tk]` live only inside one loop step). The forward saves per query only the row maximum and the
softmax denominator; the backward recomputes each block's probabilities from them. The backward works on
transposed scores `[.., Tk, bq]`, so each of its four products has its contracted dimension innermost in the
left operand (XLA:CPU runs a left operand contracted on its outer dimension at about half speed).

Layout and numerics are those of `attention()`: `[B, T, N, H]`, scale `1/sqrt(H)`, logits and softmax in
float32, masked logits set to the same large negative number as `jax.nn.dot_product_attention` (a fully
masked row averages every value, as there).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Bool, Float

BLOCK_Q = 512  # queries per block; 512 measured fastest on 2 CPU cores for Tk = 2,048 (see README "Performance")
_MASKED = -0.7 * float(np.finfo(np.float32).max)  # the masked-logit value of jax.nn.dot_product_attention
_F32 = jnp.float32


def blocked_attention(q: Float[Array, "b tq n h"], k: Float[Array, "b tk n h"], v: Float[Array, "b tk n h"],
                      mask: Bool[Array, "bm nm tq tk"] | None = None, *, block_q: int = BLOCK_Q
                      ) -> Float[Array, "b tq n h"]:
    """Softmax(q kᵀ / sqrt(H)) v, queries in blocks of at most `block_q`. q `[B, Tq, N, H]`, k/v `[B, Tk, N, H]`,
    mask None or boolean rank 4 `[1|B, 1|N, Tq, Tk]` (True = attend)."""
    b, tq, n, h = q.shape
    blocks = -(-tq // block_q)
    bq = -(-tq // blocks)  # equal blocks; fewer than `blocks` padded query rows
    pad = blocks * bq - tq
    qt = (q * jnp.asarray(1.0 / math.sqrt(h), q.dtype)).transpose(0, 2, 1, 3)  # [B, N, Tq, H]
    qt = jnp.pad(qt, ((0, 0), (0, 0), (0, pad), (0, 0)))  # [B, N, C·bq, H]
    q_blocks = qt.reshape(b, n, blocks, bq, h).transpose(2, 0, 1, 3, 4)  # [C, B, N, bq, H]
    mask_blocks = None
    if mask is not None:  # padded query rows attend everywhere; their outputs are dropped
        padded = jnp.pad(mask, ((0, 0), (0, 0), (0, pad), (0, 0)), constant_values=True)  # [Bm, Nm, C·bq, Tk]
        mask_blocks = padded.reshape(*mask.shape[:2], blocks, bq, mask.shape[3]).transpose(2, 0, 1, 3, 4)
    out = _attend(q_blocks, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3), mask_blocks)  # [C, B, N, bq, H]
    return out.transpose(1, 0, 3, 2, 4).reshape(b, blocks * bq, n, h)[:, :tq]  # [B, Tq, N, H]


def _logits(q_block: jax.Array, k: jax.Array, mask_block: jax.Array | None) -> jax.Array:
    """Masked float32 logits of one query block: `[B, N, bq, H] x [B, N, Tk, H] -> [B, N, bq, Tk]`."""
    s = jnp.einsum("bnqh,bnkh->bnqk", q_block, k, preferred_element_type=_F32)
    return s if mask_block is None else jnp.where(mask_block, s, _MASKED)


def _forward(q_blocks, k, v, mask_blocks):
    """Blocks `[C, B, N, bq, H]` (pre-scaled) against k, v `[B, N, Tk, H]` -> outputs `[C, B, N, bq, H]`, row
    maxima and softmax denominators `[C, B, N, bq]` (float32)."""

    def block(_, xs):
        q_block, mask_block = xs
        s = _logits(q_block, k, mask_block)  # [B, N, bq, Tk]
        row_max = jnp.max(s, axis=-1, keepdims=True)  # [B, N, bq, 1]
        p = jnp.exp(s - row_max)
        denom = jnp.sum(p, axis=-1, keepdims=True)  # [B, N, bq, 1]
        o = jnp.einsum("bnqk,bnkh->bnqh", p.astype(v.dtype), v, preferred_element_type=_F32) / denom
        return None, (o.astype(q_blocks.dtype), row_max[..., 0], denom[..., 0])

    _, (out, row_max, denom) = lax.scan(block, None, (q_blocks, mask_blocks))
    return out, row_max, denom


@jax.custom_vjp
def _attend(q_blocks, k, v, mask_blocks):
    return _forward(q_blocks, k, v, mask_blocks)[0]


def _attend_fwd(q_blocks, k, v, mask_blocks):
    out, row_max, denom = _forward(q_blocks, k, v, mask_blocks)
    return out, (q_blocks, k, v, mask_blocks, out, row_max, denom)


def _attend_bwd(residuals, d_out):
    q_blocks, k, v, mask_blocks, out, row_max, denom = residuals
    delta = jnp.sum(d_out.astype(_F32) * out.astype(_F32), axis=-1)  # [C, B, N, bq]
    k_t = k.swapaxes(-1, -2)  # [B, N, H, Tk]

    def block(carry, xs):
        dk, dv = carry  # float32 [B, N, Tk, H]
        q_block, do_block, mask_block, m_block, l_block, delta_block = xs
        s_t = jnp.einsum("bnkh,bnqh->bnkq", k, q_block, preferred_element_type=_F32)  # [B, N, Tk, bq]
        mask_t = None if mask_block is None else mask_block.swapaxes(-1, -2)
        if mask_t is not None:
            s_t = jnp.where(mask_t, s_t, _MASKED)
        p_t = jnp.exp(s_t - m_block[..., None, :]) * (1.0 / l_block)[..., None, :]  # probabilities, transposed
        dv = dv + jnp.einsum("bnkq,bnqh->bnkh", p_t.astype(do_block.dtype), do_block, preferred_element_type=_F32)
        dp_t = jnp.einsum("bnkh,bnqh->bnkq", v, do_block, preferred_element_type=_F32)  # [B, N, Tk, bq]
        ds_t = p_t * (dp_t - delta_block[..., None, :])  # d logits, transposed
        if mask_t is not None:  # a masked logit is a constant (this matters only in a fully masked row)
            ds_t = jnp.where(mask_t, ds_t, 0.0)
        dq_t = jnp.einsum("bnhk,bnkq->bnhq", k_t, ds_t.astype(k.dtype), preferred_element_type=_F32)  # [B,N,H,bq]
        dk = dk + jnp.einsum("bnkq,bnqh->bnkh", ds_t.astype(q_block.dtype), q_block, preferred_element_type=_F32)
        return (dk, dv), dq_t.swapaxes(-1, -2).astype(q_block.dtype)

    zeros = jnp.zeros(k.shape, _F32)
    (dk, dv), dq = lax.scan(block, (zeros, zeros), (q_blocks, d_out, mask_blocks, row_max, denom, delta))
    return dq, dk.astype(k.dtype), dv.astype(v.dtype), None


_attend.defvjp(_attend_fwd, _attend_bwd)
