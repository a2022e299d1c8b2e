"""Learning smoke test: a shortened from-scratch demo run (`python -m swapjax.demo`: VAE stage, swap DiT, held-out
swap pairs) must swap clearly better than the same DiT untrained, scored by the same evaluation on the same pairs.

The untrained baseline is the demo with one optimizer step at a zero learning rate (warmup starts at 0) and the
trained run's VAE, so only the DiT's training differs. If the loss, the gradients, the optimizer, the EMA, the
export or the sampler's use of the trained weights breaks, the margins below collapse. About 2 minutes on
2 CPU cores.
"""

from __future__ import annotations

import csv
import subprocess

import pytest

from train_fixtures import PYTHON, ROOT, compile_cache, subprocess_env  # noqa: F401 (compile_cache: fixture)

PAIRS = 6
SHORT = ("data.num_synthetic_clips=512", "train.vae_steps=400", "train.vae_stat_batches=4", "train.steps=800",
         "train.checkpoint_every=800", "sample.sampler.num_steps=8")

pytestmark = pytest.mark.slow


def _demo(workdir, env, *overrides: str) -> dict[str, float]:
    command = [PYTHON, "-m", "swapjax.demo", "--workdir", str(workdir), "--pairs", str(PAIRS), "--quiet",
               "--set", *SHORT, *overrides]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]  # the run finished (goals are the full demo's, not asked here)
    with open(workdir / "eval" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["name"] != "mean"]
    assert len(rows) == PAIRS and all(r["status"] == "ok" for r in rows), rows
    mean = lambda key: sum(float(r[key]) for r in rows) / len(rows)  # noqa: E731
    closer = sum(r["closer_to_reference"] == "true" for r in rows) / len(rows)
    return {"bg_psnr_raw": mean("bg_psnr_raw"), "masked_psnr": mean("masked_psnr"), "closer": closer}


def test_training_beats_the_untrained_model_on_held_out_swaps(tmp_path, compile_cache):  # noqa: F811
    env = subprocess_env(compile_cache)
    trained = _demo(tmp_path / "trained", env)
    untrained = _demo(tmp_path / "untrained", env, "train.vae_steps=0", f"train.vae_init={tmp_path / 'trained' / 'vae'}",
                      "train.steps=1", "train.checkpoint_every=1")
    report = f"trained {trained}, untrained {untrained}"
    print(report)  # shown with -s, and in the failure message below
    # Measured (6 pairs, 800 steps): background 15.2 vs 11.4 dB, masked region 13.7 vs 11.3 dB, colour 5/6 vs 3/6.
    assert trained["bg_psnr_raw"] >= untrained["bg_psnr_raw"] + 2.5, report  # it keeps what it was told to keep
    assert trained["masked_psnr"] >= untrained["masked_psnr"] + 1.2, report  # and fills the region like the truth
    assert trained["closer"] >= 4 / 6 and trained["closer"] > untrained["closer"], report  # in the reference's colour
