"""A 3-step run on 8 fake devices with sequence parallelism, (data, fsdp, tensor, sequence) = (2, 1, 2, 2),
equals one device within 1e-5 (losses and every parameter)."""

from __future__ import annotations

from test_train_sharded import check_equal_to_one_device, one_device  # noqa: F401 (fixture)


def test_sequence_parallel_run_equals_one_device(one_device):  # noqa: F811
    check_equal_to_one_device(one_device, dict(data=2, fsdp=1, tensor=2, sequence=2))
