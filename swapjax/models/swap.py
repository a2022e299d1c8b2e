"""The swap DiT (docs/design.md, "The swap model"): an I2V-shaped Wan2.1 DiT reading the fused inputs of
`fused_inputs.py`, with the reference (and optional anchor) frames prepended on the frame axis and read one way.

    fused   = fuse_video_inputs(z_t, mask, agnostic)             # [B, f, h, w, 52], changes every step
    inputs  = SwapInputs(fused, t, context, image_context, prefix=prefix_inputs(z_r, z_a), conditions={...})
    cache   = model.prefix_cache(inputs)                         # once per video (and guidance branch)
    v       = model.video_forward(cache, fused, t)               # every step: velocity [B, f, h, w, 16]

Layout: the prefix frames take RoPE frame positions `0..P-1` and the video frames `P..P+f-1` (h, w positions
as usual), i.e. the prefix sits in front of the video on the frame axis.

Two streams: the prefix tokens run the blocks with t = 0 (one t for the stream, S = 1 modulation) and attend
only to themselves; their per-layer keys/values `[layers, B, Lp, N, H]` are returned. The video tokens run
with their own t and attend to `[prefix K/V; own]` (+ extra tokens of the conditions). The prefix stream
depends only on the prefix frames and the text/image context, so `prefix_cache` computes it once per video
and every sampling step and guidance branch reuses it; it also runs each condition's per-video `prepare`
(pose features, point features and indices, the identity token) and keeps the results beside the K/V.
`__call__` chains the two (the training forward: gradients flow through the cache). Only video tokens reach the
output, so only they reach the loss. The same model written as one sequence `[prefix; video]` under the one-way
rule is test code (`tests/swap_reference.py`); the tests prove the two streams equal to it.

Null inputs (guidance): text context = zeros `[B, Lt, text_dim]` (or an encoded negative prompt); image
context (I2V-based models) = `None`, read as one zero CLIP token; reference = `null_prefix(...)` (a zero
reference latent in the reference slot; the anchor slot, if any, kept). Each guidance branch has its own
cache, or one cache holds every branch stacked on the batch axis (the sampling engine builds it so).

Optional conditions (`SwapInputs.conditions`, name -> typed inputs; each absent -> exactly the base model):
`"pose"` (`PoseInputs`), `"identity"` (`IdentityInputs`), `"points"` (`PointInputs`) and any condition named in
`SwapConfig.conditions`; see `swapjax.models.conditions`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Bool, Float

from swapjax.errors import ConfigError
from swapjax.models.fused_inputs import prefix_inputs
from swapjax.models.conditions import (Condition, VideoStream, build_conditions, condition_inputs,
                                       not_configured)
from swapjax.models.dit import WanDiT
from swapjax.models.dit_block import KV
from swapjax.models.dit_config import DiTConfig
from swapjax.models.embeddings import unpatchify
from swapjax.models.layer_inputs import LayerInputs, combine
from swapjax.models.swap_config import SwapConfig, validate_swap
from swapjax.models.layers import ModelState


class SwapInputs(NamedTuple):
    """Everything one swap-model call reads, as one pytree."""

    fused: Float[Array, "b f h w c"]  # fused video latent (`fused_inputs.fuse_video_inputs`)
    t: Float[Array, "b"] | Float[Array, "b lv"]  # time in [0, 1], per sample or per video token
    context: Float[Array, "b lt ct"]  # text encoder features (zeros for the null branch)
    image_context: Float[Array, "b li ci"] | None = None  # I2V-based models: image encoder tokens (None = null)
    prefix: Float[Array, "b p h w c"] | None = None  # `fused_inputs.prefix_inputs` (None without prefix slots)
    conditions: dict[str, Any] | None = None  # condition name -> its typed inputs (None = no conditions)


def model_inputs(batch: Mapping[str, Any], swap: SwapConfig) -> SwapInputs:
    """A model batch -> `SwapInputs`: the one way training (`train/objective.py`) and sampling
    (`sample/engine.py`) hand the model its inputs. `batch` holds `fused`, `t`, `context`, optionally
    `image_context` and `prefix`, and the arrays the enabled conditions read (`conditions.BATCH_KEYS`);
    every enabled condition whose arrays are present gets its inputs from them (`conditions.condition_inputs`)."""
    return SwapInputs(fused=batch["fused"], t=batch["t"], context=batch["context"],
                      image_context=batch.get("image_context"), prefix=batch.get("prefix"),
                      conditions=condition_inputs(swap, batch) or None)


class PrefixCache(NamedTuple):
    """What the video stream needs per video: prefix K/V, the embedded context and the prepared conditions."""

    kv: KV | None  # keys, values, each [layers, B, Lp, N, H]; None when the config has no prefix slot
    text: Float[Array, "b lt d"]
    image: Float[Array, "b li d"] | None
    conditions: dict[str, Any]  # condition name -> its `prepare` output (every leaf [B, ...])


def build_adapters(cfg: DiTConfig, swap: SwapConfig, rngs: nnx.Rngs) -> dict[str, Condition]:
    """The condition modules a swap config turns on, by name, in build order (parameters at `(name, ...)`)."""
    return build_conditions(cfg, swap, rngs)


class SwapDiT(WanDiT):
    """`WanDiT` (same parameter tree, widened patch embedding) plus prefix slots and optional conditions."""

    def __init__(self, cfg: DiTConfig, swap: SwapConfig, *, rngs: nnx.Rngs):
        validate_swap(cfg, swap)
        super().__init__(cfg, rngs=rngs)
        self.swap = swap
        conditions = build_adapters(cfg, swap, rngs)
        for name, module in conditions.items():
            if hasattr(self, name):
                raise ConfigError(f"condition name {name!r} clashes with an attribute of the swap model: register "
                                  "the condition under another name")
            setattr(self, name, module)
        self.condition_names = tuple(conditions)

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
                             f"{' + anchor' if self.swap.anchor else ''}); build them with fused_inputs.prefix_inputs")
        if prefix.ndim != 5 or prefix.shape[1] != p or (batch is not None and prefix.shape[0] != batch):
            raise ValueError(f"prefix frames have shape {tuple(prefix.shape)}: expected [B, P = {p}, h, w, "
                             f"{self.cfg.in_channels}] with the video's batch")
        return p

    def video_stream(self, fused_shape: tuple[int, ...]) -> VideoStream:
        """What the conditions know of a video with fused latent shape `[B, f, h, w, C]` (validated)."""
        grid = self.grid(fused_shape)
        p = self.swap.num_prefix_frames
        return VideoStream(fused_shape[0], tuple(fused_shape[:4]), grid, p, self.rope(grid, offset=(p, 0, 0)))

    def prepare_conditions(self, conditions: dict[str, Any] | None, video: VideoStream) -> dict[str, Any]:
        """Each given condition's per-video `prepare` (see `conditions/base.py`), checked to lead with the batch.
        A condition's typed inputs (a NamedTuple) reach it with numpy leaves as `jax.Array`s; anything else reaches
        it as given, for its own check to name."""
        conditions = conditions or {}
        for name in conditions:
            if name not in self.condition_names:
                raise not_configured(name, self.swap)
        as_jax = lambda x: jax.tree.map(jnp.asarray, x) if isinstance(x, tuple) else x  # noqa: E731
        prepared = {name: getattr(self, name).prepare(as_jax(conditions[name]), video)
                    for name in self.condition_names if name in conditions}
        _check_batch(prepared, video.batch, "prepared")
        return prepared

    def condition_layers(self, prepared: dict[str, Any], video: VideoStream
                         ) -> tuple[Any, Callable[[Any], LayerInputs] | None]:
        """(`layer_xs`, `layer_fn`) for `run_blocks`: every prepared condition's per-layer inputs, combined."""
        names = [name for name in self.condition_names if name in prepared]  # build order, not the dict's
        if not names:
            return None, None
        _check_batch(prepared, video.batch, "cached")
        xs = {name: getattr(self, name).layer_xs() for name in names}

        def layer_fn(layer: dict[str, Any]) -> LayerInputs:
            return combine([getattr(self, name).layer_inputs(prepared[name], layer[name], video) for name in names])

        return xs, layer_fn

    def video_output(self, x: Float[Array, "b lv d"], temb: Float[Array, "b s d"], grid: tuple[int, int, int]
                     ) -> Float[Array, "b f h w co"]:
        """Final video tokens -> velocity `[B, f, h, w, C_out]` (float32)."""
        return unpatchify(self.head(x, temb), grid, self.cfg.patch_size).astype(jnp.float32)

    # ------------------------------------------------------------------------------------- streams
    def prefix_cache(self, inputs: SwapInputs) -> PrefixCache:
        """Once per video: the prefix stream (t = 0, attending to itself) -> its per-layer K/V, the embedded
        context and the prepared conditions. Reads every field of `inputs` but `t` (of `fused`, only the shape).
        Its arrays may be numpy: they become `jax.Array`s here (a no-op under jit)."""
        conditions = inputs.conditions  # converted in `prepare_conditions`, once each is known to be its own type
        inputs = jax.tree.map(jnp.asarray, inputs._replace(conditions=None))
        text, image = self.swap_context(inputs.context, inputs.image_context)
        conditions = self.prepare_conditions(conditions, self.video_stream(inputs.fused.shape))
        prefix = inputs.prefix
        if self._check_prefix(prefix, inputs.context.shape[0]) == 0:
            return PrefixCache(None, text, image, conditions)
        grid = self.grid(prefix.shape)
        x = self.patch_embed(prefix)  # [B, Lp, D]
        _, e = self.embed_time(jnp.zeros((prefix.shape[0],), jnp.float32), x.shape[1])  # [B, 1, 6, D]
        _, kv = self.run_blocks(x, e, text, image, self.rope(grid), return_kv=True)
        return PrefixCache(kv, text, image, conditions)

    def video_forward(self, cache: PrefixCache, fused: Float[ArrayLike, "b f h w c"],
                      t: Float[ArrayLike, "b"] | Float[ArrayLike, "b l"]) -> Float[Array, "b f h w co"]:
        """One video-stream pass reading a `prefix_cache` -> velocity `[B, f, h, w, C_out]` (float32)."""
        fused, t = jnp.asarray(fused), jnp.asarray(t)
        video = self.video_stream(fused.shape)
        b, p, grid = video.batch, video.prefix_frames, video.grid
        want = (self.cfg.num_layers, b, p * grid[1] * grid[2], self.cfg.num_heads, self.cfg.head_dim)
        if p and (cache.kv is None or tuple(cache.kv[0].shape) != want):
            got = None if cache.kv is None else tuple(cache.kv[0].shape)
            raise ValueError(f"prefix cache K/V have shape {got}: this video needs {want} (rebuild the cache with "
                             "prefix frames of the video's batch and size)")
        x = self.patch_embed(fused)  # [B, Lv, D]
        temb, e = self.embed_time(t, x.shape[1])
        xs, fn = self.condition_layers(cache.conditions, video)
        x, _ = self.run_blocks(x, e, cache.text, cache.image, video.rope, prefix_kv=cache.kv, layer_xs=xs,
                               layer_fn=fn)
        return self.video_output(x, temb, grid)

    def __call__(self, inputs: SwapInputs) -> Float[Array, "b f h w co"]:
        """Training forward: prefix stream then video stream (gradients reach both) -> velocity of the video."""
        return self.video_forward(self.prefix_cache(inputs), inputs.fused, inputs.t)

# ------------------------------------------------------------------------------------------ helpers
def _check_batch(prepared: dict[str, Any], batch: int, what: str) -> None:
    for name, tree in prepared.items():
        bad = [tuple(x.shape) for x in jax.tree.leaves(tree) if x.ndim == 0 or x.shape[0] != batch]
        if bad:
            raise ValueError(f"{what} inputs of condition {name!r} have shapes {bad}: every array must lead with the "
                             f"video batch {batch} (rebuild the prefix cache for this batch)")


def null_prefix(z_r: Float[ArrayLike, "b 1 h w z"] | None, swap: SwapConfig,
                z_a: Float[ArrayLike, "b 1 h w z"] | None = None, anchor_present: Bool[ArrayLike, "b"] | None = None
                ) -> Float[Array, "b p h w c"]:
    """The null-reference prefix for guidance: a zero reference latent (the anchor, if configured, kept)."""
    kw = dict(mask_channels=swap.frames_per_latent, condition_channels=swap.condition_channels)
    return prefix_inputs(jnp.zeros_like(z_r) if swap.reference else None, z_a if swap.anchor else None,
                         anchor_present, **kw)


def swap_prefix_cache(graphdef: nnx.GraphDef, state: ModelState, inputs: SwapInputs) -> PrefixCache:
    """Pure `SwapDiT.prefix_cache`; jit with graphdef static. Parameter leaves may be numpy (a converted
    checkpoint's are), as may the inputs: they become `jax.Array`s (a no-op under jit)."""
    return nnx.merge(graphdef, jax.tree.map(jnp.asarray, state)).prefix_cache(inputs)


def swap_video_step(graphdef: nnx.GraphDef, state: ModelState, cache: PrefixCache, fused: Float[ArrayLike, "b f h w c"],
                    t: Float[ArrayLike, "b"] | Float[ArrayLike, "b l"]) -> Float[Array, "b f h w co"]:
    """Pure `SwapDiT.video_forward` (one sampling step's model call); jit with graphdef static."""
    return nnx.merge(graphdef, jax.tree.map(jnp.asarray, state)).video_forward(cache, fused, t)


def swap_apply(graphdef: nnx.GraphDef, state: ModelState, inputs: SwapInputs) -> jax.Array:
    """Pure training forward `SwapDiT.__call__`; jit with graphdef static."""
    return nnx.merge(graphdef, jax.tree.map(jnp.asarray, state))(inputs)


def init_swap(cfg: DiTConfig, swap: SwapConfig, key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """Randomly initialised swap model, split into (graphdef, state)."""
    return nnx.split(SwapDiT(cfg, swap, rngs=nnx.Rngs(params=key)))


def abstract_swap(cfg: DiTConfig, swap: SwapConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of `jax.ShapeDtypeStruct`s) without allocating parameters."""
    return nnx.split(nnx.eval_shape(lambda: SwapDiT(cfg, swap, rngs=nnx.Rngs(0))))
