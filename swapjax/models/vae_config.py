"""`VAEConfig`: the Wan2.1 3D causal VAE's architecture, latent statistics and how it runs (read by
`models/vae.py`).

The latent statistics are learned, not chosen: a Wan VAE ships its own and the VAE stage measures a trained
VAE's (`swapjax/train/vae_stage.py`), and either is written into the VAE's checkpoint. A run config's
`latents_mean` / `latents_std` only seed a VAE trained from scratch; whoever loads a VAE checkpoint takes them
from it (`LEARNED_FIELDS`, `with_learned`), while every other architecture field must agree with the config.
"""

from __future__ import annotations

import dataclasses

from swapjax.errors import require
from swapjax.models.execution import architecture, execution_field
from swapjax.models.layers import DTYPES

# Wan2.1 VAE latent statistics (per channel), used by `latents.normalize`.
WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)
# Fields a trained VAE carries in its checkpoint and a loader takes from there instead of the run config.
LEARNED_FIELDS = ("latents_mean", "latents_std")


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
    param_dtype: str = execution_field("float32")
    dtype: str = execution_field("float32")

    def __post_init__(self):
        require(len(self.temperal_downsample) == len(self.dim_mult) - 1,
                 f"VAEConfig: temperal_downsample ({self.temperal_downsample}) needs len(dim_mult) - 1 "
                 f"= {len(self.dim_mult) - 1} entries")
        require(len(self.latents_mean) == self.z_dim and len(self.latents_std) == self.z_dim,
                 f"VAEConfig: latents_mean/std have {len(self.latents_mean)}/{len(self.latents_std)} entries, "
                 f"need z_dim = {self.z_dim}")
        require(self.param_dtype in DTYPES and self.dtype in DTYPES,
                 f"VAEConfig: param_dtype ({self.param_dtype!r}) and dtype ({self.dtype!r}) must be in {tuple(DTYPES)}")

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(bool(d) for d in self.temperal_downsample)


def learned(cfg: VAEConfig) -> dict[str, tuple[float, ...]]:
    """`{field: value}` of the learned fields (`LEARNED_FIELDS`)."""
    return {name: getattr(cfg, name) for name in LEARNED_FIELDS}


def with_learned(cfg: VAEConfig, trained: VAEConfig) -> VAEConfig:
    """`cfg` with the learned fields of `trained` (a checkpoint's config); everything else stays `cfg`'s."""
    return dataclasses.replace(cfg, **learned(trained))


def fixed_differences(cfg: VAEConfig, found: VAEConfig) -> list[str]:
    """`"field: config A, checkpoint B"` for every architecture field other than the learned ones where a VAE
    checkpoint's config `found` differs from the run config's `cfg` (empty: the same VAE)."""
    mine, theirs = architecture(cfg), architecture(found)
    return [f"{k}: config {mine[k]!r}, checkpoint {theirs[k]!r}" for k in mine
            if k not in LEARNED_FIELDS and mine[k] != theirs[k]]
