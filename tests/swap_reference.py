"""Checking-only forms of the swap model, used by the tests and never by swapjax (docs/design.md, "The swap model").

The model runs the prefix and the video as two streams (`SwapDiT.prefix_cache` once per video, then
`SwapDiT.video_forward` at every step). The same model written as ONE sequence `[prefix; video]`, with
per-token t (0 on the prefix) and the one-way rule (prefix queries read prefix keys only, video queries read
every key) lives here, in two forms that differ only in how attention respects the prefix:

- `single_pass`: the rule as two attention calls per layer (`one_way_attention`);
- `dense_single_pass`: the rule as one dense boolean mask per layer (`one_way_mask`).

Both are built from the block's public pieces (`modulation_terms`, `SelfAttention.qkv` / `token_kv` /
`project_out`, `cross_attention`, `feed_forward`) and the model's own embeddings, conditions and output head, and
scan over the layers as the model does (so a compiled single pass holds one layer body, like the model's
programs, and XLA's cost analyses compare like with like). Tests check the cached two-stream model against
them. `concat_caches` stacks two guidance branches' prefix caches on the batch axis, as a sampler does.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from swapjax.models.attention import attention
from swapjax.models.conditions import VideoStream
from swapjax.models.dit_block import WanBlock, modulate
from swapjax.models.layer_inputs import LayerInputs
from swapjax.models.swap import PrefixCache, SwapDiT, SwapInputs


# ------------------------------------------------------------------------------------------ attention
def one_way_attention(q: Float[Array, "b tq n h"], k: Float[Array, "b tk n h"], v: Float[Array, "b tk n h"],
                      prefix_len: int, *, backend: str = "xla") -> Float[Array, "b tq n h"]:
    """Queries `[:P]` attend to keys `[:P]` only; queries `[P:]` attend to all keys (P = `prefix_len`, static),
    as two calls of `attention`, so it runs on every backend. Keys beyond the query length (extra tokens
    appended after the sequence) are read by the non-prefix queries only. Equals
    `attention(q, k, v, mask=one_way_mask(P, Tq, Tk))`."""
    if not 0 < prefix_len < q.shape[1] or prefix_len > k.shape[1]:
        raise ValueError(f"one_way_attention: prefix_len ({prefix_len}) must lie in (0, Tq = {q.shape[1]}) and "
                         f"not exceed Tk = {k.shape[1]}")
    head = attention(q[:, :prefix_len], k[:, :prefix_len], v[:, :prefix_len], backend=backend)  # [B, P, N, H]
    tail = attention(q[:, prefix_len:], k, v, backend=backend)  # [B, Tq - P, N, H]
    return jnp.concatenate([head, tail], axis=1)  # [B, Tq, N, H]


def one_way_mask(prefix_len: int, tq: int, tk: int) -> np.ndarray:
    """Boolean `[Tq, Tk]` mask of `one_way_attention`: prefix rows see prefix columns, other rows see all."""
    mask = np.ones((tq, tk), bool)
    mask[:prefix_len, prefix_len:] = False
    return mask


def _branch_scale(scale, batch: int, queries: int, prefix_tokens: int) -> jax.Array:
    """A branch scale (scalar, `[B]` or `[B, L - P]`) as `[B, L, 1, 1]` over every query, 0 on the prefix rows."""
    scale = jnp.asarray(scale, jnp.float32)
    if scale.ndim == 2:
        scale = jnp.pad(scale, ((0, 0), (prefix_tokens, 0)))  # [B, L]
    else:
        on = (jnp.arange(queries) >= prefix_tokens).astype(jnp.float32)  # [L]
        scale = scale.reshape(*scale.shape, *(1,) * (2 - scale.ndim)) * on  # [B|1, L]
    return jnp.broadcast_to(scale, (batch, queries))[:, :, None, None]


def _dense_attention(block: WanBlock, q, k, v, prefix_tokens: int, inputs: LayerInputs) -> jax.Array:
    """One dense masked call; every query reads the branches, scaled by 0 on the prefix rows."""
    o = attention(q, k, v, backend=block.backend, mask=one_way_mask(prefix_tokens, q.shape[1], k.shape[1]))
    for bk, bv, lam in inputs.branches:
        ob = attention(q, bk.astype(q.dtype), bv.astype(q.dtype), backend=block.backend)
        o = o + _branch_scale(lam, q.shape[0], q.shape[1], prefix_tokens).astype(o.dtype) * ob
    return o  # [B, L, N, H]


def _split_attention(block: WanBlock, q, k, v, prefix_tokens: int, inputs: LayerInputs) -> jax.Array:
    """Two calls (prefix, rest); only the queries past the prefix read the branches."""
    o = one_way_attention(q, k, v, prefix_tokens, backend=block.backend)  # [B, L, N, H]
    tail = o[:, prefix_tokens:]  # [B, L - P, N, H]
    for bk, bv, lam in inputs.branches:
        ob = attention(q[:, prefix_tokens:], bk.astype(q.dtype), bv.astype(q.dtype), backend=block.backend)
        scale = _branch_scale(lam, q.shape[0], q.shape[1], prefix_tokens)[:, prefix_tokens:]  # [B, L - P, 1, 1]
        tail = tail + scale.astype(o.dtype) * ob
    return jnp.concatenate([o[:, :prefix_tokens], tail], axis=1)


# ------------------------------------------------------------------------------------------ one block
def reference_block(block: WanBlock, x, e, text, image, rope, prefix_tokens: int, inputs: LayerInputs, *,
                    dense: bool = False) -> jax.Array:
    """One block over `[prefix; video]` tokens `[B, L, D]` with the one-way rule (two calls, or one dense mask)."""
    if inputs.residual is not None:
        x = x + inputs.residual.astype(x.dtype)
    shift, scale, gate, c_shift, c_scale, c_gate = block.modulation_terms(e)
    h = modulate(x, shift, scale, block.eps).astype(block.dtype)
    q, k, v = block.self_attn.qkv(h, rope)  # [B, L, N, H] each
    if inputs.extra_tokens is not None:
        ek, ev = block.self_attn.token_kv(inputs.extra_tokens.astype(h.dtype))  # [B, Le, N, H]
        k, v = jnp.concatenate([k, ek], axis=1), jnp.concatenate([v, ev], axis=1)  # [B, L + Le, N, H]
    o = (_dense_attention if dense else _split_attention)(block, q, k, v, prefix_tokens, inputs)
    attn = block.self_attn.project_out(o)
    x = (x.astype(jnp.float32) + attn.astype(jnp.float32) * gate).astype(block.dtype)
    x = x + block.cross_attention(x, text, image).astype(block.dtype)
    h = modulate(x, c_shift, c_scale, block.eps).astype(block.dtype)
    return (x.astype(jnp.float32) + block.feed_forward(h).astype(jnp.float32) * c_gate).astype(block.dtype)


def dense_block(block: WanBlock, x, e, text, image, rope, prefix_tokens: int, inputs: LayerInputs) -> jax.Array:
    """`reference_block` with the one-way rule as a dense boolean mask."""
    return reference_block(block, x, e, text, image, rope, prefix_tokens, inputs, dense=True)


# ------------------------------------------------------------------------------------------ one stream
class Stream(NamedTuple):
    """`[prefix; video]` as one token stream, ready for the layer scan (see `single_pass_stream`)."""

    x: Float[Array, "b l d"]
    e: Float[Array, "b s 6 d"]  # block modulation
    temb: Float[Array, "b s d"]  # head modulation
    text: Float[Array, "b lt d"]
    image: Float[Array, "b li d"] | None
    rope: tuple[jax.Array, jax.Array]
    prefix_tokens: int  # Lp: the first tokens form the one-way prefix
    grid: tuple[int, int, int]  # the video's token grid
    layer_xs: Any  # per-layer scan inputs of the conditions
    layer_fn: Callable[[Any], LayerInputs] | None  # one layer's slice of layer_xs -> its LayerInputs


def condition_layers(model: SwapDiT, prepared: dict[str, Any], video: VideoStream, prefix_tokens: int
                     ) -> tuple[Any, Callable[[Any], LayerInputs] | None]:
    """`SwapDiT.condition_layers` for a single pass: the conditions' residuals padded with zeros on the
    `prefix_tokens` prefix tokens (the prefix reads no condition)."""
    xs, fn = model.condition_layers(prepared, video)
    if fn is None or not prefix_tokens:
        return xs, fn

    def layer_fn(layer: dict[str, Any]) -> LayerInputs:
        inputs = fn(layer)
        if inputs.residual is None:
            return inputs
        return inputs._replace(residual=jnp.pad(inputs.residual, ((0, 0), (prefix_tokens, 0), (0, 0))))  # [B, L, D]

    return xs, layer_fn


def single_pass_stream(model: SwapDiT, inputs: SwapInputs) -> Stream:
    """`[prefix; video]` as one stream: tokens, per-token modulation (t = 0 on the prefix), context, RoPE (the
    prefix at frame positions `0..P-1`, the video after it) and the conditions' per-layer inputs."""
    inputs = jax.tree.map(jnp.asarray, inputs)  # numpy fixtures -> jax arrays, as `SwapDiT.prefix_cache` does
    video = model.video_stream(inputs.fused.shape)
    b, grid = video.batch, video.grid
    p = model._check_prefix(inputs.prefix, b)
    x = model.patch_embed(inputs.fused)  # [B, Lv, D]
    lv = x.shape[1]
    t = jnp.asarray(inputs.t, jnp.float32)
    t_video = jnp.broadcast_to(t[:, None], (b, lv)) if t.ndim == 1 else t  # [B, Lv]
    if p:
        if tuple(inputs.prefix.shape[2:]) != tuple(inputs.fused.shape[2:]):
            raise ValueError(f"prefix frames {tuple(inputs.prefix.shape)} and fused video "
                             f"{tuple(inputs.fused.shape)} differ in [h, w, C]: build both at the same latent size")
        x = jnp.concatenate([model.patch_embed(inputs.prefix), x], axis=1)  # [B, Lp + Lv, D]
    lp = x.shape[1] - lv
    t_tok = jnp.concatenate([jnp.zeros((b, lp), jnp.float32), t_video], axis=1)  # [B, L]
    temb, e = model.embed_time(t_tok, x.shape[1])  # [B, L, D], [B, L, 6, D]
    text, image = model.swap_context(inputs.context, inputs.image_context)
    xs, fn = condition_layers(model, model.prepare_conditions(inputs.conditions, video), video, lp)
    rope = model.rope((p + grid[0], grid[1], grid[2]))
    return Stream(x, e, temb, text, image, rope, lp, grid, xs, fn)


def single_pass_tokens(model: SwapDiT, inputs: SwapInputs, *, dense: bool = False
                       ) -> tuple[Float[Array, "b l d"], Float[Array, "b l d"], tuple[int, int, int], int]:
    """`[prefix; video]` through every layer (one scan) -> (final tokens `[B, Lp + Lv, D]`, per-token temb,
    video grid, Lp)."""
    s = single_pass_stream(model, inputs)
    graphdef, blocks = nnx.split(model.blocks)

    def body(x, layer):
        block_state, xs = layer
        layer_inputs = s.layer_fn(xs) if s.layer_fn is not None else LayerInputs()
        block = nnx.merge(graphdef, block_state)
        return reference_block(block, x, s.e, s.text, s.image, s.rope, s.prefix_tokens, layer_inputs,
                               dense=dense), None

    x, _ = jax.lax.scan(body, s.x, (blocks, s.layer_xs))
    return x, s.temb, s.grid, s.prefix_tokens


def single_pass(graphdef: nnx.GraphDef, state: nnx.State, inputs: SwapInputs, *, dense: bool = False
                ) -> Float[Array, "b f h w co"]:
    """The uncached model as one sequence -> velocity of the video frames only `[B, f, h, w, C_out]`."""
    model = nnx.merge(graphdef, state)
    x, temb, grid, lp = single_pass_tokens(model, inputs, dense=dense)
    return model.video_output(x[:, lp:], temb[:, lp:], grid)


def dense_single_pass(graphdef: nnx.GraphDef, state: nnx.State, inputs: SwapInputs) -> jax.Array:
    """`single_pass` with one dense masked attention per layer -> velocity `[B, f, h, w, C_out]`."""
    return single_pass(graphdef, state, inputs, dense=True)


# ------------------------------------------------------------------------------------------ caches
def concat_caches(a: PrefixCache, b: PrefixCache) -> PrefixCache:
    """Two caches as one batch `[a; b]` (e.g. conditional and null branches; same text length, same conditions)."""
    if set(a.conditions) != set(b.conditions):
        raise ValueError(f"the caches hold different conditions ({sorted(a.conditions)} vs {sorted(b.conditions)}): "
                         "prepare both guidance branches with the same conditions (null inputs where one has none)")
    cat = lambda x, y: jnp.concatenate([x, y], axis=0)  # noqa: E731
    kv = None if a.kv is None else tuple(jnp.concatenate([x, y], axis=1) for x, y in zip(a.kv, b.kv))
    image = None if a.image is None else cat(a.image, b.image)
    return PrefixCache(kv, cat(a.text, b.text), image, jax.tree.map(cat, a.conditions, b.conditions))

