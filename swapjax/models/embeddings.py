"""Input embeddings of the Wan2.1 DiT: patches, timesteps, text and image context, 3D rotary positions.

Numerics follow diffusers' `WanTransformer3DModel`: timestep sinusoid ordered [cos, sin] with frequencies
`exp(-ln(1e4) · i / (d/2))`; time MLP `Linear → SiLU → Linear`, then `Linear(SiLU(temb))` to the 6
modulation vectors; text projection `Linear → GELU-tanh → Linear`; image projection
`LN(1e-5) → Linear → GELU → Linear → LN(1e-5)`; rotary angles computed in float64 and rounded to float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from swapjax.models.layers import DTYPES, FeedForward, LayerNorm, dense
from swapjax.parallel import constrain, sharded_init


# ----------------------------------------------------------------------------------------------- patches
class PatchEmbed(nnx.Module):
    """Non-overlapping 3D patches `(pt, ph, pw)` of a channels-last latent, projected to `dim`.

    The kernel `[pt, ph, pw, C, D]` is the transposed Conv3d weight; keeping C as its own axis lets a later
    model widen the input channels by padding that axis.
    """

    def __init__(self, patch: tuple[int, int, int], cin: int, dim: int, *, dtype: str, param_dtype: str,
                 rngs: nnx.Rngs):
        self.patch, self.dtype = tuple(patch), DTYPES[dtype]
        # Xavier-uniform over the flattened patch (fan_in = pt·ph·pw·C), as Wan initialises its Conv3d.
        init = nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1, 2, 3), out_axis=4)
        self.kernel = nnx.Param(sharded_init(init, ("kernel", "kernel", "kernel", "in_channels", "embed"))(
            rngs.params(), (*patch, cin, dim), DTYPES[param_dtype]))
        self.bias = nnx.Param(sharded_init(nnx.initializers.zeros_init(), ("embed",))(
            None, (dim,), DTYPES[param_dtype]))

    def __call__(self, latents: Float[Array, "b f h w c"]) -> Float[Array, "b l d"]:
        b, f, h, w, c = latents.shape
        pt, ph, pw = self.patch
        x = latents.astype(self.dtype).reshape(b, f // pt, pt, h // ph, ph, w // pw, pw, c)
        x = jnp.einsum("bfphqwrc,pqrcd->bfhwd", x, self.kernel[...].astype(self.dtype))  # [B, f', h', w', D]
        x = x + self.bias[...].astype(self.dtype)
        return constrain(x.reshape(b, -1, x.shape[-1]), ("batch", "length", "embed"))  # [B, L, D], (f, h, w) order


def unpatchify(x: Float[Array, "b l p"], grid: tuple[int, int, int], patch: tuple[int, int, int]
               ) -> Float[Array, "b f h w c"]:
    """Tokens `[B, L, pt·ph·pw·C]` (features ordered pt, ph, pw, C) -> channels-last latent `[B, F, H, W, C]`."""
    b = x.shape[0]
    (gf, gh, gw), (pt, ph, pw) = grid, patch
    x = x.reshape(b, gf, gh, gw, pt, ph, pw, -1)
    x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)  # [B, f', pt, h', ph, w', pw, C]
    return x.reshape(b, gf * pt, gh * ph, gw * pw, -1)


# ---------------------------------------------------------------------------------------------- timestep
def timestep_frequencies(dim: int) -> np.ndarray:
    """The `dim // 2` sinusoid frequencies `exp(-ln(1e4) · i / (dim/2))`, correctly rounded to float32."""
    half = dim // 2
    exponent = np.float32(-math.log(10000.0)) * np.arange(half, dtype=np.float32) / np.float32(half)
    return np.exp(exponent.astype(np.float64)).astype(np.float32)  # [dim/2]


def timestep_sinusoid(t: Float[Array, "..."], dim: int) -> Float[Array, "... dim"]:
    """Sinusoidal embedding of (already scaled) timesteps, ordered [cos, sin], float32."""
    angles = t.astype(jnp.float32)[..., None] * jnp.asarray(timestep_frequencies(dim))  # [..., dim/2]
    emb = jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)  # [..., dim - dim % 2]
    if dim % 2:
        emb = jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, 1)])
    return emb


class TimeEmbedding(nnx.Module):
    """Timestep -> `temb [.., D]` (for the output head) and 6 modulation vectors `[.., 6, D]` (for the blocks).

    Computed in float32 throughout (diffusers keeps its time embedder in fp32; the rest is tiny).
    """

    def __init__(self, freq_dim: int, dim: int, *, param_dtype: str, rngs: nnx.Rngs):
        self.freq_dim = freq_dim
        kw = dict(dtype="float32", param_dtype=param_dtype, rngs=rngs)
        self.linear_1 = dense(freq_dim, dim, (None, "embed"), **kw)
        self.linear_2 = dense(dim, dim, ("mlp", "embed"), **kw)
        self.proj = dense(dim, 6 * dim, ("embed", "mlp"), **kw)

    def __call__(self, t: Float[Array, "..."]) -> tuple[Float[Array, "... d"], Float[Array, "... 6 d"]]:
        emb = timestep_sinusoid(t, self.freq_dim)  # [..., freq_dim]
        temb = self.linear_2(jax.nn.silu(self.linear_1(emb)))  # [..., D]
        mod = self.proj(jax.nn.silu(temb))  # [..., 6D]
        return temb, mod.reshape(*mod.shape[:-1], 6, -1)  # [..., D], [..., 6, D]


# ----------------------------------------------------------------------------------------------- context
class TextEmbedding(nnx.Module):
    """Text encoder features `[B, Lt, text_dim]` -> `[B, Lt, D]` (Linear → GELU-tanh → Linear)."""

    def __init__(self, text_dim: int, dim: int, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        self.mlp = FeedForward(text_dim, dim, dim, approximate=True, axes_in=("text_embed", "embed"),
                               axes_out=("mlp", "embed"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, context: Float[Array, "b lt c"]) -> Float[Array, "b lt d"]:
        return constrain(self.mlp(context), ("batch", "text_len", "embed"))  # [B, Lt, D]


class ImageEmbedding(nnx.Module):
    """Image encoder features `[B, Li, image_dim]` -> `[B, Li, D]` (LN → Linear → GELU → Linear → LN, eps 1e-5)."""

    def __init__(self, image_dim: int, dim: int, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        self.dtype = DTYPES[dtype]
        self.norm_in = LayerNorm(image_dim, eps=1e-5, axis="text_embed", param_dtype=param_dtype)
        self.mlp = FeedForward(image_dim, image_dim, dim, approximate=False, axes_in=("text_embed", "mlp"),
                               axes_out=("mlp", "embed"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm_out = LayerNorm(dim, eps=1e-5, axis="embed", param_dtype=param_dtype)

    def __call__(self, image: Float[Array, "b li c"]) -> Float[Array, "b li d"]:
        x = self.norm_in(image).astype(self.dtype)
        return constrain(self.norm_out(self.mlp(x)).astype(self.dtype), ("batch", "image_len", "embed"))  # [B, Li, D]


# ------------------------------------------------------------------------------------------------- RoPE
def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Head-dim split of the 3D rotary embedding over (frames, height, width)."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_angles(head_dim: int, grid: tuple[int, int, int], *, theta: float = 10000.0,
                offset: tuple[int, int, int] = (0, 0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin `[L, head_dim/2]` (float32, one value per interleaved pair) for tokens ordered (f, h, w).

    Positions along each grid axis start at `offset` (a prefix stream, e.g. a reference frame, can be placed
    before or after the video on the frame axis). Static: computed once at trace time in float64.
    """
    parts = []
    for size, dim, start in zip(grid, rope_split(head_dim), offset):
        inv_freq = 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)  # [dim/2]
        parts.append(np.outer(np.arange(start, start + size, dtype=np.float64), inv_freq))  # [size, dim/2]
    gf, gh, gw = grid
    angles = np.concatenate([
        np.broadcast_to(parts[0][:, None, None], (gf, gh, gw, parts[0].shape[-1])),
        np.broadcast_to(parts[1][None, :, None], (gf, gh, gw, parts[1].shape[-1])),
        np.broadcast_to(parts[2][None, None, :], (gf, gh, gw, parts[2].shape[-1])),
    ], axis=-1).reshape(gf * gh * gw, head_dim // 2)  # [L, H/2]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: Float[Array, "b l n h"], cos: Float[Array, "l h2"], sin: Float[Array, "l h2"]
               ) -> Float[Array, "b l n h"]:
    """Rotates interleaved pairs `(x[2i], x[2i+1])` of every head by the token's angles; keeps x's dtype."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)  # [B, L, N, H/2, 2]
    x1, x2 = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[:, None, :], sin[:, None, :]  # [L, 1, H/2]
    out = jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)  # [B, L, N, H/2, 2]
    return out.reshape(x.shape).astype(x.dtype)
