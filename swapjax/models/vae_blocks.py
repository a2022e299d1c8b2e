"""Building blocks of the Wan2.1 3D causal VAE (channels-last, `[B, T, H, W, C]`).

Every block that looks back in time is called as `y, cache = block(x, cache)`:
- `cache=None` starts a sequence: causal convolutions see zero frames in front, temporal down/upsampling
  keeps the first frame as is (Wan's "first chunk" rule). A whole video in one call is the one-pass mode.
- passing the returned `cache` continues the same sequence with the next frames (chunked mode). The cache
  holds, per causal conv, the last `kt - 1` (= 2) frames of its input, and per temporal resampler its
  carried frames; its shapes are fixed after the first call, so a jitted chunk step does not recompile.
Both modes give the same numbers: the continuation is the one-pass computation cut at chunk boundaries.

Parameter names mirror diffusers' `AutoencoderKLWan` (kernel = weight, channels-last) so that the converter
is a rename plus a transpose. Parameter dtype and compute dtype come from the caller (`VAEConfig`).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from swapjax.parallel import sharded_init

Cache = Any  # a pytree of arrays (None for stateless blocks)

_CONV_DIMS = {4: ("NHWC", "HWIO", "NHWC"), 5: ("NDHWC", "DHWIO", "NDHWC")}


def _fan_in_normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """N(0, 1 / fan_in) for a `[*window, C_in, C_out]` kernel (LeCun normal, untruncated; cheap to compile)."""
    fan_in = math.prod(shape[:-1])
    return (jax.random.normal(key, shape, jnp.float32) / fan_in ** 0.5).astype(dtype)


class Conv(nnx.Module):
    """Plain N-d convolution over the trailing spatial axes (2-d per frame, or 3-d), channels-last.

    Kernel `[*window, C_in, C_out]`; a 2-d conv on `[B, T, H, W, C]` runs per frame.
    """

    def __init__(self, cin: int, cout: int, window: tuple[int, ...], *, strides: tuple[int, ...] | None = None,
                 padding: tuple[tuple[int, int], ...] | None = None, dtype: str, param_dtype: str,
                 rngs: nnx.Rngs):
        spatial = ("kernel",) * len(window)
        self.kernel = nnx.Param(sharded_init(_fan_in_normal, (*spatial, "conv_in", "conv_out"))(
            rngs.params(), (*window, cin, cout), jnp.dtype(param_dtype)))
        self.bias = nnx.Param(sharded_init(nnx.initializers.zeros_init(), ("conv_out",))(
            rngs.params(), (cout,), jnp.dtype(param_dtype)))
        self.strides = tuple(strides or (1,) * len(window))
        self.padding = tuple(padding or ((0, 0),) * len(window))
        self.dtype = jnp.dtype(dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        nd = len(self.kernel.shape) - 2
        lead = x.shape[: x.ndim - nd - 1]
        x = x.reshape((-1, *x.shape[x.ndim - nd - 1:])).astype(self.dtype)  # [N, *spatial, C_in]
        kernel = self.kernel[...].astype(self.dtype)
        if nd == 3 and jax.default_backend() == "cpu":
            y = _conv3d_as_2d(x, kernel, self.strides, self.padding)
        else:
            y = jax.lax.conv_general_dilated(x, kernel, window_strides=self.strides, padding=self.padding,
                                             dimension_numbers=_CONV_DIMS[nd + 2])
        y = y + self.bias[...].astype(self.dtype)
        return y.reshape((*lead, *y.shape[1:]))  # [*lead, *spatial', C_out]


def _conv3d_as_2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, ...], padding: tuple[tuple[int, int], ...]
                  ) -> jax.Array:
    """A 3-d convolution `[N, T, H, W, C_in] x [kt, kh, kw, C_in, C_out]` computed as one 2-d convolution: the
    `kt` temporal taps of every output frame are stacked on channels. Same numbers as the 3-d convolution;
    XLA:CPU runs 3-d convolutions (and their gradients) several times slower than 2-d ones."""
    kt, kh, kw, cin, cout = kernel.shape
    st = strides[0]
    x = jnp.pad(x, ((0, 0), padding[0], (0, 0), (0, 0), (0, 0)))  # temporal padding done here
    n, t = x.shape[:2]
    t_out = (t - kt) // st + 1
    taps = [x[:, dt:dt + st * (t_out - 1) + 1:st] for dt in range(kt)]  # kt x [N, T', H, W, C_in]
    stacked = jnp.concatenate(taps, axis=-1).reshape(n * t_out, *x.shape[2:4], kt * cin)  # [N T', H, W, kt C_in]
    flat = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kt * cin, cout)  # taps outermost on C_in
    y = jax.lax.conv_general_dilated(stacked, flat, window_strides=strides[1:], padding=padding[1:],
                                     dimension_numbers=_CONV_DIMS[4])  # [N T', H', W', C_out]
    return y.reshape(n, t_out, *y.shape[1:])


class CausalConv3d(nnx.Module):
    """Conv3d that is causal in time: `kt - 1` frames of context in front, zeros at the sequence start.

    Spatial padding keeps H and W (`k // 2` each side). `[B, T, H, W, C_in] -> [B, T, H, W, C_out]`.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (3, 3, 3), *, dtype: str,
                 param_dtype: str, rngs: nnx.Rngs):
        kt, kh, kw = kernel
        self.context = kt - 1
        self.conv = Conv(cin, cout, kernel, padding=((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)),
                         dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
        if self.context == 0:
            return self.conv(x), None
        if cache is None:
            cache = jnp.zeros((x.shape[0], self.context, *x.shape[2:]), x.dtype)
        x = jnp.concatenate([cache.astype(x.dtype), x], axis=1)  # [B, ctx + T, H, W, C]
        return self.conv(x), x[:, -self.context:]


class RMSNorm(nnx.Module):
    """Wan's RMS_norm: L2-normalise over channels, times sqrt(C) and a learned per-channel gamma (in fp32)."""

    def __init__(self, dim: int, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        self.gamma = nnx.Param(sharded_init(nnx.initializers.ones_init(), ("conv_in",))(
            rngs.params(), (dim,), jnp.dtype(param_dtype)))
        self.scale = dim ** 0.5
        self.dtype = jnp.dtype(dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        wide = jnp.promote_types(x.dtype, jnp.float32)  # bf16 activations are normalised in fp32
        x = x.astype(wide)
        norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))  # [..., 1]
        x = x / jnp.maximum(norm, 1e-12)
        return (x * self.scale * self.gamma[...].astype(wide)).astype(self.dtype)


class ResidualBlock(nnx.Module):
    """RMSNorm -> SiLU -> causal conv -> RMSNorm -> SiLU -> causal conv, plus a 1x1x1 shortcut when C changes."""

    def __init__(self, cin: int, cout: int, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm1 = RMSNorm(cin, **kw)
        self.conv1 = CausalConv3d(cin, cout, **kw)
        self.norm2 = RMSNorm(cout, **kw)
        self.conv2 = CausalConv3d(cout, cout, **kw)
        self.conv_shortcut = CausalConv3d(cin, cout, (1, 1, 1), **kw) if cin != cout else None

    def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
        c1, c2 = (None, None) if cache is None else cache
        h = x if self.conv_shortcut is None else self.conv_shortcut(x)[0]
        x, c1 = self.conv1(jax.nn.silu(self.norm1(x)), c1)
        x, c2 = self.conv2(jax.nn.silu(self.norm2(x)), c2)
        return x + h, (c1, c2)


class AttentionBlock(nnx.Module):
    """Single-head self-attention over the H*W positions of each frame, with a residual connection."""

    def __init__(self, dim: int, *, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm = RMSNorm(dim, **kw)
        self.to_qkv = Conv(dim, 3 * dim, (1, 1), **kw)
        self.proj = Conv(dim, dim, (1, 1), **kw)
        self.dtype = jnp.dtype(dtype)

    def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
        b, t, h, w, c = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(b * t, h * w, 3 * c)  # [BT, HW, 3C]
        q, k, v = jnp.split(qkv, 3, axis=-1)  # [BT, HW, C] each
        wide = jnp.promote_types(q.dtype, jnp.float32)  # softmax in fp32 (or wider)
        logits = jnp.einsum("nqc,nkc->nqk", q, k).astype(wide) / jnp.sqrt(jnp.asarray(c, wide))
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)  # [BT, HW, HW]
        out = jnp.einsum("nqk,nkc->nqc", weights, v).reshape(b, t, h, w, c)
        return x + self.proj(out), cache


class Resample(nnx.Module):
    """Wan resampler: "downsample2d" / "downsample3d" (x1/2 in space, also x1/2 in time for 3d) and
    "upsample2d" / "upsample3d" (x2 in space, also x2 in time for 3d, output channels `out_dim`).

    Time rules (Wan2.1): the first frame of a sequence passes the temporal part untouched. Downsampling then
    applies a stride-2, 3-tap temporal conv over [previous frame, this chunk]; upsampling applies a causal
    temporal conv to every later frame whose 2*C outputs become two consecutive frames.
    """

    def __init__(self, dim: int, mode: str, out_dim: int | None = None, *, dtype: str, param_dtype: str,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.mode = mode
        if mode.startswith("upsample"):
            out_dim = dim // 2 if out_dim is None else out_dim
            self.resample = Conv(dim, out_dim, (3, 3), padding=((1, 1), (1, 1)), **kw)
            self.time_conv = CausalConv3d(dim, 2 * dim, (3, 1, 1), **kw) if mode == "upsample3d" else None
        elif mode.startswith("downsample"):
            self.resample = Conv(dim, dim, (3, 3), strides=(2, 2), padding=((0, 1), (0, 1)), **kw)
            self.time_conv = (Conv(dim, dim, (3, 1, 1), strides=(2, 1, 1), **kw)
                              if mode == "downsample3d" else None)
        else:
            raise ValueError(f"Resample mode {mode!r} must be upsample2d, upsample3d, downsample2d or downsample3d")

    def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
        if self.mode == "upsample3d":
            x, cache = self._time_up(x, cache)
        x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3) if self.mode.startswith("upsample") else x
        x = self.resample(x)  # per frame: [B, T, H', W', C']
        if self.mode == "downsample3d":
            x, cache = self._time_down(x, cache)
        return x, cache

    def _time_up(self, x: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
        first = cache is None
        head, rest = (x[:, :1], x[:, 1:]) if first else (x[:, :0], x)
        if rest.shape[1] == 0:  # a lone first frame: nothing to double, the conv's context stays zero
            ctx = jnp.zeros((x.shape[0], self.time_conv.context, *x.shape[2:]), x.dtype)
            return head, ctx
        y, cache = self.time_conv(rest, cache)  # [B, T, H, W, 2C]
        b, t, h, w, c2 = y.shape
        y = y.reshape(b, t, h, w, 2, c2 // 2).transpose(0, 1, 4, 2, 3, 5).reshape(b, 2 * t, h, w, c2 // 2)
        return jnp.concatenate([head, y], axis=1), cache  # [B, T_head + 2T, H, W, C]

    def _time_down(self, x: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
        last = x[:, -1:]
        if cache is None:  # keep frame 0, then 3-tap stride-2 windows starting at frame 0
            head, seq = x[:, :1], x
        else:  # windows start at the carried last frame of the previous chunk
            head, seq = x[:, :0], jnp.concatenate([cache.astype(x.dtype), x], axis=1)
        if seq.shape[1] < 3:
            return head, last
        return jnp.concatenate([head, self.time_conv(seq)], axis=1), last  # [B, 1 + (T-1)//2 | T/2, H, W, C]
