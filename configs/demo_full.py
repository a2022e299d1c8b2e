"""The longer demo preset: `python -m swapjax.demo --workdir runs/demo_full --preset full` (that is,
`--config configs/demo_full.py`). The default demo's world, held-out families, model and sampler
(`configs/demo.py`), trained longer, within 90 minutes on 2 CPU cores (measured 57 min 35 s): the VAE 2x and the
swap DiT 4x as many steps, with a longer warm-up. Its figures are in the README beside the default's.
"""

import dataclasses
import pathlib

from swapjax.config import Config, load_config


def get_config() -> Config:
    demo = load_config(pathlib.Path(__file__).with_name("demo.py"))
    train = dataclasses.replace(demo.train, steps=4 * demo.train.steps, vae_steps=2 * demo.train.vae_steps,
                                checkpoint_every=2000)
    optimizer = dataclasses.replace(demo.optimizer, warmup_steps=200)
    return demo.replace(name="demo_full", train=train, optimizer=optimizer)
