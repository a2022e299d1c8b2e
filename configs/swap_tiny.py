"""Tiny swap model for CPU tests and demos: the tiny config's VAE and data with an I2V-shaped tiny DiT
(2 heads × 16, FFN 64, 2 layers, text and CLIP-image width 32) reading the 52 fused channels, with the
reference and anchor slots. The optional conditions are off; tests turn them on with tiny settings
(`--set swap.conditions.pose.widths=8`, or `tests/swap_fixtures.py`'s TINY_CONDITIONS). Training
defaults to stage 2 (every parameter): with no pretrained model there is nothing for stage 1 to start from
(its output head starts at zero and stays frozen; `train.stage=1` needs `train.init_from`).

Used by tests/models/test_swap*.py and tests/models/test_pose_identity_points.py, and run with

    python train.py --config configs/swap_tiny.py --workdir runs/swap_tiny
    python sample.py --config configs/swap_tiny.py --checkpoint CKPT --video V --mask M --reference R --out out.mp4
"""

import dataclasses
import pathlib

from swapjax.config import Config, load_config
from swapjax.models.swap_config import SwapConfig


def get_config() -> Config:
    tiny = load_config(pathlib.Path(__file__).with_name("tiny.py"))
    swap = SwapConfig(reference=True, anchor=True, condition_channels=16)
    dit = dataclasses.replace(tiny.dit, in_channels=swap.fused_channels(tiny.dit.out_channels), image_dim=32,
                              added_kv_proj_dim=tiny.dit.num_heads * tiny.dit.head_dim)
    return tiny.replace(name="swap-tiny", dit=dit, swap=swap, train=dataclasses.replace(tiny.train, stage="2"))
