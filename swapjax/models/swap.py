"""The swap DiT (SPEC section 3): an I2V-shaped Wan2.1 DiT reading the fused inputs of `conditioning.py`, with
the reference (and optional anchor) frames prepended on the frame axis and read one way.

    prefix  = prefix_inputs(z_r, z_a)                 # [B, P, h, w, 52]: reference, then anchor (if configured)
    video   = fuse_video_inputs(z_t, mask, agnostic)  # [B, f, h, w, 52]
    cache   = model.prefix_cache(prefix, context, image_context)   # once per video (and guidance branch)
    v       = model.video_forward(cache, video, t)                  # every step: velocity [B, f, h, w, 16]

Layout: the prefix frames take RoPE frame positions `0..P-1` and the video frames `P..P+f-1` (h, w positions
as usual), i.e. the prefix sits in front of the video on the frame axis.

Two streams: the prefix tokens run the blocks with t = 0 (one t for the stream, S = 1 modulation) and attend
only to themselves; their per-layer keys/values `[layers, B, Lp, N, H]` are returned. The video tokens run
with their own t and attend to `[prefix K/V; own]` (+ the identity token when given). The prefix stream
depends only on the prefix frames and the text/image context, so `prefix_cache` computes it once per video
and every sampling step and guidance branch reuses it. `__call__` chains the two (the training forward:
gradients flow through the cache); `single_pass` is the same model as one sequence `[prefix; video]` with
per-token t (0 on the prefix) and the one-way rule either as two attention calls per layer
(`attention="split"`, any backend) or as one dense boolean mask (`attention="dense"`, for checking). Only
video tokens reach the output, so only they reach the loss.

Null inputs (guidance): text context = zeros `[B, Lt, text_dim]` (or an encoded negative prompt); image
context (I2V-based models) = `None`, read as one zero CLIP token; reference = `null_prefix(...)` (a zero
reference latent in the reference slot; the anchor slot, if any, kept). Each guidance branch has its own
cache; `concat_caches` stacks two on the batch axis to run both branches as one batch.

Optional conditions (each absent -> exactly the base model): `pose` (condition latent for pose-attention,
see `pose.py`), `identity` (`[B, identity_dim]`, see `identity.py`), `points` (`PointInputs`, see `points.py`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap_config import SwapConfig, validate_swap
from swapjax.models.attention import one_way_mask
from swapjax.models.conditioning import prefix_inputs
from swapjax.models.dit import WanDiT
from swapjax.models.dit_block import KV
from swapjax.models.embeddings import unpatchify
from swapjax.models.identity import IdentityToken
from swapjax.models.layer_adapters import adapter_at
from swapjax.models.points import PointFeatures, PointInputs, point_feature_map
from swapjax.models.pose import PoseBranch, pose_branch_scale

ATTENTION_MODES = ("split", "dense")


class PrefixCache(NamedTuple):
    """What the video stream needs from the prefix: per-layer prefix K/V and the embedded context."""

    kv: KV | None  # keys, values, each [layers, B, Lp, N, H]; None when the config has no prefix slot
    text: Float[Array, "b lt d"]
    image: Float[Array, "b li d"] | None


def build_adapters(cfg: DiTConfig, swap: SwapConfig, rngs: nnx.Rngs) -> dict[str, nnx.Module | None]:
    """The optional condition modules of a swap model (None where the config turns them off)."""
    kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)
    return {"pose": PoseBranch(cfg, swap, rngs=rngs) if swap.pose_attention else None,
            "identity": (IdentityToken(swap.identity_dim, cfg.inner_dim, eps=cfg.eps, **kw)
                         if swap.identity_token else None),
            "points": PointFeatures(cfg, swap, rngs=rngs) if swap.points else None}


class SwapDiT(WanDiT):
    """`WanDiT` (same parameter tree, widened patch embedding) plus prefix slots and optional conditions."""

    def __init__(self, cfg: DiTConfig, swap: SwapConfig, *, rngs: nnx.Rngs):
        validate_swap(cfg, swap)
        super().__init__(cfg, rngs=rngs)
        self.swap = swap
        adapters = build_adapters(cfg, swap, rngs)
        self.pose, self.identity, self.points = adapters["pose"], adapters["identity"], adapters["points"]

    # -------------------------------------------------------------------------------------- pieces
    def swap_context(self, context: jax.Array, image_context: jax.Array | None
                     ) -> tuple[Float[Array, "b lt d"], Float[Array, "b li d"] | None]:
        """Embedded text (and image) tokens; an I2V-based model reads `image_context=None` as one zero token."""
        if self.cfg.is_i2v and image_context is None:
            image_context = jnp.zeros((context.shape[0], 1, self.cfg.image_dim), jnp.float32)  # [B, 1, Ci]
        return self.embed_context(context, image_context)

    def _check_prefix(self, prefix: jax.Array | None, batch: int | None = None) -> int:
        """Validates the prefix frames against the config; returns P (0 without prefix slots)."""
        p = self.swap.num_prefix_frames
        if p == 0:
            if prefix is not None:
                raise ValueError("prefix frames were given, but SwapConfig has neither a reference nor an anchor "
                                 "slot: drop them, or set SwapConfig.reference / anchor")
            return 0
        if prefix is None:
            raise ValueError(f"prefix frames are missing: this SwapConfig expects P = {p} (reference"
                             f"{' + anchor' if self.swap.anchor else ''}); build them with conditioning.prefix_inputs")
        if prefix.ndim != 5 or prefix.shape[1] != p or (batch is not None and prefix.shape[0] != batch):
            raise ValueError(f"prefix frames have shape {tuple(prefix.shape)}: expected [B, P = {p}, h, w, "
                             f"{self.cfg.in_channels}] with the video's batch")
        return p

    def _conditions(self, grid: tuple[int, int, int], batch: int, *, pose, identity, points, pose_scale,
                    prefix_tokens: int, dense_queries: int | None) -> tuple[Any, Callable | None, int]:
        """(layer_xs, layer_fn, number of extra key tokens) for `run_blocks`, from the optional conditions.

        The video stream's tokens sit after `prefix_tokens` others; `dense_queries` (single dense-masked pass)
        is the query count the pose branch scale must zero on the prefix."""
        f, gh, gw = grid
        lv = f * gh * gw
        total = prefix_tokens + lv
        xs: dict[str, Any] = {}
        parts: dict[str, Any] = {}
        if pose is not None:
            if self.pose is None:
                raise ValueError("a pose condition was given, but SwapConfig.pose_attention is off: drop it or turn "
                                 "pose-attention on")
            cfg = self.cfg
            feats = self.pose.features(pose, (batch, f, gh * cfg.patch_size[1], gw * cfg.patch_size[2]))  # [B,Lv,D]
            scale = self.swap.pose_scale if pose_scale is None else pose_scale
            parts["pose"] = (*self.pose.proj.parts(), feats, self.rope(grid, offset=(self.swap.num_prefix_frames,
                                                                                     0, 0)), scale)
            xs["pose"] = self.pose.proj.slots()
        tokens = None
        if identity is not None:
            if self.identity is None:
                raise ValueError("an identity embedding was given, but SwapConfig.identity_token is off: drop it or "
                                 "turn the identity token on")
            tokens = self.identity(identity)  # [B, 1, D]
            if tokens.shape[0] != batch:
                raise ValueError(f"identity embedding batch {tokens.shape[0]} differs from the video batch {batch}")
        if points is not None:
            if self.points is None:
                raise ValueError("points were given, but SwapConfig.points is off: drop them or turn points on")
            index = self.points.index(points, grid)  # [B, f, K], lv where nothing is written
            index = jnp.where(index < lv, index + prefix_tokens, total)
            parts["points"] = (*self.points.mlps.parts(), points.embeddings.astype(jnp.float32), index)
            xs["points"] = self.points.mlps.slots()
        if not parts and tokens is None:
            return None, None, 0

        def layer_fn(layer: dict[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {} if tokens is None else {"extra_tokens": tokens}
            if "pose" in parts:
                graphdef, state, feats, rope, scale = parts["pose"]
                k, v = adapter_at(graphdef, state, layer["pose"]["slot"])(feats, rope)  # [B, Lv, N, H] each
                lam = pose_branch_scale(scale, layer["pose"]["on"], batch, dense_queries, prefix_tokens)
                out["branch"] = (k, v, lam)
            if "points" in parts:
                graphdef, state, emb, index = parts["points"]
                feats = adapter_at(graphdef, state, layer["points"]["slot"])(emb)  # [B, K, D]
                out["residual"] = point_feature_map(feats * layer["points"]["on"].astype(feats.dtype), index, total)
            return out

        return xs, layer_fn, 0 if tokens is None else tokens.shape[1]

    # ------------------------------------------------------------------------------------- streams
    def prefix_cache(self, prefix: Float[Array, "b p h w c"] | None, context: Float[Array, "b lt ct"],
                     image_context: Float[Array, "b li ci"] | None = None) -> PrefixCache:
        """Runs the prefix stream once (t = 0, attending to itself) -> its per-layer K/V and the embedded context."""
        text, image = self.swap_context(context, image_context)
        if self._check_prefix(prefix, context.shape[0]) == 0:
            return PrefixCache(None, text, image)
        grid = self.grid(prefix.shape)
        x = self.patch_embed(prefix)  # [B, Lp, D]
        _, e = self.embed_time(jnp.zeros((prefix.shape[0],), jnp.float32), x.shape[1])  # [B, 1, 6, D]
        _, kv = self.run_blocks(x, e, text, image, self.rope(grid), return_kv=True)
        return PrefixCache(kv, text, image)

    def video_forward(self, cache: PrefixCache, video: Float[Array, "b f h w c"],
                      t: Float[Array, "b"] | Float[Array, "b l"], *, pose: jax.Array | None = None,
                      identity: jax.Array | None = None, points: PointInputs | None = None,
                      pose_scale: jax.Array | float | None = None) -> Float[Array, "b f h w co"]:
        """One video-stream pass reading a `prefix_cache` -> velocity `[B, f, h, w, C_out]` (float32)."""
        grid = self.grid(video.shape)
        b, p = video.shape[0], self.swap.num_prefix_frames
        want = (self.cfg.num_layers, b, p * grid[1] * grid[2], self.cfg.num_heads, self.cfg.head_dim)
        if p and (cache.kv is None or tuple(cache.kv[0].shape) != want):
            got = None if cache.kv is None else tuple(cache.kv[0].shape)
            raise ValueError(f"prefix cache K/V have shape {got}: this video needs {want} (rebuild the cache with "
                             "prefix frames of the video's batch and size)")
        x = self.patch_embed(video)  # [B, Lv, D]
        temb, e = self.embed_time(t, x.shape[1])
        xs, fn, _ = self._conditions(grid, b, pose=pose, identity=identity, points=points, pose_scale=pose_scale,
                                     prefix_tokens=0, dense_queries=None)
        x, _ = self.run_blocks(x, e, cache.text, cache.image, self.rope(grid, offset=(p, 0, 0)), prefix_kv=cache.kv,
                               layer_xs=xs, layer_fn=fn)
        return unpatchify(self.head(x, temb), grid, self.cfg.patch_size).astype(jnp.float32)

    def __call__(self, video: Float[Array, "b f h w c"], t: Float[Array, "b"] | Float[Array, "b l"],
                 context: Float[Array, "b lt ct"], image_context: Float[Array, "b li ci"] | None = None, *,
                 prefix: Float[Array, "b p h w c"] | None = None, **conditions: Any) -> Float[Array, "b f h w co"]:
        """Training forward: prefix stream then video stream (gradients reach both) -> velocity of the video."""
        return self.video_forward(self.prefix_cache(prefix, context, image_context), video, t, **conditions)

    def single_pass_tokens(self, video: Float[Array, "b f h w c"], t: Float[Array, "b"] | Float[Array, "b l"],
                           context: Float[Array, "b lt ct"], image_context: Float[Array, "b li ci"] | None = None,
                           *, prefix: jax.Array | None = None, pose: jax.Array | None = None,
                           identity: jax.Array | None = None, points: PointInputs | None = None,
                           pose_scale: jax.Array | float | None = None, attention: str = "split"
                           ) -> tuple[Float[Array, "b l d"], Float[Array, "b l d"], tuple[int, int, int], int]:
        """`[prefix; video]` as one sequence -> (final tokens `[B, Lp + Lv, D]`, per-token temb, video grid, Lp)."""
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention mode {attention!r} is unknown: use one of {ATTENTION_MODES}")
        grid = self.grid(video.shape)
        b = video.shape[0]
        p = self._check_prefix(prefix, b)
        x = self.patch_embed(video)  # [B, Lv, D]
        lv = x.shape[1]
        t = jnp.asarray(t, jnp.float32)
        t_video = jnp.broadcast_to(t[:, None], (b, lv)) if t.ndim == 1 else t  # [B, Lv]
        if p:
            if tuple(prefix.shape[2:]) != tuple(video.shape[2:]):
                raise ValueError(f"prefix frames {tuple(prefix.shape)} and video {tuple(video.shape)} differ in "
                                 "[h, w, C]: build both at the same latent size")
            x = jnp.concatenate([self.patch_embed(prefix), x], axis=1)  # [B, Lp + Lv, D]
        lp = x.shape[1] - lv
        t_tok = jnp.concatenate([jnp.zeros((b, lp), jnp.float32), t_video], axis=1)  # [B, L]
        temb, e = self.embed_time(t_tok, x.shape[1])  # [B, L, D], [B, L, 6, D]
        text, image = self.swap_context(context, image_context)
        dense = attention == "dense" and lp > 0
        xs, fn, extra = self._conditions(grid, b, pose=pose, identity=identity, points=points,
                                         pose_scale=pose_scale, prefix_tokens=lp,
                                         dense_queries=x.shape[1] if dense else None)
        kw = (dict(mask=one_way_mask(lp, x.shape[1], x.shape[1] + extra)) if dense else dict(prefix_len=lp))
        rope = self.rope((p + grid[0], grid[1], grid[2]))
        x, _ = self.run_blocks(x, e, text, image, rope, layer_xs=xs, layer_fn=fn, **kw)
        return x, temb, grid, lp

    def single_pass(self, video: Float[Array, "b f h w c"], t: Float[Array, "b"] | Float[Array, "b l"],
                    context: Float[Array, "b lt ct"], image_context: Float[Array, "b li ci"] | None = None,
                    **kwargs: Any) -> Float[Array, "b f h w co"]:
        """The uncached reference path (see module docstring) -> velocity of the video frames only."""
        x, temb, grid, lp = self.single_pass_tokens(video, t, context, image_context, **kwargs)
        out = self.head(x[:, lp:], temb[:, lp:])  # [B, Lv, pt·ph·pw·C_out]
        return unpatchify(out, grid, self.cfg.patch_size).astype(jnp.float32)


# ------------------------------------------------------------------------------------------ helpers
def null_prefix(z_r: Float[Array, "b 1 h w z"] | None, swap: SwapConfig, z_a: jax.Array | None = None,
                anchor_present: jax.Array | None = None) -> Float[Array, "b p h w c"]:
    """The null-reference prefix for guidance: a zero reference latent (the anchor, if configured, kept)."""
    kw = dict(mask_channels=swap.frames_per_latent, condition_channels=swap.condition_channels)
    return prefix_inputs(jnp.zeros_like(z_r) if swap.reference else None, z_a if swap.anchor else None,
                         anchor_present, **kw)


def concat_caches(a: PrefixCache, b: PrefixCache) -> PrefixCache:
    """Two caches as one batch `[a; b]` (e.g. conditional and null branches; same text length)."""
    kv = None if a.kv is None else tuple(jnp.concatenate([x, y], axis=1) for x, y in zip(a.kv, b.kv))
    image = None if a.image is None else jnp.concatenate([a.image, b.image], axis=0)
    return PrefixCache(kv, jnp.concatenate([a.text, b.text], axis=0), image)


def swap_prefix_cache(graphdef: nnx.GraphDef, state: nnx.State, prefix: jax.Array | None, context: jax.Array,
                      image_context: jax.Array | None = None) -> PrefixCache:
    """Pure `SwapDiT.prefix_cache`; jit with graphdef static."""
    return nnx.merge(graphdef, state).prefix_cache(prefix, context, image_context)


def swap_video_step(graphdef: nnx.GraphDef, state: nnx.State, cache: PrefixCache, video: jax.Array, t: jax.Array,
                    **conditions: Any) -> jax.Array:
    """Pure `SwapDiT.video_forward` (one sampling step's model call); jit with graphdef static."""
    return nnx.merge(graphdef, state).video_forward(cache, video, t, **conditions)


def swap_apply(graphdef: nnx.GraphDef, state: nnx.State, video: jax.Array, t: jax.Array, context: jax.Array,
               image_context: jax.Array | None = None, **kwargs: Any) -> jax.Array:
    """Pure training forward `SwapDiT.__call__`; jit with graphdef static."""
    return nnx.merge(graphdef, state)(video, t, context, image_context, **kwargs)


def swap_single_pass(graphdef: nnx.GraphDef, state: nnx.State, video: jax.Array, t: jax.Array, context: jax.Array,
                     image_context: jax.Array | None = None, **kwargs: Any) -> jax.Array:
    """Pure `SwapDiT.single_pass`; jit with graphdef static and `attention` a static argname."""
    return nnx.merge(graphdef, state).single_pass(video, t, context, image_context, **kwargs)


def init_swap(cfg: DiTConfig, swap: SwapConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Randomly initialised swap model, split into (graphdef, state)."""
    return nnx.split(SwapDiT(cfg, swap, rngs=nnx.Rngs(params=key)))


def abstract_swap(cfg: DiTConfig, swap: SwapConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of `jax.ShapeDtypeStruct`s) without allocating parameters."""
    return nnx.split(nnx.eval_shape(lambda: SwapDiT(cfg, swap, rngs=nnx.Rngs(0))))
