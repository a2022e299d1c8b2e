"""`swapjax.evaluate` without sampling: case lists (folder and JSON, ground truths, bad entries, a case's labels
and scoring extras), the table's summary (per set) and formats, the contact sheets' layout, order and labels, the
embedder wrapper, and `python -m swapjax.evaluate`'s exit code 2 with one `error:` line for bad arguments (the
end-to-end run is tests/evaluate/test_evaluate_readme.py)."""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from sample_fixtures import CONFIG_PATH, box_track, clip, reference
from swapjax.data import video_io
from swapjax.errors import InputError
from swapjax.evaluate import report
from swapjax.evaluate.cases import case_extras, case_labels, read_cases
from swapjax.evaluate.embedder import encoder_embedder
from swapjax.metrics import embedding_similarity
from swapjax.models.image_encoder import build_image_encoder

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _video_case(folder: pathlib.Path, name: str) -> None:
    video_io.write_video(folder / f"{name}.mp4", clip(5), 12)
    np.save(folder / f"{name}_mask.npy", box_track(5))
    video_io.write_image(folder / f"{name}_ref.png", reference())


def test_folder_cases_take_truth_files_beside_videos(tmp_path):
    _video_case(tmp_path, "walk")
    video_io.write_video(tmp_path / "walk_truth.mp4", clip(5, seed=4), 12)  # a ground truth, not a case
    np.savez(tmp_path / "pair.npz", source=clip(5), mask=box_track(5), reference=reference(),
             ground_truth=clip(5, seed=1), extra=np.arange(2))
    cases = read_cases(tmp_path, tmp_path / "out")
    assert [job.name for job in cases] == ["pair", "walk"]
    assert [job.ground_truth for job in cases] == [None, tmp_path / "walk_truth.mp4"]
    assert cases[1].out == tmp_path / "out" / "walk.mp4"
    walk = cases[1].read(None)
    assert walk.ground_truth.shape == walk.video.shape == (5, 32, 32, 3)
    assert cases[0].read(None).ground_truth.shape == (5, 32, 32, 3)  # from the NPZ


def test_json_cases_names_truths_and_bad_entries(tmp_path):
    _video_case(tmp_path, "walk")
    np.save(tmp_path / "short_truth.npy", clip(3))
    entries = [{"video": "walk.mp4", "mask": "walk_mask.npy", "reference": "walk_ref.png", "seed": 2},
               {"video": "walk.mp4", "mask": "walk_mask.npy", "reference": "walk_ref.png", "name": "walk"},
               {"video": "walk.mp4", "mask": "walk_mask.npy", "reference": "walk_ref.png", "name": "bad truth",
                "ground_truth": "short_truth.npy"},
               {"video": "walk.mp4", "out": "x.mp4"},
               {"case": "pair.npz", "guidance_scale": "high"},
               "walk.mp4"]
    (tmp_path / "cases.json").write_text(json.dumps(entries))
    cases = read_cases(tmp_path / "cases.json", tmp_path / "eval")
    jobs = cases[:3]
    assert [j.name for j in jobs] == ["walk", "walk_1", "bad_truth"] and jobs[0].seed == 2
    assert jobs[1].out == tmp_path / "eval" / "walk_1.mp4"
    errors = [str(e) for e in cases[3:]]
    assert all(isinstance(e, InputError) for e in cases[3:])
    assert "unknown keys ['out']" in errors[0] and "'guidance_scale' must be a finite number" in errors[1]
    assert "case 5 is a str" in errors[2]
    with pytest.raises(InputError, match=r"ground truth .*short_truth.npy.* is \[3, 32, 32, 3\] but the source"):
        jobs[2].read(None)


def test_case_list_errors():
    with pytest.raises(InputError, match="does not exist"):
        read_cases("/nonexistent/cases", "out")
    with pytest.raises(InputError, match="neither a folder nor a .json list"):
        read_cases(CONFIG_PATH, "out")


def _row(name, status="ok", **values):
    return {"name": name, "status": status, **values}


def test_summary_and_tables():
    rows = [_row("a", bg_psnr=30.0, masked_psnr=10.0, closer_to_reference=True, centroid_error=math.nan),
            _row("b", bg_psnr=math.inf, masked_psnr=20.0, closer_to_reference=False, centroid_error=1.0),
            _row("c", "failed", error="case 'c': broken")]
    mean = report.summary(rows)
    assert mean["status"] == "2/3 ok" and mean["bg_psnr"] == math.inf and mean["masked_psnr"] == 15.0
    assert mean["closer_to_reference"] == 0.5 and mean["centroid_error"] == 1.0  # NaN skipped
    csv_lines = report.csv_text(rows).splitlines()
    assert csv_lines[0].split(",")[:6] == ["name", "status", "set", "mask_style", "reference_framing", "seconds"]
    assert len(csv_lines) == 4
    assert "inf" in csv_lines[2] and "true" in csv_lines[1] and "broken" in csv_lines[3]
    md = report.markdown_text(rows)
    header = md.splitlines()[0]
    assert "bg_psnr" in header and "embedding_similarity" not in header  # unmeasured columns left out
    assert "mask_style" not in header and md.count("| mean |") == 1  # unlabelled cases: one mean row
    assert "| mean | 2/3 ok |" in md and "- `c`: case 'c': broken" in md


def test_case_labels_and_extras(tmp_path):
    mask = box_track(5)
    np.savez(tmp_path / "labelled.npz", source=clip(5), mask=mask, reference=reference(), subject_mask=mask * 3,
             subject_reference=reference(16), set=np.asarray("heldout"), mask_style=np.asarray("box"),
             reference_framing=np.asarray("canvas"))
    np.savez(tmp_path / "plain.npz", source=clip(5), mask=mask, reference=reference())
    labelled, plain = read_cases(tmp_path, tmp_path / "out")
    extras = case_extras(labelled)
    assert extras.labels == {"set": "heldout", "mask_style": "box", "reference_framing": "canvas"}
    np.testing.assert_array_equal(extras.subject_mask, mask)  # as {0, 1}
    assert extras.subject_reference.shape == (16, 16, 3)
    extras.check((5, 32, 32, 3), "labelled")
    with pytest.raises(InputError, match=r"labelled.*subject_mask is \[5, 32, 32\] but its source is \[5, 32, 48, 3\]"):
        extras.check((5, 32, 48, 3), "labelled")
    none = case_extras(plain)
    assert none.labels == {} and none.subject_mask is None and none.subject_reference is None
    (tmp_path / "labelled.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot be read as an NPZ"):
        case_extras(labelled)
    assert case_labels(labelled) == {} and case_labels(None) == {}  # a failed case's row: no labels, its error


def _sheet_rows():
    return [_row("a", set="infamily", mask_style="exact", reference_framing="crop", masked_psnr=18.0),
            _row("b", set="heldout", mask_style="box", reference_framing="canvas", masked_psnr=12.5),
            _row("c", "failed", set="heldout", mask_style="union", error="case 'c': broken"),
            _row("d", set="heldout", mask_style="grid", masked_psnr=math.nan),
            _row("e", set="infamily", mask_style="dilated", reference_framing="truth_frame", masked_psnr=15.0)]


def test_summary_has_a_mean_row_per_set_held_out_first():
    rows = _sheet_rows()
    means = report.set_summaries(rows)
    assert [(m["name"], m["set"], m["status"]) for m in means] == [("mean", "heldout", "2/3 ok"),
                                                                    ("mean", "infamily", "2/2 ok")]
    assert means[0]["masked_psnr"] == 12.5 and means[1]["masked_psnr"] == 16.5  # NaN skipped
    md = report.markdown_text(rows)
    assert "| mean | 4/5 ok |" in md and "| mean | 2/3 ok | heldout |" in md and "| mean | 2/2 ok | infamily |" in md
    header = md.splitlines()[0].split(" | ")
    assert header[:5] == ["| name", "status", "set", "mask_style", "reference_framing"]
    assert report.set_summaries([_row("x", masked_psnr=1.0)]) == []  # unlabelled cases: the one mean row
    assert report.csv_text(rows).splitlines()[0].split(",")[:5] == ["name", "status", "set", "mask_style",
                                                                     "reference_framing"]


def test_sheet_order_is_worst_first_with_labels():
    rows = _sheet_rows()
    assert report.sheet_order(rows) == [2, 1, 4, 0, 3]  # failed, 12.5, 15, 18 dB, then the one without a score
    assert report.sheet_label(rows[1]) == "b | held-out | box | canvas | masked 12.5 dB"
    assert report.sheet_label(rows[2]) == "c | held-out | union | FAILED"
    assert report.sheet_label(rows[4]) == "e | in family | dilated | truth_frame | masked 15 dB"
    assert report.sheet_label(_row("plain", masked_psnr=9.0)) == "plain | masked 9 dB"
    tile = 32
    images = [(name, np.full((tile, 5 * tile, 3), k, np.uint8)) for k, name in enumerate("abde")]
    entries = report.sheet_entries(rows, images, tile)
    assert [label.split(" | ")[0] for label, _ in entries] == ["c", "b", "e", "a", "d"]
    assert entries[1][1][0, 0, 0] == 1 and entries[0][1].shape == (tile, 5 * tile, 3)  # b's row; c's grey row


def test_contact_sheets_all_and_per_set(tmp_path):
    tile = 32
    row = np.zeros((tile, 5 * tile, 3), np.uint8)
    sheet = report.contact_sheet([("a", row), ("b", row)], tile)
    assert sheet.shape == (16 + 2 * (16 + tile), 5 * tile, 3) and sheet.dtype == np.uint8
    rows = _sheet_rows()
    images = [(name, row) for name in "abde"]
    written = {p.name for p in report.write_report(tmp_path, rows, images, tile)}
    assert written == {"metrics.csv", "metrics.md", "contact_sheet.png", "contact_sheet_heldout.png",
                       "contact_sheet_infamily.png"}
    heights = {n: video_io.read_image(tmp_path / n).shape[0] for n in written if n.endswith(".png")}
    assert heights == {"contact_sheet.png": 16 + 5 * (16 + tile), "contact_sheet_heldout.png": 16 + 3 * (16 + tile),
                       "contact_sheet_infamily.png": 16 + 2 * (16 + tile)}
    assert set(report.output_names()) >= written


def test_encoder_embedder_scores_the_reference_itself_as_one():
    embed = encoder_embedder(build_image_encoder("small", rngs=nnx.Rngs(0)))
    ref = reference(size=16)
    video = np.full((3, 32, 32, 3), 128, np.uint8)
    video[:, 8:24, 8:24] = ref
    region = np.zeros((3, 32, 32), np.uint8)
    region[:, 8:24, 8:24] = 1
    assert embed(np.repeat(ref[None], 20, axis=0)).shape == (20, 64)  # two padded batches
    assert embedding_similarity(embed, video, region, ref) == pytest.approx(1.0, abs=1e-5)


def _module(*args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "swapjax.evaluate", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def test_bad_arguments_exit_2_with_one_line(tmp_path):
    proc = _module("--cases", tmp_path, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--checkpoint" in proc.stderr
    base = ["--config", CONFIG_PATH, "--checkpoint", tmp_path / "ckpt", "--out", tmp_path / "eval"]
    proc = _module(*base, "--cases", tmp_path / "missing", cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --cases") and proc.stderr.count("\n") == 1
    _video_case(tmp_path, "walk")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.csv").write_text("old")
    proc = _module(*base, "--cases", tmp_path, cwd=ROOT)
    assert proc.returncode == 2 and "metrics.csv" in proc.stderr and "already exists" in proc.stderr
    assert "--overwrite" in proc.stderr and proc.stderr.count("\n") == 1
    proc = _module(*base, "--cases", tmp_path, "--overwrite", cwd=ROOT)  # on to the checkpoint: missing
    assert proc.returncode == 2 and "checkpoint" in proc.stderr and proc.stderr.count("\n") == 1
    assert (tmp_path / "eval" / "metrics.csv").read_text() == "old" and not (tmp_path / "eval" / "walk.mp4").exists()
