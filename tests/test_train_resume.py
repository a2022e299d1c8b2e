"""kill -9 at a random step, then the same command again: every later step's loss is bit-equal to an
uninterrupted run's (state, RNG and data position all resume exactly)."""

from __future__ import annotations

import random
import signal
import subprocess

from train_fixtures import ROOT, compile_cache, losses, run_train, subprocess_env, train_command, wait_for_step  # noqa: F401

STEPS = ("train.steps=6",)


def test_kill_9_then_rerun_is_bit_equal_to_an_uninterrupted_run(tmp_path, compile_cache):  # noqa: F811
    reference = tmp_path / "uninterrupted"
    done = run_train(reference, compile_cache, *STEPS)
    assert done.returncode == 0, done.stderr
    want = losses(reference)
    assert sorted(want) == [1, 2, 3, 4, 5, 6]

    killed = tmp_path / "killed"
    kill_at = random.Random().randint(2, 4)
    proc = subprocess.Popen(train_command(killed, *STEPS), env=subprocess_env(compile_cache), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(killed, kill_at, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    before = losses(killed)
    complete = sorted(int(d.name) for d in (killed / "checkpoints").iterdir() if d.name.isdigit())
    resumed = run_train(killed, compile_cache, *STEPS)
    assert resumed.returncode == 0, resumed.stderr
    if complete:  # a save still in flight at the kill leaves only a temporary folder, which is ignored
        assert f"resumed from step {complete[-1]}" in resumed.stderr, (kill_at, complete, resumed.stderr)
    got = losses(killed)
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    for step in got:
        assert got[step] == want[step], (step, kill_at, got[step], want[step])  # bit-equal (JSON keeps float32 exact)
    for step in before:
        assert before[step] == want[step], (step, kill_at)
