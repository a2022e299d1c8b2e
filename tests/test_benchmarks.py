"""Every benchmark runs end to end on tiny shapes (`--quick`; the performance ones with one repeat) and ends with
`name: <float>`, the line the README's tables are read from."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from train_fixtures import compile_cache, subprocess_env  # noqa: F401 (compile_cache: fixture)

ROOT = pathlib.Path(__file__).parent.parent
BENCHMARKS = {"train_step_vs_torch": "jax_over_torch_train_step", "mfu": "mfu_vs_matmul_peak",
              "ref_cache": "cached_over_uncached_step"}


@pytest.mark.parametrize("script", list(BENCHMARKS))
def test_quick_run_ends_with_its_figure(script):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user runs it
    env["JAX_PLATFORMS"] = "cpu"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), "--quick", "--repeats", "1"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    match = re.fullmatch(rf"{BENCHMARKS[script]}: (\d+\.\d+)", last)
    assert match, f"last line of {script}.py: {last!r}"
    assert float(match.group(1)) > 0


@pytest.mark.slow
def test_condition_gain_quick_run_ends_with_its_ratio(compile_cache):  # noqa: F811 (fixture)
    """The two trainings and samplings of `condition_gain.py` run end to end (a few steps of a tiny model: the
    plumbing, not the gain); the shared compilation cache makes reruns fast."""
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "condition_gain.py"), "--quick"], cwd=ROOT,
                         env=subprocess_env(compile_cache), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"pose_over_no_pose_keypoint_error: (\d+\.\d+)", last)
    assert match, f"last line of condition_gain.py: {last!r}"
    assert float(match.group(1)) > 0
