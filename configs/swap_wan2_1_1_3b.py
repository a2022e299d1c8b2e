"""A small swap model: Wan2.1 T2V-1.3B (12 heads × 128, FFN 8960, 30 layers; there is no I2V-1.3B) with a
52-channel patch embedding whose first 16 input columns come from T2V and the rest start at zero, the reference
and anchor slots, and no CLIP image branch (T2V has none). 1,419,217,984 parameters (T2V-1.3B + 36·4·1536).

Weights (the base widened, new columns zero):

    python -m swapjax.convert --src Wan2.1-T2V-1.3B-Diffusers/transformer --out ckpt/swap1.3b \
        --swap-config configs/swap_wan2_1_1_3b.py

then `python train.py --config configs/swap_wan2_1_1_3b.py --workdir runs/swap1.3b --set train.init_from=ckpt/swap1.3b`
(or sample.py); stage 1, the default, needs the converted weights (it refuses to start from scratch). Note the base never saw the mask and agnostic channels: expect to train longer than from I2V-14B.
"""

import dataclasses
import pathlib

from swapjax.config import Config, load_config
from swapjax.models.swap_config import SwapConfig


def get_config() -> Config:
    base = load_config(pathlib.Path(__file__).with_name("wan2_1_t2v_1_3b.py"))
    swap = SwapConfig(reference=True, anchor=True, condition_channels=16)
    dit = dataclasses.replace(base.dit, in_channels=swap.fused_channels(base.dit.out_channels))
    return base.replace(name="swap-wan2.1-1.3b", dit=dit, swap=swap,
                        data=dataclasses.replace(base.data, with_condition=True))
