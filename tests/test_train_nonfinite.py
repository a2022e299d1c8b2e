"""K non-finite steps in a row stop the loop with a message naming the step range; no update was made and the
last good checkpoint stays the latest one."""

from __future__ import annotations

import jax
import numpy as np

from train_fixtures import model_batch, on_mesh, randomized, tiny_config
from swapjax.train.checkpoint import Checkpoints
from swapjax.train.loop import build_dit
from swapjax.train.run_steps import run_steps
from swapjax.train.writers import MetricsWriter, read_metrics


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
    config = tiny_config("train.stage=2", "train.steps=8", "train.max_nonfinite_steps=3")
    with on_mesh() as mesh:
        setup = build_dit(config, mesh)
        state = randomized(setup, setup.plan.create(0))
        checkpoints = Checkpoints(tmp_path / "checkpoints")
        writer = MetricsWriter(tmp_path)
        keys = tuple(model_batch(config, 2, 0))
        state, outcome = run_steps(name="dit", state=state, shardings=setup.plan.shardings, step_fn=setup.step,
                                   prepare_fn=lambda args, pixels, rng, step: pixels, prepare_args=None,
                                   data_iter=Batches(config, bad_from=3), data_keys=keys, mesh=mesh,
                                   checkpoints=checkpoints, config=config, total=8, checkpoint_every=1, log_every=1,
                                   max_nonfinite=3, writer=writer, progress=False)
        writer.close()
        assert outcome.status == "nonfinite" and outcome.step == 5
        assert "steps 3-5 had a non-finite loss or gradient (3 in a row): stopped" in outcome.message
        assert "the last good checkpoint is step 2" in outcome.message
        assert checkpoints.latest_step() == 2
        saved = checkpoints.restore(setup.plan.abstract, setup.plan.shardings)
        checkpoints.close()
        for a, b in zip(jax.tree.leaves(saved.params), jax.tree.leaves(state.params)):
            assert np.array_equal(jax.device_get(a), jax.device_get(b))  # steps 3-5 changed nothing
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [records[s]["finite"] for s in range(1, 6)] == [True, True, False, False, False]
    assert records[5]["loss"] == "nan" and records[5]["nonfinite_streak"] == 3
