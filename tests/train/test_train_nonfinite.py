"""K non-finite steps in a row stop the trainer (its non-finite hook) with a message naming the step range; no
update was made and the last good checkpoint stays the latest one."""

from __future__ import annotations

import jax
import numpy as np

from train_fixtures import model_batch, on_mesh, randomized, tiny_config
from swapjax.entry import Status
from swapjax.train.checkpoint import Checkpoints
from swapjax.train.loop import build_dit
from swapjax.train.trainer import Feed, InitFrom, Stage, run_stage
from swapjax.train.writers import read_metrics


class Batches:
    """Step i's batch (NaN targets from step `bad_from` on), with the get/set_state a checkpoint saves."""

    def __init__(self, config, bad_from: int):
        self.config, self.bad_from, self.i = config, bad_from, 0

    def __next__(self):
        self.i += 1
        batch = model_batch(self.config, 2, self.i)
        if self.i >= self.bad_from:
            batch["target"][:] = np.nan
        return batch

    def get_state(self) -> bytes:
        return str(self.i).encode()

    def set_state(self, state: bytes) -> None:
        self.i = int(state)


def test_k_nonfinite_steps_in_a_row_stop_with_the_step_range(tmp_path):
    config = tiny_config("train.stage=2", "train.steps=8", "train.max_nonfinite_steps=3", "train.checkpoint_every=1",
                         "train.log_every=1")
    with on_mesh() as mesh:
        setup = build_dit(config, mesh)
        state = randomized(setup, setup.plan.create(0))
        keys = tuple(model_batch(config, 2, 0))
        stage = Stage(name="dit", plan=setup.plan, step=setup.step, total=8, checkpoints=tmp_path / "checkpoints",
                      workdir=tmp_path, feed=Feed(Batches(config, bad_from=3), keys, lambda args, arrays, rng, step: arrays),
                      init_from=InitFrom(lambda: state, "randomized"))
        state, outcome = run_stage(stage, config, mesh)
        assert outcome.status == Status.NONFINITE and outcome.status == "nonfinite" and outcome.step == 5
        assert "steps 3-5 had a non-finite loss or gradient (3 in a row): stopped" in outcome.message
        assert "the last good checkpoint is step 2" in outcome.message
        with Checkpoints(tmp_path / "checkpoints") as checkpoints:
            assert checkpoints.latest_step() == 2
            saved = checkpoints.restore(setup.plan.abstract, setup.plan.shardings)
        for a, b in zip(jax.tree.leaves(saved.params), jax.tree.leaves(state.params)):
            assert np.array_equal(jax.device_get(a), jax.device_get(b))  # steps 3-5 changed nothing
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [records[s]["finite"] for s in range(1, 6)] == [True, True, False, False, False]
    assert records[5]["loss"] == "nan" and records[5]["nonfinite_streak"] == 3
