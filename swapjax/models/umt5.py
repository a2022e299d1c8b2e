"""The umT5 text encoder in Flax NNX, numerically equal to transformers' `UMT5EncoderModel` (Wan2.1's text encoder).

    graph, state = abstract_umt5(cfg)                                  # or init_umt5 / a converted checkpoint
    hidden = jax.jit(umt5_apply, static_argnums=0)(graph, state, ids, mask)           # [B, L, d_model]
    text = jax.jit(prompt_embeddings, static_argnums=0)(graph, state, ids, mask)      # tail zeroed (Wan)

A stack of T5 v1.1 blocks: `x += o(attn(rms(x)))`, `x += wo(act(wi_0(rms(x))) * wi_1(rms(x)))`, then a final RMS
norm. What umT5 changes from T5: every layer owns its relative-position bias table (T5 shares layer 0's), so the
bias is looked up inside the scanned block. As in T5: no biases anywhere, no `1/sqrt(d)` scaling of the attention
logits (the bias and the learned weights absorb it), RMS norms without mean subtraction whose variance is taken in
float32. Keys where `mask` is 0 (padding) are not attended to; padded queries are computed like the rest, and
`prompt_embeddings` zeroes them afterwards, as the diffusers Wan pipelines do with everything past the prompt's
length (see docs/design.md, "Text and image encoders").

The layer stack is one block with parameters stacked on a leading `layers` axis (`layer_adapters.stacked`) run by
`jax.lax.scan`; every parameter carries logical axes (`embed`, `heads`, `mlp`, `layers`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int

from swapjax.models.activations import activation, rms_scale
from swapjax.models.layer_adapters import stacked
from swapjax.models.layers import DTYPES, ModelState
from swapjax.models.umt5_config import UMT5Config
from swapjax.parallel import sharded_init


def relative_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """int32 `[L, L]`: the bias bucket of every (query, key) pair of a bidirectional T5 encoder.

    Half the buckets hold keys after the query, half keys before; within a half, offsets below a quarter of the
    buckets get one bucket each and larger ones share log-spaced buckets up to `max_distance` (beyond it, the
    last). Float32 arithmetic with truncation, as the reference computes it, so every bucket matches."""
    offset = np.arange(length)[None, :] - np.arange(length)[:, None]  # [L, L]: key position - query position
    half = num_buckets // 2
    exact = half // 2
    distance = np.abs(offset)
    scaled = np.log(np.maximum(distance, 1).astype(np.float32) / np.float32(exact)) / np.float32(
        math.log(max_distance / exact))
    far = exact + (scaled * np.float32(half - exact)).astype(np.int64)  # truncation toward zero
    far = np.minimum(far, half - 1)
    bucket = np.where(distance < exact, distance, far) + (offset > 0) * half
    return bucket.astype(np.int32)


def _linear(din: int, dout: int, axes: tuple[str, str], cfg: UMT5Config, rngs: nnx.Rngs) -> nnx.Linear:
    """Bias-free `[din] -> [dout]` projection with logical axes `axes` on its kernel."""
    return nnx.Linear(din, dout, use_bias=False, dtype=DTYPES[cfg.dtype], param_dtype=DTYPES[cfg.param_dtype],
                      kernel_init=sharded_init(nnx.initializers.normal(din ** -0.5), axes), rngs=rngs)


def _norm_scale(dim: int, cfg: UMT5Config) -> nnx.Param:
    return nnx.Param(sharded_init(nnx.initializers.ones_init(), ("embed",))(None, (dim,), DTYPES[cfg.param_dtype]))


def t5_norm(x: Float[Array, "... d"], scale: jax.Array, eps: float, dtype) -> Float[Array, "... d"]:
    """T5's RMS norm: float32 statistics; a bfloat16 weight multiplies the normalised input rounded to bfloat16."""
    y = rms_scale(x, eps)
    if scale.dtype != jnp.float32:
        y = y.astype(scale.dtype)
    return (y * scale).astype(dtype)


class UMT5Block(nnx.Module):
    """One encoder block: self-attention with this layer's relative-position bias, then the gated FFN."""

    def __init__(self, cfg: UMT5Config, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, inner = cfg.d_model, cfg.inner_dim
        self.attn_norm = _norm_scale(d, cfg)
        self.q = _linear(d, inner, ("embed", "heads"), cfg, rngs)
        self.k = _linear(d, inner, ("embed", "heads"), cfg, rngs)
        self.v = _linear(d, inner, ("embed", "heads"), cfg, rngs)
        self.o = _linear(inner, d, ("heads", "embed"), cfg, rngs)
        bias_init = sharded_init(nnx.initializers.normal(d ** -0.5), (None, None))
        self.position_bias = nnx.Param(bias_init(rngs.params(), (cfg.relative_attention_num_buckets, cfg.num_heads),
                                                 DTYPES[cfg.param_dtype]))  # [buckets, N]
        self.ffn_norm = _norm_scale(d, cfg)
        self.wi_0 = _linear(d, cfg.d_ff, ("embed", "mlp"), cfg, rngs)
        self.wi_1 = _linear(d, cfg.d_ff, ("embed", "mlp"), cfg, rngs)
        self.wo = _linear(cfg.d_ff, d, ("mlp", "embed"), cfg, rngs)

    def attention(self, x: Float[Array, "b l d"], buckets: Int[Array, "l l"], keep: jax.Array
                  ) -> Float[Array, "b l d"]:
        """Unscaled softmax attention with the bucketed bias; `keep` `[B, 1, 1, L]` marks keys that may be read."""
        cfg = self.cfg
        b, length, _ = x.shape
        split = lambda t: t.reshape(b, length, cfg.num_heads, cfg.d_kv)  # noqa: E731  [B, L, N, H]
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        logits = jnp.einsum("bqnh,bknh->bnqk", q, k, preferred_element_type=jnp.float32)  # [B, N, L, L]
        bias = self.position_bias[...].astype(jnp.float32)[buckets]  # [L, L, N]
        logits = logits + jnp.transpose(bias, (2, 0, 1))[None]
        logits = jnp.where(keep, logits, jnp.finfo(jnp.float32).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(q.dtype)  # [B, N, L, L]
        out = jnp.einsum("bnqk,bknh->bqnh", weights, v).reshape(b, length, cfg.inner_dim)  # [B, L, N·H]
        return self.o(out)

    def __call__(self, x: Float[Array, "b l d"], buckets: Int[Array, "l l"], keep: jax.Array
                 ) -> Float[Array, "b l d"]:
        cfg, dtype = self.cfg, DTYPES[self.cfg.dtype]
        x = x + self.attention(t5_norm(x, self.attn_norm[...], cfg.layer_norm_epsilon, dtype), buckets, keep)
        h = t5_norm(x, self.ffn_norm[...], cfg.layer_norm_epsilon, dtype)  # [B, L, D]
        gated = activation(cfg.activation)(self.wi_0(h)) * self.wi_1(h)  # [B, L, d_ff]
        return x + self.wo(gated)


class UMT5Encoder(nnx.Module):
    """Token embedding -> scanned `UMT5Block`s -> final RMS norm."""

    def __init__(self, cfg: UMT5Config, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Param(sharded_init(nnx.initializers.normal(1.0), (None, "embed"))(
            rngs.params(), (cfg.vocab_size, cfg.d_model), DTYPES[cfg.param_dtype]))  # [V, D]
        self.blocks = stacked(lambda r: UMT5Block(cfg, rngs=r), cfg.num_layers, rngs)  # params [layers, ...]
        self.final_norm = _norm_scale(cfg.d_model, cfg)

    def __call__(self, ids: Int[Array, "b l"], mask: Int[Array, "b l"]) -> Float[Array, "b l d"]:
        """Last hidden states (float32) of token ids `[B, L]` with attention mask `[B, L]` (1 = token, 0 = pad)."""
        cfg, dtype = self.cfg, DTYPES[self.cfg.dtype]
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise ValueError(f"umT5 takes token ids and a mask of one shape [B, L]; got {tuple(ids.shape)} and "
                             f"{tuple(mask.shape)}")
        x = jnp.take(self.embed[...], ids, axis=0).astype(dtype)  # [B, L, D]
        buckets = jnp.asarray(relative_buckets(ids.shape[1], cfg.relative_attention_num_buckets,
                                               cfg.relative_attention_max_distance))  # [L, L]
        keep = (mask != 0)[:, None, None, :]  # [B, 1, 1, L]
        graphdef, state = nnx.split(self.blocks)

        def body(x, layer_state):
            return nnx.merge(graphdef, layer_state)(x, buckets, keep), None

        x, _ = jax.lax.scan(body, x, state, unroll=1 if cfg.scan_layers else cfg.num_layers)
        return t5_norm(x, self.final_norm[...], cfg.layer_norm_epsilon, jnp.float32)


def umt5_apply(graphdef: nnx.GraphDef, state: ModelState, ids: Int[ArrayLike, "b l"], mask: Int[ArrayLike, "b l"]
               ) -> Float[Array, "b l d"]:
    """Pure forward (`last_hidden_state`, float32 `[B, L, D]`); jit with graphdef static. Inputs and parameter
    leaves may be numpy (a converted checkpoint's are): they become `jax.Array`s here (a no-op under jit)."""
    state, ids, mask = jax.tree.map(jnp.asarray, (state, ids, mask))
    return nnx.merge(graphdef, state)(ids, mask)


def prompt_embeddings(graphdef: nnx.GraphDef, state: ModelState, ids: Int[ArrayLike, "b l"],
                      mask: Int[ArrayLike, "b l"]) -> Float[Array, "b l d"]:
    """The DiT's text context: `umt5_apply` with every position past the prompt (mask 0) set to zero."""
    mask = jnp.asarray(mask)
    hidden = umt5_apply(graphdef, state, ids, mask)  # [B, L, D]
    return hidden * (mask != 0)[..., None].astype(hidden.dtype)


def init_umt5(cfg: UMT5Config, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Randomly initialised encoder, split into (graphdef, state)."""
    return nnx.split(UMT5Encoder(cfg, rngs=nnx.Rngs(params=key)))


def abstract_umt5(cfg: UMT5Config) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of `jax.ShapeDtypeStruct`s) without allocating parameters."""
    return nnx.split(nnx.eval_shape(lambda: UMT5Encoder(cfg, rngs=nnx.Rngs(0))))
