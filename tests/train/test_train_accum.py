"""Gradient accumulation: two strided micro-batches give the loss and parameters of one full-batch step."""

from __future__ import annotations

import numpy as np

from train_fixtures import model_batch, run, tiny_config
from test_train_step import _flat


def test_grad_accumulation_equals_the_full_batch():
    batches = [model_batch(tiny_config(), 4, s) for s in range(2)]
    full, p_full, _ = run(tiny_config("train.stage=2"), None, batches)
    accum, p_accum, _ = run(tiny_config("train.stage=2", "train.grad_accum=2"), None, batches)
    np.testing.assert_allclose(accum, full, rtol=1e-5)
    for (name, a), b in zip(_flat(p_accum).items(), _flat(p_full).values()):
        np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)
