"""Pose-attention (DreamID-V): `Z = Attn(Q, K, V) + λ · Attn(Q, K', V')` in the video stream's self-attention.

A small convolutional `PoseGuider` maps the condition latent (the VAE encoding of the rendered pose / hands /
landmark video, `[B, f, h, w, C]`, already on the latent grid) to one feature per video token `[B, L, D]`:
3x3 convolutions with SiLU per latent frame, then a patch convolution (the DiT's spatial patch) to the model
width. Per layer, `K' = RoPE(RMSNorm(P W'_k))` with the video tokens' rotary positions (so each query reads
the pose at and around its own place) and `V' = P W'_v`. `W'_v` starts at zero: a freshly added branch
contributes nothing, and a loaded model starts as the pretrained one. λ = 0 gives the base model exactly.
Only video queries read the branch; the reference prefix never does (its K/V cache stays valid).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap_config import SwapConfig
from swapjax.models.embeddings import apply_rope
from swapjax.models.layer_adapters import AdapterStack
from swapjax.models.layers import DTYPES, RMSNorm, dense
from swapjax.parallel import sharded_init


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


class PoseBranch(nnx.Module):
    """The PoseGuider plus per-layer K'/V' projections on `SwapConfig.pose_layers` (`()` = all layers)."""

    def __init__(self, cfg: DiTConfig, swap: SwapConfig, *, rngs: nnx.Rngs):
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        self.pose_channels = swap.pose_channels
        self.guider = PoseGuider(swap.pose_channels, swap.pose_widths, cfg.inner_dim, cfg.patch_size[1:],
                                 rngs=rngs, **kw)
        make = lambda r: PoseProjection(cfg.inner_dim, cfg.num_heads, eps=cfg.eps, rngs=r, **kw)
        self.proj = AdapterStack(make, cfg.num_layers, swap.pose_layers, rngs)

    def features(self, cond: Float[Array, "b f h w c"], video_shape: tuple[int, ...]) -> Float[Array, "b l d"]:
        """Pose features for a video latent of shape `video_shape` (`cond` checked against it)."""
        want = (*video_shape[:4], self.pose_channels)
        if tuple(cond.shape) != want:
            raise ValueError(f"pose condition latent has shape {tuple(cond.shape)}: expected {want} (the video "
                             f"latent's [B, f, h, w] and SwapConfig.pose_channels = {self.pose_channels})")
        return self.guider(cond)


def pose_branch_scale(scale: jax.Array | float, on: jax.Array, batch: int, queries: int | None,
                      prefix_tokens: int = 0) -> jax.Array:
    """λ for one layer: `λ · on` (a scalar), or with `queries` a `[B, queries]` array that is 0 on the first
    `prefix_tokens` queries (for a single dense-masked pass over [prefix; video])."""
    lam = jnp.asarray(scale, jnp.float32) * on
    if queries is None:
        return lam
    per_query = (jnp.arange(queries) >= prefix_tokens).astype(jnp.float32)  # [Lq]
    return jnp.broadcast_to(lam * per_query, (batch, queries))  # [B, Lq]
