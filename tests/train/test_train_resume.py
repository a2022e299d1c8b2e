"""Resume is exact, and the check would notice if it were not.

Every run starts from randomised parameters (the output head non-zero; a fresh model's is zero, which makes the
loss independent of the parameters), with no warmup and a large learning rate, so each loss depends on the
parameters and, from the second step after a restore on, on the optimizer state.

- In process, for stage 2 and LoRA (adapters randomised and trained): a run stopped at a seeded step,
  saved and restored through `Checkpoints` then continued has the uninterrupted run's losses and final state
  (parameters, optimizer state, EMA, RNG) bit for bit; a run restarted from scratch does not; and a restore
  broken on purpose (`train_fixtures.broken_restore`: the optimizer state or the parameters lost) fails the
  same check on its losses.
- `train.py`: kill -9 at a seeded step, then the same command again: it resumes from the last complete checkpoint
  and every loss and the final checkpoint equal an uninterrupted run's bit for bit (state, RNG and data position
  all resume exactly).
"""

from __future__ import annotations

import random
import signal
import subprocess

import jax
import pytest

from train_fixtures import (BREAKS, ROOT, assert_same_run, broken_restore, compile_cache, compiled_step,  # noqa: F401
                            flat, losses, model_batch, on_mesh, random_init, randomized, run_train, saved_state,
                            subprocess_env, tiny_config, train_command, wait_for_step)
from swapjax.train.checkpoint import Checkpoints
from swapjax.train.loop import build_dit

KILL_SEED = 11  # the step each run is stopped at is drawn from this seed (and shown in the test ids)
STEPS = 5
FAST = ("optimizer.warmup_steps=0", "optimizer.lr=0.01")
VARIANTS = {"stage2": ("train.stage=2",), "lora": ("train.stage=lora", "train.lora_rank=2", "optimizer.lr=0.05")}
_draw = random.Random(KILL_SEED)
STOP = {name: _draw.randint(1, STEPS - 2) for name in VARIANTS}  # >= 2 steps after the restore: the optimizer counts


class Runs:
    """One variant's setup on one device and its runs (the compiled step is shared; each run starts anew)."""

    def __init__(self, name: str, mesh):
        self.config = tiny_config(*FAST, *VARIANTS[name])
        self.setup = build_dit(self.config, mesh)
        self.batches = [model_batch(self.config, 2, s) for s in range(STEPS)]
        self.step, self.sharding = compiled_step(self.setup, mesh, self.batches[0])

    def start(self):
        return randomized(self.setup, self.setup.plan.create(0))

    def steps(self, state, batches):
        out = []
        for b in batches:
            state, metrics = self.step(state, {k: jax.device_put(v, self.sharding[k]) for k, v in b.items()}, None)
            out.append(float(metrics["loss"]))
        return state, out

    def uninterrupted(self):
        state, out = self.steps(self.start(), self.batches)
        return out, flat(state)

    def resumed(self, directory, stop: int):
        """`stop` steps, saved; then restored from disk and run to the end."""
        state, first = self.steps(self.start(), self.batches[:stop])
        checkpoints = Checkpoints(directory)
        checkpoints.save(stop, state, None, self.config)
        checkpoints.close()
        checkpoints = Checkpoints(directory)
        state = checkpoints.restore(self.setup.plan.abstract, self.setup.plan.shardings)
        checkpoints.close()
        assert int(state.step) == stop
        state, rest = self.steps(state, self.batches[stop:])
        return first + rest, flat(state)


@pytest.fixture(scope="module", params=list(VARIANTS), ids=[f"{n}-stop-at-{STOP[n]}" for n in VARIANTS])
def runs(request):
    with on_mesh() as mesh:
        r = Runs(request.param, mesh)
        yield request.param, r, r.uninterrupted()


def test_a_resumed_run_is_bit_equal_and_a_fresh_start_is_not(runs, tmp_path):
    name, r, want = runs
    stop = STOP[name]
    assert_same_run(r.resumed(tmp_path / "checkpoints", stop), want, f"{name}, stopped at step {stop}")
    _, fresh = r.steps(r.start(), r.batches[stop:])  # what a restore that silently started over would give
    assert fresh != want[0][stop:], (name, stop)


@pytest.mark.parametrize("what", BREAKS)
def test_a_restore_that_loses_state_is_caught_by_the_same_check(runs, tmp_path, what):
    name, r, want = runs
    stop = STOP[name]
    with broken_restore(what):
        broken = r.resumed(tmp_path / "checkpoints", stop)
    with pytest.raises(AssertionError, match="losses"):  # the losses alone show it, not only the final state
        assert_same_run(broken, want, f"{name}, stopped at step {stop}, restore without {what}")


# ------------------------------------------------------------------------------------------- train.py
TRAIN_STEPS = 6
TRAIN_KILL = random.Random(KILL_SEED).randint(2, 4)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [TRAIN_KILL], ids=lambda k: f"kill-at-{k}")
def test_kill_9_then_rerun_is_bit_equal_to_an_uninterrupted_run(tmp_path, compile_cache, random_init,  # noqa: F811
                                                                kill_at):
    args = (f"train.steps={TRAIN_STEPS}", f"train.init_from={random_init}", *FAST)
    reference = tmp_path / "uninterrupted"
    done = run_train(reference, compile_cache, *args)
    assert done.returncode == 0, done.stderr
    want = losses(reference)
    assert sorted(want) == list(range(1, TRAIN_STEPS + 1))

    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_command(killed, *args), env=subprocess_env(compile_cache), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(killed, kill_at, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    before = losses(killed)
    logged = len((killed / "metrics.jsonl").read_text().splitlines())
    complete = sorted(int(d.name) for d in (killed / "checkpoints").iterdir() if d.name.isdigit())
    resumed = run_train(killed, compile_cache, *args)
    assert resumed.returncode == 0, resumed.stderr
    if complete:  # a save still in flight at the kill leaves only a temporary folder, which is ignored
        assert f"resumed from step {complete[-1]}" in resumed.stderr, (kill_at, complete, resumed.stderr)
        again = [line for line in (killed / "metrics.jsonl").read_text().splitlines()[logged:] if line.endswith("}")]
        assert len(again) == TRAIN_STEPS - complete[-1], (kill_at, complete)  # not a fresh start
    got = losses(killed)
    assert sorted(got) == sorted(want)
    for step in before:
        assert before[step] == want[step], (step, kill_at)
    assert_same_run(([got[s] for s in sorted(got)], saved_state(killed)),  # JSON keeps float32 exact
                    ([want[s] for s in sorted(want)], saved_state(reference)), f"train.py killed at step {kill_at}")
