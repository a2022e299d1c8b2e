"""A finished training run is sampled and evaluated with its config and its folder alone, in real subprocesses:
`train.py --config configs/demo.py` (a few VAE and DiT steps) writes `RUN/vae` with measured latent statistics
(not the config's placeholders) and `RUN/export`; then the README's commands (`python -m swapjax.evaluate` and
`sample.py` with `--config configs/demo.py --checkpoint runs/demo`, no `--set`) run on it as written, reading the
statistics from the run."""

from __future__ import annotations

import csv
import json
import pathlib
import re
import shlex
import subprocess

import pytest

from train_fixtures import PYTHON, ROOT, compile_cache, run_train, subprocess_env  # noqa: F401
from swapjax.config import load_config
from swapjax.convert.saved import CONFIG_FILE
from swapjax.demo.cases import write_cases

DEMO = ROOT / "configs" / "demo.py"
FEW_STEPS = ("train.steps=2", "train.vae_steps=2", "train.vae_stat_batches=1", "train.checkpoint_every=2",
             "train.progress=false", "data.num_synthetic_clips=8", "optimizer.warmup_steps=1")


def _readme_commands() -> list[str]:
    """The README's commands that sample or evaluate the finished demo run."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    block = next(b for b in blocks if "--checkpoint runs/demo " in b)
    return block.strip().splitlines()


@pytest.mark.slow
def test_a_finished_run_samples_and_evaluates_with_only_its_config_and_folder(tmp_path, compile_cache):  # noqa: F811
    run = tmp_path / "run"
    trained = run_train(run, compile_cache, *FEW_STEPS, config=DEMO, timeout=600)
    assert trained.returncode == 0, trained.stderr
    config = load_config(DEMO)
    vae = json.loads((run / "vae" / CONFIG_FILE).read_text())["config"]
    assert tuple(vae["latents_mean"]) != config.vae.latents_mean  # measured: the config holds placeholders
    assert (run / "export" / CONFIG_FILE).is_file()
    cases = write_cases(config.data, config.seed, 1, run / "cases")  # as the demo writes them

    evaluate, sample = _readme_commands()
    assert evaluate.startswith("python -m swapjax.evaluate ") and sample.startswith("python sample.py ")
    env = subprocess_env(compile_cache)
    results = {}
    for command in (evaluate, sample):
        argv = [str(run) + a[len("runs/demo"):] if a.startswith("runs/demo") else a for a in shlex.split(command)]
        assert "--set" not in argv and argv[argv.index("--checkpoint") + 1] == str(run)
        proc = subprocess.run([PYTHON, *argv[1:], "--quiet"], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
        taken = [line for line in proc.stderr.splitlines() if "read from the checkpoint" in line]
        assert len(taken) == 1 and str(run / "vae") in taken[0], proc.stderr  # said once, naming the run's VAE
        results[argv[1]] = proc

    with open(run / "eval_again" / "metrics.csv", newline="") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert rows[cases[0].stem]["status"] == "ok" and (run / "eval_again" / f"{cases[0].stem}.mp4").is_file()
    assert pathlib.Path(run / "heldout_0000.mp4").is_file() and cases[0].name == "heldout_0000.npz"
    assert "wrote " in results["sample.py"].stdout
