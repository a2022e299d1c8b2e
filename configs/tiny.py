"""Tiny CPU config: every part of swapjax at toy size, for tests and laptop runs.

Used by the test suite (tests/test_configs.py, tests/models/test_dit.py) and as the base of configs/swap_tiny.py;
inspect it with `python -c "from swapjax.config import load_config; print(load_config('configs/tiny.py'))"`.
DiT: 2 heads × 16, FFN 64, 2 layers (41 k parameters); VAE: base width 8, one residual block per level, with
the Wan2.1 8× spatial / 4× temporal compression so the project's latent shapes hold.
Masks: the paper's grid cells (12–48 px, 24 at inference) are meant for 480p; at 64×64 they make K = 1 and the
mask the whole frame, so the tiny config scales them (and the dilations) down by ~4×.
"""

from swapjax.config import Config
from swapjax.data.config import DataConfig, MaskConfig
from swapjax.models.dit_config import DiTConfig
from swapjax.models.vae_config import VAEConfig


def get_config() -> Config:
    return Config(
        name="tiny",
        dit=DiTConfig(num_heads=2, head_dim=16, in_channels=16, out_channels=16, text_dim=32, freq_dim=32,
                      ffn_dim=64, num_layers=2),
        vae=VAEConfig(base_dim=8, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=1),
        data=DataConfig(height=64, width=64, num_frames=5, ref_size=64, batch_size=2, num_synthetic_clips=64,
                        mask=MaskConfig(grid_cell_min=4, grid_cell_max=12, grid_cell_infer=8, bbox_dilate_max=2,
                                        feather=2, dilate_infer=1)),
    )
