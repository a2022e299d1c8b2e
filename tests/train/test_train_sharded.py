"""A 3-step run on 8 fake devices, (data, fsdp, tensor) = (2, 2, 2), equals one device within 1e-5 (losses and
every parameter). The sequence-parallel mesh is tests/train/test_train_sequence.py."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from train_fixtures import model_batch, run, tiny_config
from test_train_step import _flat

BATCHES = [model_batch(tiny_config(), 4, s) for s in range(3)]


@pytest.fixture(scope="module")
def one_device():
    return run(tiny_config("train.stage=2"), None, BATCHES)


def check_equal_to_one_device(one_device, sizes):
    losses, params, setup = run(tiny_config("train.stage=2"), sizes, BATCHES)
    ref_losses, ref_params, _ = one_device
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    ref = _flat(ref_params)
    for name, value in _flat(params).items():
        np.testing.assert_allclose(value, ref[name], atol=1e-5, err_msg=name)
    # the parameters really were sharded: some kernel is split over fsdp and tensor
    specs = {str(s.spec) for s in jax.tree.leaves(setup.plan.shardings.params)}
    assert any("fsdp" in s and "tensor" in s for s in specs)


def test_data_fsdp_tensor_run_equals_one_device(one_device):
    check_equal_to_one_device(one_device, dict(data=2, fsdp=2, tensor=2))
