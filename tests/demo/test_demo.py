"""The demo's pieces without training: held-out swap cases (never a training clip, readable as evaluation cases)
and the headline figures with their PASS / FAIL goals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swapjax.data.config import DataConfig
from swapjax.data.pipeline import make_source
from swapjax.demo.cases import held_out_indices, write_cases
from swapjax.demo.goals import all_passed, check_goals, goals_text
from swapjax.evaluate.cases import read_cases


def test_held_out_cases_are_new_clips_in_the_case_format(tmp_path):
    data = DataConfig(height=32, width=32, num_frames=5, ref_size=16, num_synthetic_clips=6,
                      synthetic_textures=("flat", "gradient"), synthetic_backgrounds=("gradient",))
    paths = write_cases(data, seed=3, count=2, folder=tmp_path / "cases")
    assert [p.name for p in paths] == ["pair0006.npz", "pair0007.npz"]
    assert list(held_out_indices(data, 2)) == [6, 7]
    training = make_source(data, seed=3)  # the clips a training run reads
    with np.load(paths[0]) as case:
        assert case["source"].shape == (5, 32, 32, 3) and case["source"].dtype == np.uint8
        assert case["mask"].shape == (5, 32, 32) and case["mask"].any()
        assert case["reference"].shape == (16, 16, 3)
        assert case["ground_truth"].shape == (5, 32, 32, 3)
        assert not np.array_equal(case["source"], case["ground_truth"])  # the subject was replaced
        assert all(not np.array_equal(case["source"], training[i]["video"]) for i in range(len(training)))
        first = case["source"].copy()
    stamp = paths[0].stat().st_mtime_ns
    assert write_cases(data, seed=3, count=2, folder=tmp_path / "cases") == paths
    assert paths[0].stat().st_mtime_ns == stamp  # kept, not rewritten
    cases = read_cases(tmp_path / "cases", tmp_path / "eval")
    inputs = cases[0].read(text_dim=None)
    np.testing.assert_array_equal(inputs.video, first)
    assert inputs.ground_truth is not None


def _row(**values):
    return {"status": "ok", "bg_psnr_raw": 30.0, "bg_psnr_vae": 30.5, "closer_to_reference": True,
            "centroid_error": 1.0, "centroid_error_truth": 0.5, "masked_psnr": 20.0, **values}


def test_goals_pass_and_fail_on_the_means():
    rows = [_row() for _ in range(19)] + [_row(closer_to_reference=False, bg_psnr_raw=26.0, centroid_error=3.0)]
    figures = {f.name: f for f in check_goals(rows)}
    assert figures["held-out pairs scored"].passed and figures["held-out pairs scored"].value == 20
    raw = figures["background PSNR before the composite"]
    assert math.isclose(raw.value, (19 * 30 + 26) / 20) and raw.passed
    gap = figures["gap to the VAE reconstruction"]
    assert math.isclose(gap.value, 30.5 - raw.value) and gap.passed  # 0.7 dB under the VAE's own PSNR
    wide = {f.name: f for f in check_goals([_row(bg_psnr_vae=31.5) for _ in range(20)])}
    assert not wide["gap to the VAE reconstruction"].passed  # 1.5 dB
    assert math.isclose(figures["subject colour closer to the reference"].value, 95.0)
    assert figures["subject colour closer to the reference"].passed
    assert math.isclose(figures["subject centroid error"].value, 1.1) and figures["subject centroid error"].passed
    assert figures["masked-region PSNR vs ground truth"].passed is None  # reported, no goal
    assert all_passed(list(figures.values())) == all(f.passed for f in figures.values() if f.passed is not None)
    text = goals_text(list(figures.values()))
    assert "| subject centroid error | 1.10 px | <= 2 px | PASS |" in text


def test_missing_figures_and_failed_cases_fail_their_goals():
    rows = [_row(closer_to_reference=False) for _ in range(5)] + [{"status": "failed", "error": "bad"}]
    figures = {f.name: f for f in check_goals(rows)}
    assert not figures["held-out pairs scored"].passed  # 5 < 20
    assert not figures["subject colour closer to the reference"].passed
    no_bg = check_goals([_row(bg_psnr_raw=None) for _ in range(20)])
    assert not {f.name: f for f in no_bg}["background PSNR before the composite"].passed
    assert not all_passed(no_bg)


def test_a_demo_without_a_vae_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    from swapjax.demo.cli import main

    assert main(["--workdir", str(tmp_path / "run"), "--set", "train.vae_steps=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the demo needs a VAE" in err and "train.vae_init" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as stop:
        main(["--workdir", str(tmp_path / "run"), "--pairs", "0"])
    assert stop.value.code == 2 and "--pairs 0 must be >= 1" in capsys.readouterr().err
