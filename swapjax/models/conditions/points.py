"""Semantic points (VideoSwap): sparse point features added to the block input.

Inputs (`PointInputs`): K tracked points with pixel coordinates per source frame `coords [B, F, K, 2]` as
(x, y), `visible [B, F, K]`, one embedding per point `embeddings [B, K, E]` (e.g. DIFT features) and an
optional `keep [B, K]` (False = removed by the user; see `point_edits.py` for removal and drag).

Placement on the token grid (`point_token_index`): latent frame i reads source frame `i · frames_per_latent`
(frame 0, then the last frame of each group of 4 the causal VAE folds into latent frame i), and a point at
pixel (x, y) falls in token column `floor(x / (8 · pw))`, row `floor(y / (8 · ph))`: its coordinate
downscaled pixel -> latent (/8) -> token (/2) and rounded down to the cell that contains it. Invisible,
removed and out-of-frame points write nothing.

Features (`PointCondition`): per configured layer (VideoSwap's "per scale"; the stack is scanned with the
blocks) a 2-layer MLP `E -> hidden -> D` (SiLU; the output layer zero-initialised, so new point layers start
as the base model) maps each embedding to D features, written at the point's token in an otherwise zero map
`[B, L, D]` (summed where points share a token) that is added to that layer's input. The token indices and
every layer's MLP outputs `[B, S, K, D]` are computed once per video (`prepare`); each layer scatters its own.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Bool, Float, Int

from swapjax.models.conditions.base import Condition, VideoStream
from swapjax.errors import require
from swapjax.models.conditions.base import layer_list_ok
from swapjax.models.conditions.registry import register_condition, settings
from swapjax.models.dit_config import DiTConfig
from swapjax.models.layer_adapters import AdapterStack
from swapjax.models.layer_inputs import LayerInputs
from swapjax.models.layers import dense
from swapjax.models.swap_config import SwapConfig


class PointInputs(NamedTuple):
    """Tracked semantic points of one batch of source videos (see module docstring)."""

    coords: Float[Array, "b F k 2"]  # (x, y) in pixels, per source frame
    visible: Bool[Array, "b F k"]
    embeddings: Float[Array, "b k e"]
    keep: Bool[Array, "b k"] | None = None  # False = removed


class PointsPrepared(NamedTuple):
    """Per-video point state kept in the prefix cache."""

    index: Int[Array, "b f k"]  # video-token index per latent frame; Lv where nothing is written
    features: Float[Array, "b s k d"]  # every stacked MLP's output (S = number of point layers)


def point_token_index(coords: Float[Array, "b F k 2"], visible: Bool[Array, "b F k"], keep: Bool[Array, "b k"] | None,
                      grid: tuple[int, int, int], *, pixels_per_token: tuple[int, int], frames_per_latent: int
                      ) -> Int[Array, "b f k"]:
    """Video-token index of every point at every latent frame `[B, f, K]`; `f·h'·w'` (= L) where nothing is written."""
    f, gh, gw = grid
    b, frames, k, _ = coords.shape
    if frames != (f - 1) * frames_per_latent + 1:
        raise ValueError(f"point coords cover {frames} frames: a latent of {f} frames needs "
                         f"{(f - 1) * frames_per_latent + 1} source frames")
    if visible.shape != coords.shape[:3]:
        raise ValueError(f"point visible has shape {tuple(visible.shape)}: expected {tuple(coords.shape[:3])}")
    xy = coords[:, ::frames_per_latent].astype(jnp.float32)  # [B, f, K, 2]
    col = jnp.floor(xy[..., 0] / pixels_per_token[1]).astype(jnp.int32)  # [B, f, K]
    row = jnp.floor(xy[..., 1] / pixels_per_token[0]).astype(jnp.int32)
    ok = visible[:, ::frames_per_latent] & jnp.isfinite(xy).all(-1)
    ok &= (col >= 0) & (col < gw) & (row >= 0) & (row < gh)
    if keep is not None:
        if keep.shape != (b, k):
            raise ValueError(f"point keep has shape {tuple(keep.shape)}: expected ({b}, {k}) (one flag per point)")
        ok &= keep[:, None, :]
    index = jnp.arange(f, dtype=jnp.int32)[None, :, None] * (gh * gw) + row * gw + col  # [B, f, K]
    return jnp.where(ok, index, f * gh * gw)


def point_feature_map(features: Float[Array, "b k d"], index: Int[Array, "b f k"], num_tokens: int
                      ) -> Float[Array, "b l d"]:
    """Zero map `[B, L, D]` with each point's features added at its token on every latent frame (indices >= L
    write nothing; points sharing a token sum)."""
    b, f, k = index.shape
    feats = jnp.broadcast_to(features[:, None], (b, f, k, features.shape[-1])).reshape(b, f * k, -1)  # [B, fK, D]
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, f * k))  # [B, fK]
    out = jnp.zeros((b, num_tokens, features.shape[-1]), features.dtype)
    return out.at[rows, index.reshape(b, f * k)].add(feats, mode="drop")  # [B, L, D]


class PointMLP(nnx.Module):
    """`fc2(SiLU(fc1(e)))`: point embedding `[.., E]` -> model-width features `[.., D]`; fc2 starts at zero."""

    def __init__(self, point_dim: int, hidden: int, dim: int, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = dense(point_dim, hidden, ("text_embed", "mlp"), **kw)
        self.fc2 = dense(hidden, dim, ("mlp", "embed"), zero=True, **kw)

    def __call__(self, e: Float[Array, "... e"]) -> Float[Array, "... d"]:
        return self.fc2(jax.nn.silu(self.fc1(e)))


def point_codes(num_points: int, dim: int) -> Float[Array, "k e"]:
    """Fixed embeddings `[K, E]` naming each point by its index in the keypoint layout (sinusoids of the index at
    `E / 2` frequencies, cos then sin). Used when points come from a keypoint track rather than per-point
    features such as DIFT (our choice, docs/design.md "Our choices"): keypoint k means the same part in every
    clip, so its index is its semantics, and training and sampling build the same codes."""
    half = dim // 2
    freqs = jnp.exp(-jnp.log(1000.0) * jnp.arange(half, dtype=jnp.float32) / max(half, 1))  # [E/2]
    angle = (jnp.arange(num_points, dtype=jnp.float32)[:, None] + 1.0) * freqs[None]  # [K, E/2]
    codes = jnp.concatenate([jnp.cos(angle), jnp.sin(angle)], axis=-1)  # [K, 2 (E/2)]
    return jnp.pad(codes, ((0, 0), (0, dim - 2 * half)))  # [K, E]


@dataclasses.dataclass(frozen=True)
class PointSettings:
    """`SwapConfig.conditions["points"]`: K points, their embedding width E, the MLPs' hidden width, their layers."""

    num_points: int = 8  # K
    point_dim: int = 1280  # E, point embedding width (e.g. DIFT features)
    hidden: int = 256  # hidden width of each point MLP
    layers: tuple[int, ...] = ()  # layers with point features; () = every layer

    def __post_init__(self):
        require(self.num_points > 0 and self.point_dim > 0 and self.hidden > 0,
                f"conditions.points: num_points ({self.num_points}), point_dim ({self.point_dim}) and hidden "
                f"({self.hidden}) must be positive")
        require(layer_list_ok(self.layers), f"conditions.points.layers ({self.layers}) must list distinct layer "
                                            "indices >= 0 (() = all)")


@register_condition("points")
class PointCondition(Condition):
    """Per-layer point MLPs on `PointSettings.layers` (`()` = all layers) and the point placement rule."""

    Settings = PointSettings

    batch_keys = ("keypoints",)

    @classmethod
    def inputs_from_batch(cls, batch, swap: SwapConfig) -> PointInputs:
        """Points from a keypoint track `[B, F, K, 3]` (x, y in model pixels, visibility) named by `point_codes`."""
        kps, points = jnp.asarray(batch["keypoints"], jnp.float32), settings(swap, "points")
        if kps.ndim != 4 or kps.shape[2] != points.num_points or kps.shape[3] != 3:
            raise ValueError(f"keypoints have shape {tuple(kps.shape)}: the 'points' condition needs [B, F, K = "
                             f"conditions.points.num_points = {points.num_points}, 3]")
        k, e = points.num_points, points.point_dim
        codes = jnp.broadcast_to(point_codes(k, e), (kps.shape[0], k, e))  # [B, K, E]
        return PointInputs(coords=kps[..., :2], visible=kps[..., 2] > 0, embeddings=codes)

    def __init__(self, cfg: DiTConfig, swap: SwapConfig, *, rngs: nnx.Rngs):
        points = settings(swap, "points")
        self.num_points, self.point_dim = points.num_points, points.point_dim
        self.pixels_per_token = (swap.pixels_per_latent * cfg.patch_size[1], swap.pixels_per_latent * cfg.patch_size[2])
        self.frames_per_latent = swap.frames_per_latent
        make = lambda r: PointMLP(points.point_dim, points.hidden, cfg.inner_dim, dtype=cfg.dtype,
                                  param_dtype=cfg.param_dtype, rngs=r)
        self.mlps = AdapterStack(make, cfg.num_layers, points.layers, rngs)

    def index(self, points: PointInputs, grid: tuple[int, int, int]) -> Int[Array, "b f k"]:
        """Validated token indices of the points on a video token grid (see `point_token_index`)."""
        b, _, k, two = points.coords.shape
        if two != 2 or k != self.num_points:
            raise ValueError(f"point coords have shape {tuple(points.coords.shape)}: expected [B, F, K = "
                             f"conditions.points.num_points = {self.num_points}, 2]")
        if points.embeddings.shape != (b, k, self.point_dim):
            raise ValueError(f"point embeddings have shape {tuple(points.embeddings.shape)}: expected "
                             f"({b}, {k}, conditions.points.point_dim = {self.point_dim})")
        return point_token_index(points.coords, points.visible, points.keep, grid,
                                 pixels_per_token=self.pixels_per_token, frames_per_latent=self.frames_per_latent)

    def prepare(self, inputs: PointInputs, video: VideoStream) -> PointsPrepared:
        """Token indices `[B, f, K]` and every point layer's MLP output `[B, S, K, D]`."""
        if not isinstance(inputs, PointInputs):
            raise ValueError(f"the 'points' condition takes PointInputs, got {type(inputs).__name__}")
        if inputs.coords.shape[0] != video.batch:
            raise ValueError(f"point coords batch {inputs.coords.shape[0]} differs from the video batch {video.batch}")
        index = self.index(inputs, video.grid)  # [B, f, K]
        emb = jnp.asarray(inputs.embeddings, jnp.float32)  # [B, K, E]
        features = self.mlps.map(lambda mlp: mlp(emb))  # [S, B, K, D]
        return PointsPrepared(index, jnp.moveaxis(features, 0, 1))  # [B, S, K, D]

    def layer_xs(self) -> dict[str, jax.Array]:
        """This layer's slot in the MLP stack and whether it has point features, `[layers]` each."""
        return self.mlps.slots()

    def layer_inputs(self, prepared: PointsPrepared, layer: dict[str, jax.Array], video: VideoStream
                     ) -> LayerInputs:
        """The residual `[B, Lv, D]`: this layer's point features at the points' tokens (zero off its layers)."""
        if prepared.index.shape[1] != video.grid[0]:
            raise ValueError(f"cached point indices cover {prepared.index.shape[1]} latent frames, the video has "
                             f"{video.grid[0]}: rebuild the prefix cache for this video size")
        feats = prepared.features[:, layer["slot"]]  # [B, K, D]
        feats = feats * layer["on"].astype(feats.dtype)
        return LayerInputs(residual=point_feature_map(feats, prepared.index, video.num_tokens))
