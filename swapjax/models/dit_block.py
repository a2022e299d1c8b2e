"""One Wan2.1 transformer block, written as small composable pieces.

    x += SelfAttn(LN(x)·(1 + scale) + shift) · gate          (q/k RMSNorm over the full inner dim, 3D RoPE)
    x += CrossAttn(LN_affine(x), text [, image])              (ungated; image branch has its own k/v)
    x += FFN(LN(x)·(1 + c_scale) + c_shift) · c_gate          (GELU-tanh)

The six modulation vectors come from `scale_shift_table + e`, where `e` is `[B, S, 6, D]` with `S = 1` (one
timestep per sample) or `S = L` (one per token). LayerNorms and modulation run in float32; the residual
stream stays in the compute dtype, as in diffusers.

Extension points for models built on this block (reference-prefix swap models and friends):
- `self_attention(..., prefix_kv=(k, v))` lets queries also attend to the keys/values of a prefix stream
  computed elsewhere (concatenated in front); `return_kv=True` hands this stream's own keys/values back,
  so a prefix pass can produce them once per layer (see `WanDiT.run_blocks`).
- `SelfAttention.qkv`, `attention`, `SelfAttention.project_out`, `cross_attention` and `feed_forward` are
  separate, so extra attention branches or additive inputs compose around them without copying the block.
- The optional per-call `inputs` of `WanBlock.__call__`, a `LayerInputs` (see `layer_inputs.py`; all default
  off, leaving the block exactly as above): `extra_tokens` (model-width tokens projected by this layer's k/v and
  appended to the keys; no RoPE), `branches` (extra attention branches, each adding `scale · Attn(q, k', v')`
  before the output projection) and `residual` (added to the block input).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from swapjax.models.dit_config import DiTConfig
from swapjax.models.attention import attention
from swapjax.models.embeddings import apply_rope
from swapjax.models.layer_inputs import Branch, LayerInputs
from swapjax.models.layers import DTYPES, FeedForward, LayerNorm, RMSNorm, dense, layer_norm
from swapjax.parallel import constrain, sharded_init

KV = tuple[jax.Array, jax.Array]  # keys, values [B, T, N, H]

# Logical axes of the activations (see swapjax/parallel.py): tokens, queries, keys/values read whole, FFN hidden.
BLD = ("batch", "length", "embed")
BLNH = ("batch", "length", "heads", "kv")
BKNH = ("batch", "kv_length", "heads", "kv")
BLF = ("batch", "length", "mlp")


def modulate(x: Float[Array, "b l d"], shift: Float[Array, "b s d"], scale: Float[Array, "b s d"],
             eps: float) -> Float[Array, "b l d"]:
    """`LN(x) · (1 + scale) + shift` in float32 (no affine LN); `S` is 1 or `L`."""
    return layer_norm(x, eps=eps) * (1.0 + scale) + shift


class AttentionProjections(nnx.Module):
    """q/k/v/o projections with RMSNorm of q and k across heads (the parameters both attentions share)."""

    def __init__(self, dim: int, num_heads: int, *, eps: float, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        self.num_heads = num_heads
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q = dense(dim, dim, ("embed", "heads"), **kw)
        self.k = dense(dim, dim, ("embed", "heads"), **kw)
        self.v = dense(dim, dim, ("embed", "heads"), **kw)
        self.o = dense(dim, dim, ("heads", "embed"), **kw)
        self.norm_q = RMSNorm(dim, eps=eps, axis="heads", param_dtype=param_dtype)
        self.norm_k = RMSNorm(dim, eps=eps, axis="heads", param_dtype=param_dtype)

    def heads(self, x: Float[Array, "b l d"]) -> Float[Array, "b l n h"]:
        return x.reshape(*x.shape[:-1], self.num_heads, -1)  # [B, L, N, H]

    def project_out(self, o: Float[Array, "b l n h"]) -> Float[Array, "b l d"]:
        return self.o(o.reshape(*o.shape[:-2], -1))  # [B, L, D]


class SelfAttention(AttentionProjections):
    """Projections of the self-attention: q/k/v with RMSNorm across heads and RoPE, and the output projection."""

    def qkv(self, x: Float[Array, "b l d"], rope: tuple[jax.Array, jax.Array]
            ) -> tuple[Float[Array, "b l n h"], Float[Array, "b l n h"], Float[Array, "b l n h"]]:
        """Modulated tokens -> rotated q, k and v, each `[B, L, N, H]`."""
        q = apply_rope(self.heads(self.norm_q(self.q(x))), *rope)
        k = apply_rope(self.heads(self.norm_k(self.k(x))), *rope)
        return constrain(q, BLNH), constrain(k, BLNH), constrain(self.heads(self.v(x)), BLNH)

    def token_kv(self, tokens: Float[Array, "b le d"]) -> KV:
        """Extra model-width tokens -> keys (k with its RMSNorm, no RoPE: they have no place) and values,
        `[B, Le, N, H]` each."""
        return self.heads(self.norm_k(self.k(tokens))), self.heads(self.v(tokens))


class CrossAttention(AttentionProjections):
    """Attention from video tokens to text tokens, plus (I2V) a parallel branch to image tokens, summed."""

    def __init__(self, dim: int, num_heads: int, *, eps: float, image_kv_dim: int | None, backend: str,
                 dtype: str, param_dtype: str, rngs: nnx.Rngs):
        super().__init__(dim, num_heads, eps=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.backend = backend
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if image_kv_dim is not None:
            self.k_img = dense(image_kv_dim, dim, ("embed", "heads"), **kw)
            self.v_img = dense(image_kv_dim, dim, ("embed", "heads"), **kw)
            self.norm_k_img = RMSNorm(dim, eps=eps, axis="heads", param_dtype=param_dtype)
        else:
            self.k_img = self.v_img = self.norm_k_img = None

    def text_kv(self, text: Float[Array, "b lt d"]) -> KV:
        """Keys and values of the (embedded) text tokens, `[B, Lt, N, H]` each."""
        names = ("batch", "text_len", "heads", "kv")
        return constrain(self.heads(self.norm_k(self.k(text))), names), constrain(self.heads(self.v(text)), names)

    def image_kv(self, image: Float[Array, "b li d"]) -> KV:
        """Keys and values of the (embedded) image tokens, `[B, Li, N, H]` each (I2V only)."""
        names = ("batch", "image_len", "heads", "kv")
        k = self.heads(self.norm_k_img(self.k_img(image)))  # [B, Li, N, H]
        return constrain(k, names), constrain(self.heads(self.v_img(image)), names)

    def __call__(self, x: Float[Array, "b l d"], text: Float[Array, "b lt d"],
                 image: Float[Array, "b li d"] | None = None) -> Float[Array, "b l d"]:
        q = constrain(self.heads(self.norm_q(self.q(x))), BLNH)  # [B, L, N, H]
        o = attention(q, *self.text_kv(text), backend=self.backend)
        if image is not None:
            if self.k_img is None:
                raise ValueError("image_context was given to a T2V model (DiTConfig.image_dim is None): drop it, "
                                 "or use an I2V config")
            o = o + attention(q, *self.image_kv(image), backend=self.backend)
        return self.project_out(o)  # [B, L, D]


class WanBlock(nnx.Module):
    """The Wan2.1 DiT block (see module docstring)."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        dim = cfg.inner_dim
        self.eps, self.backend, self.dtype = cfg.eps, cfg.attention, DTYPES[cfg.dtype]
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        init = lambda key, shape, dtype: jax.random.normal(key, shape, dtype) / dim ** 0.5
        self.modulation = nnx.Param(sharded_init(init, (None, "embed"))(
            rngs.params(), (6, dim), DTYPES[cfg.param_dtype]))
        self.self_attn = SelfAttention(dim, cfg.num_heads, eps=cfg.eps, **kw)
        self.cross_norm = (LayerNorm(dim, eps=cfg.eps, axis="embed", param_dtype=cfg.param_dtype)
                           if cfg.cross_attn_norm else None)
        self.cross_attn = CrossAttention(dim, cfg.num_heads, eps=cfg.eps, image_kv_dim=cfg.added_kv_proj_dim,
                                         backend=cfg.attention, **kw)
        self.ffn = FeedForward(dim, cfg.ffn_dim, dim, approximate=True, axes_in=("embed", "mlp"),
                               axes_out=("mlp", "embed"), hidden_axes=BLF, **kw)

    def modulation_terms(self, e: Float[Array, "b s 6 d"]) -> tuple[jax.Array, ...]:
        """`table + e` split into (shift, scale, gate, c_shift, c_scale, c_gate), each `[B, S, D]` float32."""
        mod = self.modulation[...].astype(jnp.float32) + e.astype(jnp.float32)  # [B, S, 6, D]
        return tuple(mod[:, :, i] for i in range(6))

    def self_attention(self, x: Float[Array, "b l d"], rope: tuple[jax.Array, jax.Array], *,
                       prefix_kv: KV | None = None, extra_tokens: Float[Array, "b le d"] | None = None,
                       branches: tuple[Branch, ...] = ()) -> tuple[Float[Array, "b l d"], KV]:
        """Self-attention of already-modulated tokens; returns the output and this stream's own (k, v).

        Keys are `[prefix_kv; own; extra]` (each part optional); every query reads every key. `extra_tokens
        [B, Le, D]`: projected by `SelfAttention.token_kv`. Each of `branches = ((k', v', scale), ...)` adds
        `scale · Attn(q, k', v')`; `scale` is a scalar, `[B]`, or `[B, L]`.
        """
        q, k, v = self.self_attn.qkv(x, rope)
        own = (k, v)
        if prefix_kv is not None:
            k = jnp.concatenate([prefix_kv[0].astype(k.dtype), k], axis=1)  # [B, Lp + L, N, H]
            v = jnp.concatenate([prefix_kv[1].astype(v.dtype), v], axis=1)
        if extra_tokens is not None:
            ek, ev = self.self_attn.token_kv(extra_tokens.astype(x.dtype))  # [B, Le, N, H] each
            k = jnp.concatenate([k, ek.astype(k.dtype)], axis=1)  # [B, Lk + Le, N, H]
            v = jnp.concatenate([v, ev.astype(v.dtype)], axis=1)
        k, v = constrain(k, BKNH), constrain(v, BKNH)  # gathered over `sequence`: every query reads every key
        o = attention(q, k, v, backend=self.backend)  # [B, L, N, H]
        for bk, bv, scale in branches:
            ob = attention(q, bk.astype(q.dtype), bv.astype(q.dtype), backend=self.backend)
            o = o + _per_query(scale, o.dtype) * ob
        return self.self_attn.project_out(o), own

    def cross_attention(self, x: Float[Array, "b l d"], text: jax.Array, image: jax.Array | None
                        ) -> Float[Array, "b l d"]:
        h = self.cross_norm(x).astype(self.dtype) if self.cross_norm is not None else x
        return self.cross_attn(h, text, image)

    def feed_forward(self, x: Float[Array, "b l d"]) -> Float[Array, "b l d"]:
        return self.ffn(x)

    def __call__(self, x: Float[Array, "b l d"], e: Float[Array, "b s 6 d"], text: Float[Array, "b lt d"],
                 image: Float[Array, "b li d"] | None, rope: tuple[jax.Array, jax.Array], *,
                 prefix_kv: KV | None = None, return_kv: bool = False, inputs: LayerInputs = LayerInputs()) -> tuple[Float[Array, "b l d"], KV | None]:
        """One block. Returns the new tokens and, if `return_kv`, this stream's self-attention (k, v).

        `inputs.residual` is added to the input tokens first; its extra tokens and branches go to
        `self_attention`.
        """
        if inputs.residual is not None:
            x = x + inputs.residual.astype(x.dtype)
        x = constrain(x, BLD)
        shift, scale, gate, c_shift, c_scale, c_gate = self.modulation_terms(e)
        h = modulate(x, shift, scale, self.eps).astype(self.dtype)
        attn, own_kv = self.self_attention(h, rope, prefix_kv=prefix_kv, extra_tokens=inputs.extra_tokens,
                                           branches=inputs.branches)
        x = (x.astype(jnp.float32) + attn.astype(jnp.float32) * gate).astype(self.dtype)
        x = x + self.cross_attention(x, text, image).astype(self.dtype)
        h = modulate(x, c_shift, c_scale, self.eps).astype(self.dtype)
        x = (x.astype(jnp.float32) + self.feed_forward(h).astype(jnp.float32) * c_gate).astype(self.dtype)
        return constrain(x, BLD), (own_kv if return_kv else None)


def _per_query(scale: jax.Array | float, dtype) -> jax.Array:
    """Branch scale -> a scalar, `[B]` -> `[B, 1, 1, 1]` or `[B, T]` -> `[B, T, 1, 1]`, to broadcast over
    queries, heads and head dim."""
    scale = jnp.asarray(scale, dtype)
    if scale.ndim == 0:
        return scale
    if scale.ndim > 2:
        raise ValueError(f"attention branch scale has shape {scale.shape}: use a scalar, one per sample [B] or "
                         "an array that broadcasts to [B, queries]")
    return scale.reshape(*scale.shape, *(1,) * (4 - scale.ndim))
