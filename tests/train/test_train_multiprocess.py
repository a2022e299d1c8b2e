"""Two processes on localhost (`jax.distributed`, 4 CPU devices each, mesh (data, fsdp, tensor) = (2, 2, 2))
give the same losses and the same final state (parameters, optimizer state, EMA) as one process on one device,
both reading the data as 2 shards. Both start from randomised parameters (a fresh model's output head is zero,
which would make the first losses independent of the parameters) with no warmup, so every loss depends on the
parameters and the later ones on the optimizer state."""

from __future__ import annotations

import socket
import subprocess

import numpy as np
import pytest

from train_fixtures import (ROOT, compile_cache, losses, random_init, run_train, saved_state,  # noqa: F401
                            subprocess_env, train_command)

COMMON = ("train.steps=3", "train.data_shards=2", "data.batch_size=4", "optimizer.warmup_steps=0", "optimizer.lr=0.01")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path, compile_cache, random_init):  # noqa: F811
    common = (*COMMON, f"train.init_from={random_init}")
    single = tmp_path / "single"
    one = run_train(single, compile_cache, *common, timeout=400)
    assert one.returncode == 0, one.stderr

    multi = tmp_path / "multi"
    port = _free_port()
    procs = []
    for pid in range(2):
        env = subprocess_env(compile_cache, devices=4)
        env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen(train_command(multi, *common, "mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"),
                                      env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    try:
        errs = [p.communicate(timeout=400)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], errs
    assert "2 process(es), 8 device(s)" in errs[0]
    want, got = losses(single), losses(multi)
    assert sorted(got) == [1, 2, 3]
    np.testing.assert_allclose([got[s] for s in (1, 2, 3)], [want[s] for s in (1, 2, 3)], rtol=1e-5)
    want, got = saved_state(single, 3), saved_state(multi, 3)
    assert sorted(got) == sorted(want)
    for name in want:  # sums in another order: each leaf to 1e-4 of its own scale
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4 * np.abs(want[name]).max(),
                                   err_msg=name)
