"""The demo's pieces without training: swap cases in two sets (held-out families, in family; never a training
clip, readable as evaluation cases), the users' mask styles and reference framings they carry, and the headline
figures with their PASS / FAIL goals per set."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from swapjax.data import masks
from swapjax.data.config import DataConfig
from swapjax.data.pipeline import make_source
from swapjax.data.reference import ReferenceCutoutWarning, prepare_reference, subject_cutout
from swapjax.demo import cases as demo_cases
from swapjax.demo.goals import GOALS, all_passed, check_goals, check_sets, goals_text
from swapjax.evaluate.cases import case_extras, read_cases

DATA = DataConfig(height=32, width=32, num_frames=5, ref_size=16, num_synthetic_clips=6,
                  synthetic_textures=("flat", "gradient"), synthetic_backgrounds=("gradient",))
HELD_OUT = ("shape:articulated", "motion:orbit")


def _load(path) -> dict[str, np.ndarray]:
    with np.load(path) as case:
        return {k: case[k] for k in case.files}


def test_in_family_cases_are_new_clips_labelled_and_in_the_case_format(tmp_path):
    paths = demo_cases.write_cases(DATA, seed=3, count=2, folder=tmp_path / "cases")
    assert [p.name for p in paths] == ["infamily_0000.npz", "infamily_0001.npz"]  # no held-out families named
    assert list(demo_cases.clip_indices(DATA, 2)) == [6, 7]
    training = make_source(DATA, seed=3)  # the clips a training run reads
    case = _load(paths[0])
    assert case["source"].shape == (5, 32, 32, 3) and case["source"].dtype == np.uint8
    assert case["mask"].shape == case["subject_mask"].shape == (5, 32, 32) and case["subject_mask"].any()
    assert case["ground_truth"].shape == (5, 32, 32, 3) and case["subject_reference"].shape == (16, 16, 3)
    assert not np.array_equal(case["source"], case["ground_truth"])  # the subject was replaced
    assert all(not np.array_equal(case["source"], training[i]["video"]) for i in range(len(training)))
    assert (str(case["set"]), str(case["mask_style"]), str(case["reference_framing"])) == ("infamily", "exact", "crop")
    assert int(case["clip_index"]) == 6
    stamp = paths[0].stat().st_mtime_ns
    assert demo_cases.write_cases(DATA, seed=3, count=2, folder=tmp_path / "cases") == paths
    assert paths[0].stat().st_mtime_ns == stamp  # kept, not rewritten
    jobs = read_cases(tmp_path / "cases", tmp_path / "eval")
    inputs = jobs[0].read(text_dim=None)
    np.testing.assert_array_equal(inputs.video, case["source"])
    assert inputs.ground_truth is not None
    extras = case_extras(jobs[1])
    assert extras.labels == {"set": "infamily", "mask_style": "dilated", "reference_framing": "canvas"}
    np.testing.assert_array_equal(extras.subject_mask, _load(paths[1])["subject_mask"])


def test_styles_and_framings_cycle_by_index_and_scoring_keeps_the_exact_subject(tmp_path):
    paths = demo_cases.write_cases(DATA, seed=0, count=15, folder=tmp_path)
    source = make_source(dataclasses.replace(DATA, num_synthetic_clips=21), 0)
    pairs = set()
    for k, path in enumerate(paths):
        case = _load(path)
        pair = source.swap_pair(6 + k, DATA.ref_size)
        assert str(case["mask_style"]) == demo_cases.MASK_STYLES[k % 5]
        assert str(case["reference_framing"]) == demo_cases.FRAMINGS[k % 3]
        pairs.add((str(case["mask_style"]), str(case["reference_framing"])))
        np.testing.assert_array_equal(case["subject_mask"], pair["mask"])  # the exact one, whatever the style
        np.testing.assert_array_equal(case["subject_reference"], pair["reference"])
        assert (case["mask"] >= case["subject_mask"]).all()  # every style covers the subject
    assert len(pairs) == 15  # every pairing once


def test_mask_styles():
    pair = make_source(DATA, 0).swap_pair(1, DATA.ref_size)
    subject, target = pair["mask"], pair["target_mask"]
    rng = np.random.default_rng(0)
    style = lambda name: demo_cases.user_mask(name, subject, target, DATA.mask, rng)  # noqa: E731
    np.testing.assert_array_equal(style("exact"), subject)
    box = style("box")
    for f in range(len(box)):  # each frame's mask is one filled rectangle: the subject's box
        ys, xs = np.nonzero(box[f])
        assert box[f, ys.min():ys.max() + 1, xs.min():xs.max() + 1].all() and box[f].sum() > subject[f].sum()
    np.testing.assert_array_equal(masks.boxes(box)[0], masks.boxes(subject)[0])
    union = style("union")
    assert (union >= subject).all() and (union >= target).all() and union.sum() > subject.sum()
    assert not (union & ~(subject.astype(bool) | target.astype(bool))).any()  # and nothing else
    dilated = style("dilated")
    assert (dilated >= subject).all()
    assert (masks.dilate(subject, 2) <= dilated).all() and (dilated <= masks.dilate(subject, 6)).all()  # 3-6 px
    assert (style("grid") >= subject).all()
    with pytest.raises(ValueError, match="unknown mask style"):
        style("lasso")


def test_plain_canvas_reference_is_found_by_the_automatic_cut_out():
    source = make_source(DATA, 0)
    for i in range(4):
        reference = source.swap_pair(i, DATA.ref_size)["reference"]
        canvas, alpha = demo_cases.plain_canvas(reference, np.random.default_rng(i))
        assert canvas.shape == (32, 32, 3) and alpha.shape == (32, 32)
        border = np.concatenate([canvas[0], canvas[-1], canvas[:, 0], canvas[:, -1]])
        assert (border == border[0]).all()  # one flat colour around the subject
        with warnings.catch_warnings():
            warnings.simplefilter("error", ReferenceCutoutWarning)  # a failed cut-out warns
            cut = subject_cutout(canvas)
            prepare_reference(canvas, size=DATA.ref_size)
        core, drawn = alpha > 0.5, masks.dilate((alpha > 0)[None], 1)[0] != 0
        assert (cut & core).sum() >= 0.95 * core.sum(), i  # the cut-out recovers the subject ...
        assert not (cut & ~drawn).any(), i  # ... and no canvas beyond its blended outline


def test_truth_frame_reference_is_cut_from_the_ground_truth_with_its_mask(tmp_path):
    paths = demo_cases.write_cases(DATA, seed=0, count=3, folder=tmp_path)
    case = _load(paths[2])
    assert str(case["reference_framing"]) == "truth_frame"
    ref, ref_mask = case["reference"], case["reference_mask"]
    assert ref.shape[:2] == ref_mask.shape and ref_mask.any() and not ref_mask.all()  # background around it
    truth = case["ground_truth"]
    h, w = ref.shape[:2]
    hits = [(t, y, x) for t in range(len(truth)) for y in range(32 - h + 1) for x in range(32 - w + 1)
            if np.array_equal(truth[t, y:y + h, x:x + w], ref)]
    assert hits  # a crop of a ground-truth frame
    inputs = read_cases(tmp_path, tmp_path / "eval")[2].read(None)
    np.testing.assert_array_equal(inputs.reference_mask, ref_mask)  # the sampler gets the mask
    assert "reference_mask" not in _load(paths[1])  # the canvas framing: the cut-out's job


def test_held_out_cases_come_first_from_the_held_out_families(tmp_path):
    data = dataclasses.replace(DATA, held_out_families=HELD_OUT)
    paths = demo_cases.write_cases(data, seed=3, count=2, folder=tmp_path)
    assert [p.name for p in paths] == ["heldout_0000.npz", "heldout_0001.npz", "infamily_0000.npz",
                                       "infamily_0001.npz"]
    cases = [_load(p) for p in paths]
    assert [str(c["set"]) for c in cases] == ["heldout", "heldout", "infamily", "infamily"]
    for case in cases:  # every held-out case shows the held-out families, no in-family case does
        shown = set(str(case["families"]).split(",")) & set(HELD_OUT)
        assert shown == (set(HELD_OUT) if str(case["set"]) == "heldout" else set()), case["families"]
        assert str(case["mask_style"]) in demo_cases.MASK_STYLES and case["subject_mask"].any()
    training = make_source(data, seed=3)  # what training reads: in family only
    assert all(not np.array_equal(cases[0]["source"], training[i]["video"]) for i in range(len(training)))
    assert [j.name for j in read_cases(tmp_path, tmp_path / "eval")][:2] == ["heldout_0000", "heldout_0001"]


def _row(**values):
    return {"status": "ok", "bg_psnr_raw": 30.0, "bg_psnr_vae": 30.5, "closer_to_reference": True,
            "centroid_error": 1.0, "centroid_error_truth": 0.5, "masked_psnr": 20.0, **values}


def test_goals_pass_and_fail_on_the_means():
    rows = [_row() for _ in range(19)] + [_row(closer_to_reference=False, bg_psnr_raw=26.0, centroid_error=3.0)]
    figures = {f.name: f for f in check_goals(rows)}
    assert figures["pairs scored"].passed and figures["pairs scored"].value == 20
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
    text = goals_text({"infamily": list(figures.values())})
    assert "| subject centroid error | 1.10 px | <= 2 px | PASS |" in text
    assert "| background PSNR before the composite | 29.80 dB | >= 28 dB | PASS |" in text


def test_goals_are_split_per_set_held_out_first():
    rows = ([_row(set="infamily", bg_psnr_vae=32.0) for _ in range(20)]  # gap 2 dB: over in family's 1 dB
            + [_row(set="heldout", bg_psnr_vae=32.0, bg_psnr_raw=25.0) for _ in range(20)])  # gap 7 dB
    sets = check_sets(rows)
    assert list(sets) == ["heldout", "infamily"]  # held-out first, whatever the row order
    held, fam = ({f.name: f for f in sets[s]} for s in ("heldout", "infamily"))
    assert held["gap to the VAE reconstruction"].goal == "<= 3 dB" and not held["gap to the VAE reconstruction"].passed
    assert held["background PSNR before the composite"].passed is None  # reported for the held-out families
    assert fam["gap to the VAE reconstruction"].goal == "<= 1 dB" and not fam["gap to the VAE reconstruction"].passed
    assert held["pairs scored"].value == fam["pairs scored"].value == 20
    fixed = check_sets([{**r, "bg_psnr_vae": 27.0 if r["set"] == "heldout" else 30.5} for r in rows])
    held = {f.name: f for f in fixed["heldout"]}
    gap = held["gap to the VAE reconstruction"]
    assert gap.passed and math.isclose(gap.value, 2.0)
    assert all_passed(fixed) and not all_passed(sets)
    text = goals_text(fixed)
    assert text.index("### Held-out families (20 pairs scored)") < text.index("### In family (20 pairs scored)")
    assert check_sets([_row()]).keys() == {"infamily"}  # a row without a set counts as in family
    assert GOALS["heldout"].closer_min == 0.9 and GOALS["heldout"].centroid_max == 2.0


def test_missing_figures_and_failed_cases_fail_their_goals():
    rows = [_row(closer_to_reference=False) for _ in range(5)] + [{"status": "failed", "error": "bad"}]
    figures = {f.name: f for f in check_goals(rows)}
    assert not figures["pairs scored"].passed  # 5 < 20
    assert not figures["subject colour closer to the reference"].passed
    no_bg = check_sets([_row(bg_psnr_raw=None) for _ in range(20)])
    assert not {f.name: f for f in no_bg["infamily"]}["background PSNR before the composite"].passed
    assert not all_passed(no_bg)
    held = check_sets([_row(set="heldout", bg_psnr_raw=None) for _ in range(20)])["heldout"]
    assert not {f.name: f for f in held}["gap to the VAE reconstruction"].passed  # NaN gap: missing fails


def test_a_demo_without_a_vae_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    from swapjax.demo.cli import main

    assert main(["--workdir", str(tmp_path / "run"), "--set", "train.vae_steps=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the demo needs a VAE" in err and "train.vae_init" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit) as stop:
        main(["--workdir", str(tmp_path / "run"), "--pairs", "0"])
    assert stop.value.code == 2 and "--pairs 0 must be >= 1" in capsys.readouterr().err


def test_presets_choose_the_config_and_a_second_choice_is_one_line(tmp_path, capsys):
    """`--preset full` reads configs/demo_full.py (the default's world and model, trained longer); `--preset` with
    `--config` is exit 2 with one line; no flag is the default demo config."""
    from swapjax.config import load_config
    from swapjax.demo.cli import DEFAULT_CONFIG, main, parse_args

    assert parse_args(["--workdir", "w"]).config == str(DEFAULT_CONFIG)
    full = parse_args(["--workdir", "w", "--preset", "full"]).config
    assert full.endswith("configs/demo_full.py")
    default, longer = load_config(DEFAULT_CONFIG), load_config(full)
    assert longer.train.steps > default.train.steps and longer.train.vae_steps > default.train.vae_steps
    assert longer.data == default.data and longer.dit == default.dit and longer.sample == default.sample
    with pytest.raises(SystemExit) as exit_:
        main(["--workdir", str(tmp_path / "w"), "--preset", "full", "--config", str(DEFAULT_CONFIG)])
    assert exit_.value.code == 2 and not (tmp_path / "w").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give one of them" in err[0]
