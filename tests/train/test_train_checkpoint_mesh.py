"""A checkpoint written on 8 devices restores on 4 and on 1 and continues as the 8-device run does: the same next
two losses and final state (parameters, optimizer state, EMA). The run starts from randomised parameters with no
warmup, so the losses depend on the parameters and the second one on the optimizer state: a restore that loses the
optimizer state (`train_fixtures.broken_restore`) gives other losses. A shape mismatch is refused naming the
parameter."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from train_fixtures import broken_restore, compiled_step, flat, model_batch, on_mesh, randomized, tiny_config
from swapjax.errors import CheckpointError
from swapjax.train.checkpoint import Checkpoints
from swapjax.train.loop import build_dit

CONFIG = tiny_config("train.stage=2", "optimizer.warmup_steps=0", "optimizer.lr=0.01")
BATCHES = [model_batch(CONFIG, 4, s) for s in range(4)]


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
        state, next_losses = _steps(setup, mesh, state, BATCHES[2:])
    return directory, next_losses, flat(state)


@pytest.mark.parametrize("sizes", [dict(data=2, fsdp=2), None], ids=["4-devices", "1-device"])
def test_restore_on_fewer_devices_gives_the_same_next_loss(saved_on_8, sizes):
    directory, want_losses, want_state = saved_on_8
    with on_mesh(sizes) as mesh:
        setup = build_dit(CONFIG, mesh)
        checkpoints = Checkpoints(directory)
        state = checkpoints.restore(setup.plan.abstract, setup.plan.shardings)
        with broken_restore("opt_state"):
            lost = checkpoints.restore(setup.plan.abstract, setup.plan.shardings)
        checkpoints.close()
        assert int(state.step) == 2
        leaf = jax.tree.leaves(state.params)[0]
        assert len(leaf.sharding.device_set) == (4 if sizes else 1)
        state, losses = _steps(setup, mesh, state, BATCHES[2:])
        _, lost_losses = _steps(setup, mesh, lost, BATCHES[2:])
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    got_state = flat(state)
    assert sorted(got_state) == sorted(want_state)
    for name in want_state:
        np.testing.assert_allclose(got_state[name], want_state[name], rtol=1e-4, atol=1e-8, err_msg=name)
    assert lost_losses[0] == losses[0] and abs(lost_losses[1] - losses[1]) > 1e-5 * abs(losses[1]), lost_losses


def test_restore_into_another_model_names_the_mismatched_parameters(saved_on_8):
    directory, _, _ = saved_on_8
    with on_mesh() as mesh:
        setup = build_dit(tiny_config("train.stage=2", "dit.ffn_dim=48"), mesh)
        with pytest.raises(CheckpointError, match=r"blocks/ffn/fc1/kernel: config expects \(2, 32, 48\)"):
            Checkpoints(directory).restore(setup.plan.abstract, setup.plan.shardings)
