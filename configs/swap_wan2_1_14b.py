"""DreamSwapV's model: Wan2.1 I2V-14B (40 heads × 128, FFN 13824, 40 layers, CLIP image tokens) with the patch
embedding widened from 36 to 52 input channels ([z_t 16 | mask 4 | agnostic latent 16 | condition latent 16]),
the reference slot and the anchor slot (prepended latent frames, one-way attention, cached K/V). Pose-attention,
the identity token and semantic points are available in SwapConfig and off. 16,395,206,464 parameters
(I2V-14B + 16·4·5120 new patch-embedding weights; tests/models/test_swap.py checks it with jax.eval_shape).

Weights (the base widened, new columns zero):

    python -m swapjax.convert --src Wan2.1-I2V-14B-480P-Diffusers/transformer --out ckpt/swap14b \
        --swap-config configs/swap_wan2_1_14b.py

then `python train.py --config configs/swap_wan2_1_14b.py --workdir runs/swap14b --set train.init_from=...` or
`python sample.py --config configs/swap_wan2_1_14b.py --checkpoint ...`. bf16 compute, full remat: trains sharded (FSDP) only.
"""

import dataclasses
import pathlib

from swapjax.config import Config, load_config
from swapjax.models.swap_config import SwapConfig


def get_config() -> Config:
    base = load_config(pathlib.Path(__file__).with_name("wan2_1_i2v_14b.py"))
    swap = SwapConfig(reference=True, anchor=True, condition_channels=16)
    dit = dataclasses.replace(base.dit, in_channels=swap.fused_channels(base.dit.out_channels))
    return base.replace(name="swap-wan2.1-14b", dit=dit, swap=swap,
                        data=dataclasses.replace(base.data, with_condition=True))
