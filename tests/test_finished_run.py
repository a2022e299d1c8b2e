"""A finished training run is sampled and evaluated with its config and its folder alone, in real subprocesses:
`train.py --config configs/demo.py` (a few VAE and DiT steps) writes `RUN/vae` with measured latent statistics
(not the config's placeholders) and `RUN/export`; then `python -m swapjax.evaluate --config configs/demo.py
--checkpoint RUN` and `sample.py --config configs/demo.py --checkpoint RUN` run without any `--set`, reading the
statistics from the run (README "The demo")."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest

from train_fixtures import PYTHON, ROOT, compile_cache, run_train, subprocess_env  # noqa: F401
from swapjax.config import load_config
from swapjax.convert.saved import CONFIG_FILE
from swapjax.demo.cases import write_cases

DEMO = ROOT / "configs" / "demo.py"
FEW_STEPS = ("train.steps=2", "train.vae_steps=2", "train.vae_stat_batches=1", "train.checkpoint_every=2",
             "train.progress=false", "data.num_synthetic_clips=8", "optimizer.warmup_steps=1")


@pytest.mark.slow
def test_a_finished_run_samples_and_evaluates_with_only_its_config_and_folder(tmp_path, compile_cache):  # noqa: F811
    run = tmp_path / "run"
    trained = run_train(run, compile_cache, *FEW_STEPS, config=DEMO, timeout=600)
    assert trained.returncode == 0, trained.stderr
    config = load_config(DEMO)
    vae = json.loads((run / "vae" / CONFIG_FILE).read_text())["config"]
    assert tuple(vae["latents_mean"]) != config.vae.latents_mean  # measured: the config holds placeholders
    assert (run / "export" / CONFIG_FILE).is_file()
    cases = write_cases(config.data, config.seed, 1, tmp_path / "cases")

    env = subprocess_env(compile_cache)
    evaluate = subprocess.run([PYTHON, "-m", "swapjax.evaluate", "--config", str(DEMO), "--cases",
                               str(tmp_path / "cases"), "--checkpoint", str(run), "--out", str(tmp_path / "eval"),
                               "--quiet"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert evaluate.returncode == 0, evaluate.stderr
    taken = [line for line in evaluate.stderr.splitlines() if "read from the checkpoint" in line]
    assert len(taken) == 1 and str(run / "vae") in taken[0], evaluate.stderr
    with open(tmp_path / "eval" / "metrics.csv", newline="") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert rows[cases[0].stem]["status"] == "ok" and (tmp_path / "eval" / f"{cases[0].stem}.mp4").is_file()

    out = tmp_path / "out.mp4"
    sample = subprocess.run([PYTHON, str(ROOT / "sample.py"), "--config", str(DEMO), "--checkpoint", str(run),
                             "--case", str(cases[0]), "--out", str(out), "--quiet"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert sample.returncode == 0, sample.stderr
    assert "read from the checkpoint" in sample.stderr and out.is_file() and "wrote " in sample.stdout
