"""`SwapConfig`: the swap model's prefix slots and optional conditions (read by `models/swap.py`), and the
check that a swap config fits its DiT (and VAE)."""

from __future__ import annotations

import dataclasses

from swapjax.config_error import require
from swapjax.models.dit_config import DiTConfig


def _layer_list_ok(layers: tuple[int, ...]) -> bool:
    return all(isinstance(i, int) and i >= 0 for i in layers) and len(set(layers)) == len(layers)


@dataclasses.dataclass(frozen=True)
class SwapConfig:
    """The swap model on a Wan2.1 DiT (docs/design.md, "The swap model"): prefix slots and the optional
    conditions, all off but the reference slot. Fused input channels: [noisy latent z | mask (frames_per_latent) | agnostic latent z |
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
    # further registered conditions (swapjax.models.conditions) by name, built after the flagged ones above
    extra_conditions: tuple[str, ...] = ()

    def __post_init__(self):
        require(self.condition_channels >= 0,
                f"SwapConfig.condition_channels ({self.condition_channels}) must be >= 0 (0 disables the condition)")
        require(self.pixels_per_latent >= 1 and self.frames_per_latent >= 1,
                f"SwapConfig: pixels_per_latent ({self.pixels_per_latent}) and frames_per_latent "
                f"({self.frames_per_latent}) must be >= 1")
        require(len(self.pose_widths) >= 1 and all(w > 0 for w in self.pose_widths) and self.pose_channels > 0,
                f"SwapConfig: pose_widths ({self.pose_widths}) needs at least one positive width and pose_channels "
                f"({self.pose_channels}) must be positive")
        require(self.identity_dim > 0, f"SwapConfig.identity_dim ({self.identity_dim}) must be positive")
        require(self.num_points > 0 and self.point_dim > 0 and self.point_hidden > 0,
                f"SwapConfig: num_points ({self.num_points}), point_dim ({self.point_dim}) and point_hidden "
                f"({self.point_hidden}) must be positive")
        require(all(isinstance(n, str) and n for n in self.extra_conditions)
                and len(set(self.extra_conditions)) == len(self.extra_conditions),
                f"SwapConfig.extra_conditions ({self.extra_conditions}) must list distinct registered condition names")
        for name in ("pose_layers", "point_layers"):
            require(_layer_list_ok(getattr(self, name)),
                    f"SwapConfig.{name} ({getattr(self, name)}) must list distinct layer indices >= 0 (() = all)")

    def fused_channels(self, latent_channels: int) -> int:
        """Input channels of the swap DiT for a VAE with `latent_channels` (52 for Wan2.1's 16)."""
        return 2 * latent_channels + self.frames_per_latent + self.condition_channels

    @property
    def num_prefix_frames(self) -> int:
        """Latent frames prepended to the video: the reference, then the anchor."""
        return int(self.reference) + int(self.anchor)


def validate_swap(dit: DiTConfig, swap: SwapConfig) -> None:
    """Checks that a swap config fits its DiT; raises `ConfigError` naming the values (the VAE is checked by the
    run-level `Config`)."""
    want = swap.fused_channels(dit.out_channels)
    require(dit.in_channels == want,
            f"DiTConfig.in_channels ({dit.in_channels}) must be 2 * out_channels ({dit.out_channels}) + "
            f"SwapConfig.frames_per_latent ({swap.frames_per_latent}) + condition_channels "
            f"({swap.condition_channels}) = {want} for the swap model's fused input")
    require(dit.patch_size[0] == 1,
            f"DiTConfig.patch_size ({dit.patch_size}) must have temporal size 1 for the swap model: the reference "
            "and anchor are single latent frames")
    for name in ("pose_layers", "point_layers"):
        layers = getattr(swap, name)
        require(all(i < dit.num_layers for i in layers),
                f"SwapConfig.{name} ({layers}) must index layers below DiTConfig.num_layers ({dit.num_layers})")
