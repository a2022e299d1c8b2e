"""`DiTConfig`: the Wan2.1 video transformer's architecture and how it runs (read by `models/dit.py`)."""

from __future__ import annotations

import dataclasses

import jax

from swapjax.errors import require
from swapjax.models.attention import BACKENDS
from swapjax.models.execution import execution_field
from swapjax.models.layers import DTYPES

# remat policy name -> what the scanned block saves for the backward pass (None = everything)
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


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
    rope_theta: float = 10000.0
    timestep_scale: float = 1000.0  # model time t in [0, 1] -> Wan's sigma * 1000 units
    # Execution choices (no effect on parameters or numbers beyond dtype rounding; see models/execution.py).
    param_dtype: str = execution_field("float32")
    dtype: str = execution_field("float32")  # compute dtype
    attention: str = execution_field("xla")
    remat_policy: str = execution_field("none")
    scan_layers: bool = execution_field(True)

    def __post_init__(self):
        require(self.num_heads > 0 and self.head_dim > 0,
                 f"DiTConfig: num_heads ({self.num_heads}) and head_dim ({self.head_dim}) must be positive")
        require(self.head_dim % 2 == 0 and self.head_dim >= 6,
                 f"DiTConfig.head_dim ({self.head_dim}) must be even and >= 6 for the 3D rotary split")
        require(len(self.patch_size) == 3, f"DiTConfig.patch_size ({self.patch_size}) must have 3 entries (t, h, w)")
        require(self.num_layers >= 1, f"DiTConfig.num_layers ({self.num_layers}) must be >= 1")
        require((self.image_dim is None) == (self.added_kv_proj_dim is None),
                 f"DiTConfig: image_dim ({self.image_dim}) and added_kv_proj_dim ({self.added_kv_proj_dim}) "
                 "must both be set (I2V) or both be None (T2V)")
        require(self.added_kv_proj_dim is None or self.added_kv_proj_dim == self.num_heads * self.head_dim,
                 f"DiTConfig.added_kv_proj_dim ({self.added_kv_proj_dim}) must equal num_heads * head_dim "
                 f"({self.num_heads * self.head_dim}): image tokens reach the image k/v projections at model width")
        require(self.attention in BACKENDS,
                 f"DiTConfig.attention ({self.attention!r}) must be one of {BACKENDS}")
        require(self.remat_policy in REMAT_POLICIES,
                 f"DiTConfig.remat_policy ({self.remat_policy!r}) must be one of {tuple(REMAT_POLICIES)}")
        require(self.param_dtype in DTYPES and self.dtype in DTYPES,
                 f"DiTConfig: param_dtype ({self.param_dtype!r}) and dtype ({self.dtype!r}) must be in {tuple(DTYPES)}")

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def is_i2v(self) -> bool:
        return self.image_dim is not None
