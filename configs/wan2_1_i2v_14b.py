"""Wan2.1 I2V-14B: 40 heads × 128 (D = 5120), FFN 13824, 40 layers, 36 input channels (16 noisy latent + 4
mask + 16 conditioning latent), CLIP image tokens (1280 wide) through image k/v projections; Wan2.1 VAE.

Matches the official `Wan-AI/Wan2.1-I2V-14B-480P` checkpoint:
`python -m swapjax.convert --src Wan2.1-I2V-14B-480P-Diffusers/transformer --out ckpt/wan14b_i2v_dit`;
tests/convert/test_param_counts.py checks the parameter count against diffusers. Its swap variant,
configs/swap_wan2_1_14b.py, is what train.py / sample.py run. Full rematerialisation and bf16 compute: a 14B model trains only sharded (FSDP).
"""

from swapjax.config import Config
from swapjax.data.config import DataConfig
from swapjax.models.dit_config import DiTConfig
from swapjax.models.vae_config import VAEConfig


def get_config() -> Config:
    return Config(
        name="wan2.1-i2v-14b",
        dit=DiTConfig(num_heads=40, head_dim=128, in_channels=36, out_channels=16, text_dim=4096, freq_dim=256,
                      ffn_dim=13824, num_layers=40, image_dim=1280, added_kv_proj_dim=5120,
                      param_dtype="float32", dtype="bfloat16", attention="xla", remat_policy="full"),
        vae=VAEConfig(),
        data=DataConfig(height=480, width=832, num_frames=81, ref_size=512, batch_size=8),
    )
