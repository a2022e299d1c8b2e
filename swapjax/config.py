"""Frozen, validated configuration dataclasses.

Each module receives the small config it needs (a `DiTConfig`, a `VAEConfig`, ...), never the whole
`Config`. Experiment files under `configs/` build a `Config` in `get_config()`; `load_config(path)` imports
one. Every dataclass validates itself in `__post_init__` and raises `ConfigError` naming the values involved.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
from typing import Any

ATTENTION_BACKENDS = ("xla", "cudnn", "splash")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
DTYPES = ("float32", "bfloat16")

# Wan2.1 VAE latent statistics (per channel), used by `latents.normalize`.
WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field, the value and the fix."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """Wan2.1 video transformer (`WanTransformer3DModel` field names in comments where they differ)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_heads: int = 12  # num_attention_heads
    head_dim: int = 128  # attention_head_dim
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    ffn_dim: int = 8960
    num_layers: int = 30
    cross_attn_norm: bool = True
    eps: float = 1e-6
    image_dim: int | None = None  # I2V: CLIP feature width (1280); None for T2V
    added_kv_proj_dim: int | None = None  # I2V: width of the image k/v projections' input
    rope_max_seq_len: int = 1024
    rope_theta: float = 10000.0
    timestep_scale: float = 1000.0  # model time t in [0, 1] -> Wan's sigma * 1000 units
    # Execution choices (no effect on parameters or numbers beyond dtype rounding).
    param_dtype: str = "float32"
    dtype: str = "float32"  # compute dtype
    attention: str = "xla"
    remat_policy: str = "none"
    scan_layers: bool = True

    def __post_init__(self):
        _require(self.num_heads > 0 and self.head_dim > 0,
                 f"DiTConfig: num_heads ({self.num_heads}) and head_dim ({self.head_dim}) must be positive")
        _require(self.head_dim % 2 == 0 and self.head_dim >= 6,
                 f"DiTConfig.head_dim ({self.head_dim}) must be even and >= 6 for the 3D rotary split")
        _require(len(self.patch_size) == 3, f"DiTConfig.patch_size ({self.patch_size}) must have 3 entries (t, h, w)")
        _require(self.num_layers >= 1, f"DiTConfig.num_layers ({self.num_layers}) must be >= 1")
        _require((self.image_dim is None) == (self.added_kv_proj_dim is None),
                 f"DiTConfig: image_dim ({self.image_dim}) and added_kv_proj_dim ({self.added_kv_proj_dim}) "
                 "must both be set (I2V) or both be None (T2V)")
        _require(self.added_kv_proj_dim is None or self.added_kv_proj_dim == self.num_heads * self.head_dim,
                 f"DiTConfig.added_kv_proj_dim ({self.added_kv_proj_dim}) must equal num_heads * head_dim "
                 f"({self.num_heads * self.head_dim}): image tokens reach the image k/v projections at model width")
        _require(self.attention in ATTENTION_BACKENDS,
                 f"DiTConfig.attention ({self.attention!r}) must be one of {ATTENTION_BACKENDS}")
        _require(self.remat_policy in REMAT_POLICIES,
                 f"DiTConfig.remat_policy ({self.remat_policy!r}) must be one of {REMAT_POLICIES}")
        _require(self.param_dtype in DTYPES and self.dtype in DTYPES,
                 f"DiTConfig: param_dtype ({self.param_dtype!r}) and dtype ({self.dtype!r}) must be in {DTYPES}")

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def is_i2v(self) -> bool:
        return self.image_dim is not None


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Wan2.1 3D causal VAE (`AutoencoderKLWan` field names)."""

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD
    param_dtype: str = "float32"
    dtype: str = "float32"

    def __post_init__(self):
        _require(len(self.temperal_downsample) == len(self.dim_mult) - 1,
                 f"VAEConfig: temperal_downsample ({self.temperal_downsample}) needs len(dim_mult) - 1 "
                 f"= {len(self.dim_mult) - 1} entries")
        _require(len(self.latents_mean) == self.z_dim and len(self.latents_std) == self.z_dim,
                 f"VAEConfig: latents_mean/std have {len(self.latents_mean)}/{len(self.latents_std)} entries, "
                 f"need z_dim = {self.z_dim}")
        _require(self.param_dtype in DTYPES and self.dtype in DTYPES,
                 f"VAEConfig: param_dtype ({self.param_dtype!r}) and dtype ({self.dtype!r}) must be in {DTYPES}")

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(bool(d) for d in self.temperal_downsample)


@dataclasses.dataclass(frozen=True)
class MaskConfig:
    """Mask transforms of SPEC section 4 (pixel units)."""

    p_bbox: float = 0.3  # training: bbox mask with this probability, adaptive grid otherwise
    grid_cell_min: int = 12  # h1: training grid cell size drawn from U[h1, h2]
    grid_cell_max: int = 48  # h2
    grid_cell_infer: int = 24  # h3: inference grid cell size
    bbox_dilate_max: int = 8  # training bbox dilation drawn from [0, this]
    p_shape_aug: float = 0.5  # probability of extra shapes attached to the boundary
    shape_aug_max: int = 3  # at most this many extra shapes
    block_dilate: int = 8  # shape-agnostic blocks (SwapAnyHead): dilation before blocking
    block_size: tuple[int, int] = (16, 16)  # (k_h, k_w) block size in pixels
    feather: int = 4  # sampling composite: feather radius in pixels
    dilate_infer: int = 4  # sampling composite: dilation before feathering

    def __post_init__(self):
        _require(0.0 <= self.p_bbox <= 1.0, f"MaskConfig.p_bbox ({self.p_bbox}) must be in [0, 1]")
        _require(0 < self.grid_cell_min <= self.grid_cell_max,
                 f"MaskConfig: need 0 < grid_cell_min ({self.grid_cell_min}) <= grid_cell_max ({self.grid_cell_max})")
        _require(self.grid_cell_infer > 0, f"MaskConfig.grid_cell_infer ({self.grid_cell_infer}) must be positive")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where clips come from and what a training example looks like."""

    source: str = "synthetic"  # "synthetic" (embedded default) or "tfds" (ArrayRecord built by swapjax.data.build)
    tfds_dir: str | None = None
    height: int = 64
    width: int = 64
    num_frames: int = 5  # F, must be 1 mod 4
    frame_stride: int = 1
    ref_size: int = 64  # reference image side (square)
    batch_size: int = 2  # global batch
    num_workers: int = 0  # grain worker processes
    read_threads: int = 2  # threads per process (main or worker) transforming examples
    prefetch_batches: int = 2  # batches buffered per reading thread pool / per worker (memory: float32 batches)
    split: str = "train"  # TFDS split to read
    num_synthetic_clips: int = 1024
    shuffle: bool = True
    with_condition: bool = False  # render keypoint condition frames
    stage: int = 1  # 2 adds reference jitter
    mask: MaskConfig = dataclasses.field(default_factory=MaskConfig)

    def __post_init__(self):
        _require(self.source in ("synthetic", "tfds"),
                 f"DataConfig.source ({self.source!r}) must be 'synthetic' or 'tfds'")
        _require(self.source != "tfds" or self.tfds_dir,
                 "DataConfig.tfds_dir is required when source = 'tfds': build one with python -m swapjax.data.build")
        _require(self.num_frames % 4 == 1,
                 f"DataConfig.num_frames ({self.num_frames}) must be 1 mod 4 (e.g. 5, 9, 17, 81) for the Wan VAE")
        _require(self.height % 16 == 0 and self.width % 16 == 0,
                 f"DataConfig: height ({self.height}) and width ({self.width}) must be multiples of 16")
        _require(self.batch_size >= 1, f"DataConfig.batch_size ({self.batch_size}) must be >= 1")
        _require(self.stage in (1, 2), f"DataConfig.stage ({self.stage}) must be 1 or 2")
        _require(self.frame_stride >= 1, f"DataConfig.frame_stride ({self.frame_stride}) must be >= 1")
        _require(self.num_workers >= 0 and self.read_threads >= 1 and self.prefetch_batches >= 1,
                 f"DataConfig: need num_workers ({self.num_workers}) >= 0, read_threads ({self.read_threads}) >= 1 "
                 f"and prefetch_batches ({self.prefetch_batches}) >= 1")


def _layer_list_ok(layers: tuple[int, ...]) -> bool:
    return all(isinstance(i, int) and i >= 0 for i in layers) and len(set(layers)) == len(layers)


@dataclasses.dataclass(frozen=True)
class SwapConfig:
    """The swap model on a Wan2.1 DiT (SPEC section 3): prefix slots and the optional conditions, all off but the
    reference slot. Fused input channels: [noisy latent z | mask (frames_per_latent) | agnostic latent z |
    condition latent (condition_channels)], so `DiTConfig.in_channels = 2 z + frames_per_latent +
    condition_channels` (52 for Wan2.1). Layer lists `()` mean every layer."""

    reference: bool = True  # reference latent frame prepended; one-way attention; its K/V cached per video
    anchor: bool = False  # anchor slot: one clean latent frame (first frame / previous window's last frame)
    condition_channels: int = 16  # condition latent (rendered pose/hands/landmarks), zeros when absent; 0 = none
    pixels_per_latent: int = 8  # the VAE's spatial factor (points: pixel -> latent coordinates)
    frames_per_latent: int = 4  # the VAE's temporal factor (mask packing, point frames)
    # pose-attention (DreamID-V): Attn(Q, K, V) + pose_scale · Attn(Q, K', V'), K'/V' from PoseGuider features
    pose_attention: bool = False
    pose_scale: float = 1.0  # λ (a call may override it with a traced value)
    pose_channels: int = 16  # PoseGuider input: channels of the condition latent it reads
    pose_widths: tuple[int, ...] = (32, 64)  # PoseGuider 3x3 conv widths, then a patch conv to the model width
    pose_layers: tuple[int, ...] = ()
    # identity token (DreamID-V): one extra key/value token from a global identity embedding
    identity_token: bool = False
    identity_dim: int = 512
    # semantic points (VideoSwap): per configured layer a 2-layer MLP writes point embeddings on the token grid
    points: bool = False
    num_points: int = 8  # K
    point_dim: int = 1280  # E, point embedding width (e.g. DIFT features)
    point_hidden: int = 256  # hidden width of each point MLP
    point_layers: tuple[int, ...] = ()

    def __post_init__(self):
        _require(self.condition_channels >= 0,
                 f"SwapConfig.condition_channels ({self.condition_channels}) must be >= 0 (0 disables the condition)")
        _require(self.pixels_per_latent >= 1 and self.frames_per_latent >= 1,
                 f"SwapConfig: pixels_per_latent ({self.pixels_per_latent}) and frames_per_latent "
                 f"({self.frames_per_latent}) must be >= 1")
        _require(len(self.pose_widths) >= 1 and all(w > 0 for w in self.pose_widths) and self.pose_channels > 0,
                 f"SwapConfig: pose_widths ({self.pose_widths}) needs at least one positive width and pose_channels "
                 f"({self.pose_channels}) must be positive")
        _require(self.identity_dim > 0, f"SwapConfig.identity_dim ({self.identity_dim}) must be positive")
        _require(self.num_points > 0 and self.point_dim > 0 and self.point_hidden > 0,
                 f"SwapConfig: num_points ({self.num_points}), point_dim ({self.point_dim}) and point_hidden "
                 f"({self.point_hidden}) must be positive")
        for name in ("pose_layers", "point_layers"):
            _require(_layer_list_ok(getattr(self, name)),
                     f"SwapConfig.{name} ({getattr(self, name)}) must list distinct layer indices >= 0 (() = all)")

    def fused_channels(self, latent_channels: int) -> int:
        """Input channels of the swap DiT for a VAE with `latent_channels` (52 for Wan2.1's 16)."""
        return 2 * latent_channels + self.frames_per_latent + self.condition_channels

    @property
    def num_prefix_frames(self) -> int:
        """Latent frames prepended to the video: the reference, then the anchor."""
        return int(self.reference) + int(self.anchor)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one run needs. Later issues add optim/mesh/sample sections here."""

    name: str
    dit: DiTConfig
    vae: VAEConfig
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    seed: int = 0
    swap: SwapConfig | None = None  # None: a plain Wan2.1 DiT; set: the swap model (swapjax.models.swap)

    def __post_init__(self):
        if self.swap is not None:
            validate_swap(self.dit, self.swap, self.vae)

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


def validate_swap(dit: DiTConfig, swap: SwapConfig, vae: VAEConfig | None = None) -> None:
    """Checks that a swap config fits its DiT (and VAE); raises `ConfigError` naming the values."""
    want = swap.fused_channels(dit.out_channels)
    _require(dit.in_channels == want,
             f"DiTConfig.in_channels ({dit.in_channels}) must be 2 * out_channels ({dit.out_channels}) + "
             f"SwapConfig.frames_per_latent ({swap.frames_per_latent}) + condition_channels "
             f"({swap.condition_channels}) = {want} for the swap model's fused input")
    _require(dit.patch_size[0] == 1,
             f"DiTConfig.patch_size ({dit.patch_size}) must have temporal size 1 for the swap model: the reference "
             "and anchor are single latent frames")
    for name in ("pose_layers", "point_layers"):
        layers = getattr(swap, name)
        _require(all(i < dit.num_layers for i in layers),
                 f"SwapConfig.{name} ({layers}) must index layers below DiTConfig.num_layers ({dit.num_layers})")
    if vae is not None:
        _require(vae.spatial_factor == swap.pixels_per_latent and vae.temporal_factor == swap.frames_per_latent,
                 f"SwapConfig: pixels_per_latent / frames_per_latent ({swap.pixels_per_latent} / "
                 f"{swap.frames_per_latent}) must equal the VAE's factors ({vae.spatial_factor} / "
                 f"{vae.temporal_factor})")
        _require(dit.out_channels == vae.z_dim,
                 f"DiTConfig.out_channels ({dit.out_channels}) must equal VAEConfig.z_dim ({vae.z_dim}) for the "
                 "swap model")


def load_config(path: str | pathlib.Path) -> Config:
    """Imports a `configs/*.py` file and returns its `get_config()`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist: pass a path such as configs/tiny.py")
    spec = importlib.util.spec_from_file_location(f"swapjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {str(path)!r} has no get_config(): define one returning swapjax.config.Config")
    return module.get_config()
