"""ArcFace-style IResNet face encoder (the insightface `iresnet18/34/50/100/200` layout) in Flax NNX, eval only.

Input: aligned face crops `[B, S, S, 3]` in [-1, 1], channels-last, `S = IResNetConfig.input_size` (112 for
every public insightface checkpoint). Output: identity features `[B, num_features]` (512), not normalised.

Layout (torch names in brackets, so `convert/iresnet.py` can map a public state dict onto it):
  stem      3x3 conv, stride 1, no bias [conv1] -> BatchNorm [bn1] -> PReLU [prelu]
  4 stages  [layer1..layer4], widths `width · (1, 2, 4, 8)`, each starting with a stride-2 block; a block is
            BN [bn1] -> 3x3 conv [conv1] -> BN [bn2] -> PReLU [prelu] -> 3x3 conv with the stride [conv2]
            -> BN [bn3], plus the input (through 1x1 strided conv + BN [downsample.0/.1] when the shape changes)
  head      BN [bn2] -> flatten -> Linear [fc] -> BatchNorm1d [features]
The dropout before `fc` is a no-op in eval mode and is left out. Every BatchNorm uses its running statistics
(`nnx.BatchStat` variables `mean`, `var`): the encoder is a frozen measuring instrument inside the losses, never
trained here. The flatten is channels-last (`h, w, c` order); the converter permutes torch's `c, h, w` `fc`
columns to match. Within a stage, the blocks after the first share one shape and are stacked on a leading axis
and run with `jax.lax.scan`, so IResNet-100 compiles 8 block bodies, not 49.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from swapjax.errors import require
from swapjax.models.execution import execution_field
from swapjax.models.layer_adapters import stacked
from swapjax.models.layers import DTYPES
from swapjax.parallel import sharded_init

# Initialisers for a model built from scratch (tests); real use loads insightface weights. Plain normal draws,
# not truncated ones, because each truncated-normal shape costs a slow compile in an eager init.
CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")
FC_INIT = nnx.initializers.variance_scaling(1.0, "fan_in", "normal")

# Blocks per stage of the published insightface backbones.
IRESNET_LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "iresnet200": (6, 26, 60, 6),
}


@dataclasses.dataclass(frozen=True)
class IResNetConfig:
    """IResNet shape; the defaults are insightface's `iresnet50` (e.g. the buffalo_l recognition model)."""

    layers: tuple[int, int, int, int] = IRESNET_LAYERS["iresnet50"]
    width: int = 64  # stage widths are width · (1, 2, 4, 8); 64 in every public checkpoint
    num_features: int = 512
    input_size: int = 112  # square face crop side; the head sees input_size / 16 cells per side
    eps: float = 1e-5  # BatchNorm epsilon
    param_dtype: str = execution_field("float32")
    dtype: str = execution_field("float32")  # compute dtype

    def __post_init__(self):
        require(len(self.layers) == 4 and all(isinstance(n, int) and n >= 1 for n in self.layers),
                f"IResNetConfig.layers = {self.layers}: need 4 stage depths >= 1, e.g. "
                f"{IRESNET_LAYERS['iresnet50']} (iresnet50); known: {IRESNET_LAYERS}")
        require(self.width >= 1 and self.num_features >= 1,
                f"IResNetConfig: width ({self.width}) and num_features ({self.num_features}) must be >= 1")
        require(self.input_size >= 16 and self.input_size % 16 == 0,
                f"IResNetConfig.input_size = {self.input_size}: must be a positive multiple of 16 (four stride-2 "
                "stages); public checkpoints use 112")
        require(self.eps > 0, f"IResNetConfig.eps = {self.eps}: must be > 0")
        require(self.param_dtype in DTYPES and self.dtype in DTYPES,
                f"IResNetConfig: param_dtype ({self.param_dtype!r}) and dtype ({self.dtype!r}) must be in "
                f"{tuple(DTYPES)}")

    @property
    def stage_widths(self) -> tuple[int, int, int, int]:
        return tuple(self.width * m for m in (1, 2, 4, 8))

    @property
    def head_cells(self) -> int:
        """Side of the last feature map (7 for 112x112 input)."""
        return self.input_size // 16


def iresnet_config(name: str, **overrides) -> IResNetConfig:
    """`IResNetConfig` of a named insightface backbone (`iresnet18` ... `iresnet200`), fields overridable."""
    if name not in IRESNET_LAYERS:
        raise ValueError(f"IResNet name {name!r} is unknown: use one of {sorted(IRESNET_LAYERS)}")
    return IResNetConfig(**{"layers": IRESNET_LAYERS[name], **overrides})


class BatchNorm(nnx.Module):
    """Inference BatchNorm over the last axis: `(x − mean) / sqrt(var + eps) · scale + bias` (running stats)."""

    def __init__(self, channels: int, *, eps: float, param_dtype: str):
        dt = DTYPES[param_dtype]
        self.eps = eps
        self.scale = nnx.Param(sharded_init(nnx.initializers.ones_init(), ("conv_out",))(None, (channels,), dt))
        self.bias = nnx.Param(sharded_init(nnx.initializers.zeros_init(), ("conv_out",))(None, (channels,), dt))
        self.mean = nnx.BatchStat(sharded_init(nnx.initializers.zeros_init(), ("conv_out",))(None, (channels,), dt))
        self.var = nnx.BatchStat(sharded_init(nnx.initializers.ones_init(), ("conv_out",))(None, (channels,), dt))

    def __call__(self, x: Float[Array, "... c"]) -> Float[Array, "... c"]:
        mul = self.scale[...] * jax.lax.rsqrt(self.var[...] + self.eps)  # [C]
        return ((x - self.mean[...]) * mul + self.bias[...]).astype(x.dtype)


class PReLU(nnx.Module):
    """Per-channel PReLU `max(x, 0) + a · min(x, 0)` (torch's default `a = 0.25`)."""

    def __init__(self, channels: int, *, param_dtype: str):
        self.weight = nnx.Param(sharded_init(nnx.initializers.constant(0.25), ("conv_out",))(
            None, (channels,), DTYPES[param_dtype]))

    def __call__(self, x: Float[Array, "... c"]) -> Float[Array, "... c"]:
        return jnp.where(x >= 0, x, self.weight[...].astype(x.dtype) * x)


def _conv(cin: int, cout: int, kernel: int, stride: int, *, cfg: IResNetConfig, rngs: nnx.Rngs) -> nnx.Conv:
    """Bias-free 2D conv, torch-style symmetric padding `kernel // 2`."""
    pad = kernel // 2
    return nnx.Conv(cin, cout, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                    use_bias=False, dtype=DTYPES[cfg.dtype], param_dtype=DTYPES[cfg.param_dtype],
                    kernel_init=sharded_init(CONV_INIT, ("kernel", "kernel", "conv_in", "conv_out")), rngs=rngs)


class IBasicBlock(nnx.Module):
    """Pre-activation-style residual block `[B, H, W, Cin] -> [B, H/s, W/s, Cout]` (see module docstring)."""

    def __init__(self, cin: int, cout: int, stride: int, *, cfg: IResNetConfig, rngs: nnx.Rngs):
        norm = dict(eps=cfg.eps, param_dtype=cfg.param_dtype)
        self.bn1 = BatchNorm(cin, **norm)
        self.conv1 = _conv(cin, cout, 3, 1, cfg=cfg, rngs=rngs)
        self.bn2 = BatchNorm(cout, **norm)
        self.prelu = PReLU(cout, param_dtype=cfg.param_dtype)
        self.conv2 = _conv(cout, cout, 3, stride, cfg=cfg, rngs=rngs)
        self.bn3 = BatchNorm(cout, **norm)
        reshape = stride != 1 or cin != cout
        self.down_conv = _conv(cin, cout, 1, stride, cfg=cfg, rngs=rngs) if reshape else None
        self.down_bn = BatchNorm(cout, **norm) if reshape else None

    def __call__(self, x: Float[Array, "b h w ci"]) -> Float[Array, "b ho wo co"]:
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))  # [B, H/s, W/s, Cout]
        skip = x if self.down_conv is None else self.down_bn(self.down_conv(x))
        return y + skip


class Stage(nnx.Module):
    """One stage: a stride-2 block that changes the width, then `depth − 1` same-shape blocks run as a scan."""

    def __init__(self, cin: int, cout: int, depth: int, *, cfg: IResNetConfig, rngs: nnx.Rngs):
        self.first = IBasicBlock(cin, cout, 2, cfg=cfg, rngs=rngs)
        self.rest = (stacked(lambda r: IBasicBlock(cout, cout, 1, cfg=cfg, rngs=r), depth - 1, rngs)
                     if depth > 1 else None)

    def __call__(self, x: Float[Array, "b h w ci"]) -> Float[Array, "b ho wo co"]:
        x = self.first(x)  # [B, H/2, W/2, Cout]
        if self.rest is None:
            return x
        graphdef, state = nnx.split(self.rest)

        def body(h, block_state):
            return nnx.merge(graphdef, block_state)(h), None

        return jax.lax.scan(body, x, state)[0]


class IResNet(nnx.Module):
    """Face crops `[B, S, S, 3]` in [-1, 1] -> identity features `[B, num_features]` (eval mode)."""

    def __init__(self, cfg: IResNetConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.input_size = cfg.input_size  # read by `image_encoder.encode_images` to resize its input
        self.embed_dim = cfg.num_features
        norm = dict(eps=cfg.eps, param_dtype=cfg.param_dtype)
        widths = cfg.stage_widths
        self.conv1 = _conv(3, cfg.width, 3, 1, cfg=cfg, rngs=rngs)
        self.bn1 = BatchNorm(cfg.width, **norm)
        self.prelu = PReLU(cfg.width, param_dtype=cfg.param_dtype)
        cins = (cfg.width, *widths[:-1])
        self.stages = nnx.List([Stage(ci, co, n, cfg=cfg, rngs=rngs)
                                for ci, co, n in zip(cins, widths, cfg.layers)])
        self.bn2 = BatchNorm(widths[-1], **norm)
        self.fc = nnx.Linear(cfg.head_cells ** 2 * widths[-1], cfg.num_features, dtype=DTYPES[cfg.dtype],
                             param_dtype=DTYPES[cfg.param_dtype],
                             kernel_init=sharded_init(FC_INIT, ("conv_in", "conv_out")),
                             bias_init=sharded_init(nnx.initializers.zeros_init(), ("conv_out",)), rngs=rngs)
        self.features = BatchNorm(cfg.num_features, **norm)

    def __call__(self, images: Float[Array, "b s s 3"]) -> Float[Array, "b e"]:
        s = self.cfg.input_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (s, s, 3):
            raise ValueError(f"IResNet input has shape {tuple(images.shape)}: expected [B, {s}, {s}, 3] aligned "
                             "face crops in [-1, 1] (resize with image_encoder.encode_images, or change "
                             "IResNetConfig.input_size)")
        x = self.prelu(self.bn1(self.conv1(images.astype(DTYPES[self.cfg.dtype]))))  # [B, S, S, width]
        for stage in self.stages:
            x = stage(x)  # [B, S/2^k, S/2^k, C_k]
        x = self.bn2(x)  # [B, S/16, S/16, 8·width]
        x = x.reshape(x.shape[0], -1)  # [B, (S/16)² · 8·width], (h, w, c) order
        return self.features(self.fc(x))  # [B, num_features]


def abstract_iresnet(cfg: IResNetConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state of `jax.ShapeDtypeStruct`s) without allocating parameters."""
    return nnx.split(nnx.eval_shape(lambda: IResNet(cfg, rngs=nnx.Rngs(0))))
