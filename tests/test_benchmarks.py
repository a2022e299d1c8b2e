"""Every performance benchmark runs end to end on tiny shapes (`--quick`, one repeat) and ends with `name: <float>`,
the line the README's performance table is read from."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

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
