"""The Wan2.1 video DiT (T2V and I2V) in Flax NNX, numerically equal to diffusers' `WanTransformer3DModel`.

Use it functionally: build once, split once, and jit pure functions of the parameter state.

    graphdef, state = init_dit(cfg, jax.random.key(0))          # or nnx.split(WanDiT(cfg, rngs=...))
    apply = jax.jit(dit_apply, static_argnums=0)                  # graphdef is static
    v = apply(graphdef, state, latents, t, context)              # [B, f, h, w, C_out]

Inputs: channels-last latents `[B, f, h, w, C_in]`; time `t` in [0, 1] per sample `[B]` or per token
`[B, L]` (scaled by `cfg.timestep_scale` to Wan's σ·1000 units inside); embedded-text context
`[B, Lt, text_dim]`; for I2V the image-encoder tokens `[B, Li, image_dim]`. Output: the flow velocity.

The layer stack is one `WanBlock` whose parameters are stacked on a leading `layers` axis (created with
`nnx.vmap`) and applied with `jax.lax.scan`, rematerialised per `cfg.remat_policy`, so compile time does
not grow with depth. `run_blocks` also serves prefix streams: `return_kv=True` returns every layer's
self-attention keys/values `[layers, B, Lp, N, H]`, and `prefix_kv=` feeds such a stack to a second pass
whose queries then attend to `[prefix; own]` keys (the prefix is never recomputed).

Per-token `t` materialises a `[B, L, 6, D]` modulation; for long videos prefer one `t` per stream (e.g. a
clean prefix stream with t = 0 and the video stream with t), which keeps it `[B, 1, 6, D]`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from swapjax.models.dit_config import REMAT_POLICIES, DiTConfig
from swapjax.models.dit_block import KV, WanBlock
from swapjax.models.embeddings import (ImageEmbedding, PatchEmbed, TextEmbedding, TimeEmbedding, rope_angles,
                                       unpatchify)
from swapjax.models.layer_adapters import stacked
from swapjax.models.layer_inputs import LayerInputs
from swapjax.models.layers import DTYPES, ModelState, dense, layer_norm
from swapjax.parallel import sharded_init


class WanDiT(nnx.Module):
    """Wan2.1 DiT: patch embed → time/text(/image) embed → scanned blocks → modulated head → unpatchify."""

    def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        dim, pdt = cfg.inner_dim, cfg.param_dtype
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_channels, dim, dtype=cfg.dtype, param_dtype=pdt,
                                      rngs=rngs)
        self.time_embed = TimeEmbedding(cfg.freq_dim, dim, param_dtype=pdt, rngs=rngs)
        self.text_embed = TextEmbedding(cfg.text_dim, dim, dtype=cfg.dtype, param_dtype=pdt, rngs=rngs)
        self.image_embed = (ImageEmbedding(cfg.image_dim, dim, dtype=cfg.dtype, param_dtype=pdt, rngs=rngs)
                            if cfg.is_i2v else None)
        self.blocks = stacked(lambda r: WanBlock(cfg, rngs=r), cfg.num_layers, rngs)  # params [layers, ...]
        init = lambda key, shape, dtype: jax.random.normal(key, shape, dtype) / dim ** 0.5
        self.head_modulation = nnx.Param(sharded_init(init, (None, "embed"))(rngs.params(), (2, dim),
                                                                             DTYPES[pdt]))
        self.proj_out = dense(dim, math.prod(cfg.patch_size) * cfg.out_channels, ("embed", None),
                              dtype=cfg.dtype, param_dtype=pdt, rngs=rngs, zero=True)

    # -------------------------------------------------------------------------------------- pieces
    def grid(self, latents_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """Token grid `(f', h', w')` of a latent shape `[B, f, h, w, C]` (validated)."""
        cfg = self.cfg
        if len(latents_shape) != 5 or latents_shape[-1] != cfg.in_channels:
            raise ValueError(f"latents have shape {tuple(latents_shape)}: expected [B, f, h, w, C] with "
                             f"C = DiTConfig.in_channels = {cfg.in_channels} (channels-last)")
        if any(s % p for s, p in zip(latents_shape[1:4], cfg.patch_size)):
            raise ValueError(f"latents (f, h, w) = {tuple(latents_shape[1:4])} must be multiples of the patch "
                             f"size {cfg.patch_size}: crop or pad the latent")
        return tuple(s // p for s, p in zip(latents_shape[1:4], cfg.patch_size))

    def rope(self, grid: tuple[int, int, int], offset: tuple[int, int, int] = (0, 0, 0)
             ) -> tuple[jax.Array, jax.Array]:
        """Static rotary cos/sin `[L, H/2]` for a token grid (see `embeddings.rope_angles`)."""
        cos, sin = rope_angles(self.cfg.head_dim, grid, theta=self.cfg.rope_theta, offset=offset)
        return jnp.asarray(cos), jnp.asarray(sin)

    def embed_time(self, t: Float[Array, "b"] | Float[Array, "b l"], num_tokens: int
                   ) -> tuple[Float[Array, "b s d"], Float[Array, "b s 6 d"]]:
        """`t` in [0, 1], `[B]` or `[B, L]` -> temb `[B, S, D]`, block modulation `[B, S, 6, D]` (S = 1 or L)."""
        if t.ndim == 1:
            t = t[:, None]  # [B, 1]
        if t.ndim != 2 or t.shape[1] not in (1, num_tokens):
            raise ValueError(f"timestep t has shape {tuple(t.shape)}: expected [B] or [B, L] with L = "
                             f"{num_tokens} video tokens")
        return self.time_embed(t.astype(jnp.float32) * self.cfg.timestep_scale)

    def embed_context(self, context: Float[Array, "b lt c"], image_context: Float[Array, "b li ci"] | None
                      ) -> tuple[Float[Array, "b lt d"], Float[Array, "b li d"] | None]:
        """Text (and I2V image) encoder features -> model-width tokens."""
        cfg = self.cfg
        if context.ndim != 3 or context.shape[-1] != cfg.text_dim:
            raise ValueError(f"context has shape {tuple(context.shape)}: expected [B, Lt, text_dim = "
                             f"{cfg.text_dim}]")
        if cfg.is_i2v != (image_context is not None):
            raise ValueError("image_context must be given exactly for I2V configs (DiTConfig.image_dim set): "
                             f"this config has image_dim = {cfg.image_dim}, image_context is "
                             f"{'missing' if image_context is None else 'given'}")
        text = self.text_embed(context.astype(DTYPES[cfg.dtype]))
        if image_context is None:
            return text, None
        if image_context.ndim != 3 or image_context.shape[-1] != cfg.image_dim:
            raise ValueError(f"image_context has shape {tuple(image_context.shape)}: expected [B, Li, image_dim "
                             f"= {cfg.image_dim}]")
        return text, self.image_embed(image_context)

    def run_blocks(self, x: Float[Array, "b l d"], e: Float[Array, "b s 6 d"], text: jax.Array,
                   image: jax.Array | None, rope: tuple[jax.Array, jax.Array], *,
                   prefix_kv: KV | None = None, return_kv: bool = False,
                   layer_xs: Any = None, layer_fn: Callable[[Any], LayerInputs] | None = None
                   ) -> tuple[Float[Array, "b l d"], KV | None]:
        """All layers as one scan. `prefix_kv` / the returned kv are per-layer stacks `[layers, B, Lp, N, H]`
        (see `WanBlock.self_attention`).

        Per-layer inputs: `layer_xs` is any pytree whose leaves have a leading `layers` axis (e.g. per-layer
        adapter slots); the scan slices it and `layer_fn(slice)` returns that layer's `LayerInputs` (residual,
        extra tokens, attention branches).
        """
        graphdef, state = nnx.split(self.blocks)

        def body(x, layer):
            layer_state, layer_prefix, xs = layer
            block = nnx.merge(graphdef, layer_state)
            inputs = layer_fn(xs) if layer_fn is not None else LayerInputs()
            return block(x, e, text, image, rope, prefix_kv=layer_prefix, return_kv=return_kv, inputs=inputs)

        policy = self.cfg.remat_policy
        if policy != "none":
            body = jax.checkpoint(body, policy=REMAT_POLICIES[policy], prevent_cse=False)
        unroll = 1 if self.cfg.scan_layers else self.cfg.num_layers
        return jax.lax.scan(body, x, (state, prefix_kv, layer_xs), unroll=unroll)

    def head(self, x: Float[Array, "b l d"], temb: Float[Array, "b s d"]) -> Float[Array, "b l p"]:
        """Final modulated LayerNorm and projection to `pt·ph·pw·C_out` features per token."""
        mod = self.head_modulation[...].astype(jnp.float32) + temb.astype(jnp.float32)[:, :, None]  # [B,S,2,D]
        shift, scale = mod[:, :, 0], mod[:, :, 1]
        x = (layer_norm(x, eps=self.cfg.eps) * (1.0 + scale) + shift).astype(DTYPES[self.cfg.dtype])
        return self.proj_out(x)  # [B, L, pt·ph·pw·C_out]

    # ------------------------------------------------------------------------------------- forward
    def __call__(self, latents: Float[Array, "b f h w c"], t: Float[Array, "b"] | Float[Array, "b l"],
                 context: Float[Array, "b lt ct"], image_context: Float[Array, "b li ci"] | None = None
                 ) -> Float[Array, "b f h w co"]:
        """Velocity `[B, f, h, w, C_out]` (float32) for latents `[B, f, h, w, C_in]` at time t."""
        grid = self.grid(latents.shape)
        x = self.patch_embed(latents)  # [B, L, D]
        temb, e = self.embed_time(t, x.shape[1])  # [B, S, D], [B, S, 6, D]
        text, image = self.embed_context(context, image_context)
        x, _ = self.run_blocks(x, e, text, image, self.rope(grid))
        out = self.head(x, temb)  # [B, L, pt·ph·pw·C_out]
        return unpatchify(out, grid, self.cfg.patch_size).astype(jnp.float32)


def dit_apply(graphdef: nnx.GraphDef, state: ModelState, latents: Float[ArrayLike, "b f h w c"],
              t: Float[ArrayLike, "b"] | Float[ArrayLike, "b l"], context: Float[ArrayLike, "b lt ct"],
              image_context: Float[ArrayLike, "b li ci"] | None = None) -> Float[Array, "b f h w co"]:
    """Pure forward: `nnx.merge(graphdef, state)(latents, t, context, image_context)`; jit with graphdef static.

    The public entry: inputs and parameter leaves may be numpy (a converted checkpoint holds numpy leaves); they
    become `jax.Array`s here (a no-op under jit), so the layers inside see jax arrays only."""
    state, latents, t, context, image_context = jax.tree.map(jnp.asarray, (state, latents, t, context, image_context))
    return nnx.merge(graphdef, state)(latents, t, context, image_context)


def init_dit(cfg: DiTConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Randomly initialised model, split into (graphdef, state)."""
    return nnx.split(WanDiT(cfg, rngs=nnx.Rngs(params=key)))


def abstract_dit(cfg: DiTConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of `jax.ShapeDtypeStruct`s) without allocating parameters."""
    return nnx.split(nnx.eval_shape(lambda: WanDiT(cfg, rngs=nnx.Rngs(0))))


def param_count(state: nnx.State) -> int:
    """Number of scalars in a (possibly abstract) parameter state."""
    return sum(math.prod(x.shape) for x in jax.tree.leaves(state))
