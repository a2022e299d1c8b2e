"""swapjax.scaling: the power-law fit, the sweep's plan (steps bought by each budget), bad sweep files, and a
tiny grid trained end to end by `python -m swapjax.scaling` (CSV, fit, PNG)."""

from __future__ import annotations

import csv
import math
import subprocess

import cv2
import numpy as np
import pytest

from train_fixtures import CONFIG, PYTHON, ROOT, compile_cache, subprocess_env  # noqa: F401 (compile_cache: fixture)
from swapjax.errors import ConfigError
from swapjax.scaling.config import SweepConfig, load_sweep
from swapjax.scaling.fit import fit_power_law, frontier
from swapjax.scaling.runs import flops_per_step, plan_runs

SWEEP = '''
from swapjax.scaling.config import SweepConfig


def get_sweep():
    return SweepConfig(name="test", base={base!r}, head_dim=8, heads=(1, 2), depths=(1,), budgets={budgets!r},
                       overrides={overrides!r}, min_steps=2, max_steps=40, loss_tail=0.5)
'''
# A constant learning rate (the schedule does not depend on train.steps), so both budgets of one model size
# compile the same train step and the second run takes it from the compilation cache.
CONSTANT_LR = ("train.stage=2", "optimizer.lr=3e-3", "optimizer.warmup_steps=0", "optimizer.decay_steps=1",
               "optimizer.end_lr_fraction=1.0", "optimizer.ema_decay=0", "train.keep_checkpoints=1",
               "data.num_synthetic_clips=8")


def write_sweep(folder, budgets=(3e6, 1e7), overrides=CONSTANT_LR, base=str(CONFIG)):
    path = folder / "sweep.py"
    path.write_text(SWEEP.format(base=base, budgets=tuple(budgets), overrides=tuple(overrides)))
    return path


def test_power_law_fit_recovers_a_known_law_on_the_frontier():
    compute = np.array([1e6, 1e6, 1e7, 1e7, 1e8])
    best = 3.0 * compute ** -0.1
    losses = np.where([True, False, False, True, True], best, best * 1.2)  # one worse run per shared budget
    c, l = frontier(compute.tolist(), compute.tolist(), losses.tolist())  # run rows hold plain numbers
    assert c.tolist() == [1e6, 1e7, 1e8] and np.allclose(l, 3.0 * c ** -0.1)
    law = fit_power_law(c, l)
    assert law.a == pytest.approx(3.0) and law.b == pytest.approx(0.1) and law.r2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two distinct compute values"):
        fit_power_law(np.array([1e6]), np.array([1.0]))


def test_plan_buys_steps_with_each_budget_and_skips_what_does_not_fit(tmp_path):
    sweep, base = load_sweep(write_sweep(tmp_path, budgets=(1e6, 3e6, 1e7)))
    runs, skipped = plan_runs(sweep, base)
    for run in runs:
        assert run.steps == round(run.budget / run.flops_per_step) and run.flops_per_step == flops_per_step(run.config)
        assert run.config.train.steps == run.steps and run.config.dit.num_heads * 8 == run.width
        assert run.config.dit.added_kv_proj_dim == run.width and run.config.dit.ffn_dim == 4 * run.width
    small = [r for r in runs if r.heads == 1]
    assert len({r.params for r in runs}) == 2 and small[0].params < [r for r in runs if r.heads == 2][0].params
    assert len(runs) + len(skipped) == 6
    assert skipped and all("outside [2, 40]: skipped" in line for line in skipped)  # 1e6 buys < 2 steps at width 16


def test_bad_sweep_files_say_what_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "missing.py")
    with pytest.raises(ConfigError, match="is not a file next to"):
        load_sweep(write_sweep(tmp_path, base="nope.py"))
    with pytest.raises(ConfigError, match=r"needs at least two budgets"):
        SweepConfig(name="x", base="b.py", head_dim=8, heads=(1,), depths=(1,), budgets=(1e6,))
    with pytest.raises(ConfigError, match=r"head_dim \(7\) must be even"):
        SweepConfig(name="x", base="b.py", head_dim=7, heads=(1,), depths=(1,), budgets=(1e6, 2e6))


def test_a_sweep_file_that_raises_is_one_line_and_leaves_no_folder(tmp_path):
    """The real command on a sweep whose get_sweep() raises: one `error:` line naming the file, exit 2, and the
    new --out (with its parents) is not left behind."""
    sweep = tmp_path / "raises.py"
    sweep.write_text("def get_sweep():\n    raise RuntimeError('no budget today')\n")
    out = tmp_path / "new" / "out"
    done = subprocess.run([PYTHON, "-m", "swapjax.scaling", "--sweep", str(sweep), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("error: --sweep") and "raised RuntimeError: no budget today" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raises.py"]


@pytest.mark.slow
def test_tiny_sweep_runs_end_to_end(tmp_path, compile_cache):  # noqa: F811
    sweep, out = write_sweep(tmp_path), tmp_path / "out"
    command = [PYTHON, "-m", "swapjax.scaling", "--sweep", str(sweep), "--out", str(out),
               "--compile-cache", str(compile_cache)]
    done = subprocess.run(command, env=subprocess_env(compile_cache), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["width"], float(r["budget"])) for r in rows] == [("8", 3e6), ("8", 1e7), ("16", 3e6), ("16", 1e7)]
    for r in rows:
        assert float(r["flops"]) == pytest.approx(int(r["steps"]) * float(r["flops_per_step"]))
        assert math.isfinite(float(r["final_loss"])) and int(r["params"]) > 0
    assert (out / "fit.txt").read_text().startswith("loss = ") and "loss = " in done.stdout
    image = cv2.imread(str(out / "loss_vs_compute.png"))
    assert image is not None and image.shape == (480, 720, 3) and (image < 250).any(axis=2).mean() > 0.01


@pytest.mark.parametrize("lo, hi, labels", [
    (2e6, 3e8, ["2e6", "5e6", "1e7", "2e7", "5e7", "1e8", "2e8"]),  # two decades' powers are too few: 1-2-5
    (1e3, 1e8, ["1000", "1e4", "1e5", "1e6", "1e7", "1e8"]),
    (1.55, 1.72, ["1.55", "1.6", "1.65", "1.7"]),  # inside one decade: round steps
    (0.95, 1.05, ["0.95", "0.975", "1", "1.025", "1.05"]),
])
def test_log_axis_ticks_are_round_and_readable(lo, hi, labels):
    from swapjax.scaling.plot import _label, _ticks

    assert [_label(t) for t in _ticks(lo, hi)] == labels
