"""CLIP's vision transformer in Flax NNX, numerically equal to transformers' `CLIPVisionModel`: the image encoder
whose tokens Wan2.1 I2V (and the swap model built on it) reads in cross-attention.

    graph, state = abstract_clip_vision(cfg)                              # or a converted checkpoint
    pixels = preprocess_images([image], ClipPreprocess.from_folder(...))   # [B, 224, 224, 3] (clip_preprocess.py)
    tokens = jax.jit(clip_image_tokens, static_argnums=0)(graph, state, pixels)   # [B, 257, 1280]

Channels-last pixels `[B, S, S, C]`, already resized, cropped and normalised -> non-overlapping patches embedded
by one linear map (the stride-`patch` convolution) -> a learned class token in front -> learned position
embeddings added -> pre-norm LayerNorm -> pre-LN blocks (`x += attn(LN(x))`, `x += fc2(act(fc1(LN(x))))`).
The output is the hidden state `cfg.feature_layer` (Wan: the penultimate layer's output, no final norm), so only
`cfg.layers_run` layers run; the later layers and the post-norm are kept so a converted checkpoint stays whole.
Layers are stacked with `layer_adapters.stacked` and scanned; attention goes through `models/attention.py`
(scale `1/sqrt(head_dim)`, as CLIP); LayerNorms compute in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from swapjax.models.activations import activation
from swapjax.models.attention import attention
from swapjax.models.clip_vision_config import ClipVisionConfig
from swapjax.models.layer_adapters import stacked
from swapjax.models.layers import DTYPES, LayerNorm, ModelState, dense
from swapjax.parallel import sharded_init


class ClipVisionBlock(nnx.Module):
    """One pre-LN transformer layer: multi-head self-attention then the MLP, each residual."""

    def __init__(self, cfg: ClipVisionConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, kw = cfg.hidden_size, dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
        self.norm1 = LayerNorm(d, eps=cfg.layer_norm_eps, axis="embed", param_dtype=cfg.param_dtype)
        self.q = dense(d, d, ("embed", "heads"), **kw)
        self.k = dense(d, d, ("embed", "heads"), **kw)
        self.v = dense(d, d, ("embed", "heads"), **kw)
        self.o = dense(d, d, ("heads", "embed"), **kw)
        self.norm2 = LayerNorm(d, eps=cfg.layer_norm_eps, axis="embed", param_dtype=cfg.param_dtype)
        self.fc1 = dense(d, cfg.intermediate_size, ("embed", "mlp"), **kw)
        self.fc2 = dense(cfg.intermediate_size, d, ("mlp", "embed"), **kw)

    def __call__(self, x: Float[Array, "b l d"]) -> Float[Array, "b l d"]:
        cfg, dtype = self.cfg, DTYPES[self.cfg.dtype]
        b, length, d = x.shape
        h = self.norm1(x).astype(dtype)  # [B, L, D]
        split = lambda t: t.reshape(b, length, cfg.num_heads, cfg.head_dim)  # noqa: E731  [B, L, N, H]
        out = attention(split(self.q(h)), split(self.k(h)), split(self.v(h)), backend=cfg.attention)
        x = x + self.o(out.reshape(b, length, d))
        h = self.norm2(x).astype(dtype)
        return x + self.fc2(activation(cfg.hidden_act)(self.fc1(h)))  # [B, L, D]


class ClipVision(nnx.Module):
    """Patch embedding + class token + positions -> pre-norm -> scanned `ClipVisionBlock`s (post-norm kept)."""

    def __init__(self, cfg: ClipVisionConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, p, pdt = cfg.hidden_size, cfg.patch_size, DTYPES[cfg.param_dtype]
        normal = nnx.initializers.normal(d ** -0.5)
        self.patch_kernel = nnx.Param(sharded_init(normal, ("kernel", "kernel", "in_channels", "embed"))(
            rngs.params(), (p, p, cfg.num_channels, d), pdt))  # [p, p, C, D]
        self.class_embed = nnx.Param(sharded_init(normal, ("embed",))(rngs.params(), (d,), pdt))
        self.position_embed = nnx.Param(sharded_init(normal, (None, "embed"))(rngs.params(), (cfg.num_tokens, d),
                                                                               pdt))  # [1 + n, D]
        self.pre_norm = LayerNorm(d, eps=cfg.layer_norm_eps, axis="embed", param_dtype=cfg.param_dtype)
        self.blocks = stacked(lambda r: ClipVisionBlock(cfg, rngs=r), cfg.num_layers, rngs)  # params [layers, ...]
        self.post_norm = LayerNorm(d, eps=cfg.layer_norm_eps, axis="embed", param_dtype=cfg.param_dtype)

    def embed(self, pixels: Float[Array, "b s s c"]) -> Float[Array, "b l d"]:
        """Normalised pixels -> `[class; patches] + positions`, pre-normed (transformers' `hidden_states[0]`)."""
        cfg = self.cfg
        b, height, width, c = pixels.shape
        if (height, width, c) != (cfg.image_size, cfg.image_size, cfg.num_channels):
            raise ValueError(f"CLIP pixels have shape {tuple(pixels.shape)}: expected [B, {cfg.image_size}, "
                             f"{cfg.image_size}, {cfg.num_channels}] (run clip_preprocess.preprocess_images first)")
        p, g = cfg.patch_size, cfg.image_size // cfg.patch_size
        dtype = DTYPES[cfg.dtype]
        patches = pixels.astype(dtype).reshape(b, g, p, g, p, c).transpose(0, 1, 3, 2, 4, 5)  # [B, g, g, p, p, C]
        patches = patches.reshape(b, g * g, p * p * c)  # [B, n, p·p·C], rows then columns
        tokens = patches @ self.patch_kernel[...].astype(dtype).reshape(p * p * c, cfg.hidden_size)  # [B, n, D]
        cls = jnp.broadcast_to(self.class_embed[...].astype(dtype), (b, 1, cfg.hidden_size))  # [B, 1, D]
        x = jnp.concatenate([cls, tokens], axis=1) + self.position_embed[...].astype(dtype)  # [B, 1 + n, D]
        return self.pre_norm(x).astype(dtype)

    def __call__(self, pixels: Float[Array, "b s s c"]) -> Float[Array, "b l d"]:
        """Hidden state `cfg.feature_layer` (float32 `[B, 1 + n, D]`) of preprocessed pixels `[B, S, S, C]`."""
        cfg = self.cfg
        x = self.embed(pixels)  # [B, 1 + n, D]
        n = cfg.layers_run
        if n:
            graphdef, state = nnx.split(self.blocks)
            state = jax.tree.map(lambda a: a[:n], state)  # the first n layers

            def body(x, layer_state):
                return nnx.merge(graphdef, layer_state)(x), None

            x, _ = jax.lax.scan(body, x, state, unroll=1 if cfg.scan_layers else n)
        return x.astype(jnp.float32)


def clip_image_tokens(graphdef: nnx.GraphDef, state: ModelState, pixels: Float[ArrayLike, "b s s c"]
                      ) -> Float[Array, "b l d"]:
    """Pure forward: image tokens `[B, 1 + n, D]` (float32); jit with graphdef static. Pixels and parameter
    leaves may be numpy (a converted checkpoint's are): they become `jax.Array`s here (a no-op under jit)."""
    state, pixels = jax.tree.map(jnp.asarray, (state, pixels))
    return nnx.merge(graphdef, state)(pixels)


def init_clip_vision(cfg: ClipVisionConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Randomly initialised encoder, split into (graphdef, state)."""
    return nnx.split(ClipVision(cfg, rngs=nnx.Rngs(params=key)))


def abstract_clip_vision(cfg: ClipVisionConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of `jax.ShapeDtypeStruct`s) without allocating parameters."""
    return nnx.split(nnx.eval_shape(lambda: ClipVision(cfg, rngs=nnx.Rngs(0))))
