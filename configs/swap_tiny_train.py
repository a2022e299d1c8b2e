"""CPU-fast training config: the tiny swap model on 32x32, 5-frame synthetic clips, a few steps. From scratch it
trains stage 2 (every parameter); stage 1 starts from a model (here the first run's):

    python train.py --config configs/swap_tiny_train.py --workdir runs/tiny_train
    python train.py --config configs/swap_tiny_train.py --workdir runs/tiny_stage1 --set train.stage=1 \
        train.init_from=runs/tiny_train

Used by tests/train/test_train_*.py. Checkpoints every step so resume tests have something to resume from.
"""

import dataclasses
import pathlib

from swapjax.config import Config, load_config
from swapjax.train.config import OptimizerConfig, TrainConfig


def get_config() -> Config:
    tiny = load_config(pathlib.Path(__file__).with_name("swap_tiny.py"))
    data = dataclasses.replace(tiny.data, height=32, width=32, ref_size=32, num_synthetic_clips=16,
                               read_threads=1, prefetch_batches=1)
    return tiny.replace(name="swap-tiny-train", data=data,
                        train=TrainConfig(steps=4, stage="2", checkpoint_every=1, keep_checkpoints=2, progress=False),
                        optimizer=OptimizerConfig(lr=1e-3, warmup_steps=1, ema_decay=0.9))
