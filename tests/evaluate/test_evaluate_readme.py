"""The README's "Evaluate" commands and case list run as written (in-process through `swapjax.evaluate.cli`) on
a tiny random checkpoint: two synthetic swap pairs with ground truth and one broken case in a folder (exit 1,
one `error:` line, the table's rows, the contact sheet with the failed case first, one MP4 per case), then a
JSON list with a video case carrying audio and a ground-truth video (exit 0, fps, frames and audio kept)."""

from __future__ import annotations

import csv
import json
import pathlib
import re
import shlex

import cv2
import numpy as np

from media_fixtures import write_av_source
from sample_fixtures import box_track, reference, write_checkpoint
from swapjax.data import tracks, video_io
from swapjax.data.synthetic import SyntheticClips
from swapjax.evaluate import cli

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
CONFIGS = README.parent / "configs"
TILE, LABEL = cli.TILE, 16


def _section() -> str:
    text = README.read_text()
    start = text.index("## Evaluate")
    return text[start:text.index("\n## ", start + 1)]


def _rows(path: pathlib.Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def _cases(root: pathlib.Path) -> None:
    """cases/pair0.npz, pair1.npz (synthetic swap pairs with ground truth), broken.npz (no reference); the walk
    video (with audio) and its mask, reference and ground truth for the JSON list."""
    folder = root / "cases"
    folder.mkdir()
    clips = SyntheticClips(32, 32, 5, 8, seed=3)
    for i in range(2):
        pair = clips.swap_pair(i, 24)
        np.savez(folder / f"pair{i}.npz", source=pair["video"], mask=pair["mask"], reference=pair["reference"],
                 ground_truth=pair["target"], keypoints=pair["keypoints"])  # keypoints: ignored
    np.savez(folder / "broken.npz", source=pair["video"], mask=pair["mask"])
    write_av_source(root / "walk.mp4", num_frames=5, fps=12, audio=True, height=32, width=32)
    tracks.write_box_track(root / "walk_mask.json", tracks.mask_to_boxes(box_track(5)), 32, 32)
    video_io.write_image(root / "cat.png", reference())
    source, _, _ = video_io.read_video(root / "walk.mp4")
    video_io.write_video(root / "walk_truth.mp4", source[:, ::-1].copy(), 12)


def test_readme_evaluate_commands(tmp_path, monkeypatch, capsys):
    section = _section()
    commands = [line for line in re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].splitlines()
                if line.startswith("python -m swapjax.evaluate")]
    listing = re.findall(r"```json\n(.*?)```", section, flags=re.S)
    assert len(commands) == 2 and len(listing) == 1

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(CONFIGS)
    write_checkpoint(tmp_path / "ckpt")
    _cases(tmp_path)
    (tmp_path / "cases.json").write_text(listing[0])
    assert "cases/" in commands[0] and "cases.json" in commands[1]

    assert cli.main(shlex.split(commands[0])[3:] + ["--quiet"]) == 1  # the broken case failed, the others ran
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: case 'broken'") and "reference" in err[0]
    out = tmp_path / "eval"
    assert {p.name for p in out.iterdir()} == {"metrics.csv", "metrics.md", "contact_sheet.png", "pair0.mp4",
                                               "pair0_sheet.png", "pair1.mp4", "pair1_sheet.png"}
    rows = _rows(out / "metrics.csv")
    assert [rows[n]["status"] for n in ("broken", "pair0", "pair1")] == ["failed", "ok", "ok"]
    assert "lacks ['reference']" in rows["broken"]["error"]
    for name in ("pair0", "pair1"):
        row = rows[name]
        assert row["frames_kept"] == row["fps_kept"] == row["size_kept"] == row["audio_kept"] == "true"
        assert row["bg_psnr"] in ("inf", "nan") and float(row["masked_psnr"]) > 0  # nan: no background left
        assert 0 <= float(row["colour_to_reference"]) and row["closer_to_reference"] in ("true", "false")
        assert float(row["centroid_error"]) >= 0 and float(row["centroid_error_truth"]) >= 0  # not NaN
        assert row["bg_psnr_raw"] != "" and row["flicker_source"] != "" and row["warp_error"] != ""
    md = (out / "metrics.md").read_text()
    assert "| mean | 2/3 ok |" in md and "`broken`" in md
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape == (LABEL + 3 * (LABEL + TILE), 5 * TILE, 3)  # the failed case first, on dark grey
    assert sheet[2 * LABEL:2 * LABEL + TILE, TILE:].max(axis=-1).mean() < 60

    cases = json.loads(listing[0])
    assert cli.main(shlex.split(commands[1])[3:] + ["--quiet"]) == 0
    rows = _rows(tmp_path / "eval_walk" / "metrics.csv")
    assert set(rows) == {pathlib.Path(cases[0]["case"]).stem, "walk"}
    walk = rows["walk"]
    assert walk["status"] == "ok" and walk["audio_kept"] == walk["fps_kept"] == walk["frames_kept"] == "true"
    assert float(walk["masked_psnr"]) > 0  # the ground-truth video was read
    frames, fps, has_audio = video_io.read_video(tmp_path / "eval_walk" / "walk.mp4")
    assert frames.shape == (5, 32, 32, 3) and fps == 12 and has_audio
