"""Tiny scaling sweep for a CPU: the tiny swap model at three widths and two depths, trained from scratch
(stage 2: every parameter) on the synthetic 32x32 clips at three compute budgets.

    python -m swapjax.scaling --sweep configs/sweeps/tiny.py --out runs/scaling_tiny

Its 15 runs took 26 minutes on a shared 2-core machine (README, "Scaling sweeps"); tests/scaling/test_scaling.py runs
a smaller grid of its own (two widths, one depth, two budgets). Budgets are analytic
matmul FLOPs of the DiT's train steps (swapjax.models.swap_flops); pairs that buy fewer than `min_steps`
steps are skipped.
"""

from swapjax.scaling.config import SweepConfig


def get_sweep() -> SweepConfig:
    return SweepConfig(
        name="tiny",
        base="../swap_tiny_train.py",
        head_dim=8,
        heads=(1, 2, 4),
        depths=(1, 2),
        budgets=(2e7, 6e7, 2e8),
        overrides=("train.stage=2", "optimizer.lr=3e-3", "optimizer.warmup_steps=2", "optimizer.ema_decay=0",
                   "train.keep_checkpoints=1"),
        min_steps=8,
        max_steps=400,
    )
