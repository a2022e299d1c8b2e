"""The Wan2.1 3D causal VAE (`AutoencoderKLWan`) in Flax NNX, channels-last.

Pixels `[B, F, H, W, 3]` in [-1, 1] with `F = 1 + 4k`; latents `[B, f, h, w, z_dim]` with
`f = (F - 1) // 4 + 1`, `h = H / 8`, `w = W / 8` (for the Wan2.1 layout; in general the factors come from
`VAEConfig.temporal_factor` / `spatial_factor`).

Two ways to run it, with the same numbers:
- one pass: `vae_encode` / `vae_decode` take the whole clip in one jitted call (training, short clips);
- chunked: `encode_chunks` / `decode_chunks` (and the concatenating `vae_encode_chunked` /
  `vae_decode_chunked`) run one jitted step per chunk, carrying the causal cache (see `vae_blocks`):
  first frame, then `chunk_frames` (4) pixel frames at a time for the encoder, one latent frame at a time for
  the decoder, as diffusers does. Two compiled steps (first chunk, later chunks) serve any video length, and
  only one chunk of activations is alive at a time, so long videos fit.

The model is used functionally: `graphdef, state = nnx.split(WanVAE(cfg, rngs=...))` once, then pure
functions of `state`. The layer list is heterogeneous (channel counts and resamplers change per level), so
it is unrolled, not scanned; it is ~30 convolutions deep whatever the config.
"""

from __future__ import annotations

import functools
from typing import Iterator

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from swapjax.models.vae_config import VAEConfig
from swapjax.models.vae_blocks import AttentionBlock, Cache, CausalConv3d, Resample, ResidualBlock, RMSNorm
from swapjax.models.layers import ModelState

LOGVAR_RANGE = (-30.0, 20.0)  # diffusers' DiagonalGaussianDistribution clamps log-variance to this range


def _kw(cfg: VAEConfig, rngs: nnx.Rngs) -> dict:
    return dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype, rngs=rngs)


def _run(layers, x: jax.Array, caches: Cache) -> tuple[jax.Array, tuple]:
    """Applies cache-carrying layers in order; `caches` is None (sequence start) or one entry per layer."""
    caches = (None,) * len(layers) if caches is None else caches
    out = []
    for layer, cache in zip(layers, caches):
        x, cache = layer(x, cache)
        out.append(cache)
    return x, tuple(out)


class MidBlock(nnx.Module):
    """Residual block, per-frame attention, residual block."""

    def __init__(self, dim: int, cfg: VAEConfig, rngs: nnx.Rngs):
        self.resnets = nnx.List([ResidualBlock(dim, dim, **_kw(cfg, rngs)) for _ in range(2)])
        self.attentions = nnx.List([AttentionBlock(dim, **_kw(cfg, rngs))])

    def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
        return _run((self.resnets[0], self.attentions[0], self.resnets[1]), x, cache)


class Encoder(nnx.Module):
    """`[B, F, H, W, 3] -> [B, f, h, w, 2 * z_dim]` (before `quant_conv`)."""

    def __init__(self, cfg: VAEConfig, rngs: nnx.Rngs):
        kw = _kw(cfg, rngs)
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        self.conv_in = CausalConv3d(3, dims[0], **kw)
        blocks, scale = [], 1.0
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(cin, cout, **kw))
                if scale in cfg.attn_scales:
                    blocks.append(AttentionBlock(cout, **kw))
                cin = cout
            if i != len(cfg.dim_mult) - 1:
                blocks.append(Resample(cout, "downsample3d" if cfg.temperal_downsample[i] else "downsample2d", **kw))
                scale /= 2.0
        self.down_blocks = nnx.List(blocks)
        self.mid_block = MidBlock(dims[-1], cfg, rngs)
        self.norm_out = RMSNorm(dims[-1], **kw)
        self.conv_out = CausalConv3d(dims[-1], 2 * cfg.z_dim, **kw)

    def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
        c_in, c_down, c_mid, c_out = (None,) * 4 if cache is None else cache
        x, c_in = self.conv_in(x, c_in)  # [B, T, H, W, base]
        x, c_down = _run(self.down_blocks, x, c_down)  # [B, t, h, w, D]
        x, c_mid = self.mid_block(x, c_mid)
        x, c_out = self.conv_out(jax.nn.silu(self.norm_out(x)), c_out)  # [B, t, h, w, 2z]
        return x, (c_in, c_down, c_mid, c_out)


class UpBlock(nnx.Module):
    """`num_res_blocks + 1` residual blocks, then an optional upsampler."""

    def __init__(self, cin: int, cout: int, mode: str | None, cfg: VAEConfig, rngs: nnx.Rngs):
        kw = _kw(cfg, rngs)
        self.resnets = nnx.List([ResidualBlock(cin if j == 0 else cout, cout, **kw)
                                 for j in range(cfg.num_res_blocks + 1)])
        self.upsamplers = nnx.List([Resample(cout, mode, **kw)] if mode else [])

    def __call__(self, x: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
        return _run((*self.resnets, *self.upsamplers), x, cache)


class Decoder(nnx.Module):
    """`[B, f, h, w, z_dim] -> [B, F, H, W, 3]` (after `post_quant_conv`, before clipping)."""

    def __init__(self, cfg: VAEConfig, rngs: nnx.Rngs):
        kw = _kw(cfg, rngs)
        mult = cfg.dim_mult
        dims = [cfg.base_dim * m for m in (mult[-1], *mult[::-1])]
        temporal_up = cfg.temperal_downsample[::-1]
        self.conv_in = CausalConv3d(cfg.z_dim, dims[0], **kw)
        self.mid_block = MidBlock(dims[0], cfg, rngs)
        blocks = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            cin = cin // 2 if i > 0 else cin  # the previous level's upsampler halved the channels
            mode = None if i == len(mult) - 1 else ("upsample3d" if temporal_up[i] else "upsample2d")
            blocks.append(UpBlock(cin, cout, mode, cfg, rngs))
        self.up_blocks = nnx.List(blocks)
        self.norm_out = RMSNorm(dims[-1], **kw)
        self.conv_out = CausalConv3d(dims[-1], 3, **kw)

    def __call__(self, z: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
        c_in, c_mid, c_up, c_out = (None,) * 4 if cache is None else cache
        x, c_in = self.conv_in(z, c_in)  # [B, t, h, w, D]
        x, c_mid = self.mid_block(x, c_mid)
        x, c_up = _run(self.up_blocks, x, c_up)  # [B, T, H, W, base]
        x, c_out = self.conv_out(jax.nn.silu(self.norm_out(x)), c_out)  # [B, T, H, W, 3]
        return x, (c_in, c_mid, c_up, c_out)


class WanVAE(nnx.Module):
    """Wan2.1 VAE: encoder + `quant_conv` -> (mean, logvar); `post_quant_conv` + decoder -> pixels."""

    def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
        kw = _kw(cfg, rngs)
        self.cfg = cfg
        self.encoder = Encoder(cfg, rngs)
        self.quant_conv = CausalConv3d(2 * cfg.z_dim, 2 * cfg.z_dim, (1, 1, 1), **kw)
        self.post_quant_conv = CausalConv3d(cfg.z_dim, cfg.z_dim, (1, 1, 1), **kw)
        self.decoder = Decoder(cfg, rngs)

    def encode(self, video: jax.Array, cache: Cache = None) -> tuple[jax.Array, jax.Array, Cache]:
        """`[B, T, H, W, 3]` -> mean, logvar `[B, t, h, w, z]` (float32) and the encoder cache."""
        h, cache = self.encoder(video.astype(self.cfg.dtype), cache)
        h = self.quant_conv(h)[0].astype(jnp.float32)  # [B, t, h, w, 2z]
        mean, logvar = jnp.split(h, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE), cache

    def decode(self, z: jax.Array, cache: Cache = None) -> tuple[jax.Array, Cache]:
        """`[B, t, h, w, z]` -> pixels `[B, T, H, W, 3]` clipped to [-1, 1] (float32), and the decoder cache."""
        x = self.post_quant_conv(z.astype(self.cfg.dtype))[0]
        x, cache = self.decoder(x, cache)
        return jnp.clip(x.astype(jnp.float32), -1.0, 1.0), cache


def abstract_vae(cfg: VAEConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of `jax.ShapeDtypeStruct`s with logical-axis metadata) without allocating parameters."""
    return nnx.split(nnx.eval_shape(lambda: WanVAE(cfg, rngs=nnx.Rngs(0))))


# ----------------------------------------------------------------------------------------------------------
# Input checks (one line naming the input, what is wrong and the fix).


def check_video(video, cfg: VAEConfig) -> None:
    """Raises ValueError unless `video` is `[B, F, H, W, 3]` with `F = 1 mod temporal_factor` and H, W
    multiples of the spatial factor."""
    tf, sf = cfg.temporal_factor, cfg.spatial_factor
    if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f"VAE input video has shape {tuple(video.shape)}: expected [B, F, H, W, 3] pixels "
                         "in [-1, 1] (channels last)")
    b, f, h, w, _ = video.shape
    if f % tf != 1 % tf:
        raise ValueError(f"VAE input video has {f} frames: the Wan VAE needs 1 mod {tf} frames "
                         f"(e.g. {f - (f - 1) % tf}); trim or pad the clip")
    if h % sf or w % sf:
        raise ValueError(f"VAE input video is {h}x{w}: height and width must be multiples of {sf}; "
                         "resize or pad the frames")


def check_latents(z, cfg: VAEConfig) -> None:
    """Raises ValueError unless `z` is `[B, f, h, w, z_dim]`."""
    if z.ndim != 5 or z.shape[-1] != cfg.z_dim:
        raise ValueError(f"VAE latents have shape {tuple(z.shape)}: expected [B, f, h, w, {cfg.z_dim}] "
                         "(channels last)")


# ----------------------------------------------------------------------------------------------------------
# One-pass mode.


@functools.partial(jax.jit, static_argnums=0)
def vae_encode(graphdef: nnx.GraphDef, state: ModelState, video: Float[Array, "b f h w 3"]
               ) -> tuple[Float[Array, "b t i j z"], Float[Array, "b t i j z"]]:
    """Whole clip in one pass: video `[B, F, H, W, 3]` -> (mean, logvar), each `[B, f, h, w, z_dim]` float32."""
    model = nnx.merge(graphdef, state)
    check_video(video, model.cfg)
    mean, logvar, _ = model.encode(video)
    return mean, logvar


@functools.partial(jax.jit, static_argnums=0)
def vae_decode(graphdef: nnx.GraphDef, state: ModelState, z: Float[Array, "b t i j z"]
               ) -> Float[Array, "b f h w 3"]:
    """Whole clip in one pass: latents `[B, f, h, w, z_dim]` -> video `[B, F, H, W, 3]` in [-1, 1] float32."""
    model = nnx.merge(graphdef, state)
    check_latents(z, model.cfg)
    return model.decode(z)[0]


# ----------------------------------------------------------------------------------------------------------
# Chunked mode: one jitted step per chunk shape, the causal cache carried (and donated) between calls.


@functools.partial(jax.jit, static_argnums=0, donate_argnums=3)
def encode_step(graphdef: nnx.GraphDef, state: ModelState, video: jax.Array, cache: Cache):
    """One encoder chunk: video `[B, T, H, W, 3]` (+ cache, None at the start) -> (mean, logvar, cache)."""
    return nnx.merge(graphdef, state).encode(video, cache)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=3)
def decode_step(graphdef: nnx.GraphDef, state: ModelState, z: jax.Array, cache: Cache):
    """One decoder chunk: latents `[B, t, h, w, z]` (+ cache, None at the start) -> (video, cache)."""
    return nnx.merge(graphdef, state).decode(z, cache)


def _cfg(graphdef: nnx.GraphDef, state: ModelState) -> VAEConfig:
    return nnx.merge(graphdef, state).cfg


def encode_chunks(graphdef: nnx.GraphDef, state: ModelState, video, *, chunk_frames: int = 4
                  ) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Yields (mean, logvar) per chunk: first for frame 0 (`[B, 1, h, w, z]`), then for each `chunk_frames`
    pixel frames (`[B, chunk_frames / 4, h, w, z]`). `video` may live on the host (numpy)."""
    cfg = _cfg(graphdef, state)
    check_video(video, cfg)
    if chunk_frames <= 0 or chunk_frames % cfg.temporal_factor:
        raise ValueError(f"chunk_frames ({chunk_frames}) must be a positive multiple of {cfg.temporal_factor}")
    mean, logvar, cache = encode_step(graphdef, state, jnp.asarray(video[:, :1]), None)
    yield mean, logvar
    for start in range(1, video.shape[1], chunk_frames):
        mean, logvar, cache = encode_step(graphdef, state, jnp.asarray(video[:, start:start + chunk_frames]), cache)
        yield mean, logvar


def decode_chunks(graphdef: nnx.GraphDef, state: ModelState, z, *, chunk_latents: int = 1
                  ) -> Iterator[jax.Array]:
    """Yields pixel chunks: `[B, 1, H, W, 3]` for latent frame 0, then `[B, 4 * chunk_latents, H, W, 3]`."""
    cfg = _cfg(graphdef, state)
    check_latents(z, cfg)
    if chunk_latents <= 0:
        raise ValueError(f"chunk_latents ({chunk_latents}) must be positive")
    video, cache = decode_step(graphdef, state, jnp.asarray(z[:, :1]), None)
    yield video
    for start in range(1, z.shape[1], chunk_latents):
        video, cache = decode_step(graphdef, state, jnp.asarray(z[:, start:start + chunk_latents]), cache)
        yield video


def vae_encode_chunked(graphdef: nnx.GraphDef, state: ModelState, video, *, chunk_frames: int = 4
                       ) -> tuple[jax.Array, jax.Array]:
    """`encode_chunks` concatenated: same result as `vae_encode`, bounded activation memory."""
    means, logvars = zip(*encode_chunks(graphdef, state, video, chunk_frames=chunk_frames))
    return jnp.concatenate(means, axis=1), jnp.concatenate(logvars, axis=1)


def vae_decode_chunked(graphdef: nnx.GraphDef, state: ModelState, z, *, chunk_latents: int = 1) -> jax.Array:
    """`decode_chunks` concatenated: same result as `vae_decode`, bounded activation memory."""
    return jnp.concatenate(list(decode_chunks(graphdef, state, z, chunk_latents=chunk_latents)), axis=1)


# ----------------------------------------------------------------------------------------------------------
# Latent helpers.


def sample_latent(mean: Float[Array, "b t i j z"], logvar: Float[Array, "b t i j z"], rng: jax.Array
                  ) -> Float[Array, "b t i j z"]:
    """Draws `z = mean + exp(logvar / 2) * eps`, all `[B, f, h, w, z_dim]`."""
    eps = jax.random.normal(rng, mean.shape, mean.dtype)
    return mean + jnp.exp(0.5 * logvar) * eps


def normalize_latents(z: Float[Array, "... z"], cfg: VAEConfig) -> Float[Array, "... z"]:
    """VAE latents -> the DiT's latent space: `(z - latents_mean) / latents_std` per channel (last axis)."""
    mean = jnp.asarray(cfg.latents_mean, z.dtype)
    std = jnp.asarray(cfg.latents_std, z.dtype)
    return (z - mean) / std


def denormalize_latents(z: Float[Array, "... z"], cfg: VAEConfig) -> Float[Array, "... z"]:
    """Inverse of `normalize_latents`: `z * latents_std + latents_mean`."""
    mean = jnp.asarray(cfg.latents_mean, z.dtype)
    std = jnp.asarray(cfg.latents_std, z.dtype)
    return z * std + mean
