"""SIGTERM saves and exits cleanly (the same command then finishes the run); a kill during a save leaves the
previous checkpoint in use."""

from __future__ import annotations

import shutil
import signal
import subprocess

import jax
import pytest

from train_fixtures import (ROOT, compile_cache, losses, on_mesh, randomized, run_train,  # noqa: F401
                            subprocess_env, tiny_config, train_command, wait_for_step)
from swapjax.train.checkpoint import Checkpoints
from swapjax.train.loop import build_dit

STEPS = ("train.steps=40", "train.checkpoint_every=100")


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly_then_the_run_resumes(tmp_path, compile_cache):  # noqa: F811
    workdir = tmp_path / "run"
    proc = subprocess.Popen(train_command(workdir, *STEPS), env=subprocess_env(compile_cache), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(workdir, 2, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "SIGTERM: saved step" in stderr, stderr
    stopped = max(losses(workdir))
    assert stopped < 40  # it stopped early ...
    checkpoints = Checkpoints(workdir / "checkpoints")
    assert checkpoints.latest_step() == stopped  # ... with the step it reached saved (checkpoint_every is 100)
    checkpoints.close()
    assert not (workdir / "export").exists()

    finished = run_train(workdir, compile_cache, *STEPS)
    assert finished.returncode == 0, finished.stderr
    assert f"resumed from step {stopped}" in finished.stderr
    assert sorted(losses(workdir)) == list(range(1, 41))
    assert (workdir / "export").is_dir()


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_in_use(tmp_path):
    """A save is written under a temporary name and renamed when complete: a crash in between leaves that
    temporary folder, which is never read."""
    config = tiny_config("train.stage=2")
    directory = tmp_path / "checkpoints"
    with on_mesh() as mesh:
        setup = build_dit(config, mesh)
        state = randomized(setup, setup.plan.create(0))
        checkpoints = Checkpoints(directory)
        checkpoints.save(1, state, None, config)
        checkpoints.close()
        # what a kill in the middle of saving step 2 leaves: a partial copy under Orbax's temporary name
        partial = directory / "2.orbax-checkpoint-tmp-1234567"
        shutil.copytree(directory / "1", partial)
        for f in sorted(partial.rglob("*"))[::2]:
            if f.is_file():
                f.unlink()
        checkpoints = Checkpoints(directory)
        assert checkpoints.latest_step() == 1
        restored = checkpoints.restore(setup.plan.abstract, setup.plan.shardings)
        checkpoints.close()
        assert int(restored.step) == 0  # the state saved as step 1 (fresh, no step taken)
        for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(state.params)):
            assert (jax.device_get(a) == jax.device_get(b)).all()
