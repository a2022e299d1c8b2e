"""Wan2.1 T2V-1.3B: 12 heads × 128 (D = 1536), FFN 8960, 30 layers, text width 4096, with the Wan2.1 VAE.

Matches the official `Wan-AI/Wan2.1-T2V-1.3B` checkpoint, so its weights load with
`python -m swapjax.convert --src Wan2.1-T2V-1.3B-Diffusers/transformer --out ckpt/wan1.3b_dit`
(and `--src .../vae --out ckpt/wan_vae`); tests/convert/test_param_counts.py checks the parameter count against
diffusers. Its swap variant, configs/swap_wan2_1_1_3b.py, is what train.py / sample.py run.
bf16 compute with float32 master weights; attention "xla" runs anywhere: use "cudnn" on GPUs, "splash" on TPUs.
"""

from swapjax.config import Config
from swapjax.data.config import DataConfig
from swapjax.models.dit_config import DiTConfig
from swapjax.models.vae_config import VAEConfig


def get_config() -> Config:
    return Config(
        name="wan2.1-t2v-1.3b",
        dit=DiTConfig(num_heads=12, head_dim=128, in_channels=16, out_channels=16, text_dim=4096, freq_dim=256,
                      ffn_dim=8960, num_layers=30, param_dtype="float32", dtype="bfloat16", attention="xla",
                      remat_policy="dots_no_batch"),
        vae=VAEConfig(),
        data=DataConfig(height=480, width=832, num_frames=81, ref_size=512, batch_size=8),
    )
