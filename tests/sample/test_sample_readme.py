"""The README's "Sampling" commands and JSON job list run as written, on a tiny random checkpoint and small clips
(in-process through `swapjax.sample.cli`, so the two commands share one compile)."""

from __future__ import annotations

import json
import pathlib
import re
import shlex

import numpy as np

from sample_fixtures import box_track, clip, reference, write_checkpoint
from swapjax.data import tracks, video_io
from swapjax.sample import cli

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
CONFIGS = README.parent / "configs"


def _section() -> str:
    text = README.read_text()
    return text[text.index("## Sampling"):text.index("\n## ", text.index("## Sampling") + 1)]


def test_readme_sampling_commands(tmp_path, monkeypatch, capsys):
    section = _section()
    commands = [line for line in re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].splitlines()
                if line.startswith("python sample.py")]
    jobs = re.findall(r"```json\n(.*?)```", section, flags=re.S)
    assert len(commands) == 2 and len(jobs) == 1

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(CONFIGS)
    write_checkpoint(tmp_path / "ckpt")
    video_io.write_video(tmp_path / "walk.mp4", clip(5), 12)
    tracks.write_box_track(tmp_path / "walk_mask.json", tracks.mask_to_boxes(box_track(5)), 32, 32)
    rgba = np.concatenate([reference(), np.full((24, 24, 1), 255, np.uint8)], axis=-1)
    rgba[:4, :, 3] = 0  # a transparent strip: composited on grey
    video_io.write_image(tmp_path / "cat.png", rgba)
    np.savez(tmp_path / "case.npz", source=clip(5, seed=2), mask=box_track(5), reference=reference(),
             ground_truth=clip(5, seed=2))
    (tmp_path / "jobs.json").write_text(jobs[0])

    for command in commands:
        argv = shlex.split(command)[2:] + ["--quiet"]
        assert cli.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.count("wrote ") == 3
    expected = {"walk.mp4", "walk_sheet.png"} | {pathlib.Path(j["out"]).name for j in json.loads(jobs[0])}
    expected |= {pathlib.Path(j["out"]).stem + "_sheet.png" for j in json.loads(jobs[0])}
    assert {p.name for p in (tmp_path / "out").iterdir()} == expected
    frames, fps, _ = video_io.read_video(tmp_path / "out" / "walk.mp4")
    assert frames.shape == (5, 32, 32, 3) and fps == 12
