"""A checkpoint written on 8 devices restores on 4 and on 1 with the same next loss; a shape mismatch is
refused naming the parameter."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from train_fixtures import compiled_step, model_batch, on_mesh, randomized, tiny_config
from swapjax.convert.checkpoint_io import CheckpointError
from swapjax.train.checkpoint import Checkpoints
from swapjax.train.loop import build_dit

CONFIG = tiny_config("train.stage=2")
BATCHES = [model_batch(CONFIG, 4, s) for s in range(3)]


def _steps(setup, mesh, state, batches):
    step, sh = compiled_step(setup, mesh, batches[0])
    losses = []
    for b in batches:
        state, metrics = step(state, {k: jax.device_put(v, sh[k]) for k, v in b.items()}, None)
        losses.append(float(metrics["loss"]))
    return state, losses


@pytest.fixture(scope="module")
def saved_on_8(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ckpt") / "checkpoints"
    with on_mesh(dict(data=2, fsdp=2, tensor=2)) as mesh:
        setup = build_dit(CONFIG, mesh)
        state, _ = _steps(setup, mesh, randomized(setup, setup.plan.create(0)), BATCHES[:2])
        checkpoints = Checkpoints(directory)
        checkpoints.save(2, state, None, CONFIG)
        checkpoints.close()
        _, next_loss = _steps(setup, mesh, state, BATCHES[2:])
    return directory, next_loss[0]


@pytest.mark.parametrize("sizes", [dict(data=2, fsdp=2), None], ids=["4-devices", "1-device"])
def test_restore_on_fewer_devices_gives_the_same_next_loss(saved_on_8, sizes):
    directory, want = saved_on_8
    with on_mesh(sizes) as mesh:
        setup = build_dit(CONFIG, mesh)
        checkpoints = Checkpoints(directory)
        state = checkpoints.restore(setup.plan.abstract, setup.plan.shardings)
        checkpoints.close()
        assert int(state.step) == 2
        leaf = jax.tree.leaves(state.params)[0]
        assert len(leaf.sharding.device_set) == (4 if sizes else 1)
        _, loss = _steps(setup, mesh, state, BATCHES[2:])
    np.testing.assert_allclose(loss[0], want, rtol=1e-5)


def test_restore_into_another_model_names_the_mismatched_parameters(saved_on_8):
    directory, _ = saved_on_8
    with on_mesh() as mesh:
        setup = build_dit(tiny_config("train.stage=2", "dit.ffn_dim=48"), mesh)
        with pytest.raises(CheckpointError, match=r"blocks/ffn/fc1/kernel: config expects \(2, 32, 48\)"):
            Checkpoints(directory).restore(setup.plan.abstract, setup.plan.shardings)
