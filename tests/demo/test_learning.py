"""Learning smoke test: a shortened from-scratch demo run (`python -m swapjax.demo`: VAE stage, swap DiT, swap pairs
of held-out families and in family) must swap clearly better than the same DiT untrained, scored by the same
evaluation on the same pairs, in both sets.

The untrained baseline is the demo with one optimizer step at a zero learning rate (warmup starts at 0) and the
trained run's VAE, so only the DiT's training differs. If the loss, the gradients, the optimizer, the EMA, the
export or the sampler's use of the trained weights breaks, the margins below collapse; if training only learned
its own families, the held-out margins do. The pairs carry the demo's user-style masks and reference framings
(`swapjax/demo/cases.py`: case k of a set takes mask style k % 5 and framing k % 3). About 3-4.5 minutes on
2 CPU cores.

Retuning: the thresholds are `MARGINS` below, one entry per set; `MEASURED` holds what they were set from. Run
`pytest -s tests/demo/test_learning.py` and read the printed `trained ... untrained ...` line.
"""

from __future__ import annotations

import csv
import subprocess

import pytest

from train_fixtures import PYTHON, ROOT, compile_cache, subprocess_env  # noqa: F401 (compile_cache: fixture)

PAIRS = 3  # per set: 3 held-out-family + 3 in-family pairs, the 6 pairs this test always evaluated
# the demo config's world and held-out families (configs/demo.py: HELD_OUT), trained shorter
SHORT = ("data.num_synthetic_clips=512", "train.vae_steps=400", "train.vae_stat_batches=4", "train.steps=800",
         "train.checkpoint_every=800", "sample.sampler.num_steps=8",
         "sample.known_margin=None")  # the DiT's own background: reuse would hand both models the source's latents
SETS = ("heldout", "infamily")

# Measured on the demo config's world (3 + 3 pairs, 800 steps, 2 CPU cores shared with a demo run, 3 min 10 s
# for both runs), trained vs untrained per set: mean bg_psnr_raw, masked_psnr (dB), colour_to_reference (RGB
# distance) and closer_to_reference (pairs).
MEASURED = {"heldout": "bg 14.20 vs 12.11 dB, masked 12.65 vs 11.62 dB, colour 94.1 vs 105.0, closer 1/3 vs 0/3",
            "infamily": "bg 17.41 vs 14.61 dB, masked 13.70 vs 12.92 dB, colour 68.2 vs 75.5, closer 1/3 vs 1/3"}
# Least gains of the trained model over the untrained one: about half of each measured gain. The
# closer_to_reference count does not separate the two models on 3 pairs, so it is printed only.
MARGINS = {"heldout": {"bg_psnr_raw": 1.0, "masked_psnr": 0.5, "colour_gain": 5.0},
           "infamily": {"bg_psnr_raw": 1.4, "masked_psnr": 0.35, "colour_gain": 3.5}}

pytestmark = pytest.mark.slow


def _demo(workdir, env, *overrides: str) -> dict[str, dict[str, float]]:
    """Runs the shortened demo; per set, the means of `bg_psnr_raw`, `masked_psnr` and `colour_to_reference` and the
    share of `closer_to_reference`."""
    command = [PYTHON, "-m", "swapjax.demo", "--workdir", str(workdir), "--pairs", str(PAIRS), "--quiet",
               "--set", *SHORT, *overrides]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]  # the run finished (goals are the full demo's, not asked here)
    with open(workdir / "eval" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["set"] for r in rows) == sorted(SETS * PAIRS) and all(r["status"] == "ok" for r in rows), rows
    out = {}
    for name in SETS:
        chosen = [r for r in rows if r["set"] == name]
        mean = lambda key: sum(float(r[key]) for r in chosen) / len(chosen)  # noqa: E731
        out[name] = {"bg_psnr_raw": mean("bg_psnr_raw"), "masked_psnr": mean("masked_psnr"),
                     "colour_to_reference": mean("colour_to_reference"),
                     "closer": sum(r["closer_to_reference"] == "true" for r in chosen) / len(chosen)}
    return out


def test_training_beats_the_untrained_model_on_held_out_families_and_in_family(tmp_path, compile_cache):  # noqa: F811
    env = subprocess_env(compile_cache, fast_compile=False)  # 1,200 training steps: run time, not compile time
    trained = _demo(tmp_path / "trained", env)
    untrained = _demo(tmp_path / "untrained", env, "train.vae_steps=0",
                      f"train.vae_init={tmp_path / 'trained' / 'vae'}", "train.steps=1", "train.checkpoint_every=1")
    report = f"trained {trained}, untrained {untrained}"
    print(report)  # shown with -s, and in the failure messages below
    for name in SETS:
        got, base, margin = trained[name], untrained[name], MARGINS[name]
        # it keeps what it was told to keep, and fills the region like the truth
        assert got["bg_psnr_raw"] >= base["bg_psnr_raw"] + margin["bg_psnr_raw"], (name, report)
        assert got["masked_psnr"] >= base["masked_psnr"] + margin["masked_psnr"], (name, report)
        if margin["colour_gain"] is not None:  # nearer the reference's colour
            assert got["colour_to_reference"] <= base["colour_to_reference"] - margin["colour_gain"], (name, report)
