"""Pluggable image encoders `E` for the identity losses, and the registry the loss config names them from.

Every encoder is an NNX module mapping images `[B, H, W, 3]` in [-1, 1] to embeddings `[B, E]`, with two
attributes: `embed_dim` (E) and `input_size` (the square side it needs, or None when any size works).
`encode_images` resizes to `input_size` and accepts any leading batch axes, so callers hand over decoded
frames as they come.

- `small`: a few stride-2 3x3 convolutions with SiLU, a spatial mean and a linear map. Deterministic given
  its key, any input size; the default for tests, CPU runs and the synthetic data (it measures nothing
  about faces until trained, but gives the losses a differentiable, input-dependent embedding).
- `iresnet`: the ArcFace-style face encoder of `models/iresnet.py`; load public insightface weights with
  `swapjax.convert.iresnet.convert_iresnet`.

Adding an encoder is one module (config dataclass + NNX class with the interface above) and one entry in
`IMAGE_ENCODERS`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from swapjax.errors import require
from swapjax.models.execution import execution_field
from swapjax.models.iresnet import IResNet, IResNetConfig
from swapjax.models.layers import DTYPES
from swapjax.parallel import sharded_init

# Plain (not truncated) normal draws: cheap to compile in an eager init.
FAN_IN_NORMAL = nnx.initializers.variance_scaling(1.0, "fan_in", "normal")


@dataclasses.dataclass(frozen=True)
class SmallEncoderConfig:
    """The small default encoder: one stride-2 conv per entry of `widths`, then a linear map to `embed_dim`."""

    widths: tuple[int, ...] = (16, 32, 64)
    embed_dim: int = 64
    param_dtype: str = execution_field("float32")
    dtype: str = execution_field("float32")  # compute dtype

    def __post_init__(self):
        require(len(self.widths) >= 1 and all(w >= 1 for w in self.widths),
                f"SmallEncoderConfig.widths = {self.widths}: need at least one positive width, e.g. (16, 32, 64)")
        require(self.embed_dim >= 1, f"SmallEncoderConfig.embed_dim = {self.embed_dim}: must be >= 1")
        require(self.param_dtype in DTYPES and self.dtype in DTYPES,
                f"SmallEncoderConfig: param_dtype ({self.param_dtype!r}) and dtype ({self.dtype!r}) must be in "
                f"{tuple(DTYPES)}")


class SmallImageEncoder(nnx.Module):
    """Images `[B, H, W, 3]` -> embeddings `[B, embed_dim]` (any H, W)."""

    def __init__(self, cfg: SmallEncoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.input_size = None
        self.embed_dim = cfg.embed_dim
        dt, pdt = DTYPES[cfg.dtype], DTYPES[cfg.param_dtype]
        chans = (3, *cfg.widths)
        self.convs = nnx.List([
            nnx.Conv(a, b, (3, 3), strides=(2, 2), padding="SAME", dtype=dt, param_dtype=pdt,
                     kernel_init=sharded_init(FAN_IN_NORMAL, ("kernel", "kernel", "conv_in", "conv_out")),
                     bias_init=sharded_init(nnx.initializers.zeros_init(), ("conv_out",)), rngs=rngs)
            for a, b in zip(chans[:-1], chans[1:])])
        self.proj = nnx.Linear(cfg.widths[-1], cfg.embed_dim, dtype=dt, param_dtype=pdt,
                               kernel_init=sharded_init(FAN_IN_NORMAL, ("conv_in", "conv_out")),
                               bias_init=sharded_init(nnx.initializers.zeros_init(), ("conv_out",)), rngs=rngs)

    def __call__(self, images: Float[Array, "b h w 3"]) -> Float[Array, "b e"]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"image encoder input has shape {tuple(images.shape)}: expected [B, H, W, 3] "
                             "channels-last RGB in [-1, 1]")
        x = images.astype(DTYPES[self.cfg.dtype])
        for conv in self.convs:
            x = jax.nn.silu(conv(x))  # [B, H/2^k, W/2^k, C_k]
        return self.proj(jnp.mean(x, axis=(1, 2)))  # [B, E]


class EncoderEntry(NamedTuple):
    """A registered encoder: its config dataclass (default-constructible) and its `(config, *, rngs)` class."""

    config: type
    build: Callable[..., nnx.Module]


IMAGE_ENCODERS: dict[str, EncoderEntry] = {
    "small": EncoderEntry(SmallEncoderConfig, SmallImageEncoder),
    "iresnet": EncoderEntry(IResNetConfig, IResNet),
}


def build_image_encoder(name: str, config: Any = None, *, rngs: nnx.Rngs) -> nnx.Module:
    """The registered encoder `name` built from `config` (its default config when None)."""
    if name not in IMAGE_ENCODERS:
        raise ValueError(f"image encoder {name!r} is not registered: use one of {sorted(IMAGE_ENCODERS)} "
                         "(add new ones to swapjax.models.image_encoder.IMAGE_ENCODERS)")
    entry = IMAGE_ENCODERS[name]
    config = entry.config() if config is None else config
    if not isinstance(config, entry.config):
        raise ValueError(f"image encoder {name!r} takes a {entry.config.__name__}, got a "
                         f"{type(config).__name__}: pass its own config or None for the default")
    return entry.build(config, rngs=rngs)


def encode_images(encoder: nnx.Module, images: Float[Array, "*n h w 3"]) -> Float[Array, "*n e"]:
    """Embeds images with any leading axes, resizing (bilinear, antialiased) to `encoder.input_size` if set."""
    if images.ndim < 4 or images.shape[-1] != 3:
        raise ValueError(f"images have shape {tuple(images.shape)}: expected [..., H, W, 3] channels-last RGB")
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])  # [N, H, W, 3]
    size = encoder.input_size
    if size is not None and flat.shape[1:3] != (size, size):
        flat = jax.image.resize(flat.astype(jnp.float32), (flat.shape[0], size, size, 3), method="linear")
    return encoder(flat).reshape(*lead, -1)  # [..., E]
