"""Pose-attention (DreamID-V): `Z = Attn(Q, K, V) + λ · Attn(Q, K', V')` in the video stream's self-attention.

A small convolutional `PoseGuider` maps the condition latent (the VAE encoding of the rendered pose / hands /
landmark video, `[B, f, h, w, C]`, already on the latent grid) to one feature per video token `[B, L, D]`:
3x3 convolutions with SiLU per latent frame, then a patch convolution (the DiT's spatial patch) to the model
width. Per layer, `K' = RoPE(RMSNorm(P W'_k))` with the video tokens' rotary positions (so each query reads
the pose at and around its own place) and `V' = P W'_v`. `W'_v` starts at zero: a freshly added branch
contributes nothing, and a loaded model starts as the pretrained one. λ = 0 gives the base model exactly.
Only video queries read the branch; the reference prefix never does (its K/V cache stays valid).

As a condition (see `base.py`): `prepare` runs the PoseGuider once per video; each layer projects the cached
features with its own K'/V' and contributes one attention branch.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from swapjax.models.conditions.base import Condition, VideoStream
from swapjax.errors import require
from swapjax.models.conditions.base import layer_list_ok
from swapjax.models.conditions.registry import register_condition, settings
from swapjax.models.dit_config import DiTConfig
from swapjax.models.embeddings import apply_rope
from swapjax.models.layer_adapters import AdapterStack
from swapjax.models.layer_inputs import LayerInputs
from swapjax.models.layers import DTYPES, RMSNorm, dense
from swapjax.models.swap_config import SwapConfig
from swapjax.parallel import sharded_init


class PoseInputs(NamedTuple):
    """The pose condition of one batch of videos."""

    latent: Float[Array, "b f h w c"]  # condition latent on the video's latent grid, PoseSettings.channels
    scale: Float[Array, ""] | Float[Array, "b"] | float | None = None  # λ; None = PoseSettings.scale


class PosePrepared(NamedTuple):
    """Per-video pose state kept in the prefix cache."""

    features: Float[Array, "b l d"]  # PoseGuider output, one feature per video token
    scale: Float[Array, "b"]  # λ per sample


def _conv(cin: int, cout: int, kernel: tuple[int, int], out_axis: str, *, stride: tuple[int, int] = (1, 1),
          padding: str = "SAME", dtype: str, param_dtype: str, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(cin, cout, kernel, strides=stride, padding=padding, dtype=DTYPES[dtype],
                    param_dtype=DTYPES[param_dtype],
                    kernel_init=sharded_init(nnx.initializers.xavier_uniform(), ("kernel", "kernel", "conv_in",
                                                                                 out_axis)),
                    bias_init=sharded_init(nnx.initializers.zeros_init(), (out_axis,)), rngs=rngs)


class PoseGuider(nnx.Module):
    """Condition latent `[B, f, h, w, C]` -> pose features `[B, f·h/ph·w/pw, D]`, tokens ordered (f, h, w)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], dim: int, patch: tuple[int, int], *,
                 dtype: str, param_dtype: str, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        chans = (in_channels, *widths)
        self.convs = nnx.List([_conv(a, b, (3, 3), "conv_out", **kw) for a, b in zip(chans[:-1], chans[1:])])
        self.patch = _conv(widths[-1], dim, patch, "embed", stride=patch, padding="VALID", **kw)
        self.dtype = DTYPES[dtype]

    def __call__(self, cond: Float[Array, "b f h w c"]) -> Float[Array, "b l d"]:
        b, f, h, w, c = cond.shape
        x = cond.astype(self.dtype).reshape(b * f, h, w, c)  # [B·f, h, w, C]
        for conv in self.convs:
            x = jax.nn.silu(conv(x))  # [B·f, h, w, width]
        x = self.patch(x)  # [B·f, h', w', D]
        return x.reshape(b, -1, x.shape[-1])  # [B, L, D]


class PoseProjection(nnx.Module):
    """One layer's K', V' projections of the pose features (V' zero-initialised)."""

    def __init__(self, dim: int, num_heads: int, *, eps: float, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        self.num_heads = num_heads
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.k = dense(dim, dim, ("embed", "heads"), **kw)
        self.v = dense(dim, dim, ("embed", "heads"), zero=True, **kw)
        self.norm_k = RMSNorm(dim, eps=eps, axis="heads", param_dtype=param_dtype)

    def __call__(self, feats: Float[Array, "b l d"], rope: tuple[jax.Array, jax.Array]
                 ) -> tuple[Float[Array, "b l n h"], Float[Array, "b l n h"]]:
        heads = lambda x: x.reshape(*x.shape[:-1], self.num_heads, -1)  # [B, L, N, H]
        return apply_rope(heads(self.norm_k(self.k(feats))), *rope), heads(self.v(feats))


@dataclasses.dataclass(frozen=True)
class PoseSettings:
    """`SwapConfig.conditions["pose"]`: the pose branch's λ, the PoseGuider's input channels and widths, its layers."""

    scale: float = 1.0  # λ (a call may override it with a traced value)
    channels: int = 16  # PoseGuider input: channels of the condition latent it reads
    widths: tuple[int, ...] = (32, 64)  # PoseGuider 3x3 conv widths, then a patch conv to the model width
    layers: tuple[int, ...] = ()  # layers with the K'/V' branch; () = every layer

    def __post_init__(self):
        require(len(self.widths) >= 1 and all(w > 0 for w in self.widths) and self.channels > 0,
                f"conditions.pose: widths ({self.widths}) needs at least one positive width and channels "
                f"({self.channels}) must be positive")
        require(layer_list_ok(self.layers), f"conditions.pose.layers ({self.layers}) must list distinct layer "
                                            "indices >= 0 (() = all)")


@register_condition("pose")
class PoseCondition(Condition):
    """The PoseGuider plus per-layer K'/V' projections on `PoseSettings.layers` (`()` = all layers)."""

    Settings = PoseSettings

    batch_keys = ("condition_latents",)

    @classmethod
    def inputs_from_batch(cls, batch, swap: SwapConfig) -> PoseInputs:
        """The condition latent (VAE encoding of the rendered pose video) at the config's λ."""
        return PoseInputs(latent=batch["condition_latents"])

    def __init__(self, cfg: DiTConfig, swap: SwapConfig, *, rngs: nnx.Rngs):
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        pose = settings(swap, "pose")
        self.pose_channels, self.default_scale = pose.channels, pose.scale
        self.guider = PoseGuider(pose.channels, pose.widths, cfg.inner_dim, cfg.patch_size[1:], rngs=rngs, **kw)
        make = lambda r: PoseProjection(cfg.inner_dim, cfg.num_heads, eps=cfg.eps, rngs=r, **kw)
        self.proj = AdapterStack(make, cfg.num_layers, pose.layers, rngs)

    def prepare(self, inputs: PoseInputs, video: VideoStream) -> PosePrepared:
        """Pose features `[B, Lv, D]` of the condition latent (checked against the video) and λ per sample."""
        if not isinstance(inputs, PoseInputs):
            raise ValueError(f"the 'pose' condition takes PoseInputs(latent, scale=None), got {type(inputs).__name__}")
        want = (*video.latent_shape, self.pose_channels)
        if tuple(inputs.latent.shape) != want:
            raise ValueError(f"pose condition latent has shape {tuple(inputs.latent.shape)}: expected {want} (the "
                             f"video latent's [B, f, h, w] and conditions.pose.channels = {self.pose_channels})")
        scale = jnp.asarray(self.default_scale if inputs.scale is None else inputs.scale, jnp.float32)
        if scale.shape not in ((), (video.batch,)):
            raise ValueError(f"pose scale has shape {tuple(scale.shape)}: use a scalar or one value per sample "
                             f"({video.batch},)")
        return PosePrepared(self.guider(inputs.latent), jnp.broadcast_to(scale, (video.batch,)))

    def layer_xs(self) -> dict[str, jax.Array]:
        """This layer's slot in the K'/V' stack and whether it has the branch, `[layers]` each."""
        return self.proj.slots()

    def layer_inputs(self, prepared: PosePrepared, layer: dict[str, jax.Array], video: VideoStream) -> LayerInputs:
        """One branch `(K', V', λ · on)`: K'/V' `[B, Lv, N, H]` from this layer's projections."""
        if prepared.features.shape[1] != video.num_tokens:
            raise ValueError(f"cached pose features cover {prepared.features.shape[1]} tokens, the video has "
                             f"{video.num_tokens}: rebuild the prefix cache for this video size")
        k, v = self.proj.at(layer["slot"])(prepared.features, video.rope)  # [B, Lv, N, H] each
        return LayerInputs(branches=((k, v, prepared.scale * layer["on"]),))  # scale [B]
